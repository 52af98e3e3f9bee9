"""``stedi-etl run --engine spark``: the same transforms on PySpark, the executors writing the
tables' Parquet files, the driver committing them through pyiceberg. Every table must equal the
Polars engine's, in local mode and on a standalone master with one worker started here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stedi.config import Settings
from stedi.generate import generate
from stedi.ingest import ingest
from stedi.runner import load_jobs, run
from stedi.warehouse import Warehouse
from tests.factories import KEY

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("PySpark needs Java", allow_module_level=True)

OUTPUTS = [job.output for job in load_jobs()]
KEY_TEXT = KEY.decode()


def canonical(wh: Warehouse, name: str) -> pl.DataFrame:
    frame = wh.scan(name).collect().drop("recorded_at", strict=False)  # when each warehouse ingested
    return frame.sort(frame.columns)


def cli(warehouse: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"STEDI_WAREHOUSE": str(warehouse), "STEDI_PSEUDONYM_KEY": KEY_TEXT, "PYSPARK_PYTHON": sys.executable}
    return subprocess.run([sys.executable, "-m", "stedi.cli", *args], env=env, capture_output=True, text=True, timeout=600)


def polars_warehouse(root: Path, source: Path) -> Warehouse:
    wh = Warehouse.open(Settings(warehouse=root, pseudonym_key=KEY_TEXT))
    ingest(wh, source, KEY)
    run(wh, KEY)
    return wh


def assert_same_tables(spark_root: Path, polars_wh: Warehouse) -> None:
    spark_wh = Warehouse.open(Settings(warehouse=spark_root, pseudonym_key=KEY_TEXT))
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


def spark_equals_polars(tmp_path: Path, source: Path, *options: str) -> None:
    """Ingest ``source`` twice; run it on Polars and on Spark (``options``); every table equal."""
    expected = polars_warehouse(tmp_path / "polars", source)
    assert cli(tmp_path / "spark", "ingest", str(source)).returncode == 0
    done = cli(tmp_path / "spark", "run", "--engine", "spark", *options)
    assert done.returncode == 0, done.stderr
    assert_same_tables(tmp_path / "spark", expected)


def test_local_mode_gives_the_polars_tables(tmp_path, sample):
    spark_equals_polars(tmp_path, sample)
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


def test_a_standalone_cluster_gives_the_polars_tables(tmp_path, sample, standalone_cluster):
    spark_equals_polars(tmp_path, sample, "--spark-master", standalone_cluster)


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
