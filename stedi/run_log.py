"""``run_log``: every run that changed something, job by job (snapshots read and written, rows in,
out, quarantined and kept out, each rule's counts, time, outcome), and every run that failed,
with its error. ``stedi-etl runs`` reads it.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from stedi import properties
from stedi.contracts import contract
from stedi.evaluation import DERIVED
from stedi.jobs import load_jobs
from stedi.warehouse import Change

if TYPE_CHECKING:
    from stedi.errors import StediError
    from stedi.runner import RunSummary
    from stedi.warehouse import Warehouse


def log_run(wh: Warehouse, summary: RunSummary, started_at: datetime) -> None:
    """Append the run to ``run_log``: one row per job, with the snapshots it read and wrote."""
    import pyarrow as pa

    jobs = {job.output: job for job in load_jobs()}
    rows = []
    for r in summary.results:
        inputs = {n: wh.info(n).snapshot_id for n in jobs[r.output].inputs if n not in DERIVED}
        rows.append(
            {
                "run_id": summary.run_id,
                "job": r.job,
                "output_table": r.output,
                "status": r.status,
                "started_at": started_at,
                "seconds": round(r.seconds, 3),
                "rows_in": r.rows_in,
                "rows_out": r.rows_out,
                "rows_removed": r.rows_removed,
                "mode": summary.mode if r.status == "updated" else None,
                "rows_quarantined": r.rows_quarantined,
                "rows_out_of_scope": r.rows_out_of_scope,
                "rows_unattributable": r.rows_unattributable,
                "rows_uncertain": r.rows_uncertain,
                "rule_results": json.dumps(r.rules, sort_keys=True) if r.status == "updated" else None,
                "input_snapshots": json.dumps(inputs, sort_keys=True),
                "output_snapshot_id": wh.info(r.output).snapshot_id,
                "consent_scope": summary.consent_scope,
                "error": None,
            }
        )
    table = pa.Table.from_pylist(rows, schema=contract("run_log").arrow_schema())
    wh.commit_staged([wh.stage(Change("run_log", table, "append", {properties.RUN_ID: summary.run_id}))])


def log_failed(wh: Warehouse, started_at: datetime, scope: str, err: StediError) -> None:
    """Append a failed run to ``run_log``, one row per job, with the error; never hides the error."""
    import pyarrow as pa

    run_id = f"run-{started_at:%Y%m%dT%H%M%S}-failed-{uuid.uuid4().hex[:6]}"
    rows = [
        {"run_id": run_id, "job": job.name, "output_table": job.output, "status": "failed", "started_at": started_at,
         "consent_scope": scope, "error": str(err)}
        for job in load_jobs()
    ]
    table = pa.Table.from_pylist(rows, schema=contract("run_log").arrow_schema())
    with contextlib.suppress(Exception):  # the log is a courtesy: the run's own error is what the user must see
        wh.commit_staged([wh.stage(Change("run_log", table, "append", {properties.RUN_ID: run_id}))])
