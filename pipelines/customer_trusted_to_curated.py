"""customer_trusted + accelerometer_trusted -> customers_curated.

Grain: one row per customer (``customer_key``) -- never one per reading: readings are aggregated
per user before the join.
Keeps: ``customer_trusted`` customers with at least one trusted accelerometer reading.
Join keys: ``customer_trusted.email`` = ``accelerometer_trusted.user``; ``email`` -> ``customer_key``
through the in-memory pseudonym map. The output is an allowlist that joins back to no person's
record: the pseudonym, a count and two days -- no email, name, phone, birthday, serial number or
instant to the millisecond.
"""

import narwhals as nw

from stedi.jobs import job
from stedi.privacy import coarsen_to_day


def transform(
    customer_trusted: nw.LazyFrame,
    accelerometer_trusted: nw.LazyFrame,
    customer_pseudonyms: nw.LazyFrame,
) -> nw.LazyFrame:
    readers = accelerometer_trusted.group_by("user").agg(
        nw.len().alias("accelerometer_readings"),
        nw.col("timestamp").min().alias("first_reading_at"),
        nw.col("timestamp").max().alias("last_reading_at"),
    )

    customers = customer_trusted.join(readers, left_on="email", right_on="user", how="inner").join(
        customer_pseudonyms, on="email", how="inner"
    )

    return coarsen_to_day(customers, first_reading_day="first_reading_at", last_reading_day="last_reading_at").select(
        # who, pseudonymously
        "customer_key",
        # the readings, no instant finer than the day
        nw.col("accelerometer_readings").cast(nw.Int64),
        "first_reading_day",
        "last_reading_day",
    )


def fold(
    customers_curated: nw.LazyFrame,
    customer_trusted: nw.LazyFrame,
    accelerometer_trusted: nw.LazyFrame,
    customer_pseudonyms: nw.LazyFrame,
) -> nw.LazyFrame:
    """The rows of customers whose record did not change, after new readings: ``customers_curated``
    their rows before, ``accelerometer_trusted`` only their new readings (never one they had). The
    count adds up, the first and last day widen; ``customer_trusted`` is unchanged, so unused."""
    new = accelerometer_trusted.group_by("user").agg(
        nw.len().cast(nw.Int64).alias("_readings"),
        nw.col("timestamp").min().alias("_first"),
        nw.col("timestamp").max().alias("_last"),
    )
    new = new.join(customer_pseudonyms.select(nw.col("email").alias("user"), "customer_key"), on="user", how="inner")
    new = coarsen_to_day(new, _first="_first", _last="_last")
    columns = customers_curated.collect_schema().names()
    return (
        customers_curated.join(new.drop("user"), on="customer_key", how="left")
        .with_columns(
            accelerometer_readings=nw.col("accelerometer_readings") + nw.col("_readings").fill_null(0),
            first_reading_day=nw.min_horizontal("first_reading_day", "_first"),
            last_reading_day=nw.max_horizontal("last_reading_day", "_last"),
        )
        .select(columns)
    )


# folds: the input whose new rows `fold` takes into a customer's row without reading all of it again
JOB = job(
    transform,
    inputs=("customer_trusted", "accelerometer_trusted", "customer_pseudonyms"),
    output="customers_curated",
    folds="accelerometer_trusted",
    fold=fold,
)
