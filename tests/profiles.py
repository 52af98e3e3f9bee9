"""Hypothesis profiles: ``fast`` (the default, what ``make test`` runs) and ``thorough``
(``HYPOTHESIS_PROFILE=thorough``, what ``make test-thorough`` runs): four times the examples of every
property, for a nightly job or before a release. A property names its examples through
:func:`examples`, so that both profiles scale it."""

from __future__ import annotations

import os

from hypothesis import settings

FACTOR = {"fast": 1, "thorough": 4}
settings.register_profile("fast", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=400)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fast")
if PROFILE not in FACTOR:
    raise ValueError(f"HYPOTHESIS_PROFILE must be one of {', '.join(FACTOR)}, not {PROFILE!r}")
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """``n`` examples under the fast profile, more under the thorough one."""
    return n * FACTOR[PROFILE]
