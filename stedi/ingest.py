"""Ingest: copy raw landing files into the warehouse and land their records in Iceberg.

Each raw file is read once; the very bytes read are hashed, copied into
``<warehouse>/landing/<source>/<batch>-<file>.json`` (named by ingest batch and file number, never
by the name received, which may hold an email) and parsed (:mod:`stedi.parse`). The file is
recorded in ``ingest_manifest`` by its SHA-256: a content ingested before, under any name, is
skipped. A file found but not taken (another suffix, a symbolic link, a folder) is listed as
skipped with the reason. Erased people do not come back (:class:`Suppression`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gzip
import hashlib
import itertools
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from stedi import files_audit, framing, maintenance, parse, privacy, properties
from stedi.contracts import Contract, contract, load_contracts
from stedi.errors import SourceError, StediError
from stedi.storage import filesystem, normalise, storage_error
from stedi.warehouse import Change, Staged, Warehouse

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from stedi.keys import Keys

# Folders holding each source's files: the STEDI starter layout first, then the public bucket's.
_FOLDERS = {
    "customer": ("customer/landing", "customers/landing", "customer", "customers"),
    "accelerometer": ("accelerometer/landing", "accelerometer"),
    "step_trainer": ("step_trainer/landing", "step_trainer"),
}
#: What the manifest keeps of a received file name that names an erased person.
ERASED_NAME = "(erased)"
#: Suffixes of the files taken (any case), each also gzip-compressed (``.json.gz``).
SUFFIXES = (".json", ".jsonl", ".ndjson")


@functools.cache
def sources() -> dict[str, str]:
    """Source name -> landing table, as the landing contracts declare (``stedi.source``)."""
    return {dict(c.properties)["stedi.source"]: name for name, c in sorted(load_contracts().items()) if c.zone == "landing"}


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

    @property
    def compressed(self) -> bool:
        return self.name.lower().endswith(".gz")

    def __str__(self) -> str:
        return self.path if self.local else f"s3://{self.path}"


def _taken(name: str) -> str | None:
    """Why a file of this name is not taken, or None when it is."""
    lowered = name.lower()
    if lowered.startswith("."):
        return "a hidden file"
    base = lowered.removesuffix(".gz")
    if base.endswith(SUFFIXES):
        return None
    suffix = posixpath.splitext(lowered)[1] or "no suffix"
    return f"not a JSON file ({suffix}; taken: {', '.join(SUFFIXES)}, each also .gz)"


def discover(source: str) -> tuple[list[tuple[str, RawFile]], list[FileResult]]:
    """The raw files under ``source`` (a folder or ``s3://bucket/prefix``), as (source name, file),
    in either supported layout; and what was found but is not taken, with the reason."""
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
    skipped: list[FileResult] = []
    for name, folders in _FOLDERS.items():
        for folder in folders:
            d = posixpath.join(base, folder)
            if not fs.isdir(d):
                continue
            entries = sorted(fs.ls(d, detail=True), key=lambda e: e["name"])
            taken = []
            for e in entries:
                file = RawFile(fs, e["name"])
                why = "a symbolic link: not followed" if e.get("islink") else ("a folder: not searched" if e["type"] != "file" else _taken(file.name))
                if why is None:
                    taken.append(file)
                elif not (e["type"] == "directory" and posixpath.basename(e["name"]) == "landing"):
                    skipped.append(FileResult(file.name, name, "skipped", why))
            if taken:
                found.extend((name, f) for f in taken)
                break
    if not found:
        raise SourceError(
            f"no landing files under {source}: expected customer/landing/*.json, accelerometer/landing/*.json, "
            "step_trainer/landing/*.json (starter layout) or customers/, accelerometer/, step_trainer/ (bucket layout)"
        )
    return found, skipped


@dataclass
class _File:
    """One file found under the source, once read and hashed (and, if new, copied and parsed)."""

    source: str
    path: RawFile
    size: int
    sha256: str
    stored_path: str
    parsed: tuple[pa.Table, pa.Table] | None = None
    suppressed: int = 0
    stored: tuple[str, int] | None = None  # SHA-256 and size of the stored copy, when records were blanked
    version: str | None = None  # the stored copy's version right after it was written (stedi.files_audit)
    received_name: str | None = None  # the name to keep, when not the one received


def ingest(
    wh: Warehouse, source: str, key: bytes | Keys | None = None, *, progress: Callable[[str, int, int], None] | None = None
) -> IngestSummary:
    """Ingest every raw file under ``source`` that the warehouse has not seen before.

    All or nothing: the landing tables, the quarantine and the manifest are committed together at
    the end; if anything fails, no table changes and the copies made are removed.

    People on the suppression list (erased by ``forget``) do not come back: their records are
    skipped, counted, and blanked in the stored copy; another person's record that mentions one of
    them has the mention erased. ``key``: the warehouse's keys (default: as configured).

    Files are read once each, on a thread per core (hashing, writing and Arrow's parser release the
    GIL), and stream into the landing tables' Parquet files as they are parsed, so memory stays
    bounded by a few files whatever the size of the batch. ``progress(file, done, total)`` is told
    of each file as it is taken.
    """
    found, skipped = discover(source)
    with wh.lock("stedi-etl ingest"):
        maintenance.remove_orphan_copies(wh)  # left by an ingest that was killed before it committed
        return _ingest(wh, found, skipped, key, progress or (lambda file, done, total: None))


def ingest_files(
    wh: Warehouse, found: list[tuple[str, RawFile]], key: bytes | Keys | None = None, stamps: dict[str, str] | None = None
) -> IngestSummary:
    """:func:`ingest` of the files given (source name, file), as :func:`discover` lists them: what
    ``stedi-etl watch`` takes in one micro-batch. ``stamps`` are stamped on the snapshots written."""
    with wh.lock("stedi-etl ingest"):
        maintenance.remove_orphan_copies(wh)
        return _ingest(wh, found, [], key, lambda file, done, total: None, stamps)


def _ingest(
    wh: Warehouse,
    found: list[tuple[str, RawFile]],
    skipped: list[FileResult],
    key: bytes | Keys | None,
    progress: Callable[[str, int, int], None],
    stamps: dict[str, str] | None = None,
) -> IngestSummary:
    batch = IngestSummary(batch_id=f"ingest-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")
    batch.files.extend(skipped)
    suppress = Suppression.load(wh, key)
    known = _manifest(wh)
    at_start = frozenset(known)
    number = _batch_number(wh)
    now = datetime.now(UTC).replace(microsecond=0)
    props = {**(stamps or {}), properties.BATCH_ID: batch.batch_id}
    copies: list[str] = []
    quarantined: list[pa.Table] = []
    manifest: list[dict] = []
    kept: list[_File] = []  # the files recorded in the manifest
    tables = sources()
    # stored names: the batch, then the file in the order of the names delivered (discover sorts them)
    stored_names = {id(path): f"{number:08d}-{i:06d}" for i, (_, path) in enumerate(found, start=1)}
    done = 0  # files taken so far, for progress

    def load(item: tuple[str, RawFile]) -> _File:
        name, path = item
        data = _read_once(path)
        suffix = ".json.gz" if path.compressed else ".json"
        f = _File(name, path, len(data), hashlib.sha256(data).hexdigest(), f"landing/{name}/{stored_names[id(path)]}{suffix}")
        if f.sha256 not in at_start:
            copies.append(f.stored_path)  # list.append is atomic: safe from the workers
            wh.files.write(f.stored_path, data, durable=False)
            plain = framing.decompress(data, str(path))
            c = contract(tables[name])
            f.parsed = parse.parse(c, plain, f.stored_path, now, batch.batch_id)
            if suppress:
                changes = suppress.changes(c, *f.parsed, plain)
                if changes:
                    new_plain, _ = framing.replace_records(plain, changes)
                    new = gzip.compress(new_plain, mtime=0) if path.compressed else new_plain
                    wh.files.write(f.stored_path, new, durable=False)
                    f.parsed = parse.parse(c, new_plain, f.stored_path, now, batch.batch_id)
                    f.suppressed = len(changes)
                    f.stored = (hashlib.sha256(new).hexdigest(), len(new))
            f.version = files_audit.version_of(wh, f.stored_path)  # with the bytes just hashed
        return f

    def landed(files: Iterator[_File], c: Contract) -> Iterator[pa.RecordBatch]:
        """The good rows of each new file, in order; records skips, quarantine and manifest rows."""
        nonlocal done
        for f in files:
            done += 1
            progress(f.path.name, done, len(found))
            if f.sha256 in known:  # ingested before, or earlier in this batch under another name
                batch.files.append(FileResult(f.path.name, f.source, "skipped", f"already ingested as {known[f.sha256]}"))
                if f.parsed is not None:  # a twin within this batch: its copy is not needed
                    wh.files.delete(f.stored_path)
                continue
            known[f.sha256] = f.path.name
            if suppress and suppress.erased(privacy.identifiers_in(f.path.name)):
                f.received_name = ERASED_NAME  # a file named after an erased person: the name is not kept
            good, bad = f.parsed
            quarantined.append(bad)
            batch.reasons.update(privacy.reason_kind(reason) for reason in bad["reason"].to_pylist())
            batch.files.append(
                FileResult(f.received_name or f.path.name, f.source, "ingested", f.stored_path, good.num_rows, bad.num_rows, f.suppressed)
            )
            manifest.append(_manifest_row(f, good.num_rows, bad.num_rows, batch.batch_id, now))
            kept.append(f)
            yield from c.conform(good).to_batches()

    staged: list[Staged] = []
    workers = os.cpu_count() or 2
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for name in _FOLDERS:  # in the order files are found and numbered
                table = tables[name]
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
        # Nothing was recorded in the manifest: take the copies back out of the landing area. Each
        # removal on its own, so that one failing does not keep the others (the next ingest removes
        # whatever is left: maintenance.remove_orphan_copies).
        for copy in copies:
            with contextlib.suppress(Exception):
                wh.files.delete(copy)
        raise
    # the first audit then finds each copy's hash in its cache instead of reading the copy back
    with contextlib.suppress(Exception):  # only spares the first audit a read; it must not fail an ingest done
        files_audit.remember(wh, {f.stored_path: (f.stored[0] if f.stored else f.sha256, f.version) for f in kept})
    return batch


def _read_once(path: RawFile) -> bytes:
    """The bytes of a raw file, read once: what is hashed, stored and parsed. A local file that
    changes while it is read (its size, time or identity differ before and after) is refused;
    an object in S3 is read as one version."""
    try:
        if not path.local:
            return path.fs.cat_file(path.path)
        before = os.stat(path.path)
        with open(path.path, "rb") as fh:
            data = fh.read()
            after = os.fstat(fh.fileno())
        now = os.stat(path.path)
    except OSError as err:
        raise SourceError(f"cannot read {path}: {err.strerror or err}") from err
    stamp = lambda s: (s.st_size, s.st_mtime_ns, s.st_ino, s.st_dev)  # noqa: E731
    if not (stamp(before) == stamp(after) == stamp(now) and len(data) == before.st_size):
        raise SourceError(f"{path} changed while it was being ingested; nothing was stored: ingest it again once it is complete")
    return data


def _in_order(pool: ThreadPoolExecutor, fn: Callable, items: list, *, ahead: int) -> Iterator:
    """``fn`` over ``items`` on ``pool``, results in order, at most ``ahead`` tasks in flight."""
    pending = collections.deque(pool.submit(fn, item) for item in items[:ahead])
    for item in items[ahead:]:
        yield pending.popleft().result()
        pending.append(pool.submit(fn, item))
    while pending:
        yield pending.popleft().result()


def _manifest_row(f: _File, landed: int, quarantined: int, batch_id: str, now: datetime) -> dict:
    return {
        "sha256": f.sha256,
        "file_name": f.received_name or f.path.name,
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
    """SHA-256 -> file name of every file ingested so far, as received and as stored now (so that
    re-ingesting the warehouse's own landing copies takes nothing twice)."""
    table = wh.table("ingest_manifest")
    if table.current_snapshot() is None:
        return {}
    rows = table.scan(selected_fields=("sha256", "file_name", "stored_sha256")).to_arrow()
    known = dict(zip(rows["sha256"].to_pylist(), rows["file_name"].to_pylist(), strict=True))
    for stored, name in zip(rows["stored_sha256"].to_pylist(), rows["file_name"].to_pylist(), strict=True):
        if stored is not None:
            known.setdefault(stored, name)
    return known


def _batch_number(wh: Warehouse) -> int:
    """The number of this ingest batch: one more than the batches recorded (under the lock)."""
    table = wh.table("ingest_manifest")
    if table.current_snapshot() is None:
        return 1
    return pc.count_distinct(table.scan(selected_fields=("batch_id",)).to_arrow()["batch_id"]).as_py() + 1


# -- people erased before ----------------------------------------------------------------------------


@dataclass
class Suppression:
    """The keyed hashes of erased emails and serial numbers, and the key to hash new values with."""

    key: bytes
    hashes: dict[str, frozenset[str]]

    @classmethod
    def load(cls, wh: Warehouse, key: bytes | Keys | None) -> Suppression | None:
        hashes = wh.suppressed()
        if not any(hashes.values()):
            return None
        return cls(wh.keys(key, create=True).suppression, hashes)

    def _is_suppressed(self, kind: str, normal: str) -> bool:
        return privacy.keyed_hash(normal, self.key) in self.hashes.get(kind, ())

    def erased(self, identifiers: set[str]) -> bool:
        """Whether any of these identifiers (normal forms) is an erased person's or device's."""
        return any(self._is_suppressed("email", i) or self._is_suppressed("serialNumber", i) for i in identifiers)

    def changes(self, c: Contract, good: pa.Table, bad: pa.Table, plain: bytes) -> dict[int, str | None]:
        """The records of a parsed file (``plain``: its bytes, decompressed) to change because of
        erased people: the records of an erased person (by the contract's owner field) and
        quarantined records mentioning one are blanked (None); another person's record mentioning
        one gets each string mentioning them erased (its new text). The same matching as forget's
        (:func:`stedi.privacy.identifiers_in`). Each distinct value is hashed once: the cost is per
        person, not per record."""
        kind = "email" if c.owner_kind == "email" else "serialNumber"
        owners = pc.unique(good[c.owner]).to_pylist()
        hit = [v for v in owners if v is not None and self._is_suppressed(kind, privacy.normal_form(v))]
        changes: dict[int, str | None] = {}
        if hit:
            mask = pc.is_in(good[c.owner], value_set=pa.array(hit, good[c.owner].type))
            changes.update(dict.fromkeys(pc.filter(good["_line_number"], mask).to_pylist()))
        for raw, n in zip(bad["raw"].to_pylist(), bad["line_number"].to_pylist(), strict=True):
            if self.erased(privacy.identifiers_in(raw)):
                changes[n] = None
        mentioning: set[int] = set()
        for name in [col.name for col in c.raw_columns if col.sql_type == "STRING" and col.name != c.owner] + ["_extra"]:
            values = good[name]
            for value in pc.unique(values).to_pylist():
                if value is not None and self.erased(privacy.identifiers_in(value)):
                    mentioning.update(pc.filter(good["_line_number"], pc.equal(values, value)).to_pylist())
        if mentioning - set(changes):
            lines = framing.records_text(plain).split(b"\n")
            for n in sorted(mentioning - set(changes)):
                changes[n] = privacy.redact_json(lines[n - 1].decode("utf-8").rstrip("\r"), self.erased)
        return changes

    def __bool__(self) -> bool:
        return any(self.hashes.values())
