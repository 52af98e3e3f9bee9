"""Ingest: copy raw landing files into the warehouse and land their records in Iceberg.

Each raw file is copied byte for byte into ``<warehouse>/landing/<source>/`` and recorded in the
``ingest_manifest`` table by its SHA-256: a file whose content was ingested before, under any name,
is skipped. Every line is parsed and typed by the landing table's contract; a line that is not a JSON
object, lacks a required field or holds a wrongly typed value goes to ``quarantine`` with its reason,
file and line number, and the rest of the file lands.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from stedi.contracts import Contract, contract
from stedi.errors import SourceError
from stedi.warehouse import Change, Warehouse

#: Source name -> landing table.
SOURCES = {
    "customer": "customer_landing",
    "accelerometer": "accelerometer_landing",
    "step_trainer": "step_trainer_landing",
}

# Folders holding each source's files: the STEDI starter layout first, then the public bucket's.
_FOLDERS = {
    "customer": ("customer/landing", "customers/landing", "customer", "customers"),
    "accelerometer": ("accelerometer/landing", "accelerometer"),
    "step_trainer": ("step_trainer/landing", "step_trainer"),
}
_SUFFIXES = {".json", ".jsonl", ".ndjson"}
LINEAGE = ("_source_file", "_line_number", "_ingested_at")

# JSON types (as DuckDB's json_type names them) accepted for each contract type.
_ACCEPTED = {
    "STRING": ("VARCHAR",),
    "BIGINT": ("BIGINT", "UBIGINT"),
    "INT": ("BIGINT", "UBIGINT"),
    "DOUBLE": ("BIGINT", "UBIGINT", "DOUBLE"),
    "BOOLEAN": ("BOOLEAN",),
    "DATE": ("VARCHAR",),
}
_DUCK_TYPES = {"STRING": "VARCHAR", "BIGINT": "BIGINT", "INT": "INTEGER", "DOUBLE": "DOUBLE", "BOOLEAN": "BOOLEAN", "DATE": "DATE"}


@dataclass(frozen=True)
class RawFile:
    source: str
    path: Path
    size: int
    sha256: str


@dataclass
class FileResult:
    file: str
    source: str
    status: str  # "ingested" | "skipped"
    detail: str = ""
    rows_landed: int = 0
    rows_quarantined: int = 0


@dataclass
class IngestSummary:
    batch_id: str
    files: list[FileResult] = field(default_factory=list)

    @property
    def ingested(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "ingested"]

    @property
    def skipped(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "skipped"]


def discover(source: Path) -> list[tuple[str, Path]]:
    """The raw files under ``source``, as (source name, path), in either supported layout."""
    if not source.exists():
        raise SourceError(f"source {source} does not exist")
    if not source.is_dir():
        raise SourceError(f"source {source} is not a folder (expected customer/landing/*.json, ...)")
    found: list[tuple[str, Path]] = []
    for name, folders in _FOLDERS.items():
        for folder in folders:
            d = source / folder
            if d.is_dir():
                files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix in _SUFFIXES)
                if files:
                    found.extend((name, p) for p in files)
                    break
    if not found:
        raise SourceError(
            f"no landing files under {source}: expected customer/landing/*.json, accelerometer/landing/*.json, "
            "step_trainer/landing/*.json (starter layout) or customers/, accelerometer/, step_trainer/ (bucket layout)"
        )
    return found


def _hash(path: Path) -> RawFile | tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
                size += len(chunk)
    except OSError as err:
        raise SourceError(f"cannot read {path}: {err.strerror}") from err
    return size, digest.hexdigest()


def ingest(wh: Warehouse, source: Path) -> IngestSummary:
    """Ingest every raw file under ``source`` that the warehouse has not seen before."""
    found = discover(source)
    batch = IngestSummary(batch_id=f"ingest-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")
    known = _manifest(wh)
    new: list[RawFile] = []
    for name, path in found:
        size, sha = _hash(path)
        if sha in known:
            batch.files.append(FileResult(path.name, name, "skipped", f"already ingested as {known[sha]}"))
            continue
        known[sha] = path.name
        new.append(RawFile(name, path, size, sha))
    if not new:
        return batch

    now = datetime.now(UTC).replace(microsecond=0)
    stored: dict[str, str] = {}
    try:
        for raw in new:
            stored[raw.sha256] = _store(wh, raw)
        _land(wh, batch, new, stored, now)
    except BaseException:
        # Nothing was recorded in the manifest: take the copies back out of the landing area.
        for rel in stored.values():
            (wh.root / rel).unlink(missing_ok=True)
        raise
    return batch


def _land(wh: Warehouse, batch: IngestSummary, new: list[RawFile], stored: dict[str, str], now: datetime) -> None:
    landed: dict[str, pa.Table] = {}
    quarantined: list[pa.Table] = []
    for name, table in SOURCES.items():
        files = [raw for raw in new if raw.source == name]
        if files:
            good, bad = parse(contract(table), [wh.root / stored[r.sha256] for r in files], wh.root, now, batch.batch_id)
            landed[table] = good
            quarantined.append(bad)

    counts = _count_by_file(landed, quarantined)
    for raw in new:
        ok, bad = counts.get(stored[raw.sha256], (0, 0))
        batch.files.append(FileResult(raw.path.name, raw.source, "ingested", stored[raw.sha256], ok, bad))

    props = {"stedi.batch-id": batch.batch_id}
    changes = [Change(table, rows, "append", props) for table, rows in landed.items() if rows.num_rows]
    bad_rows = pa.concat_tables(quarantined) if quarantined else None
    if bad_rows is not None and bad_rows.num_rows:
        changes.append(Change("quarantine", bad_rows, "append", props))
    changes.append(Change("ingest_manifest", _manifest_rows(new, stored, counts, batch.batch_id, now), "append", props))
    wh.commit(changes)


def _manifest(wh: Warehouse) -> dict[str, str]:
    rows = wh.scan("ingest_manifest").select("sha256", "file_name").collect()
    return dict(zip(rows["sha256"].to_list(), rows["file_name"].to_list(), strict=True))


def _store(wh: Warehouse, raw: RawFile) -> str:
    """Copy a raw file into the landing area (write a temporary file, then rename); return its path."""
    rel = f"landing/{raw.source}/{raw.sha256[:12]}-{raw.path.name}"
    dest = wh.root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
        try:
            shutil.copyfile(raw.path, tmp)
            os.replace(tmp, dest)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise SourceError(f"cannot copy {raw.path} into the warehouse: {err.strerror}") from err
    return rel


def _count_by_file(landed: dict[str, pa.Table], quarantined: list[pa.Table]) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = {}
    for rows in landed.values():
        for f, n in zip(*_value_counts(rows["_source_file"]), strict=True):
            counts.setdefault(f, [0, 0])[0] += n
    for rows in quarantined:
        for f, n in zip(*_value_counts(rows["source_file"]), strict=True):
            counts.setdefault(f, [0, 0])[1] += n
    return {f: (a, b) for f, (a, b) in counts.items()}


def _value_counts(column: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    vc = column.value_counts()
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


def _manifest_rows(
    new: Iterable[RawFile], stored: dict[str, str], counts: dict[str, tuple[int, int]], batch_id: str, now: datetime
) -> pa.Table:
    rows = [
        {
            "sha256": r.sha256,
            "file_name": r.path.name,
            "stored_path": stored[r.sha256],
            "source": r.source,
            "size_bytes": r.size,
            "rows_landed": counts.get(stored[r.sha256], (0, 0))[0],
            "rows_quarantined": counts.get(stored[r.sha256], (0, 0))[1],
            "batch_id": batch_id,
            "ingested_at": now,
        }
        for r in new
    ]
    return pa.Table.from_pylist(rows, schema=contract("ingest_manifest").arrow_schema())


# -- parsing ---------------------------------------------------------------------------------------


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def parse(
    c: Contract, files: list[Path], root: Path, ingested_at: datetime, batch_id: str
) -> tuple[pa.Table, pa.Table]:
    """Parse newline-delimited JSON ``files`` against landing contract ``c``.

    Returns the landed rows (the contract's columns, lineage included) and the quarantined lines.
    Blank lines are ignored. Everything runs in DuckDB, vectorised.
    """
    data_cols = [col for col in c.columns if col.name not in LINEAGE]
    paths = ", ".join(_sql_string(str(p)) for p in files)
    prefix = _sql_string(str(root) + os.sep)
    json_paths = ", ".join(_sql_string(f'$."{col.name}"') for col in data_cols)

    checks = []
    values = []
    for i, col in enumerate(data_cols, start=1):
        v = f"vs[{i}]"
        kind = col.sql_type.upper()
        accepted = ", ".join(_sql_string(t) for t in _ACCEPTED[kind])
        if col.required:
            checks.append(f"WHEN coalesce(json_type({v}), 'NULL') = 'NULL' THEN 'missing required field \"{col.name}\"'")
        cast = f"TRY_CAST(json_extract_string({v}, '$') AS {_DUCK_TYPES[kind]})"
        checks.append(
            f"WHEN json_type({v}) NOT IN ('NULL', {accepted}) "
            f"THEN 'field \"{col.name}\" is ' || lower(json_type({v})) || ', expected {kind.lower()}'"
        )
        checks.append(
            f"WHEN json_type({v}) <> 'NULL' AND {cast} IS NULL "
            f"THEN 'field \"{col.name}\" does not fit {kind.lower()}: ' || json_extract_string({v}, '$')"
        )
        values.append(f"{cast} AS \"{col.name}\"")

    con = duckdb.connect()
    try:
        con.execute(f"""
            CREATE TEMP TABLE lines AS
            WITH raw AS (
                SELECT replace(filename, {prefix}, '') AS file, string_split(content, chr(10)) AS ls
                FROM read_text([{paths}])
            ), numbered AS (
                SELECT file, unnest(ls) AS line, unnest(range(1, len(ls) + 1)) AS line_number FROM raw
            )
            SELECT file, line_number, rtrim(line, chr(13)) AS line, json_valid(rtrim(line, chr(13))) AS ok
            FROM numbered WHERE trim(line) <> ''
        """)
        con.execute(f"""
            CREATE TEMP TABLE parsed AS
            WITH objects AS (
                SELECT *, json_extract(line, [{json_paths}]) AS vs FROM lines
                WHERE CASE WHEN ok THEN json_type(line) = 'OBJECT' ELSE false END
            )
            SELECT file, line_number, line, CASE {" ".join(checks)} END AS reason, {", ".join(values)}
            FROM objects
        """)
        ts = f"TIMESTAMPTZ {_sql_string(ingested_at.isoformat())}"
        names = ", ".join(f'"{col.name}"' for col in data_cols)
        good = con.sql(f"""
            SELECT {names}, file AS _source_file, line_number AS _line_number, {ts} AS _ingested_at
            FROM parsed WHERE reason IS NULL ORDER BY file, line_number
        """).to_arrow_table()
        bad = con.sql(f"""
            SELECT {_sql_string(c.name)} AS target_table,
                   CASE WHEN NOT ok THEN 'not valid JSON' ELSE 'not a JSON object' END AS reason,
                   line AS raw, file AS source_file, line_number
            FROM lines WHERE CASE WHEN ok THEN json_type(line) <> 'OBJECT' ELSE true END
            UNION ALL
            SELECT {_sql_string(c.name)}, reason, line, file, line_number FROM parsed WHERE reason IS NOT NULL
            ORDER BY source_file, line_number
        """).to_arrow_table()
    except duckdb.Error as err:
        raise SourceError(f"cannot read landing files for {c.name}: {str(err).splitlines()[0]}") from err
    finally:
        con.close()
    bad = bad.append_column("batch_id", pa.array([batch_id] * bad.num_rows, pa.large_string()))
    bad = bad.append_column("quarantined_at", pa.array([ingested_at] * bad.num_rows, pa.timestamp("us", tz="UTC")))
    return good, bad
