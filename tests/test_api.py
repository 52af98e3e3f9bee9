"""The notebook API: stedi.connect and stedi.table over the same tables as the CLI."""

from __future__ import annotations

import polars as pl
import pytest

import stedi
from stedi.config import Settings
from stedi.errors import ContractError
from stedi.ingest import ingest
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.conftest import SAMPLE
from tests.factories import KEY


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    wh = Warehouse.open(Settings(warehouse=root))
    ingest(wh, SAMPLE)
    run(wh, KEY)
    return root


def test_connect_and_table_agree(warehouse):
    con = stedi.connect(warehouse)
    for name in ("customer_trusted", "machine_learning_curated", "quarantine"):
        n = con.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0]
        frame = stedi.table(name, warehouse)
        assert isinstance(frame, pl.LazyFrame)
        assert frame.select(pl.len()).collect().item() == n


def test_table_rejects_unknown_names(warehouse):
    with pytest.raises(ContractError, match="no contract"):
        stedi.table("customers", warehouse)


def test_connect_reads_the_warehouse_from_the_environment(warehouse, monkeypatch):
    monkeypatch.setenv("STEDI_WAREHOUSE", str(warehouse))
    assert stedi.connect().sql("SELECT count(*) FROM customers_curated").fetchall()[0][0] > 0
