"""``stedi-etl run --engine spark``: the same transforms on PySpark, the executors reading and
writing the tables' Parquet files (with pyarrow, in a folder or straight in S3), the driver
committing them through pyiceberg. Every table must equal the Polars engine's, in local mode and on
a standalone master with one worker started here, in a folder and in a bucket of moto's S3 server;
the files must be what any Iceberg reader reads (full URIs, field ids, no statistics of personal
columns), and other readers must read the tables alike."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stedi.config import Settings
from stedi.generate import generate
from stedi.ingest import ingest
from stedi.jobs import load_jobs
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY
from tests.readers import assert_plain_iceberg_files, assert_readers_agree
from tests.s3 import Relay, moto_server
from tests.tables import table

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("PySpark needs Java", allow_module_level=True)

OUTPUTS = [job.output for job in load_jobs()]
KEY_TEXT = KEY.decode()


def canonical(wh: Warehouse, name: str) -> pl.DataFrame:
    return table(wh, name, ("recorded_at",))  # when each warehouse ingested


def cli(warehouse: Path | str, *args: str, catalog: str | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"STEDI_WAREHOUSE": str(warehouse), "STEDI_PSEUDONYM_KEY": KEY_TEXT, "PYSPARK_PYTHON": sys.executable}
    if catalog:
        env["STEDI_CATALOG_URI"] = catalog
    return subprocess.run([sys.executable, "-m", "stedi.cli", *args], env=env, capture_output=True, text=True, timeout=600)


def polars_warehouse(root: Path, *sources: Path) -> Warehouse:
    wh = Warehouse.open(Settings(warehouse=root, pseudonym_key=KEY_TEXT))
    for source in sources:
        ingest(wh, source, KEY)
    run(wh, KEY)
    return wh


def assert_same_tables(spark_wh: Warehouse, polars_wh: Warehouse) -> None:
    for name in OUTPUTS:
        assert spark_wh.snapshot_property(name, "stedi.engine") == "spark", name
        expected = canonical(polars_wh, name)
        assert expected.height > 0, name
        assert_frame_equal(canonical(spark_wh, name), expected, check_dtypes=True)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    generate(80, seed=5, out=out)
    return out


@pytest.fixture(scope="module")
def reference(sample, tmp_path_factory) -> Warehouse:
    """The sample's tables on the Polars engine."""
    return polars_warehouse(tmp_path_factory.mktemp("polars") / "wh", sample)


def spark_equals_polars(tmp_path: Path, source: Path, *options: str, expected: Warehouse | None = None) -> Warehouse:
    """Ingest ``source`` and run it on Spark (``options``): every table equal to the Polars engine's."""
    expected = expected or polars_warehouse(tmp_path / "polars", source)
    assert cli(tmp_path / "spark", "ingest", str(source)).returncode == 0
    done = cli(tmp_path / "spark", "run", "--engine", "spark", *options)
    assert done.returncode == 0, done.stderr
    spark_wh = Warehouse.open(Settings(warehouse=tmp_path / "spark", pseudonym_key=KEY_TEXT))
    assert_same_tables(spark_wh, expected)
    return spark_wh


def test_local_mode_gives_the_polars_tables_that_any_iceberg_reader_reads(tmp_path, sample, reference):
    spark_wh = spark_equals_polars(tmp_path, sample, expected=reference)
    assert assert_plain_iceberg_files(spark_wh, OUTPUTS, footers=True) >= len(OUTPUTS)
    assert_readers_agree(spark_wh, tmp_path / "read")
    # then the Polars engine takes over the same warehouse: nothing new, nothing to do
    assert "nothing new" in cli(tmp_path / "spark", "run").stdout


def test_the_starter_data_on_spark(tmp_path, starter):
    spark_equals_polars(tmp_path, starter)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def standalone_cluster(tmp_path):
    """A Spark standalone master and one worker on 127.0.0.1, from the scripts pyspark ships."""
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    env = os.environ | {"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable, "SPARK_LOG_DIR": str(tmp_path)}
    port = _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("master", "worker")]  # noqa: SIM115
    master = subprocess.Popen(
        [str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(_free_port())],
        env=env, stdout=logs[0], stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [str(spark_class), "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1", "--cores", "2",
         "--memory", "2g", "--webui-port", str(_free_port()), "--work-dir", str(tmp_path / "work")],
        env=env, stdout=logs[1], stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while "Successfully registered with master" not in (tmp_path / "worker.log").read_text():
            if time.monotonic() > deadline or worker.poll() is not None or master.poll() is not None:
                pytest.fail("the standalone cluster did not start:\n" + (tmp_path / "worker.log").read_text()[-2000:])
            time.sleep(0.5)
        yield master_url
    finally:
        for proc in (worker, master):
            proc.terminate()
            proc.wait(timeout=30)
        for log in logs:
            log.close()


# -- an S3 warehouse -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_port():
    with moto_server() as port:
        yield port


@pytest.fixture
def s3(s3_port, tmp_path, monkeypatch):
    """A bucket of moto's S3 server behind a relay a test can cut, reached through an AWS profile
    (endpoint, region and credentials in the config and credentials files, none in the
    environment), and an S3 warehouse in it whose prefix has odd characters."""
    import boto3

    relay = Relay(s3_port)
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    (tmp_path / "aws-config").write_text(f"[profile stedi]\nregion = eu-west-3\nendpoint_url = http://127.0.0.1:{relay.port}\n")
    (tmp_path / "aws-credentials").write_text("[stedi]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_PROFILE", "stedi")
    bucket = f"stedi-{os.urandom(4).hex()}"
    boto3.Session().client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    yield SimpleNamespace(
        relay=relay, bucket=bucket, warehouse=f"s3://{bucket}/team a+b/wh", catalog=f"sqlite:///{tmp_path}/catalog.db"
    )
    relay.close()


def s3_warehouse(s3) -> Warehouse:
    return Warehouse.open(Settings(warehouse=s3.warehouse, catalog_uri=s3.catalog, pseudonym_key=KEY_TEXT))


def spark_on_s3(s3, source: Path, *options: str) -> subprocess.CompletedProcess:
    assert cli(s3.warehouse, "ingest", str(source), catalog=s3.catalog).returncode == 0
    return cli(s3.warehouse, "run", "--engine", "spark", *options, catalog=s3.catalog)


def test_local_mode_on_an_s3_warehouse_writes_straight_to_the_bucket(tmp_path, sample, reference, s3):
    before = s3.relay.requests
    done = spark_on_s3(s3, sample)
    assert done.returncode == 0, done.stderr
    assert s3.relay.requests > before  # through the profile's endpoint, the relay
    wh = s3_warehouse(s3)
    assert_same_tables(wh, reference)
    assert assert_plain_iceberg_files(wh, OUTPUTS, footers=True) >= len(OUTPUTS)
    for name in OUTPUTS:
        assert all(f.startswith(f"s3://{s3.bucket}/team a+b/wh/iceberg/") for f in wh.data_files(name))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aws-config", "aws-credentials", "catalog.db"]  # nothing on this disk
    assert_readers_agree(wh, tmp_path / "read")


def test_a_standalone_cluster_on_an_s3_warehouse_gives_the_polars_tables(sample, reference, s3, standalone_cluster):
    done = spark_on_s3(s3, sample, "--spark-master", standalone_cluster)
    assert done.returncode == 0, done.stderr
    assert_same_tables(s3_warehouse(s3), reference)


def test_the_endpoint_failing_mid_spark_run_changes_no_table(tmp_path, sample, s3):
    """The relay cut while the executors write: one line, every table as before, and the next
    run (the Polars engine here) finishes the job."""
    second = tmp_path / "second"
    generate(15, seed=9, out=second)
    expected = polars_warehouse(tmp_path / "polars", sample, second)
    assert cli(s3.warehouse, "ingest", "--run", str(sample), catalog=s3.catalog).returncode == 0
    before = {name: canonical(s3_warehouse(s3), name) for name in OUTPUTS}
    assert cli(s3.warehouse, "ingest", str(second), catalog=s3.catalog).returncode == 0
    s3.relay.cut_after = s3.relay.requests + 150  # the run reads its inputs, then writes its first outputs
    done = cli(s3.warehouse, "run", "--engine", "spark", catalog=s3.catalog)
    assert done.returncode == 1, done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("Error: run failed"), done.stderr[-2000:]
    assert len([line for line in done.stderr.splitlines() if line.startswith("Error:")]) == 1
    s3.relay.restore()
    wh = s3_warehouse(s3)
    for name in OUTPUTS:
        assert_frame_equal(canonical(wh, name), before[name])
    assert cli(s3.warehouse, "run", catalog=s3.catalog).returncode == 0
    for name in OUTPUTS:
        assert_frame_equal(canonical(s3_warehouse(s3), name), canonical(expected, name))


def test_spark_master_that_does_not_answer_is_one_line(tmp_path, sample):
    assert cli(tmp_path / "wh", "ingest", str(sample)).returncode == 0
    port = _free_port()
    done = cli(tmp_path / "wh", "run", "--engine", "spark", "--spark-master", f"spark://127.0.0.1:{port}")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"Error: no Spark master answers at spark://127.0.0.1:{port}"]
    assert Warehouse.open(Settings(warehouse=tmp_path / "wh", pseudonym_key=KEY_TEXT)).info("customer_trusted").rows == 0


def test_a_spark_run_the_audit_stops_leaves_no_file_and_no_change(tmp_path, sample, spark, monkeypatch):
    from stedi import audit
    from stedi.errors import AuditError
    from stedi.spark import SparkTables

    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh", pseudonym_key=KEY_TEXT))
    ingest(wh, sample, KEY)
    monkeypatch.setattr(audit, "audit", lambda *a, **k: [audit.Violation("planted", "customer_trusted", "1 row")])
    with pytest.raises(AuditError):
        run(wh, KEY, engine=SparkTables(spark, wh))
    assert all(wh.info(name).snapshot_id is None for name in OUTPUTS)  # nothing committed
    assert not list((tmp_path / "wh" / "iceberg").rglob("spark-run-*"))  # and the files written are gone
