"""Parsing a raw landing file against its landing contract: one typed row per good record, one
quarantine row per record set aside, with its reason.

A file is newline-delimited JSON, or one JSON array of records (its elements are its records,
numbered from 1), either possibly gzip-compressed. The same record means the same thing whatever
its framing: an array's elements are parsed from their own text, exactly as lines are.

* A clean file is read in one pass by Arrow's JSON reader, which is strict about types; a file it
  rejects for any reason is re-read record by record in DuckDB (vectorised), which gives each bad
  record its reason.
* Not JSON: bytes that are not UTF-8, ``NaN``/``Infinity`` (which JSON does not have), text that
  does not parse, a value that is not an object, an object naming one field twice (the reader cannot
  tell which one the sender meant).
* A number is read exactly when that is lossless: ``1.655564001e12``, ``1655564001000.0`` or
  ``"1655564001000"`` for a BIGINT are 1655564001000; ``1.5`` or ``"12.5"`` are set aside.
* A consent date field (``stedi.consents`` in the contract) holding a value that plainly means no
  consent -- ``""``, ``"null"``, ``false``, ``0`` -- is read as NULL: no consent.
* Each quarantined record says whose it is when that can be read (``owner``: the normal form of the
  contract's owner field, or of the one email it mentions) and, for a customer record, the latest
  time any of its timestamps says (``record_time``): a record set aside may be a customer's latest
  word, so the jobs keep that customer out (:func:`stedi.privacy.mark_certain`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from stedi import privacy, resources
from stedi.contracts import EXTRA, Contract, sql_literal
from stedi.errors import SourceError, first_line
from stedi.framing import records_text

#: Quarantine columns a parse fills (the rest -- source file, batch, time -- are stamped after).
BAD_SCHEMA = pa.schema(
    [
        ("target_table", pa.large_string()),
        ("reason", pa.large_string()),
        ("raw", pa.large_string()),
        ("line_number", pa.int64()),
        ("owner", pa.large_string()),
        ("record_time", pa.int64()),
    ]
)

#: Values of a consent date field that plainly mean "no consent" (besides a missing field or null).
NO_CONSENT = ('""', '"null"', "false", "0")

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
_INTEGERS = ("BIGINT", "INT")

_BIG_FILE = 128 * 1024 * 1024


class _NotJSON(ValueError):
    pass


def parse(c: Contract, data: bytes, rel: str, ingested_at: datetime, batch_id: str) -> tuple[pa.Table, pa.Table]:
    """Parse one raw file (``data``, stored at ``rel``) against landing contract ``c``: the landed
    rows (the contract's columns, lineage included) and the quarantined records. Blank records
    (a blank line, a ``null`` element of an array) are skipped and keep their numbers."""
    text = records_text(data)
    good = _parse_clean(c, text)
    if good is None:
        lines, not_utf8 = _split_lines(text)
        good, bad = _parse_lines(c, lines)
        if not_utf8.num_rows:
            not_utf8 = not_utf8.append_column("target_table", pa.repeat(pa.scalar(c.name, pa.large_string()), not_utf8.num_rows))
            bad = pa.concat_tables([bad, _with_attribution(c, not_utf8)]).sort_by("line_number")
    else:
        line_numbers = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), good.num_rows))  # 1..n
        good = good.append_column("_line_number", line_numbers)
        good = good.append_column(EXTRA, pa.nulls(good.num_rows, pa.large_string()))
        bad = BAD_SCHEMA.empty_table()
    stamp = pa.scalar(ingested_at, pa.timestamp("us", tz="UTC"))
    good = good.append_column("_source_file", pa.repeat(pa.scalar(rel, pa.large_string()), good.num_rows))
    good = good.append_column("_ingested_at", pa.repeat(stamp, good.num_rows))
    bad = bad.append_column("source_file", pa.repeat(pa.scalar(rel, pa.large_string()), bad.num_rows))
    bad = bad.append_column("batch_id", pa.repeat(pa.scalar(batch_id, pa.large_string()), bad.num_rows))
    bad = bad.append_column("quarantined_at", pa.repeat(stamp, bad.num_rows))
    return good, bad


def _parse_clean(c: Contract, data: bytes) -> pa.Table | None:
    """The whole file through Arrow's JSON reader, or ``None`` if any record needs a closer look."""
    columns = c.raw_columns
    # Dates arrive as strings: read them as such and cast them strictly below.
    read_as = pa.schema([pa.field(col.name, pa.string() if col.arrow_type == pa.date32() else col.arrow_type) for col in columns])
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    try:
        table = pajson.read_json(
            pa.BufferReader(data),
            # Files are parsed one per core already; only a big file is worth Arrow's own threads too.
            read_options=pajson.ReadOptions(use_threads=len(data) > _BIG_FILE),
            # a field beyond the contract sends the file to the careful path, which keeps it;
            # a field named twice makes the reader fail, which sends it there too
            parse_options=pajson.ParseOptions(explicit_schema=read_as, unexpected_field_behavior="error"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != lines:  # blank lines were skipped: line numbers need the careful path
        return None
    consents = set(c.consents)
    for i, col in enumerate(columns):
        if col.required and table[col.name].null_count:
            return None
        # Arrow's reader takes NaN and Infinity, which are not JSON, for a double (and fails on them
        # anywhere else): a value that is not finite comes from one, or from a number just past a
        # double's range; the careful path judges both. (Looking for the tokens in the bytes instead
        # held the GIL over every byte of every file.)
        if pa.types.is_floating(read_as.field(i).type) and pc.any(pc.invert(pc.is_finite(table[col.name]))).as_py():
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
        if col.name in consents:  # 0 means no consent
            values = table[col.name]
            table = table.set_column(i, col.name, pc.if_else(pc.equal(values, 0), pa.scalar(None, values.type), values))
    return table


# -- the careful path ----------------------------------------------------------------------------


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
    if kind in _INTEGERS:
        return f"coalesce(regexp_full_match(trim({text}), '[+-]?[0-9]+'), false)"
    return f"coalesce(regexp_full_match(trim({text}), '[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?') AND isfinite(TRY_CAST({text} AS DOUBLE)), false)"


def _no_consent(v: str) -> str:
    """SQL: whether JSON value ``v`` plainly means no consent (:data:`NO_CONSENT`); never NULL (a
    NULL here would silently skip every check of the value)."""
    return (
        f"coalesce((json_type({v}) = 'VARCHAR' AND lower(trim(json_extract_string({v}, '$'))) IN ('', 'null')) "
        f"OR (json_type({v}) = 'BOOLEAN' AND json_extract_string({v}, '$') = 'false') "
        f"OR (json_type({v}) IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'VARCHAR') AND TRY_CAST(trim(json_extract_string({v}, '$')) AS DOUBLE) = 0), false)"
    )


def _parse_lines(c: Contract, lines: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Record by record in DuckDB (vectorised): each bad one is set aside with the first reason found.
    Records DuckDB's JSON reader would read too loosely (NaN and Infinity, numbers whose exactness
    only their text tells) are first settled in Python (:func:`_settle`)."""
    import duckdb

    columns = c.raw_columns
    consents = set(c.consents)
    json_paths = ", ".join(sql_literal(f'$."{col.name}"') for col in columns)
    checks, values, suspect = [], [], []
    for i, col in enumerate(columns, start=1):
        v = f"vs[{i}]"
        kind = col.sql_type.upper()
        accepted = ", ".join(sql_literal(t) for t in _ACCEPTED[kind])
        no_value = f"({_no_consent(v)})" if col.name in consents else "false"
        if col.required:
            checks.append(f"WHEN coalesce(json_type({v}), 'NULL') = 'NULL' THEN 'missing required field \"{col.name}\"'")
        cast = f"TRY_CAST(json_extract_string({v}, '$') AS {_DUCK_TYPES[kind]})"
        text = f"json_extract_string({v}, '$')"
        if kind in ("BIGINT", "INT", "DOUBLE"):  # a number sent as a string: taken only if exact
            checks.append(
                f"WHEN json_type({v}) = 'VARCHAR' AND NOT {no_value} AND NOT {_lossless_number(kind, text)} "
                f"THEN 'field \"{col.name}\" is a string that is not exactly a {kind.lower()}: ' || {text}"
            )
        checks.append(
            f"WHEN json_type({v}) NOT IN ('NULL', {accepted}) AND NOT {no_value} "
            f"THEN 'field \"{col.name}\" is ' || lower(json_type({v})) || ', expected {kind.lower()}'"
        )
        checks.append(
            f"WHEN json_type({v}) <> 'NULL' AND NOT {no_value} AND {cast} IS NULL "
            f"THEN 'field \"{col.name}\" does not fit {kind.lower()}: ' || {text}"
        )
        values.append(f'CASE WHEN {no_value} THEN NULL ELSE {cast} END AS "{col.name}"')
        if kind in _INTEGERS:  # exactness of a double, or of a string in another notation, needs the text
            suspect.append(f"json_type({v}) = 'DOUBLE'")
            suspect.append(f"(json_type({v}) = 'VARCHAR' AND regexp_matches({text}, '[.eE]'))")
    target = sql_literal(c.name)
    keys = "json_keys(line)"
    duplicate = f"list_filter({keys}, lambda k: len(list_filter({keys}, lambda j: j = k)) > 1)"

    con = resources.connect()
    try:
        con.register("raw_lines", lines)
        con.execute("""
            CREATE TEMP TABLE lines AS
            SELECT line_number, rtrim(line, chr(13)) AS raw, rtrim(line, chr(13)) AS line, NULL::VARCHAR AS settled
            FROM raw_lines WHERE trim(line) <> ''
        """)
        suspects = con.sql(f"""
            SELECT line_number, line FROM (
                SELECT line_number, line,
                       CASE WHEN json_valid(line) THEN CASE WHEN json_type(line) = 'OBJECT' THEN json_extract(line, [{json_paths}]) END END AS vs
                FROM lines
                WHERE regexp_matches(line, {_LENIENT}) OR CASE WHEN json_valid(line) THEN json_type(line) = 'OBJECT' ELSE false END
            ) WHERE regexp_matches(line, {_LENIENT}) OR {" OR ".join(suspect) or "false"}
        """).fetchall()
        if suspects:
            settled = [(n, *_settle(c, text)) for n, text in suspects]
            con.register("settled_lines", pa.table({k: [s[i] for s in settled] for i, k in enumerate(("n", "text", "why"))}))
            con.execute("UPDATE lines SET line = s.text, settled = s.why FROM settled_lines s WHERE lines.line_number = s.n")
        con.execute("ALTER TABLE lines ADD COLUMN ok BOOLEAN")
        con.execute("UPDATE lines SET ok = settled IS NULL AND json_valid(line)")
        con.execute(f"""
            CREATE TEMP TABLE parsed AS
            WITH objects AS (
                SELECT *, json_extract(line, [{json_paths}]) AS vs FROM lines
                WHERE CASE WHEN ok THEN json_type(line) = 'OBJECT' ELSE false END
            )
            SELECT line_number, raw, CASE
                     WHEN len({duplicate}) > 0 THEN 'field "' || {duplicate}[1] || '" is given twice'
                     {" ".join(checks)} END AS reason,
                   {", ".join(values)},
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
                   CASE WHEN settled IS NOT NULL THEN settled WHEN NOT ok THEN 'not valid JSON' ELSE 'not a JSON object' END AS reason,
                   raw, line_number
            FROM lines WHERE CASE WHEN ok THEN json_type(line) <> 'OBJECT' ELSE true END
            UNION ALL
            SELECT {target}, reason, raw, line_number FROM parsed WHERE reason IS NOT NULL
            ORDER BY line_number
        """).to_arrow_table()
    except duckdb.Error as err:
        raise SourceError(f"cannot parse the lines of a {c.name} file: {first_line(err)}") from err
    finally:
        con.close()
    return good, _with_attribution(c, bad)


#: Lines DuckDB's JSON reader accepts though they are not JSON, or may be: NaN and Infinity (any
#: case, ``Inf`` too) and trailing commas (``{"x": 1,}``). Each is read strictly by :func:`_settle`.
_LENIENT = "'(?i)nan|inf|,\\s*[]}]'"


def _settle(c: Contract, line: str) -> tuple[str, str | None]:
    """A record DuckDB would read too loosely, read strictly: (the text DuckDB should parse, or why
    it is not JSON). NaN and Infinity are not JSON; a BIGINT field holding a number in another
    notation that is exactly an integer is rewritten as that integer (as a string if it was one)."""
    try:
        pairs = json.loads(line, parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_Pairs)
    except _NotJSON:
        return line, "not valid JSON: NaN and Infinity are not JSON values"
    except ValueError:
        return line, "not valid JSON"  # strictly (DuckDB would take a trailing comma, or Inf)
    if not isinstance(pairs, _Pairs):
        return line, None
    integers = {col.name for col in c.raw_columns if col.sql_type.upper() in _INTEGERS}
    out = []
    for key, value in pairs:
        if key in integers:
            value = _exact_integer(value)
        out.append(f"{json.dumps(key, ensure_ascii=False)}: {_dump(value)}")
    return "{" + ", ".join(out) + "}", None


class _Pairs(list):
    """A JSON object as its (key, value) pairs, duplicates kept."""


def _reject_constant(name: str) -> Any:
    raise _NotJSON(name)


def _exact_integer(value: Any) -> Any:
    """An integer given as a decimal or exponent number, or as such a string, as the integer when
    it is exactly one; anything else unchanged (the parser then says what is wrong)."""
    text = value if isinstance(value, str) else None
    number = value
    if text is not None:
        try:
            number = Decimal(text.strip())
        except InvalidOperation:
            return value
    if isinstance(number, Decimal) and number.is_finite() and number == number.to_integral_value():
        integer = int(number)
        return str(integer) if text is not None else integer
    return value


def _dump(value: Any) -> str:
    """A JSON value parsed by :func:`_settle` as JSON text (numbers as they were written)."""
    if isinstance(value, _Pairs):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_dump(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


# -- whose record a record set aside is -------------------------------------------------------------


def _with_attribution(c: Contract, bad: pa.Table) -> pa.Table:
    """Quarantine rows with ``owner`` and ``record_time`` read from each raw record, as far as it
    can be read: owner from the contract's owner field, else the one email the record mentions;
    record time (customer records) the latest value of any BIGINT field that reads as a number."""
    owners, times = [], []
    times_of = [col.name for col in c.raw_columns if col.sql_type.upper() == "BIGINT"] if c.owner == "email" else []
    for raw in bad["raw"].to_pylist():
        owner, at = attribute(raw, c.owner, times_of)
        owners.append(owner)
        times.append(at)
    bad = bad.append_column("owner", pa.array(owners, pa.large_string()))
    bad = bad.append_column("record_time", pa.array(times, pa.int64()))
    return bad.select(BAD_SCHEMA.names).cast(BAD_SCHEMA)


def attribute(raw: str | None, owner_field: str | None, time_fields: list[str]) -> tuple[str | None, int | None]:
    """(owner, record time) of a raw record set aside; each None when it cannot be read with
    certainty: an owner field given twice with two values names nobody for sure (the jobs then
    take every email the record mentions: :func:`stedi.evaluation.derived_input`)."""
    if raw is None:
        return None, None
    try:
        pairs = json.loads(raw, parse_float=Decimal, parse_constant=Decimal, object_pairs_hook=_Pairs)
    except ValueError:
        pairs = None
    obj = pairs if isinstance(pairs, _Pairs) else None
    owner = None
    if obj is not None:
        given = {privacy.normal_form(v) for k, v in obj if k == owner_field and isinstance(v, str)}
        owner = next(iter(given)) if len(given) == 1 else None
    elif owner_field is not None:
        found = privacy.identifiers_in(raw, kinds=("email",) if owner_field in ("email", "user") else ("serial",))
        owner = next(iter(found)) if len(found) == 1 else None
    times = []
    for name in time_fields:
        if obj is not None:
            values = [v for k, v in obj if k == name]
        else:  # not JSON: the field's value as written, if it can be found
            values = re.findall(rf'"{re.escape(name)}"\s*:\s*"?([-+0-9.eE]+)', raw)
        for value in values:
            try:
                number = Decimal(str(value).strip()) if value is not None and not isinstance(value, bool) else None
            except InvalidOperation:
                number = None
            if number is not None and number.is_finite():
                times.append(int(number.to_integral_value(rounding="ROUND_CEILING")))
    return owner, max(times) if times else None
