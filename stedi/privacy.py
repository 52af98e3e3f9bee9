"""The privacy rules, written once: who consented, who a customer is, and their pseudonym.

Every job calls these; none retypes a consent filter or an email normalisation.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import secrets
from typing import TYPE_CHECKING

import narwhals as nw

from stedi.errors import ConfigError
from stedi.storage import PRIVATE

if TYPE_CHECKING:
    import polars as pl

    from stedi.storage import Storage

#: Columns that identify a person directly. Curated tables must carry none of them.
DIRECT_IDENTIFIERS = frozenset({"customerName", "email", "user", "phone", "birthDay"})

#: Columns whose values identify a person or their device, or may hold such values (a raw line).
#: Their values never go into Iceberg column statistics, and forget erases them everywhere.
PERSONAL_COLUMNS = DIRECT_IDENTIFIERS | {"serialNumber", "raw", "_extra"}

KEY_FILE = "pseudonym.key"

#: The order of a customer's records, oldest first: ``lastUpdateDate``, then ties go to the record
#: ingested last, then to the later file and line, so "the latest record" is always one record.
RECORD_ORDER = ("lastUpdateDate", "_ingested_at", "_source_file", "_line_number")

#: A job's output may carry these boolean columns, each naming why a row must not be kept; the
#: runner counts the rows where one is false, drops them and drops the columns.
IN_SCOPE = "_in_scope"  # a reading outside the consent scope
ATTRIBUTABLE = "_attributable"  # a reading of a device registered to several customers
MARKERS = (IN_SCOPE, ATTRIBUTABLE)


def normalise_email(column: str) -> nw.Expr:
    """The customer's natural key: the email trimmed of surrounding spaces and lower-cased."""
    return nw.col(column).str.strip_chars().str.to_lowercase()


def latest_records(customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    """Each customer's latest record (in :data:`RECORD_ORDER`), ``email`` normalised: the record
    that decides their consent and their device."""
    records = customer_landing.with_columns(email=normalise_email("email"))
    return records.unique(subset=["email"], keep="last", order_by=list(RECORD_ORDER))


def has_research_consent() -> nw.Expr:
    """A customer record consents to research when ``shareWithResearchAsOfDate`` is set.

    The original project's filter kept NULLs; this one does not.
    """
    return ~nw.col("shareWithResearchAsOfDate").is_null()


def only_consenting(frame: nw.LazyFrame, customer_trusted: nw.LazyFrame, *, email_column: str) -> nw.LazyFrame:
    """Rows of ``frame`` whose ``email_column`` (already normalised) is a ``customer_trusted`` customer,
    with that customer's ``shareWithResearchAsOfDate`` (for :func:`mark_consent_scope`)."""
    consenting = customer_trusted.select(nw.col("email").alias(email_column), "shareWithResearchAsOfDate")
    return frame.join(consenting, on=email_column, how="inner")


def shared_devices(customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    """Serial numbers registered to more than one customer (by their latest records): a reading
    of such a device cannot be attributed to one person, who may never have consented."""
    owners = latest_records(customer_landing).group_by("serialNumber").agg(nw.col("email").n_unique().alias("owners"))
    return owners.filter(nw.col("owners") > 1).select("serialNumber")


def mark_attributable(frame: nw.LazyFrame, customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    """Add :data:`ATTRIBUTABLE` to rows with a ``serialNumber``: false for a device in
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
        return frame.with_columns((nw.col(taken_at) >= nw.col("shareWithResearchAsOfDate")).alias(IN_SCOPE))
    if consent_scope == "all-history":
        return frame.with_columns(nw.lit(True).alias(IN_SCOPE))
    raise ValueError(f"unknown consent scope {consent_scope!r}")


# -- pseudonyms ----------------------------------------------------------------------------------


def pseudonym_key(configured: str | None, files: Storage) -> bytes:
    """The secret of the keyed hash: ``STEDI_PSEUDONYM_KEY`` when set, else the warehouse's key file
    (``.stedi/pseudonym.key`` in the warehouse's ``files``).

    The file is generated once, readable only by its owner (in S3, by whom the bucket's policy
    lets read ``.stedi/``: prefer ``STEDI_PSEUDONYM_KEY`` from a secret store there). The key is never
    stored in a table and never printed.
    """
    if configured:
        return configured.encode("utf-8")
    rel = f"{PRIVATE}/{KEY_FILE}"
    try:
        key = files.read_bytes(rel).strip()
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
            files.create_private(rel, secrets.token_hex(32).encode("ascii"))
        key = files.read_bytes(rel).strip()
    if len(key) < 32:
        raise ConfigError(f"pseudonym key file {files.url(rel)} is shorter than 32 bytes; restore it or set STEDI_PSEUDONYM_KEY")
    return key


@functools.lru_cache(maxsize=1 << 18)  # a run and its audit hash the same customers: once is enough
def keyed_hash(value: str, key: bytes) -> str:
    """HMAC-SHA256 (hex) of ``value`` trimmed and lower-cased: the only form in which an identifier
    is kept where it must not be readable (curated tables, the suppression list, the erasure log)."""
    return hmac.digest(key, value.strip().lower().encode("utf-8"), "sha256").hex()


def customer_key(email: str, key: bytes) -> str:
    """The customer's pseudonym: the keyed hash of the normalised email."""
    return keyed_hash(email, key)


def key_fingerprint(key: bytes) -> str:
    """A public, non-reversible tag of the key, so that runs can tell when the key changed."""
    return hmac.digest(key, b"stedi key fingerprint", "sha256").hex()[:16]


def pseudonyms(emails: pl.Series, key: bytes) -> pl.DataFrame:
    """``email -> customer_key`` for the given normalised emails; kept in memory, never written."""
    import polars as pl

    unique = emails.drop_nulls().unique()
    return pl.DataFrame(
        {"email": unique, "customer_key": [customer_key(e, key) for e in unique.to_list()]},
        schema={"email": pl.String, "customer_key": pl.String},
    )
