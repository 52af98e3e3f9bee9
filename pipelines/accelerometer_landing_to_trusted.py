"""accelerometer_landing -> accelerometer_trusted.

Grain: one row per distinct accelerometer reading: the same reading landed twice (in two files, or
twice in one) is one row.
Keeps: readings whose ``user`` (normal form of the email) is a ``customer_trusted`` customer; under
the ``since-consent`` scope, only those taken at or after the customer's ``shareWithResearchAsOfDate``.
Join key: ``user`` = ``customer_trusted.email`` (no customer column is kept).
"""

import narwhals as nw

from stedi.jobs import job
from stedi.privacy import IN_SCOPE, mark_consent_scope, normalise, only_consenting


def transform(accelerometer_landing: nw.LazyFrame, customer_trusted: nw.LazyFrame, *, consent_scope: str) -> nw.LazyFrame:
    readings = normalise(accelerometer_landing, "user")

    consenting = only_consenting(readings, customer_trusted, email_column="user")

    return (
        mark_consent_scope(consenting, taken_at="timestamp", consent_scope=consent_scope)
        .select("user", "timestamp", "x", "y", "z", IN_SCOPE)
        .unique()
    )


# appends: inputs mapped row by row, new rows there give new rows here (stedi.incremental)
JOB = job(
    transform,
    inputs=("accelerometer_landing", "customer_trusted"),
    output="accelerometer_trusted",
    appends=("accelerometer_landing",),
)
