"""The contracts in catalog/ are the single source of truth for every table's schema."""

from __future__ import annotations

import pyarrow as pa
import pytest

import pipelines
from stedi.config import Settings
from stedi.contracts import load_contracts, parse_contract
from stedi.errors import ContractError
from stedi.ingest import sources
from stedi.jobs import load_jobs
from stedi.privacy import direct_identifiers
from stedi.warehouse import Warehouse

TABLE_NAMES = {
    "customer_landing", "accelerometer_landing", "step_trainer_landing", "customer_trusted",
    "accelerometer_trusted", "step_trainer_trusted", "customers_curated", "machine_learning_curated",
}
# Tables beyond the original project's eight: written by jobs, or by stedi itself.
JOB_TABLES = TABLE_NAMES - set(sources().values()) | {"customer_consent_history"}


def test_every_table_has_a_contract_and_every_job_writes_one():
    contracts = load_contracts()
    assert set(contracts) >= TABLE_NAMES
    assert {job.output for job in load_jobs()} == JOB_TABLES
    assert len(load_jobs()) == len(pipelines.JOBS) == 6


@pytest.mark.parametrize("name", sorted(TABLE_NAMES))
def test_each_contract_states_zone_grain_and_a_comment_per_column(name):
    c = load_contracts()[name]
    assert c.zone in name or (c.zone == "curated" and name == "machine_learning_curated")
    assert c.grain and c.description
    assert all(col.comment for col in c.columns)


def test_curated_contracts_allow_no_direct_identifier():
    for c in load_contracts().values():
        if c.zone == "curated":
            assert not direct_identifiers() & set(c.column_names), c.name


def test_iceberg_tables_are_created_from_the_contract(tmp_path):
    wh = Warehouse.open(Settings(warehouse=tmp_path))
    for name, c in load_contracts().items():
        schema = wh.table(name).schema()
        assert [f.name for f in schema.fields] == c.column_names
        assert [f.required for f in schema.fields] == [col.required for col in c.columns]
        assert wh.table(name).properties["stedi.zone"] == c.zone


def test_the_landing_schema_is_read_from_the_ddl():
    c = parse_contract(
        """CREATE TABLE t (a STRING NOT NULL COMMENT 'x', b DOUBLE, c DATE, d TIMESTAMP)
           COMMENT 'd' TBLPROPERTIES ('stedi.zone' = 'landing', 'stedi.grain' = 'g')"""
    )
    assert c.arrow_schema() == pa.schema(
        [
            pa.field("a", pa.large_string(), nullable=False),
            pa.field("b", pa.float64()),
            pa.field("c", pa.date32()),
            pa.field("d", pa.timestamp("us", tz="UTC")),
        ]
    )
    assert c.required == ["a"]


def test_a_rules_between_bounds_are_read_with_the_contract_and_survive_its_cache(tmp_path, monkeypatch):
    import shutil

    from stedi import contracts, privacy

    c = parse_contract(
        """CREATE TABLE t (a BIGINT, b BIGINT, CONSTRAINT in_range CHECK (a BETWEEN 5 AND 9), CONSTRAINT pos CHECK (b > 0))
           COMMENT 'd' TBLPROPERTIES ('stedi.zone' = 'landing', 'stedi.grain' = 'g')"""
    )
    assert [(r.name, r.between) for r in c.rules] == [("in_range", ("a", 5, 9)), ("pos", None)]
    # only a predicate that is exactly `column BETWEEN <integer> AND <integer>` has bounds
    import sqlglot

    for predicate, bounds in [
        ("x BETWEEN -5 AND 2", ("x", -5, 2)),
        ("(x BETWEEN 5 AND 9)", ("x", 5, 9)),
        ("x BETWEEN 1 + 1 AND 3", None),
        ("x NOT BETWEEN 1 AND 2", None),
        ("y > 0 OR x BETWEEN 1 AND 2", None),
        ("x BETWEEN '10' AND '20'", None),
        ("x BETWEEN 1.5 AND 3", None),
        ("x BETWEEN 9 AND 5", None),
    ]:
        assert contracts._integer_bounds(sqlglot.parse_one(predicate, dialect="duckdb")) == bounds, predicate
    # the consent window is the contract's: moved in a copy of catalog/, it moves, parsed or cached
    folder = tmp_path / "catalog"
    shutil.copytree(contracts.contracts_dir(), folder)
    ddl = folder / "customer_trusted.sql"
    ddl.write_text(ddl.read_text().replace("BETWEEN 946684800000 AND 4102444800000", "BETWEEN 1000 AND 2000"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for _ in range(2):  # parsed, then read from the cache
        rules = {r.name: r for r in load_contracts(folder)["customer_trusted"].rules}
        assert rules["consent_in_ms"].between == ("shareWithResearchAsOfDate", 1000, 2000)
        load_contracts.cache_clear()
    assert privacy.consent_window() == (946684800000, 4102444800000)  # the shipped contract's


@pytest.mark.parametrize(
    ("ddl", "message"),
    [
        ("SELECT 1", "expected one CREATE TABLE"),
        ("CREATE TABLE t (a STRING) TBLPROPERTIES ('stedi.zone' = 'moon')", "stedi.zone"),
        ("CREATE TABLE t (a MAP<STRING, INT>) TBLPROPERTIES ('stedi.zone' = 'landing')", "unsupported type"),
        ("CREATE TABLE t (a STRING", "not a valid CREATE TABLE"),
        ("CREATE TABLE t (a STRING) TBLPROPERTIES ('stedi.zone' = 'landing', 'stedi.personal' = 'a,b')", "'b', which is not a column"),
        (
            "CREATE TABLE t (a STRING, b STRING) TBLPROPERTIES ('stedi.zone' = 'landing', 'stedi.personal' = 'a', 'stedi.free_text' = 'b')",
            "must be in 'stedi.personal' too",
        ),
        (
            "CREATE TABLE t (e STRING) TBLPROPERTIES ('stedi.zone' = 'trusted', 'stedi.owner' = 'e', 'stedi.owner_kind' = 'email')",
            "holds an identifier: list it in TBLPROPERTIES 'stedi.personal'",
        ),
    ],
)
def test_malformed_contracts_are_rejected_clearly(ddl, message):
    with pytest.raises(ContractError, match=message):
        parse_contract(ddl)


def test_outputs_are_checked_against_the_contract():
    c = load_contracts()["customers_curated"]
    with pytest.raises(ContractError, match="unexpected \\['email'\\]"):
        c.conform(pa.table({**{n: [None] for n in c.column_names}, "email": ["a@b.c"]}))


def test_the_contract_cache_follows_the_ddl(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "catalog"
    folder.mkdir()
    ddl = "CREATE TABLE t (a STRING NOT NULL COMMENT 'x') COMMENT 'd' TBLPROPERTIES ('stedi.zone' = 'landing')"
    (folder / "t.sql").write_text(ddl)
    first = load_contracts.__wrapped__(folder)
    assert list((tmp_path / "cache" / "stedi").glob("contracts-*.json"))
    assert load_contracts.__wrapped__(folder) == first  # read back from the cache, equal
    (folder / "t.sql").write_text(ddl.replace("a STRING", "a BIGINT"))
    assert load_contracts.__wrapped__(folder)["t"].column("a").sql_type == "BIGINT"  # an edit is seen at once
