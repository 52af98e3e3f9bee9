"""customer_trusted + accelerometer_trusted -> customers_curated.

Grain: one row per customer (``customer_key``) -- never one per reading: readings are aggregated
per user before the join.
Keeps: ``customer_trusted`` customers with at least one trusted accelerometer reading.
Join keys: ``customer_trusted.email`` = ``accelerometer_trusted.user``; ``email`` -> ``customer_key``
through the in-memory pseudonym map. The output is an allowlist: no email, name, phone or birthday.
"""

import narwhals as nw

INPUTS = ("customer_trusted", "accelerometer_trusted", "customer_pseudonyms")
OUTPUT = "customers_curated"


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

    return customers.select(
        # who, pseudonymously
        "customer_key",
        "serialNumber",
        # the record and its consents
        "registrationDate",
        "lastUpdateDate",
        "shareWithResearchAsOfDate",
        "shareWithPublicAsOfDate",
        "shareWithFriendsAsOfDate",
        # the readings
        nw.col("accelerometer_readings").cast(nw.Int64),
        "first_reading_at",
        "last_reading_at",
    )
