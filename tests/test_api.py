"""The notebook API: stedi.connect and stedi.table over the same tables as the CLI."""

from __future__ import annotations

import polars as pl
import pytest

import stedi
from stedi.errors import ContractError
from tests.conftest import SAMPLE
from tests.factories import loaded_warehouse


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return loaded_warehouse(tmp_path_factory.mktemp("api"), SAMPLE).root


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
