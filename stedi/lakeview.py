"""Reading a warehouse without writing to it: the catalog's pointer to each table's current metadata
file, the snapshot it names, and that snapshot's data files -- read the cheapest way that stays
correct (sqlite3 for the default catalog, the metadata JSON, the manifests' Avro by fastavro), with
no pyiceberg, no folder, no catalog row and no table created.

Every read command goes through :class:`Lake`: a warehouse that does not exist is one line naming
it, a missing ``catalog.db`` beside Iceberg metadata says how to rebuild it (``stedi-etl repair``), a
catalog that names the warehouse at another place says how to move it (``stedi-etl relocate``).
A commit that a killed writer left half done (its journal in ``.stedi/``) is read as it was before:
readers never see half a commit, and never finish it (a writer does, under the lock).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import posixpath
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from stedi import resources
from stedi.errors import StediError, first_line
from stedi.properties import RUN_ID

if TYPE_CHECKING:
    from stedi.config import Settings
    from stedi.contracts import Contract

#: The catalog's name and namespace of stedi's tables in a SQL catalog (see stedi.catalogs).
SQL_NAMESPACE = "stedi"
OWNER = "stedi.warehouse"
JOURNAL = "iceberg/commit-journal.json"  # stedi.journal.JOURNAL (that module imports pyiceberg)
LEGACY_JOURNAL = ".stedi/commit-journal.json"  # where an older stedi kept it


class WarehouseMissing(StediError):
    """A read command named a warehouse that does not exist (nothing is created for it)."""


class CatalogMissing(StediError):
    """The catalog is gone but the tables' Iceberg metadata is there: ``stedi-etl repair``."""


@dataclass(frozen=True)
class Snapshot:
    id: int
    parent_id: int | None
    timestamp_ms: int
    manifest_list: str
    summary: dict[str, str]
    sequence_number: int = 0  # one more for each snapshot a table commits (format v2)

    @property
    def run_id(self) -> str | None:
        return self.summary.get(RUN_ID)

    @property
    def rows(self) -> int:
        return int(self.summary.get("total-records", 0))


@dataclass
class TableState:
    """One table as a reader sees it: its metadata (None: never created) and the snapshot read."""

    name: str
    contract: Contract
    metadata_location: str | None = None
    metadata: dict = field(default_factory=dict)
    snapshot: Snapshot | None = None
    problem: str | None = None  # why this table cannot be read (the others still can)

    @property
    def zone(self) -> str:
        return self.metadata.get("properties", {}).get("stedi.zone") or self.contract.zone

    @property
    def snapshots(self) -> list[Snapshot]:
        return [_snapshot(s) for s in self.metadata.get("snapshots", ())]

    def snapshot_by_id(self, snapshot_id: int | None) -> Snapshot | None:
        return next((s for s in self.snapshots if s.id == snapshot_id), None)


def _snapshot(s: dict) -> Snapshot:
    return Snapshot(
        s["snapshot-id"], s.get("parent-snapshot-id"), s["timestamp-ms"], s["manifest-list"], s.get("summary", {}), s.get("sequence-number", 0)
    )


class Lake:
    """A read-only view of one warehouse's tables. ``settings`` as :func:`stedi.config.resolve` gives them."""

    def __init__(self, settings: Settings):
        from stedi.storage import is_remote

        self.settings = settings
        resources.apply(settings)
        self.location = settings.location
        self.remote = is_remote(self.location)
        self.catalog_url = settings.catalog_url
        self._states: dict[str, TableState] = {}

    # -- the warehouse and its catalog -------------------------------------------------------------
    @cached_property
    def fs(self):
        """The fsspec filesystem of a remote warehouse (s3fs): imported only when one is read."""
        from stedi.storage import filesystem

        return filesystem(self.location)[0]

    def strip(self, uri: str) -> str:
        """The filesystem's name of a file URI (``file:///p`` -> ``/p``, ``s3://b/k`` -> ``b/k``)."""
        if self.remote:
            return uri.split("://", 1)[1]
        return uri.removeprefix("file://")

    def read_bytes(self, uri: str) -> bytes:
        if self.remote:
            return self.fs.cat_file(self.strip(uri))
        with open(self.strip(uri), "rb") as fh:
            return fh.read()

    def _sqlite_path(self) -> Path | None:
        url = self.catalog_url
        return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None

    def check_exists(self) -> None:
        """Raise, in one line, if there is no warehouse here to read (nothing is created)."""
        db = self._sqlite_path()
        if self.remote:
            from stedi.storage import Storage

            Storage(self.location).ensure()  # the bucket exists and answers (remote: a check, no write)
            if db is not None and not db.exists():
                raise WarehouseMissing(f"no warehouse at {self.location}: its catalog {db} does not exist (check --catalog-uri)")
            return
        root = Path(self.location)
        if db is None or root not in db.parents:
            _ = self._pointers  # a catalog outside the folder (PostgreSQL, another file): its failure comes first
        if not root.is_dir():
            raise WarehouseMissing(
                f"no warehouse at {root}: check --warehouse (or STEDI_WAREHOUSE); `stedi-etl ingest` or `stedi-etl init` creates one"
            )
        if db is not None and not db.exists():
            if any(root.glob("iceberg/*/*/metadata/*.metadata.json")):
                raise CatalogMissing(
                    f"the catalog {db} is missing, but {root} holds Iceberg tables: `stedi-etl repair --warehouse {root}` "
                    "rebuilds it from their newest metadata files"
                )
            raise WarehouseMissing(
                f"no warehouse at {root} (no catalog.db, no table): `stedi-etl ingest` or `stedi-etl init` creates one"
            )

    @cached_property
    def pointers(self) -> dict[str, str]:
        """Every table's current metadata file, by name, as the catalog records it."""
        self.check_exists()
        return self._pointers

    @cached_property
    def _pointers(self) -> dict[str, str]:
        from stedi.catalogs import catalog_errors, describe, is_glue

        try:
            if is_glue(self.catalog_url):
                rows, owner = self._glue_pointers()
            else:
                rows, owner = self._sql_pointers()
        except catalog_errors() + (OSError,) as err:
            reason = first_line(getattr(err, "orig", None) or err)
            raise StediError(f"cannot open the Iceberg catalog at {describe(self.catalog_url)}: {reason}") from err
        except Exception as err:  # sqlite3.Error: a file that is no database, a locked one
            raise StediError(f"cannot open the Iceberg catalog at {describe(self.catalog_url)}: {first_line(err)}") from err
        if owner is not None and owner != self.location:
            raise StediError(
                f"the catalog {describe(self.catalog_url)} holds the tables of another warehouse ({owner}), not of "
                f"{self.location}: give each warehouse its own catalog; if the folder was moved or copied here, "
                f"`stedi-etl relocate --warehouse {self.location}` points its tables here"
            )
        return rows

    def _sql_pointers(self) -> tuple[dict[str, str], str | None]:
        """The SQL catalog's rows (pyiceberg's schema: ``iceberg_tables``, ``iceberg_namespace_properties``)."""
        tables = "SELECT table_name, metadata_location FROM iceberg_tables WHERE catalog_name = :ns AND table_namespace = :ns"
        owner_of = (
            "SELECT property_value FROM iceberg_namespace_properties WHERE catalog_name = :ns AND namespace = :ns "
            "AND property_key = :key"
        )
        params = {"ns": SQL_NAMESPACE, "key": OWNER}
        db = self._sqlite_path()
        if db is not None:
            import sqlite3

            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)  # read-only: never creates or locks for writing
            try:
                known = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "iceberg_tables" not in known:
                    return {}, None
                rows = dict(con.execute(tables, params).fetchall())
                owner = con.execute(owner_of, params).fetchone() if "iceberg_namespace_properties" in known else None
            finally:
                con.close()
        else:
            from sqlalchemy import create_engine, inspect, text

            engine = create_engine(self.catalog_url)
            try:
                with engine.connect() as conn:
                    if not inspect(conn).has_table("iceberg_tables"):
                        return {}, None
                    rows = dict(conn.execute(text(tables), params).fetchall())
                    owner = conn.execute(text(owner_of), params).fetchone()
            finally:
                engine.dispose()
        return {k: v for k, v in rows.items() if v}, owner[0] if owner else None

    def _glue_pointers(self) -> tuple[dict[str, str], str | None]:
        from pyiceberg.catalog.glue import GlueCatalog
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        from stedi.catalogs import GLUE_ATTEMPTS, namespace
        from stedi.contracts import load_contracts
        from stedi.storage import aws_settings

        props = aws_settings()
        if "s3.region" in props:
            props["glue.region"] = props["s3.region"]
        ns = namespace(self.catalog_url)
        found: dict[str, str] = {}
        catalog = GlueCatalog(ns, **props, **{"glue.max-retries": GLUE_ATTEMPTS})
        try:
            owner = catalog.load_namespace_properties(ns).get(OWNER)
        except NoSuchNamespaceError:
            return {}, None
        for name in load_contracts():
            with contextlib.suppress(NoSuchTableError):
                found[name] = catalog.load_table(f"{ns}.{name}").metadata_location
        return found, owner

    # -- tables ------------------------------------------------------------------------------------
    @cached_property
    def journal(self) -> dict[str, int | None]:
        """The snapshots a half-done commit's journal says to go back to (readers read those)."""
        for path in (JOURNAL, LEGACY_JOURNAL):
            try:
                if self.remote:
                    raw = self.fs.cat_file(posixpath.join(self.strip(self.location + "/"), path))
                else:
                    raw = (Path(self.location) / path).read_bytes()
                return dict(json.loads(raw)["before"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # none (or, an older stedi's, in the private folder of another user)
        return {}

    def state(self, name: str) -> TableState:
        """Table ``name`` at its current snapshot (or as a half-done commit's journal had it)."""
        if name not in self._states:
            from stedi.contracts import contract

            state = TableState(name, contract(name))
            location = self.pointers.get(name)
            if location is not None:
                state.metadata_location = location
                try:
                    state.metadata = self._metadata(location)
                except StediError as err:
                    state.problem = str(err)
                else:
                    current = self.journal[name] if name in self.journal else state.metadata.get("current-snapshot-id")
                    if current is not None and current != -1:
                        state.snapshot = state.snapshot_by_id(current)
            self._states[name] = state
        return self._states[name]

    def _metadata(self, location: str) -> dict:
        if not location.startswith(("file://", "s3://", "/")):
            raise StediError(f"unsupported metadata location {location}")
        where = location if self.remote else self.strip(location)
        if not self.remote and not where.startswith(self.location.rstrip("/") + "/"):
            raise StediError(
                f"the catalog points at {location}, outside {self.location}: if the warehouse was moved or copied "
                f"here, `stedi-etl relocate --warehouse {self.location}` points its tables here"
            )
        try:
            raw = self.read_bytes(location)
        except FileNotFoundError:
            raise StediError(f"the metadata file {location} is missing: restore it, or `stedi-etl repair` "
                             "registers the newest metadata file there is") from None
        try:
            if location.endswith(".gz.metadata.json") or raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            meta = json.loads(raw)
            meta["snapshots"] = meta.get("snapshots") or []
            return meta
        except (ValueError, OSError, EOFError) as err:
            raise StediError(f"the metadata file {location} is corrupt ({first_line(err)}): restore it from a backup, "
                             "or `stedi-etl repair` registers the newest readable one") from err

    def data_files(self, state: TableState, snapshot: Snapshot | None = None) -> list[str]:
        """The Parquet files of ``snapshot`` (default: the one read), as DuckDB names them:
        local paths, or ``s3://`` URIs. Iceberg deletes are copy-on-write here, so they are the table."""
        snap = snapshot or state.snapshot
        if snap is None:
            return []
        from fastavro import reader

        files: list[str] = []
        try:
            for manifest in reader(_io(self.read_bytes(snap.manifest_list))):
                if manifest.get("content", 0) != 0:
                    raise StediError(f"table {state.name} has delete files, which stedi never writes: rewrite it with a run")
                for entry in reader(_io(self.read_bytes(manifest["manifest_path"]))):
                    if entry["status"] != 2 and entry["data_file"].get("content", 0) == 0:
                        files.append(entry["data_file"]["file_path"])
        except FileNotFoundError as err:
            raise StediError(f"table {state.name}: its manifest {err.filename or ''} is missing".rstrip()) from None
        except (ValueError, OSError, EOFError) as err:
            raise StediError(f"table {state.name}: a manifest is unreadable ({first_line(err)})") from err
        return files if self.remote else [self.strip(f) for f in files]

    # -- time travel ---------------------------------------------------------------------------------
    def as_of(self, run_id: str, names: list[str]) -> None:
        """Read ``names`` as run ``run_id`` left them: each table at its snapshot current when the
        run's last commit was made. One line if no such run is known, or retention expired it."""
        stamps = [s.timestamp_ms for n in self.pointers for s in self.state(n).snapshots if s.run_id == run_id]
        if not stamps:
            known = self._run_logged(run_id)
            if known:
                raise StediError(
                    f"run {run_id}'s snapshots have expired (retention removed them, or forget did): time travel "
                    "cannot return to it; `stedi-etl history TABLE` lists the snapshots kept"
                )
            raise StediError(f"no run {run_id!r}: `stedi-etl runs` lists the recent ones")
        when = max(stamps)
        for name in names:
            state = self.state(name)
            if state.problem or not state.metadata:
                continue
            log = [e for e in state.metadata.get("snapshot-log", ()) if e["timestamp-ms"] <= when]
            then = state.snapshot_by_id(log[-1]["snapshot-id"]) if log else None
            # The snapshot after it must be the next one the table committed (sequence numbers count
            # the commits): else some snapshot in between was expired, and it may have been the one
            # current then (pyiceberg drops expired snapshots from the log, and a child's link to an
            # expired parent). Likewise the first snapshot kept, when it is not the table's first.
            after = sorted((x for x in state.snapshots if x.timestamp_ms > when), key=lambda x: x.sequence_number)
            expected = then.sequence_number + 1 if then is not None else 1
            if (log and then is None) or (after and after[0].sequence_number not in (expected, 0)):
                state.problem = f"table {name} as of {run_id} has expired (retention removed that snapshot)"
                continue
            state.snapshot = then  # None: the table had no rows then

    def _run_logged(self, run_id: str) -> bool:
        state = self.state("run_log")
        if state.snapshot is None or state.problem:
            return False
        files = self.data_files(state)
        if not files:
            return False
        con = resources.connect()
        if self.remote:
            con.register_filesystem(self.fs)
        try:
            return bool(con.execute("SELECT count(*) FROM read_parquet(?) WHERE run_id = ?", [files, run_id]).fetchone()[0])
        finally:
            con.close()


def _io(raw: bytes):
    import io

    return io.BytesIO(raw)
