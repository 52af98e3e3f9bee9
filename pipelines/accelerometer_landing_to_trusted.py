"""accelerometer_landing -> accelerometer_trusted.

Grain: one row per landed accelerometer reading.
Keeps: readings whose ``user`` (normalised email) is a ``customer_trusted`` customer.
Join key: ``user`` = ``customer_trusted.email`` (a semi-join: no customer column is added).
"""

import narwhals as nw

from stedi.privacy import normalise_email, only_consenting

INPUTS = ("accelerometer_landing", "customer_trusted")
OUTPUT = "accelerometer_trusted"


def transform(accelerometer_landing: nw.LazyFrame, customer_trusted: nw.LazyFrame) -> nw.LazyFrame:
    readings = accelerometer_landing.with_columns(user=normalise_email("user"))

    return only_consenting(readings, customer_trusted, email_column="user").select(
        "user", "timestamp", "x", "y", "z"
    )
