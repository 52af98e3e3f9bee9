"""``stedi-etl rotate-key``: change the pseudonym key deliberately.

Under the writers' lock: the key is changed (:func:`stedi.keys.rotate`: the suppression list keeps
its own key, so every past erasure holds), every table is rebuilt under the new key, and every
older snapshot of the tables holding pseudonyms (``stedi.owner_kind`` customer_key or
subject_key) is expired with its files, so that no reachable version pairs old and new pseudonyms.
A rebuild that fails leaves the key changed; the next run rebuilds (the tables' fingerprints name
the key they were made with).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stedi import keys as keyring
from stedi import maintenance
from stedi.contracts import load_contracts

if TYPE_CHECKING:
    from stedi.keys import Keys
    from stedi.runner import RunSummary
    from stedi.warehouse import Warehouse


def rotate_key(wh: Warehouse) -> tuple[Keys, RunSummary]:
    from stedi.runner import run

    with wh.lock("stedi-etl rotate-key"):
        current = wh.keys(create=False)
        new = keyring.rotate(wh.settings, wh.files, current)
        summary = run(wh, new, full_refresh=True)
        for name, c in load_contracts().items():
            if c.owner_kind in ("customer_key", "subject_key"):
                maintenance.expire_all_older(wh, name)
    return new, summary
