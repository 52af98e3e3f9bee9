"""The warehouse: a folder holding landing copies, Iceberg tables and (by default) their SQL catalog.

Layout of the embedded default::

    <warehouse>/
      catalog.db            Iceberg SQL catalog (SQLite) unless a catalog URI is given
      iceberg/stedi/<table>/{data,metadata}/
      landing/<source>/     raw files, byte for byte, as ingested
      .stedi/               private state (the pseudonym key)

Every table is created from its contract on first use. Reads return lazy Polars frames over the
current snapshot; writes are staged (data files written) and then committed together, each table
getting one Iceberg snapshot stamped with the properties given, all or nothing.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table, Transaction

from stedi.config import Settings
from stedi.contracts import contract
from stedi.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

NAMESPACE = "stedi"

# Physical settings of every table. pyiceberg writes the files of one commit in parallel, one per
# ~64 MB of Arrow data: on a 2-core machine that keeps both cores encoding Parquet.
TABLE_PROPERTIES = {
    "write.target-file-size-bytes": str(64 * 1024 * 1024),
    "write.parquet.compression-codec": "zstd",
}

# Polars would rather plan Iceberg scans natively; pyiceberg's planner is what we use for writes too.
warnings.filterwarnings("ignore", message=".*Iceberg scan planning.*")
# An overwrite of an empty table is a plain append; pyiceberg warns that its delete matched nothing.
warnings.filterwarnings("ignore", message="Delete operation did not match any records")


@dataclass(frozen=True)
class TableInfo:
    name: str
    zone: str
    rows: int
    snapshot_id: int | None
    updated_at: datetime | None


@dataclass(frozen=True)
class Change:
    """One table's part of a commit: rows to append, or the table's new content."""

    table: str
    data: pa.Table | pa.RecordBatchReader
    mode: Literal["append", "overwrite"]
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Staged:
    """A change whose data files are written and whose commit waits (a pyiceberg transaction)."""

    table: str
    transaction: Transaction


class Warehouse:
    """Access to one warehouse's tables and files. Build one per process with :meth:`open`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.warehouse.resolve()
        self._tables: dict[str, Table] = {}  # pyiceberg refreshes a Table in place when it commits

    @classmethod
    def open(cls, settings: Settings) -> Warehouse:
        wh = cls(settings)
        try:
            wh.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create warehouse folder {wh.root}: {err.strerror}") from err
        return wh

    # -- folders ---------------------------------------------------------------------------------
    @property
    def private_dir(self) -> Path:
        path = self.root / ".stedi"
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    # -- catalog ---------------------------------------------------------------------------------
    @cached_property
    def catalog(self) -> SqlCatalog:
        iceberg_root = self.root / "iceberg"
        iceberg_root.mkdir(parents=True, exist_ok=True)
        catalog = SqlCatalog(NAMESPACE, uri=self.settings.catalog_url, warehouse=iceberg_root.as_uri())
        catalog.create_namespace_if_not_exists(NAMESPACE)
        return catalog

    def table(self, name: str) -> Table:
        """The Iceberg table ``name``, created from its contract if it does not exist yet."""
        if name not in self._tables:
            ident = f"{NAMESPACE}.{name}"
            try:
                self._tables[name] = self.catalog.load_table(ident)
            except NoSuchTableError:
                c = contract(name)
                props = TABLE_PROPERTIES | dict(c.properties) | {"comment": c.description}
                self._tables[name] = self.catalog.create_table_if_not_exists(ident, c.iceberg_schema(), properties=props)
        return self._tables[name]

    # -- reading ---------------------------------------------------------------------------------
    def scan(self, name: str, table: Table | None = None) -> pl.LazyFrame:
        """A lazy frame over the current snapshot of table ``name``."""
        import polars as pl

        table = table or self.table(name)
        if table.current_snapshot() is None:
            return pl.from_arrow(contract(name).arrow_schema().empty_table()).lazy()
        return pl.scan_iceberg(table)

    def data_files(self, name: str) -> list[str]:
        """Local paths of the Parquet files of the current snapshot (Iceberg deletes are copy-on-write)."""
        table = self.table(name)
        if table.current_snapshot() is None:
            return []
        return [_local_path(task.file.file_path) for task in table.scan().plan_files()]

    def info(self, name: str) -> TableInfo:
        table = self.table(name)
        snap = table.current_snapshot()
        rows = int(snap.summary["total-records"]) if snap and snap.summary else 0
        when = datetime.fromtimestamp(snap.timestamp_ms / 1000, tz=UTC) if snap else None
        zone = table.properties.get("stedi.zone") or contract(name).zone
        return TableInfo(name, zone, rows, snap.snapshot_id if snap else None, when)

    # -- writing ---------------------------------------------------------------------------------
    def stage(self, change: Change) -> Staged:
        """Write a change's data files now; nothing is visible until :meth:`commit_staged`.

        Staging is safe from a worker thread, so writing one table's files can overlap computing
        the next one.
        """
        import pyarrow as pa

        # A stream of batches is conformed by whoever makes it; a table is conformed here.
        data = change.data if isinstance(change.data, pa.RecordBatchReader) else contract(change.table).conform(change.data)
        table = self.table(change.table)
        tx = table.transaction()
        write = tx.append if change.mode == "append" else tx.overwrite
        write(data, snapshot_properties=change.properties)
        return Staged(change.table, tx)

    def commit_staged(self, staged: list[Staged]) -> None:
        """Commit staged changes in order, all or nothing: if one fails, the tables already changed
        are put back to the snapshots they had before, and the error is raised."""
        before = {s.table: self.info(s.table).snapshot_id for s in staged}
        done: list[str] = []
        try:
            for s in staged:
                s.transaction.commit_transaction()
                done.append(s.table)
        except BaseException:
            for name in reversed(done):
                self.restore(name, before[name])
            raise

    def restore(self, name: str, snapshot_id: int | None) -> None:
        """Put table ``name`` back to ``snapshot_id`` (``None``: back to no rows)."""
        table = self.table(name)
        current = table.current_snapshot()
        if snapshot_id is None:
            if current is not None:
                table.overwrite(contract(name).arrow_schema().empty_table())
        elif current is None or current.snapshot_id != snapshot_id:
            table.manage_snapshots().set_current_snapshot(snapshot_id).commit()


def _local_path(uri: str) -> str:
    return uri.removeprefix("file://") if uri.startswith("file://") else uri


def private_file(path: Path, content: bytes) -> None:
    """Create ``path`` readable only by its owner, failing if it exists (no race, no overwrite)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
