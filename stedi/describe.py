"""Look before you touch: what a table is (its contract, current snapshot, row count) and what
happened to it (its snapshots: which run or command wrote each, when, rows added and deleted),
read from the contract and the table's metadata file only (:mod:`stedi.lakeview`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stedi import properties
from stedi.errors import StediError

if TYPE_CHECKING:
    from stedi.config import Settings
    from stedi.lakeview import TableState


def when(ms: int) -> str:
    """An epoch-milliseconds instant as a person reads it."""
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M:%S} UTC"


def _state(settings: Settings, name: str) -> TableState:
    from stedi.contracts import contract
    from stedi.lakeview import Lake
    from stedi.zones import visible

    contract(name)  # a clear error for an unknown table
    if name not in visible(settings.zone, settings.tables):
        raise StediError(f"table {name} is not in the {settings.zone} zone this reader is limited to")
    lake = Lake(settings)
    lake.check_exists()
    state = lake.state(name)
    if state.problem:
        raise StediError(state.problem)
    return state


def describe(settings: Settings, name: str) -> dict:
    """Table ``name``: contract (comment, columns, grain, rules, owner, zone) and current snapshot."""
    state = _state(settings, name)
    c = state.contract
    props = dict(c.properties)
    snap = state.snapshot
    return {
        "table": name,
        "comment": c.description,
        "zone": state.zone,
        "grain": c.grain,
        "owner": props.get("stedi.owner"),
        "owner_kind": props.get("stedi.owner_kind"),
        "columns": [
            {"name": col.name, "type": col.sql_type, "required": col.required, "comment": col.comment} for col in c.columns
        ],
        "rules": [{"name": r.name, "check": r.predicate, "action": r.action} for r in c.rules],
        "snapshot_id": snap.id if snap else None,
        "updated": when(snap.timestamp_ms) if snap else None,
        "rows": snap.rows if snap else 0,
    }


@dataclass(frozen=True)
class Entry:
    snapshot_id: int
    when: str
    operation: str
    by: str
    added: int
    deleted: int
    rows: int
    current: bool


def _by(summary: dict[str, str]) -> str:
    """Who wrote a snapshot: the run and job, or the command that stamped it."""
    if properties.RUN_ID in summary:
        job = summary.get(properties.JOB)
        return summary[properties.RUN_ID] + (f" ({job})" if job else "")
    if properties.BATCH_ID in summary:
        return f"ingest {summary[properties.BATCH_ID]}"
    if properties.ERASURE_ID in summary:
        return f"forget {summary[properties.ERASURE_ID]}"
    stamped = sorted(k for k in summary if k.startswith("stedi."))
    return stamped[0].removeprefix("stedi.") if stamped else "-"


def history(settings: Settings, name: str) -> list[Entry]:
    """Table ``name``'s snapshots still kept, oldest first."""
    state = _state(settings, name)
    current = state.snapshot.id if state.snapshot else None
    out = []
    for s in sorted(state.snapshots, key=lambda s: (s.timestamp_ms, s.id)):
        summ = s.summary
        out.append(
            Entry(
                s.id,
                when(s.timestamp_ms),
                summ.get("operation", "?"),
                _by(summ),
                int(summ.get("added-records", 0)),
                int(summ.get("deleted-records", 0)),
                s.rows,
                s.id == current,
            )
        )
    return out
