"""The right to erasure: ``forget`` removes a person from every table, every raw file and every
older version of the warehouse, and keeps them from coming back.

A person is named by email. Their serial numbers are those of their customer records. Forgetting:

1. blanks their lines in every raw landing file that holds one (write a new file, then replace;
   a blank line keeps the line numbers of everyone else's records, which the landing tables cite);
2. in one all-or-nothing commit: deletes their rows from every table (landing, trusted, curated,
   quarantine, consent history), records the stored files' new hashes in the manifest, adds the
   keyed hashes of their email and serial numbers to ``suppression_list`` and logs the erasure in
   ``erasure_log`` (keyed hash, rows removed per table, files rewritten: never the email);
3. expires every older snapshot of every table and deletes every file no current snapshot uses,
   orphans of failed writes included.

The raw files are rewritten first: if the commit then fails, forgetting again finds the rows in the
tables and finishes (blanking a blank line changes nothing). A serial number also registered to
someone else is not erased (their readings may be that other person's); it is reported.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import narwhals as nw
import polars as pl
import pyarrow as pa
from pyiceberg.expressions import In
from pyiceberg.table import Transaction

from stedi import privacy
from stedi.contracts import contract, load_contracts
from stedi.errors import StediError
from stedi.ingest import blank_records
from stedi.warehouse import Change, Staged, Warehouse

# Deliberately plain: one @, a dot in the domain, no spaces, quotes, brackets or separators. Not a
# validator of RFC 5322: a guard against passing a name, a list or a quoted CSV field as an email.
_NOT_IN_EMAIL = r"@\s\"<>(),;:\[\]"  # an apostrophe is fine: o'neil@example.com
_EMAIL = re.compile(rf"[^{_NOT_IN_EMAIL}]+@[^{_NOT_IN_EMAIL}]+\.[^{_NOT_IN_EMAIL}]+")

# Where a person appears, by table: the column, and whether it holds an email (else a serial number,
# else a customer_key).
_BY_EMAIL = {"customer_landing": "email", "accelerometer_landing": "user", "customer_trusted": "email", "accelerometer_trusted": "user"}
_BY_SERIAL = {"step_trainer_landing": "serialNumber", "step_trainer_trusted": "serialNumber"}
_BY_KEY = {"customers_curated": "customer_key", "machine_learning_curated": "customer_key", "customer_consent_history": "customer_key"}


class ErasureError(StediError):
    """An erasure request that cannot be carried out as given."""


@dataclass
class PersonResult:
    customer_key: str
    rows_removed: dict[str, int] = field(default_factory=dict)
    serial_numbers: int = 0
    serials_kept: int = 0

    @property
    def matched(self) -> bool:
        return any(self.rows_removed.values())


@dataclass
class ForgetSummary:
    erasure_id: str
    people: list[PersonResult] = field(default_factory=list)
    files_rewritten: int = 0
    files_deleted: int = 0
    snapshots_expired: int = 0

    def rows_removed(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for p in self.people:
            total.update(p.rows_removed)
        return dict(total)


def read_emails(lines: Iterable[str]) -> list[str]:
    """Emails from a ``--from-file`` (one a line; blank lines and ``#`` comments ignored)."""
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def normalised_emails(emails: Iterable[str]) -> list[str]:
    """The emails, normalised and deduplicated; a malformed one is an error, named."""
    out: dict[str, None] = {}
    for raw in emails:
        email = raw.strip().lower()
        if not _EMAIL.fullmatch(email):
            raise ErasureError(f"not an email address: {raw!r}")
        out[email] = None
    if not out:
        raise ErasureError("no email given: pass --email or --from-file")
    return list(out)


def forget(wh: Warehouse, key: bytes, emails: Iterable[str]) -> ForgetSummary:
    """Erase the people with these emails from the warehouse; see the module docstring."""
    people = normalised_emails(emails)
    keys = {e: privacy.customer_key(e, key) for e in people}
    summary = ForgetSummary(erasure_id=f"forget-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}")
    with wh.lock("stedi-etl forget"):
        # Whose serial numbers: every customer record of the person; kept if anyone else has it too.
        customers = nw.from_native(wh.scan("customer_landing")).select(
            privacy.normalise_email("email"), nw.col("serialNumber").alias("serial")
        )
        owners = customers.unique().to_native().collect()
        theirs = owners.filter(pl.col("email").is_in(people))
        shared = set(owners.filter(~pl.col("email").is_in(people) & pl.col("serial").is_in(theirs["serial"].to_list()))["serial"])
        serial_owner = {s: e for e, s in theirs.iter_rows() if s not in shared}
        results = {e: PersonResult(keys[e]) for e in people}
        for e, s in theirs.iter_rows():
            if s in shared:
                results[e].serials_kept += 1
            else:
                results[e].serial_numbers += 1

        owner_of = _owner_lookup(people, keys, serial_owner)
        deletes, lines = _find_rows(wh, owner_of, results)
        rewritten = _blank_lines(wh, lines)
        summary.files_rewritten = len(rewritten)

        now = datetime.now(UTC)
        props = {"stedi.erasure-id": summary.erasure_id}
        staged: list[Staged] = []
        for name, (column, values) in deletes.items():
            delete = functools.partial(_delete, wh, name, In(column, values), props)
            staged.append(Staged(name, delete(), delete))
        if rewritten:
            staged.append(wh.stage(Change("ingest_manifest", _manifest_after(wh, rewritten, now), "overwrite", props)))
        suppressed = [("email", keys[e]) for e in people] + [("serialNumber", privacy.keyed_hash(s, key)) for s in serial_owner]
        known = set().union(*wh.suppressed().values())
        new = [
            {"kind": kind, "key_hash": h, "suppressed_at": now, "erasure_id": summary.erasure_id}
            for kind, h in suppressed
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
            summary.files_deleted += wh.expire_and_remove_unreferenced(name)
        summary.files_deleted += wh.remove_orphan_copies()

        summary.people = list(results.values())
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


def _delete(wh: Warehouse, name: str, where: In, props: dict[str, str]) -> Transaction:
    """A transaction deleting the rows of table ``name`` that ``where`` matches (copy-on-write)."""
    tx = wh.table(name).transaction()
    tx.delete(where, snapshot_properties=props)
    return tx


def _owner_lookup(people: list[str], keys: dict[str, str], serial_owner: dict[str, str]) -> dict[str, dict[str, str]]:
    """For each kind of identifying value (email, serial, key): value -> the person's email."""
    return {
        "email": {e: e for e in people},
        "serial": dict(serial_owner),
        "key": {keys[e]: e for e in people},
    }


def _find_rows(
    wh: Warehouse, owner_of: dict[str, dict[str, str]], results: dict[str, PersonResult]
) -> tuple[dict[str, tuple[str, list[str]]], dict[str, set[int]]]:
    """The rows to delete, as (column, exact stored values) per table, counted per person into
    ``results``; and the raw lines to blank, as line numbers per stored file."""
    deletes: dict[str, tuple[str, list[str]]] = {}
    lines: dict[str, set[int]] = defaultdict(set)

    def match(name: str, column: str, kind: str) -> None:
        lookup = owner_of[kind]
        if not lookup:
            return
        normal = privacy.normalise_email(column) if kind == "email" else nw.col(column)
        lineage = [c for c in ("_source_file", "_line_number") if c in contract(name).column_names]
        rows = nw.from_native(wh.scan(name)).select(nw.col(column).alias("stored"), normal.alias("normal"), *lineage)
        found = rows.to_native().filter(pl.col("normal").is_in(list(lookup))).collect()
        if not found.height:
            return
        deletes[name] = (column, found["stored"].unique().to_list())
        for normal_value, n in Counter(found["normal"].to_list()).items():
            person = results[lookup[normal_value]]
            person.rows_removed[name] = person.rows_removed.get(name, 0) + n
        if lineage:
            for file, line in found.select(lineage).iter_rows():
                lines[file].add(line)

    for name, column in _BY_EMAIL.items():
        match(name, column, "email")
    for name, column in _BY_SERIAL.items():
        match(name, column, "serial")
    for name, column in _BY_KEY.items():
        match(name, column, "key")

    # quarantine: any set-aside line or row that mentions the person (raw text, any case)
    needles = {v.lower(): owner for kind in ("email", "serial") for v, owner in owner_of[kind].items()}
    if needles:
        raw = pl.col("raw").str.to_lowercase()
        mentions = (
            wh.scan("quarantine")
            .filter(raw.str.contains_any(list(needles)))
            .select("raw", "source_file", "line_number")
            .collect()
        )
        if mentions.height:
            deletes["quarantine"] = ("raw", mentions["raw"].unique().to_list())
            for text in mentions["raw"].to_list():
                lowered = text.lower()
                owner = next(o for n, o in needles.items() if n in lowered)
                results[owner].rows_removed["quarantine"] = results[owner].rows_removed.get("quarantine", 0) + 1
            for file, line in mentions.select("source_file", "line_number").iter_rows():
                if file is not None and line is not None:
                    lines[file].add(line)
    return deletes, dict(lines)


def _blank_lines(wh: Warehouse, lines: dict[str, set[int]]) -> dict[str, tuple[str, int, int]]:
    """Blank the given lines of each stored raw file, atomically; returns, per file rewritten, its
    new SHA-256, size and the number of lines blanked."""
    rewritten: dict[str, tuple[str, int, int]] = {}
    for rel, numbers in sorted(lines.items()):
        try:
            data, blanked = blank_records(wh.files.read_bytes(rel), numbers)
        except FileNotFoundError:
            continue  # already gone: nothing of the person left in it
        wh.files.write(rel, data)
        rewritten[rel] = (hashlib.sha256(data).hexdigest(), len(data), blanked)
    return rewritten


def _manifest_after(wh: Warehouse, rewritten: dict[str, tuple[str, int, int]], now: datetime) -> pa.Table:
    manifest = wh.scan("ingest_manifest").collect()
    update = pl.DataFrame(
        [
            {"stored_path": rel, "_sha": sha, "_size": size, "_erased": n}
            for rel, (sha, size, n) in rewritten.items()
        ],
        schema={"stored_path": pl.String, "_sha": pl.String, "_size": pl.Int64, "_erased": pl.Int64},
    )
    hit = pl.col("_sha").is_not_null()
    merged = manifest.join(update, on="stored_path", how="left").with_columns(
        stored_sha256=pl.when(hit).then("_sha").otherwise("stored_sha256"),
        stored_size=pl.when(hit).then("_size").otherwise("stored_size"),
        rows_erased=pl.when(hit).then(pl.col("rows_erased").fill_null(0) + pl.col("_erased")).otherwise("rows_erased"),
        rewritten_at=pl.when(hit).then(pl.lit(now)).otherwise("rewritten_at"),
    )
    return merged.select(contract("ingest_manifest").column_names).to_arrow()

