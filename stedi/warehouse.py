"""The warehouse: a folder (or an S3 prefix) holding landing copies, Iceberg tables and, by default,
their SQL catalog.

Layout::

    <warehouse>/
      catalog.db            Iceberg SQL catalog (SQLite) unless a catalog URI is given
      iceberg/stedi/<table>/{data,metadata}/
      landing/<source>/     raw files, byte for byte, as ingested
      .stedi/               private state (the pseudonym key, the commit journal, the writers' lock)

An ``s3://bucket/prefix`` warehouse has the same layout in the bucket, except the catalog, which
must be named (``--catalog-uri``: PostgreSQL or AWS Glue to share it, or a local SQLite file, see
:mod:`stedi.catalogs`), and the writers' lock, which is this machine's and, for writers on other
machines, the catalog's (see :mod:`stedi.locks`).

Every table is created from its contract on first use. Reads return lazy Polars frames over the
current snapshot; writes are staged (data files written) and then committed together, each table
getting one Iceberg snapshot stamped with the properties given, all or nothing.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table, Transaction

from stedi import at_rest, catalogs, properties, resources
from stedi.catalogs import OWNER  # noqa: F401 — where it was first defined
from stedi.config import Settings
from stedi.contracts import Contract, contract
from stedi.errors import ConfigError, StediError
from stedi.storage import PRIVATE, Storage

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression

    from stedi.keys import Keys
    from stedi.locks import BucketLock

#: The warehouse's folder of Iceberg tables, ``iceberg/stedi/<table>``, whatever the catalog names them.
NAMESPACE = "stedi"

# Physical settings of every table. pyiceberg writes the files of one commit in parallel, one per
# ~64 MB of Arrow data: on a 2-core machine that keeps both cores encoding Parquet. (Not pyiceberg's
# merge append, `commit.manifest-merge.enabled`: faster plans in a stream of micro-batches, but each
# merge leaves the manifest it merged away on disk, referenced by no snapshot; BENCHMARKS.md.)
TABLE_PROPERTIES = {
    "write.target-file-size-bytes": str(64 * 1024 * 1024),
    "write.parquet.compression-codec": "zstd",
}

#: How long a command waits for another one writing to the same warehouse, by default.
LOCK_TIMEOUT_S = 600.0

#: Snapshot properties of a compaction (:mod:`stedi.compaction`), which rewrites files, not rows: the
#: snapshots whose rows it holds (JSON list, the one it compacted first, then those that one only
#: added a run's own rows to), and the last snapshot before it that no run wrote ("" if none).
COMPACTED = properties.COMPACTED
NOT_BY_A_RUN = properties.NOT_BY_A_RUN


def compacted_from(snapshot) -> list[int]:
    """The snapshots whose rows a compaction snapshot holds; empty for any other snapshot."""
    props = snapshot.summary.additional_properties if snapshot is not None and snapshot.summary else {}
    return json.loads(props[COMPACTED]) if COMPACTED in props else []


def not_by_a_run(table) -> int | None:
    """The latest snapshot of ``table``, in its history, that no run wrote (an ingest, a forget): a
    run's own appends (the quarantine's rule rows) are passed over. A run's append and a compaction
    say which one it was when they were written (NOT_BY_A_RUN), so expired history leaves no gap."""
    snap = table.current_snapshot()
    while snap is not None and snap.summary is not None:
        props = snap.summary.additional_properties
        if NOT_BY_A_RUN in props:
            return int(props[NOT_BY_A_RUN] or 0) or None
        if properties.RUN_ID not in props:
            break
        snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id else None
    return snap.snapshot_id if snap else None


def table_properties(c: Contract) -> dict[str, str]:
    """The properties a table is created with (and brought up to): physical settings, the contract's
    own, and no column statistics beyond counts for personal columns, so that no manifest holds an
    email or a serial number as a lower or upper bound (an erased person would survive there)."""
    personal = {f"write.metadata.metrics.column.{n}": "counts" for n in c.personal}
    return TABLE_PROPERTIES | personal | dict(c.properties) | {"comment": c.description}


@dataclass(frozen=True)
class TableInfo:
    name: str
    zone: str
    rows: int
    snapshot_id: int | None
    updated_at: datetime | None


@dataclass(frozen=True)
class Change:
    """One table's part of a commit: rows to append, the table's new content, or rows replacing
    those that ``where`` matches (no row deleted when it is None). :meth:`Warehouse.stage` takes
    Arrow; the runner builds a change with a Polars frame (lazy or not) and converts it on its
    writer thread."""

    table: str
    data: pa.Table | pa.RecordBatchReader | pl.DataFrame | pl.LazyFrame
    mode: Literal["append", "overwrite", "replace"]
    properties: dict[str, str] = field(default_factory=dict)
    where: BooleanExpression | None = None


@dataclass(frozen=True)
class Staged:
    """A change whose data files are written and whose commit waits (a pyiceberg transaction).
    ``redo`` builds it again over the table as it is now, for a retry after another writer
    committed to the table first; None when it cannot be rebuilt (its rows were a stream)."""

    table: str
    transaction: Transaction
    redo: Callable[[], Transaction] | None = None


class Warehouse:
    """Access to one warehouse's tables and files. Build one per process with :meth:`open`."""

    def __init__(self, settings: Settings, read_only: bool = False):
        self.settings = settings
        resources.apply(settings)
        self.read_only = read_only  # a reader's: creates no folder, table or catalog entry
        self.files = Storage(settings.warehouse)
        self.location = self.files.location  # an absolute path, or s3://bucket/prefix
        self._tables: dict[str, Table] = {}  # pyiceberg refreshes a Table in place when it commits
        self._holding: str | None = None  # what holds the writers' lock in this process, if anything
        self._lease: BucketLock | None = None  # the bucket's lock, held with a Glue catalog
        self.tightened = False  # whether a hold of the lock brought the files to their modes (stedi.at_rest)
        self.on_wait: Callable[[str], None] | None = None  # told who holds the writers' lock, when a command waits for it

    @classmethod
    def open(cls, settings: Settings, read_only: bool = False) -> Warehouse:
        """The warehouse ``settings`` name. ``read_only``: for a reader, which must find one there
        (:meth:`stedi.lakeview.Lake.check_exists`) and creates nothing, nor finishes a half-done commit."""
        wh = cls(settings, read_only)
        if read_only:
            from stedi.lakeview import Lake

            Lake(settings).check_exists()
            return wh
        if not wh.files.remote and settings.catalog_uri is None:
            from stedi.lakeview import Lake, WarehouseMissing

            # a lost catalog.db beside the tables' metadata: say how to rebuild it, never start an empty one
            with contextlib.suppress(WarehouseMissing):  # a new warehouse: a writer creates it
                Lake(settings).check_exists()
        wh.files.ensure()
        wh.settle()
        return wh

    # -- folders ---------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The folder of a local warehouse."""
        if self.files.remote:
            raise StediError(f"{self.location} is not a local folder")
        return Path(self.files.base)

    @property
    def private_dir(self) -> Path:
        """The private folder of a local warehouse."""
        path = self.root / PRIVATE
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    # -- catalog ---------------------------------------------------------------------------------
    @cached_property
    def catalog(self) -> Catalog:
        if not self.files.remote and not self.read_only:
            Path(self.files.path("iceberg")).mkdir(parents=True, exist_ok=True)
            uri = self.settings.catalog_url
            if uri.startswith("sqlite:///") and self.settings.catalog_uri is None:  # the warehouse's own catalog.db
                at_rest.create_private_file(Path(uri.removeprefix("sqlite:///")), at_rest.group_id(self.settings.group))
        return catalogs.open_catalog(self.settings.catalog_url, self.files, self.location)

    @cached_property
    def namespace(self) -> str:
        """The catalog's namespace of the tables (the Glue database, or ``stedi``)."""
        return catalogs.namespace(self.settings.catalog_url)

    @property
    def catalog_name(self) -> str:
        """The catalog's URI with any password hidden, for messages."""
        return catalogs.describe(self.settings.catalog_url)

    @property
    def shared_catalog(self) -> bool:
        """Whether the catalog is one other machines may write to (PostgreSQL, AWS Glue)."""
        uri = self.settings.catalog_url
        return catalogs.is_postgresql(uri) or catalogs.is_glue(uri)

    def table(self, name: str) -> Table:
        """The Iceberg table ``name``, created from its contract if it does not exist yet."""
        if name not in self._tables:
            at_rest.install_private_parquet()  # every write of a table goes through pyiceberg's writer
            ident = f"{self.namespace}.{name}"
            c = contract(name)
            try:
                try:
                    table = self.catalog.load_table(ident)
                except NoSuchTableError:
                    location = self.files.url(f"iceberg/{NAMESPACE}/{name}")
                    if self.read_only:  # a reader sees a table never written as empty, and creates nothing
                        self._tables[name] = _never_written(ident, c, location, self.catalog)
                        return self._tables[name]
                    table = self.catalog.create_table_if_not_exists(
                        ident, c.iceberg_schema(), location=location, properties=table_properties(c)
                    )
            except catalogs.catalog_errors() as err:
                raise catalogs.catalog_error(err, self.settings.catalog_url) from err
            if not self.files.strip(table.location()).startswith(self.files.path("iceberg") + "/"):
                # a catalog shared by mistake between two warehouses: never write into the other one
                raise ConfigError(
                    f"the catalog {self.catalog_name} holds the tables of another warehouse "
                    f"({table.location()}), not of {self.location}: give each warehouse its own catalog database"
                )
            self._tables[name] = table if self.read_only else _up_to_contract(table, c)
        return self._tables[name]

    # -- keys --------------------------------------------------------------------------------------
    def keys(self, given: bytes | Keys | None = None, *, create: bool = False) -> Keys:
        """The warehouse's keys, checked (:mod:`stedi.keys`). ``given``: a caller's own key (bytes),
        which must be the warehouse's (a warehouse without a key check adopts it when ``create``);
        ``None``: the configured key. ``create``: a writer may make the key of a new warehouse."""
        from stedi import keys

        if isinstance(given, keys.Keys):
            return given
        if given is None:
            return keys.load(self.settings, self.files, create=create, holds_data=self.holds_data())
        check = keys._read_json(self.files, keys.CHECK_FILE)
        if check is not None and not hmac.compare_digest(keys.verifier(given), check["verifier"]):
            raise ConfigError(f"the key given is not the pseudonym key of {self.location} (key {check['key_id']})")
        if check is None:
            if not create:
                return keys.Keys(given, "unchecked", given)
            record = {"key_id": secrets.token_hex(8), "verifier": keys.verifier(given), "created_at": keys._now()}
            with contextlib.suppress(FileExistsError):
                self.files.create_private(keys.CHECK_FILE, json.dumps(record).encode())
            return self.keys(given, create=False)
        return keys._keys(self.settings, self.files, given, check["key_id"], False)

    def holds_data(self) -> bool:
        """Whether anything was ever stored here: a landing copy, or a table with a snapshot."""
        if self.files.sizes("landing"):
            return True
        return any(self.table(name).current_snapshot() is not None for name in ("ingest_manifest", "customer_landing"))

    # -- the writers' lock -------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, what: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the warehouse's writers' lock (:func:`stedi.locks.hold`): one command that writes
        at a time; re-entrant; on taking it, the tables read before are forgotten."""
        from stedi import locks

        with locks.hold(self, what, timeout):
            yield

    def still_locked(self) -> None:
        """Raise if this process lost the bucket's lock it held (:func:`stedi.locks.still_locked`)."""
        from stedi import locks

        locks.still_locked(self)

    # -- reading ---------------------------------------------------------------------------------
    def scan(self, name: str, table: Table | None = None) -> pl.LazyFrame:
        """A lazy frame over the current snapshot of table ``name``."""
        import polars as pl

        table = table or self.table(name)
        if table.current_snapshot() is None:
            return pl.from_arrow(contract(name).arrow_schema().empty_table()).lazy()
        return pl.scan_iceberg(table)

    def data_files(self, name: str) -> list[str]:
        """The Parquet files of the current snapshot (Iceberg deletes are copy-on-write): local
        paths, or ``s3://`` URIs."""
        table = self.table(name)
        if table.current_snapshot() is None:
            return []
        paths = [task.file.file_path for task in table.scan().plan_files()]
        return paths if self.files.remote else [self.files.strip(p) for p in paths]

    def snapshot_property(self, name: str, prop: str) -> str | None:
        """A property stamped on the current snapshot of table ``name`` by whatever wrote it."""
        snap = self.table(name).current_snapshot()
        return snap.summary.additional_properties.get(prop) if snap and snap.summary else None

    def last_snapshot_not_by_a_run(self, name: str) -> int | None:
        """The latest snapshot of table ``name`` that no run wrote (:func:`not_by_a_run`)."""
        return not_by_a_run(self.table(name))

    def content_id(self, name: str) -> int | None:
        """The snapshot whose rows table ``name`` holds now: the current one, or the one a compaction
        rewrote (same rows, other files). What runs and audits compare to know whether a table changed."""
        snap = self.table(name).current_snapshot()
        ids = compacted_from(snap)
        return ids[0] if ids else (snap.snapshot_id if snap else None)

    def snapshot_holding(self, name: str, content_id: int) -> int:
        """A snapshot of table ``name`` to read the rows of snapshot ``content_id`` from: itself, or the
        compaction of it (whose parent may have been expired)."""
        table = self.table(name)
        snap = table.current_snapshot()
        while snap is not None:
            if snap.snapshot_id == content_id or content_id in compacted_from(snap):
                return snap.snapshot_id
            snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id else None
        return content_id

    def suppressed(self) -> dict[str, frozenset[str]]:
        """The keyed hashes on the suppression list (people erased by forget), by kind:
        ``email`` and ``serialNumber``."""
        table = self.table("suppression_list")
        if table.current_snapshot() is None:
            return {}
        rows = table.scan(selected_fields=("kind", "key_hash")).to_arrow()
        hashes: dict[str, set[str]] = {}
        for kind, h in zip(rows["kind"].to_pylist(), rows["key_hash"].to_pylist(), strict=True):
            hashes.setdefault(kind, set()).add(h)
        return {kind: frozenset(v) for kind, v in hashes.items()}

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
        stream = isinstance(change.data, pa.RecordBatchReader)
        data = change.data if stream else contract(change.table).conform(change.data)

        def transaction() -> Transaction:
            with warnings.catch_warnings():
                # a replace whose rows matched none (a person's first rows): pyiceberg warns, rightly so
                warnings.filterwarnings("ignore", message="Delete operation did not match any records")
                return _transaction()

        def _transaction() -> Transaction:
            table = self.table(change.table)
            tx = table.transaction()
            if change.mode == "overwrite" and table.current_snapshot() is None:
                tx.append(data, snapshot_properties=change.properties)  # nothing to delete (pyiceberg would warn)
            elif change.mode == "overwrite":
                tx.overwrite(data, snapshot_properties=change.properties)
            elif change.mode == "replace" and change.where is not None:
                # copy-on-write: only the files holding a matching row are rewritten
                tx.overwrite(data, overwrite_filter=change.where, snapshot_properties=change.properties)
            else:
                tx.append(data, snapshot_properties=change.properties)
            return tx

        return Staged(change.table, transaction(), None if stream else transaction)

    def commit_staged(self, staged: list[Staged]) -> None:
        """Commit staged changes together, all or nothing (:func:`stedi.journal.commit`)."""
        from stedi import journal

        journal.commit(self, staged)

    def settle(self) -> None:
        """Finish a commit a killed process left half done (:func:`stedi.journal.settle`)."""
        from stedi import journal

        journal.settle(self)

    def recover(self) -> list[str]:
        from stedi import journal

        return journal.recover(self)


def _never_written(ident: str, c: Contract, location: str, catalog: Catalog) -> Table:
    """An empty table of contract ``c`` that exists only in memory (no file, no catalog row)."""
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
    from pyiceberg.table import StaticTable
    from pyiceberg.table.metadata import new_table_metadata
    from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

    meta = new_table_metadata(c.iceberg_schema(), UNPARTITIONED_PARTITION_SPEC, UNSORTED_SORT_ORDER, location, table_properties(c))
    from pyiceberg.io import load_file_io

    return StaticTable(tuple(ident.split(".")), meta, "", load_file_io(catalog.properties, location), catalog)


def _up_to_contract(table: Table, c: Contract) -> Table:
    """Bring a table made by an earlier version up to its contract: add the columns the contract
    gained (nullable, so existing rows read as NULL), drop from a trusted or curated table those it
    no longer has (such a table keeps no column its contract does not declare, and is rebuilt from
    its inputs anyway; landing and system tables keep what they hold), and set the properties it lacks."""
    present = {f.name for f in table.schema().fields}
    missing = [n for n in c.column_names if n not in present]
    gone = [n for n in present if n not in c.column_names] if c.zone in ("trusted", "curated") else []
    if missing or gone:
        with table.update_schema(allow_incompatible_changes=True) as update:
            for name in gone:
                update.delete_column(name)
            for col in c.columns:
                if col.name in missing:
                    update.add_column(col.name, col.iceberg_type, doc=col.comment or None)
    wanted = {k: v for k, v in table_properties(c).items() if table.properties.get(k) != v}
    if wanted:
        with table.transaction() as tx:
            tx.set_properties(wanted)
    return table

