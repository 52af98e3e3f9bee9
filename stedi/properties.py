"""Every property stedi stamps on the Iceberg snapshots it writes, with its meaning: the one place
they are named. Writers build them here (:func:`run_properties`), readers (the incremental planner,
the run summary, ``describe``/``history``, ``sql --as-of``) look them up by these names.

Snapshot properties are strings (Iceberg's snapshot summary); counts are decimal, structures JSON.
Table properties (``stedi.owner``, ``stedi.zone``, ...) are the contracts' TBLPROPERTIES, read by
:mod:`stedi.contracts`, not these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

#: Who wrote the snapshot: the run (``run-<time>-<id>``), the ingest batch or the erasure.
RUN_ID = "stedi.run-id"
BATCH_ID = "stedi.batch-id"
ERASURE_ID = "stedi.erasure-id"

#: The job that computed a run's output snapshot (its module's name in pipelines/).
JOB = "stedi.job"
#: Digest of the job's code, contract, settings and inputs' snapshots: a job whose fingerprint is
#: unchanged is skipped (``stedi.runner``).
FINGERPRINT = "stedi.fingerprint"
#: JSON {input: its fingerprint} the output was computed from.
INPUTS = "stedi.inputs"
#: The consent scope the run applied (``all-history`` or ``since-consent``).
CONSENT_SCOPE = "stedi.consent-scope"
#: Rows the job kept out, by why: outside the consent scope; of a device registered to several
#: customers; customers whose latest record cannot be read with certainty.
OUT_OF_SCOPE = "stedi.out-of-scope"
UNATTRIBUTABLE = "stedi.unattributable"
UNCERTAIN = "stedi.uncertain"
#: JSON {rule: {"action", "passed", "failed"}}: how the contract's data quality rules fared.
RULES = "stedi.rules"
#: The engine that wrote the data files, when not the default (``spark``).
ENGINE = "stedi.engine"
#: For incremental runs (``stedi.incremental``): JSON {landing table: snapshot id} the output was
#: computed from, and a digest of the job's code, contract, settings and the pseudonym key's id.
READ = "stedi.read"
CODE = "stedi.code"

#: ``stedi-etl watch`` (:mod:`stedi.watch`): when the micro-batch's oldest file was complete in the
#: source (epoch ms), on every snapshot the batch wrote.
ARRIVED = "stedi.arrived-at-ms"
#: A compaction (:mod:`stedi.compaction`: files rewritten, rows kept): JSON [snapshot ids whose rows
#: it holds], the last snapshot before it that no run wrote ("" if none), and when the rows it holds
#: were written (epoch ms: their last change, for freshness).
COMPACTED = "stedi.compacted-from"
NOT_BY_A_RUN = "stedi.not-by-a-run"
DATA_AT = "stedi.data-at-ms"

#: Every property above: what a snapshot written by stedi may carry.
ALL = (
    RUN_ID, BATCH_ID, ERASURE_ID, JOB, FINGERPRINT, INPUTS, CONSENT_SCOPE, OUT_OF_SCOPE, UNATTRIBUTABLE, UNCERTAIN, RULES, ENGINE, READ,
    CODE, ARRIVED, COMPACTED, NOT_BY_A_RUN, DATA_AT,
)


def run_properties(
    *,
    run_id: str,
    job: str,
    fingerprint: str,
    inputs: Mapping[str, str],
    consent_scope: str,
    kept_out: Mapping[str, int],
    rules: Mapping[str, dict],
    read: str,
    code: str,
    engine: str | None = None,
) -> dict[str, str]:
    """The properties of the snapshot a run writes for one job. ``kept_out``: counts by
    :data:`OUT_OF_SCOPE`, :data:`UNATTRIBUTABLE`, :data:`UNCERTAIN`."""
    props = {
        RUN_ID: run_id,
        JOB: job,
        FINGERPRINT: fingerprint,
        INPUTS: json.dumps(dict(inputs), sort_keys=True),
        CONSENT_SCOPE: consent_scope,
        **{name: str(kept_out.get(name, 0)) for name in (OUT_OF_SCOPE, UNATTRIBUTABLE, UNCERTAIN)},
        RULES: json.dumps(rules, sort_keys=True),
        READ: read,
        CODE: code,
    }
    if engine is not None:
        props[ENGINE] = engine
    return props


def count(summary: Mapping[str, str] | None, name: str) -> int:
    """A count property of a snapshot's summary (0 when absent)."""
    return int((summary or {}).get(name) or 0)
