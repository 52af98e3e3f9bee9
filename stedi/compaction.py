"""Compaction: a table's small data files rewritten into few large ones, rows kept exactly.

Every micro-batch of ``stedi-etl watch`` appends a small file (and a manifest) to the tables it
touches; after hours of them a scan opens thousands of files. :func:`compact` reads a table's
small files (a group of at most :data:`BIN_BYTES` at a time, streamed to the writer: its memory
does not grow with the table) and writes their rows again as files of the table's target size, in one Iceberg
``overwrite`` snapshot that deletes the small files and adds the new ones (pyiceberg 0.12 has no
``rewrite_data_files`` action; its snapshot producer does the same with ``delete_data_file`` and
``append_data_file``). The snapshot keeps the current snapshot's properties (a run's fingerprint
and what it read) and says which snapshot's rows it holds (:data:`stedi.warehouse.COMPACTED`), so
that runs stay incremental and audits need not start over: the rows did not change.

:func:`maintain` compacts every table, then applies the warehouse's retention
(:func:`stedi.retention.enforce`: snapshots older than ``retention_days`` expired with the files
only they used, and any snapshot still holding a customer who withdrew), so that the metadata stays
bounded by the retention while time travel keeps what it promises. Both hold the writers' lock.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stedi import properties
from stedi.contracts import load_contracts
from stedi.warehouse import COMPACTED, NOT_BY_A_RUN, Staged, Warehouse, compacted_from, not_by_a_run

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Snapshot

    from stedi.keys import Keys

#: A data file smaller than this (on disk) is worth rewriting with others.
SMALL_FILE_BYTES = 8 * 1024 * 1024
#: The small files read together: at most this many bytes on disk, so that a compaction holds one
#: group's rows in memory (a few times this) and the files pyiceberg's writer is making (one per
#: worker of its pool, each up to the table's target size), not a whole table.
BIN_BYTES = 4 * SMALL_FILE_BYTES
#: Compact a table once it has at least this many small files.
MIN_SMALL_FILES = 2
#: When the snapshot compacted was written (epoch ms): the rows' last change, for freshness.
DATA_AT = properties.DATA_AT
#: How many snapshots back a compaction lists (those that only added a run's rows).
_MAX_LISTED = 100


@dataclass(frozen=True)
class Compacted:
    table: str
    files_before: int  # small files rewritten
    files_after: int  # files they became
    rows: int
    bytes_before: int
    bytes_after: int


@dataclass
class MaintenanceSummary:
    compacted: list[Compacted] = field(default_factory=list)
    files_deleted: int = 0  # by the expiry: older snapshots' files, manifests and metadata
    snapshots_expired: int = 0
    seconds: float = 0.0


def compact(
    wh: Warehouse, name: str, *, small_bytes: int = SMALL_FILE_BYTES, min_files: int = MIN_SMALL_FILES, force: bool = False
) -> Compacted | None:
    """Rewrite the small data files of table ``name`` (under ``small_bytes``) into files of its
    target size, as one overwrite snapshot holding the same rows; None when it has fewer than
    ``min_files`` small files (``force``: write the snapshot all the same, rewriting whatever small
    files there are, so that older snapshots can be expired without losing what runs compare)."""
    with wh.lock("stedi-etl maintain"):
        table = wh.table(name)
        current = table.current_snapshot()
        if current is None:
            return None
        tasks = list(table.scan().plan_files())
        small = [t for t in tasks if t.file.file_size_in_bytes < small_bytes and not t.delete_files]
        if len(small) < min_files and not (force and len(tasks) >= 1):
            return None
        import pyarrow as pa
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files

        scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())

        def batches() -> Iterator[pa.RecordBatch]:  # a group of files read at a time, whatever the table's size
            for group in bins(small, BIN_BYTES):
                yield from scan.to_record_batches(group)

        props = _properties(table, current)
        tx = table.transaction()
        added = []
        with tx.update_snapshot(snapshot_properties=props).overwrite() as producer:
            for task in small:
                producer.delete_data_file(task.file)
            stream = batches()
            first = next(stream, None)
            if first is not None:  # streamed into files of the table's target size
                # one schema for the stream: a file another tool wrote may decode to other Arrow types
                # of the same Iceberg type (string, not large_string), which pyiceberg passes through
                same = (b if b.schema.equals(first.schema) else b.cast(first.schema) for b in stream)
                rows = pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], same))
                for data_file in _dataframe_to_data_files(tx.table_metadata, rows, table.io, producer.commit_uuid):
                    producer.append_data_file(data_file)
                    added.append(data_file)
        wh.commit_staged([Staged(name, tx)])  # journaled: a kill here leaves the table as it was
        return Compacted(
            name,
            len(small),
            len(added),
            sum(f.record_count for f in added),
            sum(t.file.file_size_in_bytes for t in small),
            sum(f.file_size_in_bytes for f in added),
        )


def bins(tasks: list, most: int) -> list[list]:
    """``tasks`` (data files to rewrite) in groups of at most ``most`` bytes on disk, in order (a file
    larger than that alone): each group is read and written on its own."""
    groups: list[list] = []
    size = 0
    for task in tasks:
        if not groups or size + task.file.file_size_in_bytes > most:
            groups.append([])
            size = 0
        groups[-1].append(task)
        size += task.file.file_size_in_bytes
    return groups


def _properties(table, current: Snapshot) -> dict[str, str]:
    """The compaction's snapshot properties: the current snapshot's own (what a run stamped), and
    which snapshots' rows it holds."""
    # the properties stedi stamped (Iceberg's own totals are the new snapshot's to compute)
    props = {k: v for k, v in (current.summary.additional_properties if current.summary else {}).items() if k.startswith("stedi.")}
    held = compacted_from(current)
    if held:  # a compaction of a compaction stands for the same rows
        return props
    listed: list[int] = []
    snap = current
    while snap is not None and len(listed) < _MAX_LISTED:
        earlier = compacted_from(snap)
        if earlier:
            listed += earlier
            break
        listed.append(snap.snapshot_id)
        if snap.summary is None or properties.RUN_ID not in snap.summary.additional_properties:
            break
        snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id else None
    props[COMPACTED] = json.dumps(listed)
    props[NOT_BY_A_RUN] = str(not_by_a_run(table) or "")
    props.setdefault(DATA_AT, str(current.timestamp_ms))
    return props


def maintain(
    wh: Warehouse,
    key: bytes | Keys | None = None,
    *,
    small_bytes: int = SMALL_FILE_BYTES,
    min_files: int = MIN_SMALL_FILES,
    tables: list[str] | None = None,
) -> MaintenanceSummary:
    """Compact every table (or those named) with enough small files, then apply the retention to
    them (:func:`stedi.retention.enforce`, every older snapshot looked at for customers who
    withdrew; ``key``: the warehouse's keys, as for a run). Holds the writers' lock throughout."""
    from stedi import retention

    started = time.perf_counter()
    summary = MaintenanceSummary()
    names = tables if tables is not None else sorted(load_contracts())
    with wh.lock("stedi-etl maintain"):
        for name in names:
            if wh.table(name).current_snapshot() is None:
                continue
            done = compact(wh, name, small_bytes=small_bytes, min_files=min_files)
            if done is not None and done.files_before:
                summary.compacted.append(done)
        kept = retention.enforce(wh, key, before=retention.EVERY, tables=names)
        summary.snapshots_expired += kept.snapshots_expired
        summary.files_deleted += kept.files_deleted
    summary.seconds = time.perf_counter() - started
    return summary


def most_files(wh: Warehouse, above: int) -> str | None:
    """The table whose current snapshot reads the most data files, if more than ``above``: the
    next one to compact (from the snapshots' summaries: no manifest is read)."""
    counts = {}
    for name in sorted(load_contracts()):
        current = wh.table(name).current_snapshot()
        summary = current.summary.additional_properties if current is not None and current.summary is not None else {}
        counts[name] = int(summary.get("total-data-files") or 0)
    name = max(counts, key=lambda n: counts[n])
    return name if counts[name] > above else None
