"""The journaled multi-table commit: several tables' changes committed as one, all or nothing.

Iceberg commits one table at a time. Before the first, the snapshots to go back to are written to a
journal in the warehouse's private folder; it is removed once every table is committed (or put
back). A process killed in between leaves the journal, and the next writer to take the lock puts
the tables back (:func:`recover`): a warehouse is never left half-committed. A table's commit that
another writer beat is built again over the table as it is now and retried (:func:`commit_one`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
from typing import TYPE_CHECKING

from pyiceberg.exceptions import CommitFailedException, ValidationException

from stedi.contracts import contract
from stedi.errors import StediError, first_line
from stedi.storage import PRIVATE

if TYPE_CHECKING:
    from stedi.warehouse import Staged, Warehouse

#: Snapshots to go back to, written before a multi-table commit and removed after it.
JOURNAL = f"{PRIVATE}/commit-journal.json"

#: Retries of a table's commit when another writer committed to the table first.
COMMIT_RETRIES = 4


def commit(wh: Warehouse, staged: list[Staged]) -> None:
    """Commit staged changes in order, all or nothing: if one fails, the tables already changed
    are put back to the snapshots they had before, and the error is raised.

    Iceberg commits one table at a time. Before the first, the snapshots to go back to are
    written to a journal; it is removed once every table is committed (or put back). A process
    killed in between leaves the journal, and the next writer to take the lock puts the tables
    back (:func:`recover`): a warehouse is never left half-committed.
    """
    wh.still_locked()
    before = {s.table: wh.info(s.table).snapshot_id for s in staged}
    wh.files.write(JOURNAL, json.dumps({"before": before}).encode())
    done: list[str] = []
    try:
        for s in staged:
            commit_one(wh, s)
            done.append(s.table)
    except BaseException as err:
        try:
            for name in reversed(done):
                restore(wh, name, before[name])
        except Exception as again:  # the storage or catalog that failed the commit fails this too
            raise StediError(
                f"a commit failed ({first_line(err)}) and {', '.join(done)} could not be put back yet "
                f"({first_line(again)}); the next stedi-etl command puts them back"
            ) from err
        with contextlib.suppress(Exception):  # left behind, it only makes the next writer restore the same snapshots
            wh.files.delete(JOURNAL)
        raise
    wh.files.delete(JOURNAL)


def commit_one(wh: Warehouse, staged: Staged) -> None:
    """Commit one table's change. pyiceberg itself retries an append that another writer beat
    to the catalog; it gives up on a change that conflicts with theirs (an overwrite or delete
    over rows they added: ValidationException) or after its own retries. Then the change is
    built again over the table as it is now and retried, a few times, after a short random
    wait: a run's output replaces what the other writer left, an append adds to it."""
    for attempt in range(COMMIT_RETRIES + 1):
        try:
            staged.transaction.commit_transaction()
            return
        except (CommitFailedException, ValidationException) as err:
            if staged.redo is None or attempt == COMMIT_RETRIES:
                raise StediError(
                    f"table {staged.table}: another writer kept committing to it first ({err}); "
                    "nothing of this command was kept: run it again"
                ) from err
            time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
            wh.table(staged.table).refresh()
            staged = dataclasses.replace(staged, transaction=staged.redo())


def settle(wh: Warehouse) -> None:
    """Before a command, finish a commit that a killed process or a failed storage left half
    done (:func:`recover`, under the lock), so that no command, reader or writer, sees it."""
    if wh.files.exists(JOURNAL):
        with wh.lock("stedi-etl recovery"):
            pass


def recover(wh: Warehouse) -> list[str]:
    """Finish what a killed commit left: put back the tables its journal names. Returns them.
    Called by :meth:`lock`, so every writer starts from a whole warehouse."""
    try:
        before = json.loads(wh.files.read_bytes(JOURNAL))["before"]
    except FileNotFoundError:
        return []
    for name, snapshot_id in before.items():
        restore(wh, name, snapshot_id)
    wh.files.delete(JOURNAL)
    return list(before)


def restore(wh: Warehouse, name: str, snapshot_id: int | None) -> None:
    """Put table ``name`` back to ``snapshot_id`` (``None``: back to no rows)."""
    table = wh.table(name)
    current = table.current_snapshot()
    if snapshot_id is None:
        if current is not None:
            table.overwrite(contract(name).arrow_schema().empty_table())
    elif current is None or current.snapshot_id != snapshot_id:
        table.manage_snapshots().set_current_snapshot(snapshot_id).commit()
