"""The privacy rules, written once: who a person is, who consented and since when, whose consent
cannot be read with certainty, and the pseudonyms that stand for a person where they must not be
named.

Every job, the pseudonym map, ``forget``, the suppression of erased people at ingest and the audit
call these; none retypes a consent filter or a normalisation.

**Who a person is.** An email or a serial number is compared in its *normal form*
(:func:`normal_form`): Unicode NFKC (so ``ＡＮＮ@…`` and ``ann@…``, or a letter and its decomposed
spelling, are one), with control characters, format characters (zero-width spaces and joiners,
bidi marks, soft hyphens, byte order marks) and lone surrogates removed wherever they are, lower-cased
by Unicode's full lower-case mapping (not case folding: ``ß`` stays ``ß``), and trimmed of the
Unicode white space around it; repeated until nothing changes, so that the normal form of a
normal form is itself. The Python function is the definition, under the Unicode tables of the
Python that runs stedi; the Polars and Spark expressions apply a vectorised rule to printable ASCII
(which gives the same result) and the Python function to every other value, so all three agree on
every input (``tests/test_normal_form.py``).
"""

from __future__ import annotations

import functools
import hmac
import json
import re
import unicodedata
import urllib.parse
from typing import TYPE_CHECKING, Any

import narwhals as nw

if TYPE_CHECKING:
    import polars as pl

# -- who a person is -------------------------------------------------------------------------------

#: Unicode categories removed from an identifier wherever they are: controls, format characters
#: (invisible: U+200B zero-width space, U+200D joiner, U+00AD soft hyphen, U+FEFF, bidi marks) and
#: lone surrogates (which a JSON escape can produce but no text holds).
REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})

#: Printable ASCII: for such a value the normal form is trimmed of spaces and lower-cased, which
#: every engine computes alike without Unicode tables.
_PRINTABLE_ASCII = re.compile(r"[ -~]*")
#: The same as a regular expression for Polars (Rust) and Spark (Java): ``\A``/``\z``, because in
#: Java's ``$`` also matches before a final line break ("\n" would pass for printable).
PRINTABLE_ASCII_PATTERN = r"\A[ -~]*\z"
#: A character outside printable ASCII, for Polars: searching for one is faster than matching the
#: whole value (measured: 8 M emails, 0.41 s against 0.59 s).
_NOT_PRINTABLE_ASCII = r"[^ -~]"


def normal_form(value: str | None) -> str | None:
    """The normal form of an identifier (an email or a serial number); see the module docstring.

    >>> normal_form("  Ann.Lee@Example.COM ")
    'ann.lee@example.com'
    >>> normal_form("ａｎｎ\\u200b@example.com")
    'ann@example.com'
    """
    if value is None:
        return None
    if _PRINTABLE_ASCII.fullmatch(value):
        return value.strip(" ").lower()
    text = value
    for _ in range(8):  # two passes reach the fixed point for every string seen; the bound is a guard
        new = unicodedata.normalize("NFKC", text)
        new = "".join(ch for ch in new if unicodedata.category(ch) not in REMOVED_CATEGORIES)
        new = unicodedata.normalize("NFKC", new.lower()).strip()
        if new == text:
            break
        text = new
    return text


def _odd_normal_series(values: pl.Series) -> pl.Series:
    """:func:`normal_form` of a Polars series whose printable-ASCII values are already null: the
    Python function once per distinct remaining value (usually none)."""
    import polars as pl

    distinct = values.drop_nulls().unique()
    if distinct.is_empty():
        return values
    mapped = pl.Series([normal_form(v) for v in distinct.to_list()], dtype=pl.String)
    return values.replace_strict(distinct, mapped, default=None, return_dtype=pl.String)


def polars_normal(expr: pl.Expr) -> pl.Expr:
    """:func:`normal_form` as a Polars expression (streams: element-wise). Printable ASCII, nearly
    every value, is trimmed and lower-cased natively, in parallel; only the other values reach the
    Python function."""
    import polars as pl

    odd = expr.str.contains(_NOT_PRINTABLE_ASCII).fill_null(False)
    slow = pl.when(odd).then(expr).map_batches(_odd_normal_series, return_dtype=pl.String, is_elementwise=True)
    return pl.when(odd).then(slow).otherwise(expr.str.strip_chars(" ").str.to_lowercase())


def normalise(frame: nw.LazyFrame, *columns: str) -> nw.LazyFrame:
    """``frame`` with each of ``columns`` replaced by its normal form, on the frame's own engine
    (Polars or PySpark)."""
    native = frame.to_native()
    if frame.implementation.is_polars():
        return nw.from_native(native.with_columns(polars_normal(_pl_col(c)).alias(c) for c in columns))
    if frame.implementation.is_pyspark() or frame.implementation.is_pyspark_connect():
        for c in columns:
            native = _spark_normalise(native, c)
        return nw.from_native(native)
    raise NotImplementedError(f"no normal form for a {frame.implementation} frame")


def _pl_col(name: str) -> pl.Expr:
    import polars as pl

    return pl.col(name)


def _spark_normalise(df: Any, column: str) -> Any:
    """:func:`normal_form` of a Spark column: printable ASCII trimmed of spaces and lower-cased in
    Spark, every other distinct value through the Python function (a UDF over the few distinct
    values, joined back), so the executors run the same rule as everything else."""
    import sys

    import pyspark.cloudpickle
    from pyspark.sql import functions as F

    # the executors get the function itself (and the few constants it reads), not a reference to
    # stedi, which they need not have installed
    pyspark.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    col = F.col(column)
    printable = col.rlike(PRINTABLE_ASCII_PATTERN)
    odd = df.where(~printable).select(column).distinct()
    mapped = odd.withColumn("_stedi_normal", F.udf(normal_form, "string", useArrow=False)(col))
    joined = df.join(F.broadcast(mapped), on=column, how="left")
    normal = F.when(printable, F.lower(F.trim(col))).otherwise(F.col("_stedi_normal"))
    return joined.withColumn(column, normal).drop("_stedi_normal")


def coarsen_to_day(frame: nw.LazyFrame, **days: str) -> nw.LazyFrame:
    """``frame`` with columns ``name=source``: each epoch-ms ``source`` as the day (UTC) it falls on.
    A curated table keeps no customer-level instant to the millisecond: such an instant is unique
    enough to join back to the person's record elsewhere; a day is shared by many."""
    native = frame.to_native()
    if frame.implementation.is_polars():
        import polars as pl

        return nw.from_native(native.with_columns(pl.col(src).cast(pl.Datetime("ms", "UTC")).dt.date().alias(n) for n, src in days.items()))
    from pyspark.sql import functions as F

    for n, src in days.items():
        native = native.withColumn(n, F.date_from_unix_date(F.floor(F.col(src) / 86_400_000).cast("int")))
    return nw.from_native(native)


# -- what identifies a person ----------------------------------------------------------------------

def reason_kind(reason: str) -> str:
    """What a quarantine reason says without what it quotes from the data: the value that broke a
    rule (after ": ") and any quoted field name that is no column of a contract (a received field
    may be named after a person: ``field "ann@example.com" is given twice``), as summaries and the
    report show it. ``field "birthDay" does not fit date`` stays as it is."""
    known = _contract_columns()
    return re.sub(r'"([^"]*)"', lambda m: m.group(0) if m.group(1) in known else '"…"', reason.split(": ")[0])


@functools.cache
def _contract_columns() -> frozenset[str]:
    from stedi.contracts import load_contracts

    return frozenset(col for c in load_contracts().values() for col in c.column_names)


def direct_identifiers() -> frozenset[str]:
    """Columns that identify a person directly: those the contracts comment as a ``direct
    identifier`` (a name, an email, a phone, a birthday). Curated tables carry none of them."""
    from stedi.contracts import load_contracts

    return frozenset(col.name for c in load_contracts().values() for col in c.columns if "direct identifier" in (col.comment or ""))


def free_text_columns(c: Any) -> list[str]:
    """The free-text columns of a table's contract (TBLPROPERTIES ``stedi.free_text``, strings)."""
    return [col.name for col in c.columns if col.sql_type == "STRING" and col.name in c.free_text]


# -- consent -------------------------------------------------------------------------------------

CONSENT = "shareWithResearchAsOfDate"

#: The order of a customer's records, oldest first: ``lastUpdateDate``, then ties go by arrival --
#: the stored copy's name (``landing/<source>/<batch>-<file>.json``: the ingest batch, then the file
#: in the order of the names it was delivered under) and the line. Never by content.
RECORD_ORDER = ("lastUpdateDate", "_source_file", "_line_number")


@functools.cache
def consent_window() -> tuple[int, int]:
    """The epoch-ms window a research consent date must fall in to be consent: the bounds of the
    ``consent_in_ms`` rule of ``catalog/customer_trusted.sql`` (2000-01-01 .. 2100-01-01)."""
    from stedi.contracts import contract
    from stedi.errors import ContractError

    rule = next(r for r in contract("customer_trusted").rules if r.name == "consent_in_ms")
    if rule.between is None or rule.between[0] != CONSENT:
        raise ContractError(f"catalog/customer_trusted.sql: rule consent_in_ms must read {CONSENT} BETWEEN <low> AND <high>")
    return rule.between[1], rule.between[2]


def has_research_consent() -> nw.Expr:
    """A customer record consents to research when ``shareWithResearchAsOfDate`` is a date in the
    contract's window (:func:`consent_window`). NULL is no consent; so is a value outside the window
    (such a customer is also uncertain: :func:`mark_certain`). The original project kept NULLs."""
    low, high = consent_window()
    return nw.col(CONSENT).is_between(low, high, closed="both").fill_null(False)


def latest_records(customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    """Each customer's latest record (in :data:`RECORD_ORDER`), with ``email`` and ``serialNumber``
    in their normal form: the record that decides their consent and their device."""
    records = normalise(customer_landing, "email", "serialNumber")
    return records.unique(subset=["email"], keep="last", order_by=list(RECORD_ORDER))


#: A job's output may carry these boolean columns, each naming why a row must not be kept; the
#: runner counts the rows where one is false, drops them and drops the columns.
IN_SCOPE = "_in_scope"  # a reading outside the consent scope
ATTRIBUTABLE = "_attributable"  # a reading of a device registered to several customers
CERTAIN = "_certain"  # a customer whose latest record cannot be read with certainty
MARKERS = (IN_SCOPE, ATTRIBUTABLE, CERTAIN)
#: Markers whose dropped rows are also set aside in quarantine, with this reason.
QUARANTINED_MARKERS = {
    CERTAIN: "customer kept out: their latest record cannot be read with certainty (a later record of theirs "
    "was set aside at ingest, or its research consent is not a date between 2000 and 2100)",
}

#: The derived input of customer records set aside at ingest (``quarantine`` rows of
#: ``customer_landing``): whose they are (``owner``, normal form) and the latest time they carry.
SET_ASIDE = "customer_records_set_aside"


def mark_certain(latest: nw.LazyFrame, set_aside: nw.LazyFrame) -> nw.LazyFrame:
    """Add :data:`CERTAIN` to each customer's latest record: false when it cannot be trusted to be
    their latest word -- a record of theirs set aside at ingest carries a time at or after it (or no
    readable time at all), or its consent value is set but outside the window. Fails closed."""
    low, high = consent_window()
    doubt = (
        set_aside.join(latest.select(nw.col("email").alias("owner"), "lastUpdateDate"), on="owner", how="inner")
        .filter(nw.col("record_time").is_null() | (nw.col("record_time") >= nw.col("lastUpdateDate")))
        .select(nw.col("owner").alias("email"))
        .unique()
        .with_columns(_doubt=nw.lit(True))
    )
    unreadable_consent = ~nw.col(CONSENT).is_null() & ~nw.col(CONSENT).is_between(low, high, closed="both")
    return (
        latest.join(doubt, on="email", how="left")
        .with_columns((nw.col("_doubt").is_null() & ~unreadable_consent).alias(CERTAIN))
        .drop("_doubt")
    )


def only_consenting(frame: nw.LazyFrame, customer_trusted: nw.LazyFrame, *, email_column: str) -> nw.LazyFrame:
    """Rows of ``frame`` whose ``email_column`` (already normalised) is a ``customer_trusted`` customer,
    with that customer's ``shareWithResearchAsOfDate`` (for :func:`mark_consent_scope`)."""
    consenting = customer_trusted.select(nw.col("email").alias(email_column), CONSENT)
    return frame.join(consenting, on=email_column, how="inner")


def shared_devices(customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    """Serial numbers (normal form) registered to more than one customer by their latest records:
    a reading of such a device cannot be attributed to one person, who may never have consented."""
    owners = latest_records(customer_landing).group_by("serialNumber").agg(nw.col("email").n_unique().alias("owners"))
    return owners.filter(nw.col("owners") > 1).select("serialNumber")


def mark_attributable(frame: nw.LazyFrame, customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    """Add :data:`ATTRIBUTABLE` to rows with a ``serialNumber`` (normal form): false for a device in
    :func:`shared_devices`."""
    shared = shared_devices(customer_landing).with_columns(_shared=nw.lit(True))
    return (
        frame.join(shared, on="serialNumber", how="left")
        .with_columns(nw.col("_shared").is_null().alias(ATTRIBUTABLE))
        .drop("_shared")
    )


def mark_consent_scope(frame: nw.LazyFrame, *, taken_at: str, consent_scope: str) -> nw.LazyFrame:
    """Add :data:`IN_SCOPE`: whether each reading may be used under ``consent_scope``.

    ``all-history``: every reading of a consenting customer. ``since-consent``: only readings taken
    at or after the customer's ``shareWithResearchAsOfDate`` (``frame`` must carry it).
    """
    if consent_scope == "since-consent":
        return frame.with_columns((nw.col(taken_at) >= nw.col(CONSENT)).alias(IN_SCOPE))
    if consent_scope == "all-history":
        return frame.with_columns(nw.lit(True).alias(IN_SCOPE))
    raise ValueError(f"unknown consent scope {consent_scope!r}")


# -- pseudonyms ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 18)  # a run and its audit hash the same customers: once is enough
def keyed_hash(value: str, key: bytes) -> str:
    """HMAC-SHA256 (hex) of ``value``, which must already be in its normal form: the only form in
    which an identifier is kept where it must not be readable."""
    return hmac.digest(key, value.encode("utf-8"), "sha256").hex()


def keyed_hashes(values: list[str], key: bytes) -> list[str]:
    """:func:`keyed_hash` of many values at once (the whole pseudonym map): the key's HMAC state
    computed once and copied per value, about twice as fast, and nothing cached."""
    keyed = hmac.new(key, digestmod="sha256")
    out = []
    for value in values:
        h = keyed.copy()
        h.update(value.encode("utf-8"))
        out.append(h.hexdigest())
    return out


def customer_key(email: str, key: bytes) -> str:
    """The customer's pseudonym in the curated tables: the keyed hash of the email's normal form."""
    return keyed_hash(normal_form(email), key)


#: Prefix that keys the consent history's pseudonym apart from the curated tables' customer_key:
#: the two zones share no value a join could match.
_SUBJECT = "stedi consent history\0"


def subject_key(email: str, key: bytes) -> str:
    """The customer's pseudonym in ``customer_consent_history`` (never equal to their customer_key)."""
    return keyed_hash(_SUBJECT + normal_form(email), key)


def pseudonyms(emails: pl.Series, key: bytes) -> pl.DataFrame:
    """``email -> customer_key, subject_key`` for the given emails (normal form); kept in memory,
    never written."""
    import polars as pl

    unique = emails.drop_nulls().unique().to_list()
    return pl.DataFrame(
        {
            "email": unique,
            "customer_key": keyed_hashes(unique, key),
            "subject_key": keyed_hashes([_SUBJECT + e for e in unique], key),
        },
        schema={"email": pl.String, "customer_key": pl.String, "subject_key": pl.String},
    )


# -- mentions of a person in free text --------------------------------------------------------------

#: Characters that end an email or serial number in free text.
_DELIMITERS = "\\s\"'<>()\\[\\]{},;:\\\\"
_EMAIL_TOKEN = re.compile(rf"[^{_DELIMITERS}@]+@[^{_DELIMITERS}@]+")
_UUID_TOKEN = re.compile(r"(?<![0-9a-z])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-z])")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\([\"\\/bfnrt])")
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _strings(text: str) -> list[str]:
    """The strings of a JSON text (keys and values, escapes decoded); a text that is not JSON as
    itself, its JSON escapes decoded as far as they go."""
    try:
        value = json.loads(text, object_pairs_hook=_Pairs)  # every field, a duplicated one too
    except ValueError:
        return [_ESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else _SIMPLE_ESCAPES.get(m[2], m[2]), text)]
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, _Pairs):
            for k, v in item:
                found.append(k)
                stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)
    return found


class _Pairs(list):
    """A JSON object as its (key, value) pairs."""


def _candidates(token: str) -> set[str]:
    """An email-shaped token and the addresses it may be: a local part may follow ``=``, ``&``,
    ``?`` or ``/`` (``?to=ann@…``); a domain may be followed by them, end a sentence, or go on with
    more dotted parts (``ann@x.com.json``, a file named after ann@x.com). Over-matching only ever
    erases more."""
    local, _, domain = token.partition("@")
    locals_ = {local} | {local[i + 1 :] for i, ch in enumerate(local) if ch in "=&?/"}
    cut = min((i for i, ch in enumerate(domain) if ch in "?&/=#"), default=len(domain))
    domain = domain[:cut].rstrip(".")
    domains = {domain} | {domain[:i] for i, ch in enumerate(domain) if ch == "." and "." in domain[:i]}
    return {f"{a}@{b}" for a in locals_ for b in domains if a and b}


def identifiers_in(text: str | None, kinds: tuple[str, ...] = ("email", "serial")) -> set[str]:
    """The emails and serial numbers (UUIDs) a free text mentions, in their normal form, however
    written: any case, JSON-escaped (``\\u0040``), in another Unicode normal form, with invisible
    characters inside. Used alike to find an erased person's mentions (forget) and to keep them out
    (ingest), so both match the same way."""
    if not text:
        return set()
    found: set[str] = set()
    pieces = _strings(text)
    if "%" in text:  # a URL-encoded name (a file called ann%40example.com.json)
        pieces.append(urllib.parse.unquote(text))
    for piece in pieces:
        normal = normal_form(piece)
        if "email" in kinds and "@" in normal:
            for token in _EMAIL_TOKEN.findall(normal):
                found |= _candidates(token)
        if "serial" in kinds and "-" in normal:
            found.update(_UUID_TOKEN.findall(normal))
    return found


ERASED = "[erased]"


def redact_json(text: str, erased: Any) -> str | None:
    """A JSON text with every string (key or value) that mentions an erased person replaced by
    :data:`ERASED`; ``erased(identifiers)`` says whether a set of identifiers names one. ``None``
    when the text is not JSON (the caller blanks it); the text itself when nothing changes."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    changed = False

    def clean(item: Any) -> Any:
        nonlocal changed
        if isinstance(item, str):
            if erased(identifiers_in(json.dumps(item))):
                changed = True
                return ERASED
            return item
        if isinstance(item, dict):
            return {clean(k): clean(v) for k, v in item.items()}
        if isinstance(item, list):
            return [clean(v) for v in item]
        return item

    out = clean(value)
    return json.dumps(out, ensure_ascii=False) if changed else text
