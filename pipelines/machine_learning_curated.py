"""step_trainer_trusted + accelerometer_trusted -> machine_learning_curated.

Grain: one row per pair of a step trainer reading and an accelerometer reading of the *same
customer* at the *same time*.
Join keys: the device's ``serialNumber`` -> its owner in ``customer_trusted`` -> their
``customer_key`` (pseudonym map); the phone's ``user`` -> its ``customer_key``; then
(``customer_key``, ``sensorReadingTime`` = ``timestamp``). Joining on the timestamp alone would pair
one customer's device with another customer's phone whenever their readings share a millisecond.
(step_trainer_trusted holds only devices of one customer, a curated one.)
The output is an allowlist: the customer appears only as ``customer_key``.
"""

import narwhals as nw

from stedi.jobs import job


def transform(
    step_trainer_trusted: nw.LazyFrame,
    accelerometer_trusted: nw.LazyFrame,
    customer_trusted: nw.LazyFrame,
    customer_pseudonyms: nw.LazyFrame,
) -> nw.LazyFrame:
    keys = customer_pseudonyms.select("email", "customer_key")
    device_owners = customer_trusted.select("serialNumber", "email").join(keys, on="email", how="inner")
    device_readings = step_trainer_trusted.join(device_owners.drop("email"), on="serialNumber", how="inner")
    phone_readings = accelerometer_trusted.join(keys.rename({"email": "user"}), on="user", how="inner")

    pairs = device_readings.join(
        phone_readings,
        left_on=["customer_key", "sensorReadingTime"],
        right_on=["customer_key", "timestamp"],
        how="inner",
    )

    return pairs.select(
        "customer_key",
        nw.col("sensorReadingTime").alias("timestamp"),
        "distanceFromObject",
        "x",
        "y",
        "z",
    )


# appends: inputs mapped row by row, new rows there give new rows here (stedi.incremental)
JOB = job(
    transform,
    inputs=("step_trainer_trusted", "accelerometer_trusted", "customer_trusted", "customer_pseudonyms"),
    output="machine_learning_curated",
    appends=("step_trainer_trusted", "accelerometer_trusted"),
)
