"""Retention: what time travel can return, enforced by every run.

Two rules, applied after a run commits (:func:`enforce`):

* **A withdrawn customer leaves history too.** When a run takes customers out of
  ``customer_trusted`` (a later record withdrew consent, or can no longer be read with certainty),
  every older snapshot of a trusted or curated table that still returns one of their rows is
  expired at once and its files deleted, as ``forget`` does for an erased person. A snapshot is
  looked at through the data files it reads that the current snapshot does not: one of those
  holding a departed customer's email, serial number or ``customer_key`` (by each table's owner
  column, from its contract) condemns it. Snapshots without them stay: the people who stay keep
  time travel to before the customer consented, and from the withdrawal on.
* **Ordinary snapshots are kept for ``retention_days``** (the warehouse's setting, default 7;
  ``STEDI_RETENTION_DAYS``): older ones are expired and their files deleted. The current snapshot
  of a table is always kept, however old.

So ``sql --as-of`` / pyiceberg's ``scan(snapshot_id=...)`` return a table as a run left it for as
long as retention allows, never with rows of someone who withdrew since; landing and system tables
(which hold everyone's records, consenting or not) keep their history for ``retention_days``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from stedi import maintenance, privacy
from stedi.contracts import load_contracts

if TYPE_CHECKING:
    from stedi.keys import Keys
    from stedi.warehouse import Warehouse

DAY_MS = 86_400_000

#: The table whose rows say who is in the consent-filtered zones.
CONSENTING = "customer_trusted"


@dataclass
class Retained:
    """What a run's retention did."""

    departed: int = 0  # customers taken out by this run
    snapshots_expired: int = 0
    files_deleted: int = 0


def _column(wh: Warehouse, name: str, snapshot_id: int | None, columns: tuple[str, ...]) -> pa.Table:
    table = wh.table(name)
    if snapshot_id is None:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return table.scan(snapshot_id=snapshot_id, selected_fields=columns).to_arrow()


#: ``before`` for :func:`enforce`: look at every older snapshot of ``customer_trusted``, not one.
EVERY = -1


def departed(wh: Warehouse, before: int | None) -> tuple[set[str], set[str]]:
    """(emails, serial numbers) in ``customer_trusted`` at snapshot ``before`` (or, with
    :data:`EVERY`, at any of its older snapshots) and not now."""
    table = wh.table(CONSENTING)
    current = table.current_snapshot()
    if before is None or current is None or current.snapshot_id == before:
        return set(), set()
    older = [s.snapshot_id for s in table.metadata.snapshots if s.snapshot_id != current.snapshot_id] if before == EVERY else [before]
    if not older:
        return set(), set()
    was = pa.concat_tables([_column(wh, CONSENTING, i, ("email", "serialNumber")) for i in older])
    now = _column(wh, CONSENTING, current.snapshot_id, ("email", "serialNumber"))
    gone = set(was["email"].to_pylist()) - set(now["email"].to_pylist())
    serials = {s for e, s in zip(was["email"].to_pylist(), was["serialNumber"].to_pylist(), strict=True) if e in gone}
    return gone, serials - set(now["serialNumber"].to_pylist())


def _owner_values(kind: str, emails: set[str], serials: set[str], keys: Keys) -> set[str]:
    if kind == "email":
        return emails
    if kind == "serial":
        return serials
    if kind == "customer_key":
        return {privacy.customer_key(e, keys.pseudonym) for e in emails}
    if kind == "identifier":
        return emails | serials
    return set()  # subject_key: the consent history holds everyone, consenting or not


def _condemned(wh: Warehouse, name: str, owner: str, values: set[str]) -> list[int]:
    """Older snapshots of ``name`` reading a file (not read by the current one) with one of ``values``."""
    table = wh.table(name)
    current = table.current_snapshot()
    if current is None or not values:
        return []
    now = maintenance.data_files(table, current)
    wanted = pa.array(sorted(values), pa.string())
    verdict: dict[str, bool] = {}

    def holds(uri: str) -> bool:
        if uri not in verdict:
            import pyarrow.parquet as pq

            with table.io.new_input(uri).open() as f:
                column = pq.read_table(f, columns=[owner])[owner]
            verdict[uri] = bool(pc.any(pc.is_in(pc.cast(column, pa.string()), value_set=wanted)).as_py())
        return verdict[uri]

    return [
        s.snapshot_id
        for s in table.metadata.snapshots
        if s.snapshot_id != current.snapshot_id and any(holds(uri) for uri in maintenance.data_files(table, s) - now)
    ]


def enforce(
    wh: Warehouse, keys: bytes | Keys | None, *, before: int | None, now_ms: int | None = None, tables: list[str] | None = None
) -> Retained:
    """Apply both rules after a run; ``before`` is ``customer_trusted``'s snapshot before the run
    (:data:`EVERY` to look at all its older ones, as ``stedi-etl maintain`` does); ``tables``: only
    these (default: every table)."""
    done = Retained()
    emails, serials = departed(wh, before)
    done.departed = len(emails)
    if emails:  # their customer_key is needed: the warehouse's keys (a run's, or as configured)
        keys = wh.keys(keys)
    cutoff = (now_ms if now_ms is not None else int(time.time() * 1000)) - wh.settings.retention_days * DAY_MS
    for name, c in sorted(load_contracts().items()):
        if tables is not None and name not in tables:
            continue
        table = wh.table(name)
        if table.current_snapshot() is None:
            continue
        expire = set(maintenance.older_than(table, cutoff))
        if emails and c.zone in ("trusted", "curated") and c.owner and not c.holds_everyone:
            expire |= set(_condemned(wh, name, c.owner, _owner_values(c.owner_kind or "", emails, serials, keys)))
        if expire:
            done.snapshots_expired += maintenance.expire(wh, name, expire)
            done.files_deleted += maintenance.remove_unreferenced(wh, name)
    return done
