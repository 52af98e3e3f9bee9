"""customer_landing + customer_pseudonyms -> customer_consent_history.

Grain: one row per version of a customer's research consent (SCD type 2), pseudonymous: the customer
is only their ``subject_key`` (keyed apart from the curated tables' ``customer_key``, so that no
curated row joins to it). A new version starts with each record (in ``RECORD_ORDER``) whose
``shareWithResearchAsOfDate`` differs from the customer's previous record: consent given, moved or
withdrawn. Records that repeat the state add no version.
Join key: the email's normal form -> ``subject_key`` (pseudonym map); the email is not kept.
Every customer is here, consenting or not: this is the record of who may be elsewhere, and when.
"""

import narwhals as nw

from stedi.jobs import job
from stedi.privacy import CONSENT, RECORD_ORDER, has_research_consent, normalise


def transform(customer_landing: nw.LazyFrame, customer_pseudonyms: nw.LazyFrame) -> nw.LazyFrame:
    keys = customer_pseudonyms.select("email", "subject_key")
    records = normalise(customer_landing, "email").join(keys, on="email", how="inner")

    order = list(RECORD_ORDER)
    previous = nw.col(CONSENT).shift(1).over("subject_key", order_by=order)
    is_first = nw.col("lastUpdateDate").cum_count().over("subject_key", order_by=order) == 1
    with_previous = records.with_columns(
        _first=is_first,
        _previous=previous,
        _previous_null=previous.is_null(),
    )

    changed = with_previous.filter(
        nw.col("_first")
        | (nw.col(CONSENT).is_null() != nw.col("_previous_null"))
        | (nw.col(CONSENT) != nw.col("_previous"))  # null when either side is null: handled above
    )

    change = (
        nw.when(nw.col("_first") & nw.col(CONSENT).is_null())
        .then(nw.lit("not given"))
        .when(nw.col("_first") | nw.col("_previous_null"))
        .then(nw.lit("given"))
        .when(nw.col(CONSENT).is_null())
        .then(nw.lit("withdrawn"))
        .otherwise(nw.lit("moved"))
    )
    next_from = nw.col("lastUpdateDate").shift(-1).over("subject_key", order_by=order)

    versions = changed.with_columns(
        version=nw.col("lastUpdateDate").cum_count().over("subject_key", order_by=order),
        change=change,
        valid_to=next_from,
        is_current=nw.col("_source_file").shift(-1).over("subject_key", order_by=order).is_null(),
    )

    return versions.select(
        # who, pseudonymously, and which version
        "subject_key",
        nw.col("version").cast(nw.Int32),
        # the consent state
        has_research_consent().alias("consenting"),
        "change",
        CONSENT,
        # when it held, by the records' own clock
        nw.col("lastUpdateDate").alias("valid_from"),
        "valid_to",
        "is_current",
        # when the warehouse learned it, and from which line
        nw.col("_ingested_at").alias("recorded_at"),
        nw.col("_source_file").alias("source_file"),
        nw.col("_line_number").alias("line_number"),
    )


JOB = job(
    transform,
    inputs=("customer_landing", "customer_pseudonyms"),
    output="customer_consent_history",
)
