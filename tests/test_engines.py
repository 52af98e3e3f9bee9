"""The same transforms on PySpark local mode give the same tables as on Polars."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from stedi.config import CONSENT_SCOPES, Settings
from stedi.contracts import contract
from stedi.engines import PolarsEngine, SparkEngine
from stedi.evaluation import evaluate
from stedi.generate import generate
from stedi.ingest import ingest
from stedi.jobs import load_jobs
from stedi.warehouse import Warehouse
from tests.factories import KEY

pytestmark = pytest.mark.spark


def run_jobs_latest_consenting(customers: pl.DataFrame) -> str:
    """The email (normal form) of a consenting customer with one record only."""
    once = customers.group_by("email").len().filter(pl.col("len") == 1)["email"]
    chosen = customers.filter(pl.col("email").is_in(once.implode()) & pl.col("shareWithResearchAsOfDate").is_not_null())
    return chosen["email"].sort()[0].lower()


def _canonical(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    conformed = pl.from_arrow(contract(name).conform(frame.to_arrow()))
    return conformed.sort(conformed.columns)


@pytest.mark.parametrize("scope", CONSENT_SCOPES)
def test_every_transform_gives_identical_results_on_spark_and_polars(spark, tmp_path, scope):
    generate(60, seed=3, out=tmp_path / "src")
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, tmp_path / "src")
    landing = {name: wh.scan(name).collect() for name in ("customer_landing", "accelerometer_landing", "step_trainer_landing", "quarantine")}
    # the fulfillment defect: one device registered to a second customer too
    customers = landing["customer_landing"]
    landing["customer_landing"] = pl.concat([customers, customers.head(1).with_columns(email=pl.lit("someone.else@example.com"))])
    # identifiers in other spellings, which both engines must read as one customer, one device: the
    # email in full width with a zero-width space, upper case and padded; the serial upper-cased
    spelled = {"email": "ＡＢ" + "\u200b", "serial": None}
    readings, steps = landing["accelerometer_landing"], landing["step_trainer_landing"]
    odd_user = readings["user"][0]
    landing["accelerometer_landing"] = readings.with_columns(
        user=pl.when(pl.col("user") == odd_user).then(pl.lit(" \u00a0" + odd_user.upper() + "\u200b")).otherwise("user")
    )
    landing["step_trainer_landing"] = steps.with_columns(serialNumber=pl.col("serialNumber").str.to_uppercase())
    del spelled
    # a later record of a consenting customer, set aside at ingest: they are uncertain, kept out
    trusted = run_jobs_latest_consenting(landing["customer_landing"])
    landing["quarantine"] = pl.from_arrow(
        pa.Table.from_pylist(
            [{"target_table": "customer_landing", "reason": "field is boolean", "raw": "{}", "owner": trusted, "record_time": 4_000_000_000_000,
              "batch_id": "b", "quarantined_at": datetime(2024, 1, 1, tzinfo=UTC)}],
            schema=contract("quarantine").arrow_schema(),
        )
    )

    params = {"consent_scope": scope}
    dropped: dict = {}
    polars_out = evaluate(load_jobs(), lambda n: landing[n].lazy(), KEY, PolarsEngine(), params=params, dropped=dropped)
    assert dropped["step_trainer_trusted"]["_attributable"] > 0  # the shared device's readings were compared too
    assert dropped["customer_trusted"]["_certain"] == 1  # and the customer kept out for a record set aside
    spark_engine = SparkEngine(spark)
    spark_out = evaluate(load_jobs(), lambda n: spark.createDataFrame(landing[n].to_arrow()), KEY, spark_engine, params=params)

    assert set(polars_out) == set(spark_out) == {job.output for job in load_jobs()}
    for name in polars_out:
        expected = _canonical(name, polars_out[name].collect())
        got = _canonical(name, spark_engine.to_polars(spark_out[name]))
        assert expected.height > 0, name
        assert_frame_equal(got, expected)
    changes = set(polars_out["customer_consent_history"].collect()["change"])
    assert changes == {"not given", "given", "moved", "withdrawn"}  # every kind of version was compared
