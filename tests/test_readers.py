"""Other Iceberg readers read stedi's tables: DuckDB's own Iceberg extension, iceberg-rust through
DataFusion and Daft, none of them sharing stedi's code, each give stedi's rows for every table the
Polars engine and ingest write, in a local folder (a path with odd characters) and in S3. The
Spark engine's tables are read the same way in tests/test_spark_engine.py."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from stedi.cli import cli
from stedi.config import Settings
from stedi.contracts import load_contracts
from stedi.warehouse import Warehouse
from tests.conftest import SAMPLE
from tests.factories import KEY as FACTORY_KEY
from tests.readers import assert_plain_iceberg_files, assert_readers_agree
from tests.s3 import moto_server

KEY = FACTORY_KEY.decode()


def build(warehouse: str, catalog: str | None = None) -> None:
    """Ingest and run the sample, then forget one person: every table has rows, some rewritten."""
    options = ["--warehouse", warehouse] + (["--catalog-uri", catalog] if catalog else [])

    def etl(*args: str) -> str:
        result = CliRunner().invoke(cli, [*options, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    etl("ingest", "--run", str(SAMPLE))
    email = json.loads(etl("sql", "--format", "json", "SELECT email FROM customer_trusted ORDER BY email LIMIT 1"))[0]["email"]
    etl("forget", "--email", email)
    etl("run")


def test_the_polars_engines_tables_in_a_folder_are_read_alike(tmp_path, monkeypatch):
    monkeypatch.setenv("STEDI_PSEUDONYM_KEY", KEY)
    root = tmp_path / "a folder, with spaces + é"
    build(str(root))
    wh = Warehouse.open(Settings(warehouse=root))
    assert all(wh.info(name).rows for name in ("erasure_log", "suppression_list", "machine_learning_curated"))
    assert assert_plain_iceberg_files(wh, [n for n in load_contracts() if wh.info(n).snapshot_id], footers=True) > 0
    assert_readers_agree(wh, tmp_path / "read")


def test_the_polars_engines_tables_in_s3_are_read_alike(tmp_path, monkeypatch):
    import boto3

    with moto_server() as port:
        for var, value in {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "STEDI_PSEUDONYM_KEY": KEY,
        }.items():
            monkeypatch.setenv(var, value)
        boto3.client("s3").create_bucket(Bucket="readers")
        warehouse, catalog = "s3://readers/a prefix+é/wh", f"sqlite:///{tmp_path}/catalog.db"
        build(warehouse, catalog)
        assert_readers_agree(Warehouse.open(Settings(warehouse=warehouse, catalog_uri=catalog)), tmp_path / "read")


@pytest.mark.parametrize("location", ["/data/a#b", "s3://bucket/wh?x"])
def test_a_warehouse_location_a_uri_cannot_name_is_one_line(location):
    result = CliRunner().invoke(cli, ["--warehouse", location, "tables"])
    assert result.exit_code == 1 and "cannot hold # or ?" in result.output
