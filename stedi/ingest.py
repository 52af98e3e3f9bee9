"""Ingest: copy raw landing files into the warehouse and land their records in Iceberg.

Each raw file is copied byte for byte into ``<warehouse>/landing/<source>/`` and recorded in the
``ingest_manifest`` table by its SHA-256: a file whose content was ingested before, under any name,
is skipped. Every line is parsed and typed by the landing table's contract; a line that is not a JSON
object, lacks a required field or holds a wrongly typed value goes to ``quarantine`` with its reason,
file and line number, and the rest of the file lands.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
import os
import posixpath
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from stedi import privacy
from stedi.contracts import EXTRA, Contract, contract, sql_literal
from stedi.errors import SourceError, StediError, first_line
from stedi.storage import filesystem, normalise, storage_error
from stedi.warehouse import Change, Staged, Warehouse

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

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

# JSON types (as DuckDB's json_type names them) accepted for each contract type.
_ACCEPTED = {
    "STRING": ("VARCHAR",),
    "BIGINT": ("BIGINT", "UBIGINT", "VARCHAR"),
    "INT": ("BIGINT", "UBIGINT", "VARCHAR"),
    "DOUBLE": ("BIGINT", "UBIGINT", "DOUBLE", "VARCHAR"),
    "BOOLEAN": ("BOOLEAN",),
    "DATE": ("VARCHAR",),
}
_DUCK_TYPES = {"STRING": "VARCHAR", "BIGINT": "BIGINT", "INT": "INTEGER", "DOUBLE": "DOUBLE", "BOOLEAN": "BOOLEAN", "DATE": "DATE"}


@dataclass
class FileResult:
    file: str
    source: str
    status: str  # "ingested" | "skipped"
    detail: str = ""
    rows_landed: int = 0
    rows_quarantined: int = 0
    rows_suppressed: int = 0


@dataclass
class IngestSummary:
    batch_id: str
    files: list[FileResult] = field(default_factory=list)
    #: Lines set aside, by kind of reason (the reason without the value that broke it).
    reasons: collections.Counter = field(default_factory=collections.Counter)

    @property
    def ingested(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "ingested"]

    @property
    def skipped(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "skipped"]


@dataclass(frozen=True)
class RawFile:
    """A file found under an ingest source: a local path, or an object in S3."""

    fs: AbstractFileSystem
    path: str  # as ``fs`` names it

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def local(self) -> bool:
        return "file" in self.fs.protocol

    def __str__(self) -> str:
        return self.path if self.local else f"s3://{self.path}"


def discover(source: str | Path) -> list[tuple[str, RawFile]]:
    """The raw files under ``source`` (a folder or ``s3://bucket/prefix``), as (source name, file),
    in either supported layout."""
    text = str(source)
    try:
        fs, base = filesystem(normalise(text))
        try:
            kind = fs.info(base)["type"]
        except FileNotFoundError:
            kind = None
    except StediError:
        raise
    except Exception as err:  # noqa: BLE001 — an endpoint down, refused credentials, ...
        raise storage_error(err, text) from err
    if kind is None:
        raise SourceError(f"source {text} does not exist")
    if kind != "directory":
        raise SourceError(f"source {text} is not a folder (expected customer/landing/*.json, ...)")
    found: list[tuple[str, RawFile]] = []
    for name, folders in _FOLDERS.items():
        for folder in folders:
            d = posixpath.join(base, folder)
            if fs.isdir(d):
                entries = fs.ls(d, detail=True)
                files = sorted(
                    e["name"] for e in entries if e["type"] == "file" and posixpath.splitext(e["name"])[1] in _SUFFIXES
                )
                if files:
                    found.extend((name, RawFile(fs, f)) for f in files)
                    break
    if not found:
        raise SourceError(
            f"no landing files under {source}: expected customer/landing/*.json, accelerometer/landing/*.json, "
            "step_trainer/landing/*.json (starter layout) or customers/, accelerometer/, step_trainer/ (bucket layout)"
        )
    return found


@dataclass
class _File:
    """One file found under the source, once read and hashed (and, if new, copied and parsed)."""

    source: str
    path: RawFile
    size: int
    sha256: str
    parsed: tuple[pa.Table, pa.Table] | None = None
    suppressed: int = 0
    stored: tuple[str, int] | None = None  # SHA-256 and size of the stored copy, when lines were blanked

    @property
    def stored_path(self) -> str:
        return f"landing/{self.source}/{self.sha256[:12]}-{self.path.name}"


def ingest(wh: Warehouse, source: str | Path, key: bytes | None = None) -> IngestSummary:
    """Ingest every raw file under ``source`` that the warehouse has not seen before.

    All or nothing: the landing tables, the quarantine and the manifest are committed together at
    the end; if anything fails, no table changes and the copies made are removed.

    People on the suppression list (erased by ``forget``) do not come back: their lines are skipped,
    counted, and blanked in the stored copy. ``key`` is the pseudonym key (default: the warehouse's).

    Files are read once each, on a thread per core (hashing, writing and Arrow's parser release the
    GIL), and stream into the landing tables' Parquet files as they are parsed, so memory stays
    bounded by a few files whatever the size of the batch.
    """
    found = discover(source)
    with wh.lock("stedi-etl ingest"):
        wh.remove_orphan_copies()  # left by an ingest that was killed before it committed
        return _ingest(wh, found, key)


def _ingest(wh: Warehouse, found: list[tuple[str, RawFile]], key: bytes | None) -> IngestSummary:
    batch = IngestSummary(batch_id=f"ingest-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")
    suppress = Suppression.load(wh, key)
    known = _manifest(wh)
    at_start = frozenset(known)
    now = datetime.now(UTC).replace(microsecond=0)
    props = {"stedi.batch-id": batch.batch_id}
    copies: list[str] = []
    quarantined: list[pa.Table] = []
    manifest: list[dict] = []

    def load(item: tuple[str, RawFile]) -> _File:
        name, path = item
        try:
            data = path.fs.cat_file(path.path)
        except OSError as err:
            raise SourceError(f"cannot read {path}: {err.strerror or err}") from err
        f = _File(name, path, len(data), hashlib.sha256(data).hexdigest())
        if f.sha256 not in at_start:
            copies.append(f.stored_path)  # list.append is atomic: safe from the workers
            _store(wh, path, data, f.stored_path)
            f.parsed = parse(contract(SOURCES[name]), data, f.stored_path, now, batch.batch_id)
            if suppress:
                f.parsed, blank = suppress.apply(name, *f.parsed)
                if blank:
                    f.suppressed = len(blank)
                    f.stored = _blank(wh, f.stored_path, data, blank)
        return f

    def landed(files: Iterator[_File], c: Contract) -> Iterator[pa.RecordBatch]:
        """The good rows of each new file, in order; records skips, quarantine and manifest rows."""
        for f in files:
            if f.sha256 in known:  # ingested before, or earlier in this batch under another name
                batch.files.append(FileResult(f.path.name, f.source, "skipped", f"already ingested as {known[f.sha256]}"))
                if f.parsed is not None:  # a twin within this batch: its copy is not needed
                    wh.files.delete(f.stored_path)
                continue
            known[f.sha256] = f.path.name
            good, bad = f.parsed
            quarantined.append(bad)
            batch.reasons.update(reason.split(": ")[0] for reason in bad["reason"].to_pylist())
            batch.files.append(
                FileResult(f.path.name, f.source, "ingested", f.stored_path, good.num_rows, bad.num_rows, f.suppressed)
            )
            manifest.append(_manifest_row(f, good.num_rows, bad.num_rows, batch.batch_id, now))
            yield from c.conform(good).to_batches()

    staged: list[Staged] = []
    workers = os.cpu_count() or 2
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for name, table in SOURCES.items():
                c = contract(table)
                rows = landed(_in_order(pool, load, [item for item in found if item[0] == name], ahead=workers), c)
                first = next(rows, None)
                if first is not None:  # stage only a table that gains rows: re-ingesting changes nothing
                    reader = pa.RecordBatchReader.from_batches(c.arrow_schema(), itertools.chain([first], rows))
                    staged.append(wh.stage(Change(table, reader, "append", props)))
        if manifest:
            bad_rows = pa.concat_tables(quarantined)
            if bad_rows.num_rows:
                staged.append(wh.stage(Change("quarantine", bad_rows, "append", props)))
            rows = pa.Table.from_pylist(manifest, schema=contract("ingest_manifest").arrow_schema())
            staged.append(wh.stage(Change("ingest_manifest", rows, "append", props)))
            wh.commit_staged(staged)
    except BaseException:
        # Nothing was recorded in the manifest: take the copies back out of the landing area.
        with contextlib.suppress(Exception):  # the storage may be what failed: the next ingest removes them
            for copy in copies:
                wh.files.delete(copy)
        raise
    return batch


def _in_order(pool: ThreadPoolExecutor, fn: Callable, items: list, *, ahead: int) -> Iterator:
    """``fn`` over ``items`` on ``pool``, results in order, at most ``ahead`` tasks in flight."""
    pending = collections.deque(pool.submit(fn, item) for item in items[:ahead])
    for item in items[ahead:]:
        yield pending.popleft().result()
        pending.append(pool.submit(fn, item))
    while pending:
        yield pending.popleft().result()


def _store(wh: Warehouse, source: RawFile, data: bytes, rel: str) -> None:
    """Copy a raw file (read as ``data``) into the landing area at ``rel``. Between local folders:
    an in-kernel copy to a temporary file, then a rename; into S3, one PUT of the bytes read."""
    if wh.files.remote or not source.local:
        wh.files.write(rel, data)
        return
    dest = Path(wh.files.path(rel))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    try:
        shutil.copyfile(source.path, tmp)
        if tmp.stat().st_size != len(data):
            raise SourceError(f"{source} changed while it was being ingested; ingest it again")
        os.replace(tmp, dest)
    except OSError as err:
        raise SourceError(f"cannot copy {source} into {dest.parent}: {err.strerror}") from err
    finally:
        tmp.unlink(missing_ok=True)


def _manifest_row(f: _File, landed: int, quarantined: int, batch_id: str, now: datetime) -> dict:
    return {
        "sha256": f.sha256,
        "file_name": f.path.name,
        "stored_path": f.stored_path,
        "source": f.source,
        "size_bytes": f.size,
        "rows_landed": landed,
        "rows_quarantined": quarantined,
        "batch_id": batch_id,
        "ingested_at": now,
        "stored_sha256": f.stored[0] if f.stored else None,
        "stored_size": f.stored[1] if f.stored else None,
        "rows_erased": f.suppressed if f.stored else None,
        "rewritten_at": now if f.stored else None,
    }


def _manifest(wh: Warehouse) -> dict[str, str]:
    """SHA-256 -> file name of every file ingested so far."""
    table = wh.table("ingest_manifest")
    if table.current_snapshot() is None:
        return {}
    rows = table.scan(selected_fields=("sha256", "file_name")).to_arrow()
    return dict(zip(rows["sha256"].to_pylist(), rows["file_name"].to_pylist(), strict=True))


# -- people erased before ----------------------------------------------------------------------------

# What a raw line may hold of a person, wherever it is in the line.
_EMAILS = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]+")
_SERIALS = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# The column naming the person in each source's records, and the kind of value it holds.
_PERSON = {"customer": ("email", "email"), "accelerometer": ("user", "email"), "step_trainer": ("serialNumber", "serialNumber")}


@dataclass
class Suppression:
    """The keyed hashes of erased emails and serial numbers, and the key to hash new values with."""

    key: bytes
    hashes: dict[str, frozenset[str]]

    @classmethod
    def load(cls, wh: Warehouse, key: bytes | None) -> Suppression | None:
        hashes = wh.suppressed()
        if not hashes:
            return None
        key = key if key is not None else privacy.pseudonym_key(wh.settings.pseudonym_key, wh.files)
        return cls(key, hashes)

    def _is_suppressed(self, kind: str, value: str) -> bool:
        return privacy.keyed_hash(value, self.key) in self.hashes.get(kind, ())

    def apply(self, source: str, good: pa.Table, bad: pa.Table) -> tuple[tuple[pa.Table, pa.Table], list[int]]:
        """Drop the lines of suppressed people from a parsed file; return what is left and the line
        numbers dropped. Each distinct value is hashed once, so the cost is per person, not per line."""
        column, kind = _PERSON[source]
        values = pc.unique(good[column]).to_pylist()
        hit = [v for v in values if v is not None and self._is_suppressed(kind, v)]
        drop = pc.is_in(good[column], value_set=pa.array(hit, good[column].type)) if hit else None
        blank = pc.filter(good["_line_number"], drop).to_pylist() if hit else []
        if hit:
            good = good.filter(pc.invert(drop))
        if bad.num_rows:
            mentions = [self._mentions_suppressed(raw) for raw in bad["raw"].to_pylist()]
            if any(mentions):
                blank += [n for n, m in zip(bad["line_number"].to_pylist(), mentions, strict=True) if m]
                bad = bad.filter(pa.array([not m for m in mentions]))
        return (good, bad), sorted(blank)

    def _mentions_suppressed(self, raw: str | None) -> bool:
        if raw is None:
            return False
        data = raw.encode("utf-8", "surrogateescape")
        return any(self._is_suppressed("email", m.decode(errors="replace")) for m in _EMAILS.findall(data)) or any(
            self._is_suppressed("serialNumber", m.decode()) for m in _SERIALS.findall(data)
        )

    def __bool__(self) -> bool:
        return any(self.hashes.values())


def _blank(wh: Warehouse, rel: str, data: bytes, numbers: list[int]) -> tuple[str, int]:
    """Blank records of the stored copy (everyone else's keep their numbers); its new hash and size."""
    new, _ = blank_records(data, numbers)
    wh.files.write(rel, new)
    return hashlib.sha256(new).hexdigest(), len(new)


# -- parsing ---------------------------------------------------------------------------------------

_BAD_SCHEMA = pa.schema(
    [
        ("target_table", pa.large_string()),
        ("reason", pa.large_string()),
        ("raw", pa.large_string()),
        ("line_number", pa.int64()),
    ]
)


def parse(c: Contract, data: bytes, rel: str, ingested_at: datetime, batch_id: str) -> tuple[pa.Table, pa.Table]:
    """Parse one newline-delimited JSON file (``data``, stored at ``rel``) against landing contract ``c``.

    Returns the landed rows (the contract's columns, lineage included) and the quarantined lines.
    Blank lines are ignored. A clean file is read in one pass by Arrow's JSON reader, which is
    strict about types; a file it rejects for any reason is re-read line by line in DuckDB, which
    gives each bad line its reason (a line that is not UTF-8 is set aside before). A file holding
    one JSON array is read as its elements, numbered by position from 1. A number sent as a string
    is taken when the conversion is exact ("0.5" for a double, "12" for a bigint), else the line is
    set aside.
    """
    data = _array_as_lines(data)
    good = _parse_clean(c, data)
    if good is None:
        lines, not_utf8 = _split_lines(data)
        good, bad = _parse_lines(c, lines)
        if not_utf8.num_rows:
            bad = pa.concat_tables([bad, not_utf8.append_column("target_table", pa.repeat(pa.scalar(c.name, pa.large_string()), not_utf8.num_rows)).select(_BAD_SCHEMA.names).cast(_BAD_SCHEMA)])
            bad = bad.sort_by("line_number")
    else:
        line_numbers = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), good.num_rows))  # 1..n
        good = good.append_column("_line_number", line_numbers)
        good = good.append_column(EXTRA, pa.nulls(good.num_rows, pa.large_string()))
        bad = _BAD_SCHEMA.empty_table()
    stamp = pa.scalar(ingested_at, pa.timestamp("us", tz="UTC"))
    good = good.append_column("_source_file", pa.repeat(pa.scalar(rel, pa.large_string()), good.num_rows))
    good = good.append_column("_ingested_at", pa.repeat(stamp, good.num_rows))
    bad = bad.append_column("source_file", pa.repeat(pa.scalar(rel, pa.large_string()), bad.num_rows))
    bad = bad.append_column("batch_id", pa.repeat(pa.scalar(batch_id, pa.large_string()), bad.num_rows))
    bad = bad.append_column("quarantined_at", pa.repeat(stamp, bad.num_rows))
    return good, bad


_BIG_FILE = 128 * 1024 * 1024


def _parse_clean(c: Contract, data: bytes) -> pa.Table | None:
    """The whole file through Arrow's JSON reader, or ``None`` if any line needs a closer look."""
    columns = c.raw_columns
    # Dates arrive as strings: read them as such and cast them strictly below.
    read_as = pa.schema(
        [pa.field(col.name, pa.string() if col.arrow_type == pa.date32() else col.arrow_type) for col in columns]
    )
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    try:
        table = pajson.read_json(
            pa.BufferReader(data),
            # Files are parsed one per core already; only a big file is worth Arrow's own threads too.
            read_options=pajson.ReadOptions(use_threads=len(data) > _BIG_FILE),
            # a field beyond the contract sends the file to the careful path, which keeps it
            parse_options=pajson.ParseOptions(explicit_schema=read_as, unexpected_field_behavior="error"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != lines:  # blank lines were skipped: line numbers need the careful path
        return None
    for i, col in enumerate(columns):
        if col.required and table[col.name].null_count:
            return None
        if read_as.field(i).type in (pa.string(), pa.large_string()):
            try:  # Arrow's JSON reader lets bytes that are not UTF-8 through; a full validation does not
                table[col.name].validate(full=True)
            except pa.ArrowInvalid:
                return None
        if col.arrow_type == pa.date32():
            try:
                table = table.set_column(i, col.name, pc.cast(table[col.name], pa.date32()))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
    return table


_STARTS_AS_ARRAY = re.compile(rb"\s*\[")


def json_array(data: bytes) -> list | None:
    """The records of a raw file holding one JSON array, numbered by position; ``None`` for a
    file of one record a line (numbered by line), including one that merely starts with ``[``."""
    if not _STARTS_AS_ARRAY.match(data):  # looks at the leading bytes only: no copy of the file
        return None
    try:
        items = json.loads(data)
    except ValueError:  # not one valid array after all: its lines are judged one by one
        return None
    return items if isinstance(items, list) else None


def _array_as_lines(data: bytes) -> bytes:
    """A file holding one JSON array of records, as one record a line; any other file as it is."""
    items = json_array(data)
    if items is None:
        return data
    return b"".join(json.dumps(item, ensure_ascii=False).encode("utf-8") + b"\n" for item in items)


def blank_records(data: bytes, numbers: Iterable[int]) -> tuple[bytes, int]:
    """A raw file with the records ``numbers`` (as :func:`parse` numbers them) blanked: a line
    emptied, or an array element set to ``null``, so every other record keeps its number.
    Returns the new content and how many records were blanked."""
    items = json_array(data)
    blanked = 0
    if items is not None:
        for n in numbers:
            if 0 < n <= len(items) and items[n - 1] is not None:
                items[n - 1] = None
                blanked += 1
        return json.dumps(items, ensure_ascii=False).encode("utf-8") + b"\n", blanked
    lines = data.split(b"\n")
    for n in numbers:
        if 0 < n <= len(lines) and lines[n - 1].strip():
            lines[n - 1] = b""
            blanked += 1
    return b"\n".join(lines), blanked


def _split_lines(data: bytes) -> tuple[pa.Table, pa.Table]:
    """The lines of a file, numbered from 1, and apart those that are not valid UTF-8 (with the
    undecodable bytes shown as U+FFFD)."""
    try:
        lines = data.decode("utf-8").split("\n")
        broken: list[tuple[int, str]] = []
    except UnicodeDecodeError:
        lines, broken = [], []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append("")
                broken.append((number, raw.decode("utf-8", "replace").rstrip("\r")))
    table = pa.table({"line_number": pa.array(range(1, len(lines) + 1), pa.int64()), "line": pa.array(lines, pa.large_string())})
    not_utf8 = pa.table(
        {
            "reason": pa.array(["not valid UTF-8"] * len(broken), pa.large_string()),
            "raw": pa.array([b for _, b in broken], pa.large_string()),
            "line_number": pa.array([n for n, _ in broken], pa.int64()),
        }
    )
    return table, not_utf8


def _lossless_number(kind: str, text: str) -> str:
    """SQL: whether the JSON string ``text`` converts exactly to a number of ``kind``."""
    if kind in ("BIGINT", "INT"):
        return f"regexp_full_match(trim({text}), '[+-]?[0-9]+')"
    return f"(regexp_full_match(trim({text}), '[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?') AND isfinite(TRY_CAST({text} AS DOUBLE)))"


def _parse_lines(c: Contract, lines: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Line by line in DuckDB (vectorised): each bad line is set aside with the first reason found."""
    import duckdb

    columns = c.raw_columns
    json_paths = ", ".join(sql_literal(f'$."{col.name}"') for col in columns)
    checks = []
    values = []
    for i, col in enumerate(columns, start=1):
        v = f"vs[{i}]"
        kind = col.sql_type.upper()
        accepted = ", ".join(sql_literal(t) for t in _ACCEPTED[kind])
        if col.required:
            checks.append(f"WHEN coalesce(json_type({v}), 'NULL') = 'NULL' THEN 'missing required field \"{col.name}\"'")
        cast = f"TRY_CAST(json_extract_string({v}, '$') AS {_DUCK_TYPES[kind]})"
        if kind in ("BIGINT", "INT", "DOUBLE"):  # a number sent as a string: taken only if exact
            text = f"json_extract_string({v}, '$')"
            checks.append(
                f"WHEN json_type({v}) = 'VARCHAR' AND NOT {_lossless_number(kind, text)} "
                f"THEN 'field \"{col.name}\" is a string that is not exactly a {kind.lower()}: ' || {text}"
            )
        checks.append(
            f"WHEN json_type({v}) NOT IN ('NULL', {accepted}) "
            f"THEN 'field \"{col.name}\" is ' || lower(json_type({v})) || ', expected {kind.lower()}'"
        )
        checks.append(
            f"WHEN json_type({v}) <> 'NULL' AND {cast} IS NULL "
            f"THEN 'field \"{col.name}\" does not fit {kind.lower()}: ' || json_extract_string({v}, '$')"
        )
        values.append(f'{cast} AS "{col.name}"')
    target = sql_literal(c.name)

    con = duckdb.connect()
    try:
        con.register("raw_lines", lines)
        con.execute("""
            CREATE TEMP TABLE lines AS
            SELECT line_number, rtrim(line, chr(13)) AS line, json_valid(rtrim(line, chr(13))) AS ok
            FROM raw_lines WHERE trim(line) <> ''
        """)
        con.execute(f"""
            CREATE TEMP TABLE parsed AS
            WITH objects AS (
                SELECT *, json_extract(line, [{json_paths}]) AS vs FROM lines
                WHERE CASE WHEN ok THEN json_type(line) = 'OBJECT' ELSE false END
            )
            SELECT line_number, line, CASE {" ".join(checks)} END AS reason, {", ".join(values)},
                   -- fields beyond the contract: the object with the contract's fields removed
                   nullif(json_merge_patch(line, {sql_literal(json.dumps(dict.fromkeys(c.column_names)))}), '{{}}') AS extra
            FROM objects
        """)
        names = ", ".join(f'"{col.name}"' for col in columns)
        good = con.sql(f"""
            SELECT {names}, line_number AS _line_number, extra::VARCHAR AS "{EXTRA}"
            FROM parsed WHERE reason IS NULL ORDER BY line_number
        """).to_arrow_table()
        bad = con.sql(f"""
            SELECT {target} AS target_table,
                   CASE WHEN NOT ok THEN 'not valid JSON' ELSE 'not a JSON object' END AS reason,
                   line AS raw, line_number
            FROM lines WHERE CASE WHEN ok THEN json_type(line) <> 'OBJECT' ELSE true END
            UNION ALL
            SELECT {target}, reason, line, line_number FROM parsed WHERE reason IS NOT NULL
            ORDER BY line_number
        """).to_arrow_table()
    except duckdb.Error as err:
        raise SourceError(f"cannot parse the lines of a {c.name} file: {first_line(err)}") from err
    finally:
        con.close()
    return good, bad.cast(_BAD_SCHEMA)
