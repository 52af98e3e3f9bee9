"""The real STEDI starter data (../shared/stedi-starter), read in place; skipped when absent."""

from __future__ import annotations

import pytest

import stedi
from stedi import privacy
from tests.factories import loaded_warehouse

pytestmark = pytest.mark.starter

EXPECTED = {
    "customer_landing": 956,
    "accelerometer_landing": 81_273,
    "step_trainer_landing": 28_680,
    "customer_trusted": 482,
    "accelerometer_trusted": 40_981,
    "customers_curated": 482,
    "step_trainer_trusted": 14_460,
    "machine_learning_curated": 40_981,
}


@pytest.fixture(scope="module")
def starter_warehouse(tmp_path_factory):
    from tests.conftest import STARTER

    if not (STARTER / "customer").is_dir():
        pytest.skip("the STEDI starter data is not at ../shared/stedi-starter")
    return loaded_warehouse(tmp_path_factory.mktemp("starter"), STARTER)


def test_starter_counts(starter_warehouse):
    assert {name: starter_warehouse.info(name).rows for name in EXPECTED} == EXPECTED
    assert starter_warehouse.info("quarantine").rows == 0


def test_a_join_on_timestamp_alone_would_mix_customers(starter_warehouse):
    """The original defect, reproduced over our trusted tables: 43,681 rows, 2,700 of them mixed."""
    con = stedi.connect(starter_warehouse.root)
    naive, mixed = con.sql("""
        SELECT count(*), count(*) FILTER (WHERE c.email <> a.user)
        FROM step_trainer_trusted s
        JOIN accelerometer_trusted a ON a.timestamp = s.sensorReadingTime
        JOIN customer_trusted c ON c.serialNumber = s.serialNumber
    """).fetchall()[0]
    assert (naive, mixed) == (43_681, 2_700)
    assert naive - mixed == EXPECTED["machine_learning_curated"]


def test_starter_curated_tables_hold_no_email(starter_warehouse):
    con = stedi.connect(starter_warehouse.root)
    emails = {e for (e,) in con.sql("SELECT DISTINCT lower(email) FROM customer_landing").fetchall()}
    for table in ("customers_curated", "machine_learning_curated"):
        columns = [r[0] for r in con.sql(f"DESCRIBE {table}").fetchall()]
        for column in columns:
            values = {str(v).lower() for (v,) in con.sql(f'SELECT DISTINCT "{column}" FROM {table}').fetchall()}
            assert not values & emails, (table, column)


def test_since_consent_keeps_readings_from_the_consent_date_on(tmp_path):
    from stedi.config import Settings
    from stedi.ingest import ingest
    from stedi.runner import run
    from stedi.warehouse import Warehouse
    from tests.conftest import STARTER
    from tests.factories import KEY

    if not (STARTER / "customer").is_dir():
        pytest.skip("the STEDI starter data is not at ../shared/stedi-starter")
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh", consent_scope="since-consent"))
    ingest(wh, STARTER)
    summary = run(wh, KEY)
    by_table = {r.output: r for r in summary.results}
    assert by_table["accelerometer_trusted"].rows_out == 32_025
    assert by_table["accelerometer_trusted"].rows_out_of_scope == EXPECTED["accelerometer_trusted"] - 32_025
    assert summary.out_of_scope == sum(by_table[t].rows_out_of_scope for t in ("accelerometer_trusted", "step_trainer_trusted"))
    trusted = wh.scan("customer_trusted").collect()
    consent_at = {privacy.customer_key(e, KEY): c for e, c in trusted.select("email", privacy.CONSENT).iter_rows()}
    training = wh.scan("machine_learning_curated").select("customer_key", "timestamp").collect()
    assert training.height and all(t >= consent_at[k] for k, t in training.iter_rows())  # nothing before consent
    assert by_table["machine_learning_curated"].rows_out < EXPECTED["machine_learning_curated"]
