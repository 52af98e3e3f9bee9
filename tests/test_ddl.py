"""`stedi-etl ddl`: DDL for Athena, DuckDB and Spark, generated from the contracts."""

from __future__ import annotations

import duckdb
import pytest
import sqlglot
from click.testing import CliRunner

from stedi.cli import cli
from stedi.contracts import LINEAGE, load_contracts
from stedi.ddl import ddl, table_ddl
from tests.conftest import SAMPLE
from tests.factories import loaded_warehouse


def statements(text: str) -> dict[str, str]:
    """Table name -> its statement, from the '-- name (zone): grain' headers."""
    out = {}
    for block in text.strip().split("\n\n"):
        if "CREATE" not in block.split("\n", 1)[-1]:  # a note, not a table's statement
            continue
        header, body = block.split("\n", 1)
        out[header.removeprefix("-- ").split(" ")[0]] = body
    return out


@pytest.mark.parametrize("dialect", ["athena", "duckdb", "spark"])
def test_every_table_and_column_of_the_contracts_is_there(dialect):
    by_table = statements(ddl(dialect, "s3://bucket/stedi"))
    contracts = load_contracts()
    assert set(by_table) == set(contracts)
    for name, c in contracts.items():
        for col in c.columns:
            if c.zone == "landing" and col.name in LINEAGE:
                assert col.name not in by_table[name]  # not in the raw JSON
            else:
                assert col.name in by_table[name], (name, col.name)


def test_athena_landing_reads_the_raw_json_and_the_rest_is_iceberg():
    by_table = statements(ddl("athena", "s3://bucket/stedi"))
    landing = by_table["accelerometer_landing"]
    assert landing.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS `accelerometer_landing`")
    assert "org.openx.data.jsonserde.JsonSerDe" in landing
    assert "LOCATION 's3://bucket/stedi/landing/accelerometer/'" in landing
    assert "`timestamp` BIGINT" in landing and "`user` STRING" in landing  # reserved words quoted, Hive types
    curated = by_table["machine_learning_curated"]
    assert "'table_type' = 'ICEBERG'" in curated
    # new, empty tables: never in the folder of a table stedi writes (and deletes unused files of)
    assert "LOCATION 's3://bucket/stedi/athena/machine_learning_curated'" in curated
    for statement in by_table.values():
        sqlglot.parse_one(statement, dialect="hive")  # well-formed Hive DDL


def test_athena_ddl_says_it_creates_new_empty_tables_and_points_to_glue():
    text = ddl("athena", "s3://bucket/stedi")
    note = text.split("\n\n", 1)[0]
    assert "NEW, EMPTY Iceberg table" in note and "registered in the Glue Data Catalog" in note
    assert "--catalog-uri glue://DATABASE" in note
    assert all(line.startswith("--") for line in note.splitlines())  # runs as SQL: comments only
    assert "iceberg/stedi" not in text


@pytest.mark.parametrize("dialect", ["athena", "spark"])
def test_timestamps_are_what_the_dialect_creates(dialect):
    """Athena creates Iceberg timestamp columns only (microseconds, no time zone)."""
    by_table = statements(ddl(dialect, "s3://bucket/stedi"))
    timestamps = [(n, col.name) for n, c in load_contracts().items() if c.zone != "landing" for col in c.columns if col.sql_type == "TIMESTAMP"]
    assert timestamps
    for name, column in timestamps:
        line = next(line for line in by_table[name].splitlines() if line.strip().startswith(f"`{column}`"))
        assert line.split()[1] == "TIMESTAMP", line
    for statement in by_table.values():
        for other in ("WITH TIME ZONE", "TIMESTAMPTZ", "TIMESTAMP_LTZ", "TIMESTAMP(3)"):
            assert other not in statement.upper()


def test_spark_ddl_parses_into_each_contracts_table_and_columns():
    from sqlglot import exp

    for name, statement in statements(ddl("spark", "/data/stedi")).items():
        tree = sqlglot.parse_one(statement, dialect="spark")
        assert isinstance(tree, exp.Create) and tree.find(exp.Table).name == name, name
        columns = [d.name for d in tree.find_all(exp.ColumnDef)]
        c = load_contracts()[name]
        # a landing table is declared over the raw JSON files: their fields, not stedi's lineage columns
        assert columns == ([col.name for col in c.raw_columns] if c.zone == "landing" else c.column_names), name


def test_duckdb_ddl_runs_and_its_landing_views_read_the_landing_files(tmp_path):
    wh = loaded_warehouse(tmp_path / "wh", SAMPLE)
    con = duckdb.connect()
    con.execute(ddl("duckdb", str(wh.root)))
    for name, c in load_contracts().items():
        n = con.sql(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]
        assert n == (wh.info(name).rows if c.zone == "landing" else 0), name


@pytest.mark.spark
def test_spark_landing_tables_read_the_landing_files(spark, tmp_path):
    wh = loaded_warehouse(tmp_path / "wh", SAMPLE)
    for name, c in load_contracts().items():
        if c.zone == "landing":
            spark.sql(f"DROP TABLE IF EXISTS `{name}`")
            spark.sql(table_ddl(c, "spark", str(wh.root)).rstrip(";"))
            assert spark.table(name).count() == wh.info(name).rows, name
            spark.sql(f"DROP TABLE `{name}`")


def test_the_cli_prints_the_ddl(tmp_path):
    result = CliRunner().invoke(cli, ["--warehouse", str(tmp_path), "ddl", "--dialect", "athena", "--location", "s3://b/p"])
    assert result.exit_code == 0, result.output
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `customer_landing`" in result.output
    bad = CliRunner().invoke(cli, ["ddl", "--dialect", "oracle"])
    assert bad.exit_code == 2 and "oracle" in bad.output
