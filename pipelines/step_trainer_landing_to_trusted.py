"""step_trainer_landing -> step_trainer_trusted.

Grain: one row per landed step trainer reading.
Keeps: readings of devices whose ``serialNumber`` belongs to a ``customers_curated`` customer.
Join key: ``serialNumber`` (a semi-join).
"""

import narwhals as nw

INPUTS = ("step_trainer_landing", "customers_curated")
OUTPUT = "step_trainer_trusted"


def transform(step_trainer_landing: nw.LazyFrame, customers_curated: nw.LazyFrame) -> nw.LazyFrame:
    devices = customers_curated.select("serialNumber")

    return step_trainer_landing.join(devices, on="serialNumber", how="semi").select(
        "sensorReadingTime", "serialNumber", "distanceFromObject"
    )
