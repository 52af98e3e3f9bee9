"""The right to erasure: ``forget`` removes a person from every table, every raw file and every
older version of the warehouse, and keeps them from coming back.

A person is named by email, in any spelling (its normal form is what counts). Their serial numbers
are those of their customer records. Whose row is whose comes from the contracts
(``stedi.owner`` / ``stedi.owner_kind``): a table with an owner column is covered with no change
here. Forgetting:

1. finds their rows in every table with an owner, and every row of anyone that *mentions* them in
   a personal text column (``_extra``, a name, a quarantined line), however the email is written
   there (:func:`stedi.privacy.identifiers_in`);
2. rewrites the raw landing files: their records blanked (a blank line, or ``null`` in an array:
   everyone else keeps their record number), a record of someone else that mentions them with
   each string mentioning them replaced by ``[erased]``, a quarantined line mentioning them blanked;
3. in one all-or-nothing commit: deletes their rows, replaces the mentioning rows by their erased
   versions (a landing row by the parse of its rewritten record), records the stored files' new
   hashes in the manifest and blanks a received file name that names them, adds the keyed hashes
   of their email and serial numbers to ``suppression_list``;
4. expires every older snapshot of every table and deletes every file no current snapshot uses,
   orphans of failed writes included; and logs the erasure in ``erasure_log`` (never the email).

The raw files are rewritten first: if the commit then fails, forgetting again finds the rows in the
tables and finishes (blanking a blank line changes nothing). A serial number also registered to
someone else is not erased (their readings may be that other person's); it is reported.
``dry_run`` finds and counts everything and changes nothing.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
from pyiceberg.expressions import BooleanExpression, In
from pyiceberg.table import Transaction

from stedi import framing, maintenance, parse, privacy, properties
from stedi.contracts import Contract, contract, load_contracts
from stedi.errors import StediError
from stedi.ingest import ERASED_NAME
from stedi.keys import Keys
from stedi.warehouse import Change, Staged, Warehouse

# Deliberately plain: one @, a dot in the domain, no spaces, quotes, brackets or separators. Not a
# validator of RFC 5322: a guard against passing a name, a list or a quoted CSV field as an email.
_NOT_IN_EMAIL = r"@\s\"<>(),;:\[\]"  # an apostrophe is fine: o'neil@example.com
_EMAIL = re.compile(rf"[^{_NOT_IN_EMAIL}]+@[^{_NOT_IN_EMAIL}]+\.[^{_NOT_IN_EMAIL}]+")


class ErasureError(StediError):
    """An erasure request that cannot be carried out as given."""


@dataclass
class PersonResult:
    customer_key: str
    rows_removed: dict[str, int] = field(default_factory=dict)
    serial_numbers: int = 0
    serials_kept: int = 0
    rows_rewritten: dict[str, int] = field(default_factory=dict)  # other people's rows that mentioned them

    @property
    def matched(self) -> bool:
        return any(self.rows_removed.values()) or any(self.rows_rewritten.values())


@dataclass
class ForgetSummary:
    erasure_id: str
    people: list[PersonResult] = field(default_factory=list)
    files_rewritten: int = 0
    files_deleted: int = 0
    snapshots_expired: int = 0
    names_blanked: int = 0
    dry_run: bool = False

    def rows_removed(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for p in self.people:
            total.update(p.rows_removed)
        return dict(total)


def read_emails(lines: Iterable[str]) -> list[str]:
    """Emails from a ``--from-file`` (one a line; blank lines and ``#`` comments ignored)."""
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def normalised_emails(emails: Iterable[str]) -> list[str]:
    """The emails in their normal form, deduplicated; a malformed one is an error, named."""
    out: dict[str, None] = {}
    for raw in emails:
        email = privacy.normal_form(raw)
        if not _EMAIL.fullmatch(email):
            raise ErasureError(f"not an email address: {raw!r}")
        out[email] = None
    if not out:
        raise ErasureError("no email given: pass --email or --from-file")
    return list(out)


@dataclass
class _Found:
    """What forgetting touches in one table."""

    owned: dict[str, list[str]] = field(default_factory=dict)  # column -> exact stored values of their rows
    mentioning: pl.DataFrame | None = None  # other people's rows mentioning them, as stored
    mention_values: dict[str, list[str]] = field(default_factory=dict)  # column -> its values that mention them
    erased_rows: pl.DataFrame | None = None  # those rows, erased (landing: re-parsed)


def forget(wh: Warehouse, key: bytes | Keys | None, emails: Iterable[str], *, dry_run: bool = False) -> ForgetSummary:
    """Erase the people with these emails from the warehouse; see the module docstring."""
    people = normalised_emails(emails)
    summary = ForgetSummary(erasure_id=f"forget-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}", dry_run=dry_run)
    with wh.lock("stedi-etl forget"):
        keys = wh.keys(key, create=not dry_run)
        results = {e: PersonResult(privacy.customer_key(e, keys.pseudonym)) for e in people}
        serial_owner = _serials(wh, people, results)
        targets = {e: e for e in people} | dict(serial_owner)  # identifier -> whose
        values = {
            "email": people,
            "serial": sorted(serial_owner),
            "identifier": sorted(targets),
            "customer_key": [privacy.customer_key(e, keys.pseudonym) for e in people],
            "subject_key": [privacy.subject_key(e, keys.pseudonym) for e in people],
        }
        whose = {  # kind of owner value -> value -> the person (email) it is of
            "email": {e: e for e in people},
            "serial": dict(serial_owner),
            "identifier": targets,
            "customer_key": dict(zip(values["customer_key"], people, strict=True)),
            "subject_key": dict(zip(values["subject_key"], people, strict=True)),
        }

        found: dict[str, _Found] = {}
        records: dict[str, dict[int, str | None]] = defaultdict(dict)  # stored file -> record -> new text
        for name, c in sorted(load_contracts().items()):
            if name != "ingest_manifest":  # its received names are blanked below, its rows kept
                found[name] = _find(wh, c, values, whose, targets, results, records)
        rewritten = {} if dry_run else _rewrite_files(wh, records)
        summary.files_rewritten = len(rewritten) if not dry_run else len(records)
        for name, f in found.items():
            if f.mentioning is not None and contract(name).zone == "landing" and not dry_run:
                f.erased_rows = _reparsed(wh, contract(name), f.mentioning)
        names = _names_after(wh, targets)
        summary.names_blanked = len(names)

        now = datetime.now(UTC)
        props = {properties.ERASURE_ID: summary.erasure_id}
        staged: list[Staged] = []
        if not dry_run:
            for name, f in found.items():
                if f.owned or f.mentioning is not None:
                    change = functools.partial(_change, wh, name, f, props)
                    staged.append(Staged(name, change(), change))
            if rewritten or names:
                staged.append(wh.stage(Change("ingest_manifest", _manifest_after(wh, rewritten, names, now), "overwrite", props)))
            suppressed = [("email", e) for e in people] + [("serialNumber", s) for s in serial_owner]
            known = set().union(*wh.suppressed().values())
            new = [
                {"kind": kind, "key_hash": h, "suppressed_at": now, "erasure_id": summary.erasure_id}
                for kind, h in ((k, privacy.keyed_hash(v, keys.suppression)) for k, v in suppressed)
                if h not in known
            ]
            if new:
                staged.append(wh.stage(Change("suppression_list", pa.Table.from_pylist(new), "append", props)))
            wh.commit_staged(staged)

        # Every older version of every table goes, files included: time travel cannot bring them back.
        for name in load_contracts():
            if name == "erasure_log":
                continue
            summary.snapshots_expired += max(len(wh.table(name).metadata.snapshots) - 1, 0)
            if not dry_run:
                summary.files_deleted += maintenance.expire_all_older(wh, name)
        if not dry_run:
            summary.files_deleted += maintenance.remove_orphan_copies(wh)

        summary.people = list(results.values())
        if not dry_run:
            log = [
                {
                    "erasure_id": summary.erasure_id,
                    "erased_at": now,
                    "customer_key": p.customer_key,
                    "matched": p.matched,
                    "rows_removed": json.dumps(p.rows_removed, sort_keys=True),
                    "serial_numbers": p.serial_numbers,
                    "serials_kept": p.serials_kept,
                    "files_rewritten": summary.files_rewritten,
                    "files_deleted": summary.files_deleted,
                }
                for p in summary.people
            ]
            wh.commit_staged([wh.stage(Change("erasure_log", pa.Table.from_pylist(log), "append", props))])
    return summary


def _serials(wh: Warehouse, people: list[str], results: dict[str, PersonResult]) -> dict[str, str]:
    """The serial numbers (normal form) to erase -> whose: those on the person's customer records,
    unless someone else's record names them too (counted as kept)."""
    landing = wh.scan("customer_landing").select(
        privacy.polars_normal(pl.col("email")).alias("email"), privacy.polars_normal(pl.col("serialNumber")).alias("serial")
    )
    owners = landing.unique().collect()
    theirs = owners.filter(pl.col("email").is_in(people))
    shared = set(owners.filter(~pl.col("email").is_in(people) & pl.col("serial").is_in(theirs["serial"].to_list()))["serial"])
    for e, s in theirs.iter_rows():
        if s in shared:
            results[e].serials_kept += 1
        else:
            results[e].serial_numbers += 1
    return {s: e for e, s in theirs.iter_rows() if s not in shared}


def _text_columns(c: Contract) -> list[str]:
    return privacy.free_text_columns(c)


_MAY_MENTION = r"@|＠|﹫|\\u|[0-9a-fA-F]{8}-"


def _find(
    wh: Warehouse,
    c: Contract,
    values: dict[str, list[str]],
    whose: dict[str, dict[str, str]],
    targets: dict[str, str],
    results: dict[str, PersonResult],
    records: dict[str, dict[int, str | None]],
) -> _Found:
    """The person's rows of one table and the rows of others that mention them; the raw records
    to change (into ``records``); counts per person (into ``results``)."""
    found = _Found()
    lineage = [n for n in ("_source_file", "_line_number") if n in c.column_names] or [
        n for n in ("source_file", "line_number") if n in c.column_names
    ]
    texts = _text_columns(c)
    if c.owner is None and not texts:
        return found
    frame = wh.scan(c.name)
    owned_rows = None
    if c.owner is not None and values[c.owner_kind]:
        owner = pl.col(c.owner)
        normal = privacy.polars_normal(owner) if c.zone == "landing" or c.owner_kind == "identifier" else owner
        owned_rows = frame.with_columns(_normal=normal).filter(pl.col("_normal").is_in(values[c.owner_kind])).collect()
        if owned_rows.height:
            found.owned[c.owner] = owned_rows[c.owner].unique().to_list()
            for v, n in Counter(owned_rows["_normal"].to_list()).items():
                person = results[whose[c.owner_kind][v]]
                person.rows_removed[c.name] = person.rows_removed.get(c.name, 0) + n
            _blank(records, owned_rows, lineage)
    if texts:
        candidates = frame.filter(pl.any_horizontal(pl.col(t).str.contains(_MAY_MENTION) for t in texts))
        if owned_rows is not None and owned_rows.height:
            candidates = candidates.join(owned_rows.lazy().select(c.owner).unique(), on=c.owner, how="anti")
        candidates = candidates.collect()
        mentions = [
            next((targets[i] for t in texts for i in privacy.identifiers_in(row[t]) if i in targets), None)
            for row in candidates.select(texts).iter_rows(named=True)
        ]
        rows = candidates.filter(pl.Series([m is not None for m in mentions], dtype=pl.Boolean))
        if rows.height:
            for person in (m for m in mentions if m is not None):
                count = results[person].rows_rewritten if c.name != "quarantine" else results[person].rows_removed
                count[c.name] = count.get(c.name, 0) + 1
            if c.name == "quarantine":  # a set-aside line mentioning them goes whole
                found.owned.setdefault("raw", []).extend(v for v in rows["raw"].unique().to_list() if v is not None)
                _blank(records, rows, lineage)
            else:
                found.mentioning = rows
                found.mention_values = {
                    t: [v for v in rows[t].unique().to_list() if v is not None and set(privacy.identifiers_in(v)) & targets.keys()]
                    for t in texts
                }
                found.erased_rows = _erased(rows, texts, targets)
                if c.zone == "landing":
                    _redact(wh, records, rows, targets)
    return found


def _blank(records: dict[str, dict[int, str | None]], rows: pl.DataFrame, lineage: list[str]) -> None:
    if len(lineage) == 2:
        for file, line in rows.select(lineage).iter_rows():
            if file is not None and line is not None:
                records[file][line] = None


def _is_target(targets: dict[str, str]):
    return lambda ids: bool(ids & targets.keys())


def _erased(rows: pl.DataFrame, texts: list[str], targets: dict[str, str]) -> pl.DataFrame:
    """Rows with each text value mentioning a target erased: a JSON value string by string, any
    other value whole."""
    erased = _is_target(targets)

    def clean(value: str | None) -> str | None:
        if value is None or not erased(privacy.identifiers_in(value)):
            return value
        return privacy.redact_json(value, erased) or privacy.ERASED

    return rows.with_columns(pl.col(t).map_elements(clean, return_dtype=pl.String) for t in texts)


def _redact(wh: Warehouse, records: dict[str, dict[int, str | None]], rows: pl.DataFrame, targets: dict[str, str]) -> None:
    """The raw records of landing rows that mention a target, rewritten with the mentions erased."""
    erased = _is_target(targets)
    for file, lines in rows.group_by("_source_file").agg("_line_number").iter_rows():
        text = framing.records_text(framing.decompress(wh.files.read_bytes(file), file)).split(b"\n")
        for n in lines:
            if n not in records[file]:
                records[file][n] = privacy.redact_json(text[n - 1].decode("utf-8").rstrip("\r"), erased)


def _reparsed(wh: Warehouse, c: Contract, rows: pl.DataFrame) -> pl.DataFrame:
    """Landing rows as the parse of their rewritten raw records gives them (lineage kept)."""
    out = []
    for file, group in rows.group_by("_source_file"):
        text = framing.records_text(framing.decompress(wh.files.read_bytes(file[0]), file[0])).split(b"\n")
        wanted = set(group["_line_number"].to_list())
        data = b"\n".join(line if i in wanted else b"" for i, line in enumerate(text, start=1))
        good, _ = parse.parse(c, data, file[0], group["_ingested_at"][0], "forget")
        out.append(pl.from_arrow(c.conform(good)))
    return pl.concat(out) if out else rows


def _rewrite_files(wh: Warehouse, records: dict[str, dict[int, str | None]]) -> dict[str, tuple[str, int, int]]:
    """Rewrite each stored raw file's records, atomically; per file rewritten, its new SHA-256,
    size and the number of records changed."""
    rewritten: dict[str, tuple[str, int, int]] = {}
    for rel, changes in sorted(records.items()):
        try:
            stored = wh.files.read_bytes(rel)
        except FileNotFoundError:
            continue  # already gone: nothing of the person left in it
        plain = framing.decompress(stored, rel)
        new_plain, changed = framing.replace_records(plain, changes)
        if not changed:
            continue
        data = gzip.compress(new_plain, mtime=0) if stored.startswith(b"\x1f\x8b") else new_plain
        wh.files.write(rel, data)
        rewritten[rel] = (hashlib.sha256(data).hexdigest(), len(data), changed)
    return rewritten


def _names_after(wh: Warehouse, targets: dict[str, str]) -> set[str]:
    """Stored paths whose received file name names a target (any case, escaped, URL-encoded)."""
    manifest = wh.scan("ingest_manifest").select("stored_path", "file_name").collect()
    return {
        rel
        for rel, name in manifest.iter_rows()
        if name != ERASED_NAME and privacy.identifiers_in(name) & targets.keys()
    }


def _change(wh: Warehouse, name: str, f: _Found, props: dict[str, str]) -> Transaction:
    """A transaction deleting the person's rows of table ``name`` and replacing the rows that
    mention them by their erased versions (copy-on-write). One delete per column: pyiceberg keeps
    a row whose column of *another* branch of an ``Or`` is null, so a filter over two columns would
    keep rows it matches."""
    filters: list[BooleanExpression] = [In(column, vals) for column, vals in f.owned.items() if vals]
    # the rows that mention them, by the values that do: every row holding such a value mentions
    # them (and is among those replaced), while a value of another column of such a row (a phone,
    # a name) may be anyone's
    filters += [In(t, vals) for t, vals in f.mention_values.items() if vals]
    tx = wh.table(name).transaction()
    for where in filters:
        tx.delete(where, snapshot_properties=props)
    if f.erased_rows is not None and f.erased_rows.height:
        rows = contract(name).conform(f.erased_rows.select(contract(name).column_names).to_arrow())
        tx.append(rows, snapshot_properties=props)
    return tx


def _manifest_after(wh: Warehouse, rewritten: dict[str, tuple[str, int, int]], names: set[str], now: datetime) -> pa.Table:
    manifest = wh.scan("ingest_manifest").collect()
    update = pl.DataFrame(
        [{"stored_path": rel, "_sha": sha, "_size": size, "_erased": n} for rel, (sha, size, n) in rewritten.items()],
        schema={"stored_path": pl.String, "_sha": pl.String, "_size": pl.Int64, "_erased": pl.Int64},
    )
    hit = ~pl.col("_sha").is_null()
    merged = manifest.join(update, on="stored_path", how="left").with_columns(
        stored_sha256=pl.when(hit).then("_sha").otherwise("stored_sha256"),
        stored_size=pl.when(hit).then("_size").otherwise("stored_size"),
        rows_erased=pl.when(hit).then(pl.col("rows_erased").fill_null(0) + pl.col("_erased")).otherwise("rows_erased"),
        rewritten_at=pl.when(hit).then(pl.lit(now)).otherwise("rewritten_at"),
        file_name=pl.when(pl.col("stored_path").is_in(sorted(names))).then(pl.lit(ERASED_NAME)).otherwise("file_name"),
    )
    return merged.select(contract("ingest_manifest").column_names).to_arrow()
