"""Warehouse maintenance: expire snapshots and delete the files no snapshot refers to any more.

pyiceberg's ``expire_snapshots`` only drops a snapshot's reference from the table's metadata; the
files stay until something deletes them. Here a table keeps exactly the files its remaining
snapshots use (data files, manifests, manifest lists) and its current metadata file; everything
else under the table's location goes: files of expired snapshots, older metadata files, and the
orphans of writes that never committed. So what time travel cannot reach, a raw scan of the folder
cannot find either. Every function here runs under the writers' lock
(:meth:`stedi.warehouse.Warehouse.lock`): a concurrent writer's staged files would look like orphans.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from stedi.warehouse import Warehouse


def expire(wh: Warehouse, name: str, snapshot_ids: Iterable[int]) -> int:
    """Expire these snapshots of table ``name`` (never its current one); returns how many."""
    wh.still_locked()
    table = wh.table(name)
    current = table.current_snapshot()
    ids = sorted({i for i in snapshot_ids if current is None or i != current.snapshot_id})
    if ids:
        table.maintenance.expire_snapshots().by_ids(ids).commit()
    return len(ids)


def older_than(table: Table, cutoff_ms: int) -> list[int]:
    """Ids of the snapshots of ``table`` taken before ``cutoff_ms``, except the current one."""
    current = table.current_snapshot()
    return [
        s.snapshot_id
        for s in table.metadata.snapshots
        if s.timestamp_ms < cutoff_ms and (current is None or s.snapshot_id != current.snapshot_id)
    ]


def data_files(table: Table, snapshot) -> set[str]:
    """The data files a snapshot of ``table`` reads, as URIs."""
    return {e.data_file.file_path for m in snapshot.manifests(table.io) for e in m.fetch_manifest_entry(table.io, discard_deleted=True)}


def referenced(wh: Warehouse, table: Table) -> set[str]:
    """Every file the table's remaining snapshots and its current metadata use (the filesystem's names)."""
    strip = wh.files.strip
    keep = {strip(table.metadata_location)}
    seen: set[str] = set()
    for snapshot in table.metadata.snapshots:
        keep.add(strip(snapshot.manifest_list))
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in seen:  # shared by many snapshots: read once
                continue
            seen.add(manifest.manifest_path)
            keep.add(strip(manifest.manifest_path))
            keep.update(strip(e.data_file.file_path) for e in manifest.fetch_manifest_entry(table.io, discard_deleted=True))
    return keep


def remove_unreferenced(wh: Warehouse, name: str) -> int:
    """Delete every file under table ``name``'s location that none of its remaining snapshots nor
    its current metadata uses; returns how many."""
    wh.still_locked()
    table = wh.table(name)
    keep = referenced(wh, table)
    unused = [f for f in wh.files.files_under(table.location()) if f not in keep]
    wh.files.delete_paths(unused)
    return len(unused)


def expire_all_older(wh: Warehouse, name: str) -> int:
    """Expire every snapshot of table ``name`` but the current one and delete every file the
    current one does not use (erasure, key rotation). Returns the number of files deleted."""
    table = wh.table(name)
    expire(wh, name, (s.snapshot_id for s in table.metadata.snapshots))
    return remove_unreferenced(wh, name)


def remove_orphan_copies(wh: Warehouse) -> int:
    """Delete the files of ``landing/`` that ``ingest_manifest`` does not record: copies and
    temporary files of ingests that never committed (a killed process). Returns how many."""
    wh.still_locked()
    on_disk = wh.files.sizes("landing")
    if not on_disk:
        return 0
    table = wh.table("ingest_manifest")
    recorded: set[str] = set()
    if table.current_snapshot() is not None:
        recorded = set(table.scan(selected_fields=("stored_path",)).to_arrow()["stored_path"].to_pylist())
    orphans = [wh.files.path(rel) for rel in on_disk if rel not in recorded]
    wh.files.delete_paths(orphans)
    return len(orphans)
