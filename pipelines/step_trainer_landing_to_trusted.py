"""step_trainer_landing -> step_trainer_trusted.

Grain: one row per distinct step trainer reading: the same reading landed twice is one row.
Keeps: readings of devices whose ``serialNumber`` (normal form: trimmed, any case) belongs to a
``customers_curated`` customer; under the ``since-consent`` scope, only those taken at or after that
customer's ``shareWithResearchAsOfDate``. Never readings of a device registered to several
customers (by their latest records in ``customer_landing``): they cannot be attributed to one person.
Join keys: ``serialNumber`` -> its owner in ``customer_trusted``, whose ``email`` -> ``customer_key``
(pseudonym map) is in ``customers_curated``. No customer column is kept.
"""

import narwhals as nw

from stedi.jobs import job
from stedi.privacy import ATTRIBUTABLE, CONSENT, IN_SCOPE, mark_attributable, mark_consent_scope, normalise


def transform(
    step_trainer_landing: nw.LazyFrame,
    customer_trusted: nw.LazyFrame,
    customers_curated: nw.LazyFrame,
    customer_pseudonyms: nw.LazyFrame,
    customer_landing: nw.LazyFrame,
    *,
    consent_scope: str,
) -> nw.LazyFrame:
    curated = customer_pseudonyms.join(customers_curated.select("customer_key"), on="customer_key", how="semi")
    owners = customer_trusted.join(curated.select("email"), on="email", how="semi")
    # One row per device, so the join cannot repeat a reading; a device registered to several
    # customers takes the latest of their consent dates (its readings are kept out anyway).
    devices = owners.group_by("serialNumber").agg(nw.col(CONSENT).max())
    devices = mark_attributable(devices, customer_landing)  # per device, before the readings multiply it

    readings = normalise(step_trainer_landing, "serialNumber").join(devices, on="serialNumber", how="inner")

    return (
        mark_consent_scope(readings, taken_at="sensorReadingTime", consent_scope=consent_scope)
        .select("sensorReadingTime", "serialNumber", "distanceFromObject", IN_SCOPE, ATTRIBUTABLE)
        .unique()
    )


# appends: inputs mapped row by row, new rows there give new rows here (stedi.incremental)
JOB = job(
    transform,
    inputs=("step_trainer_landing", "customer_trusted", "customers_curated", "customer_pseudonyms", "customer_landing"),
    output="step_trainer_trusted",
    appends=("step_trainer_landing",),
)
