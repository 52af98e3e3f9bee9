"""The Iceberg catalog in PostgreSQL instead of the warehouse's SQLite file: the same pipeline and
tables, several writers committing to it, a clear line when it cannot be reached.

The server is the one .ci/run starts ($STEDI_TEST_POSTGRES_URI) or a throwaway cluster started by
the ``postgres_server`` fixture; without PostgreSQL server binaries these tests skip."""

from __future__ import annotations

import os
import subprocess
import sys

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stedi import locks
from stedi.config import Settings
from stedi.errors import ConfigError, StediError
from stedi.ingest import ingest
from stedi.jobs import load_jobs
from stedi.runner import run
from stedi.warehouse import Change, Warehouse
from tests.conftest import SAMPLE
from tests.factories import KEY, customer, reading, write_landing
from tests.tables import LINEAGE, table

pytest.importorskip("psycopg")
OUTPUTS = [job.output for job in load_jobs()]


def canonical(wh: Warehouse, name: str) -> pl.DataFrame:
    return table(wh, name, LINEAGE)


def test_the_pipeline_with_a_postgresql_catalog_gives_the_same_tables(tmp_path, catalog_uri):
    shared = Warehouse.open(Settings(warehouse=tmp_path / "shared", catalog_uri=catalog_uri))
    local = Warehouse.open(Settings(warehouse=tmp_path / "local"))
    for wh in (shared, local):
        ingest(wh, SAMPLE, KEY)
        run(wh, KEY)
    assert not (tmp_path / "shared" / "catalog.db").exists()  # the catalog is in PostgreSQL
    for name in ["customer_landing", *OUTPUTS]:
        assert_frame_equal(canonical(shared, name), canonical(local, name))
    # another process (another user) reads the same tables through the same catalog
    again = Warehouse.open(Settings(warehouse=tmp_path / "shared", catalog_uri=catalog_uri))
    assert again.info("machine_learning_curated").rows == local.info("machine_learning_curated").rows > 0


def _cli(tmp_path, catalog_uri, *args):
    env = os.environ | {"STEDI_WAREHOUSE": str(tmp_path / "wh"), "STEDI_CATALOG_URI": catalog_uri, "STEDI_PSEUDONYM_KEY": KEY.decode()}
    return subprocess.Popen([sys.executable, "-m", "stedi.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_committing_at_once(tmp_path, catalog_uri):
    people = [customer(f"P{i} X") for i in range(4)]
    a = write_landing(tmp_path / "a", people[:2], [reading(p["email"]) for p in people[:2]], name="a")
    b = write_landing(tmp_path / "b", people[2:], [reading(p["email"]) for p in people[2:]], name="b")
    first = [_cli(tmp_path, catalog_uri, "ingest", str(src), "--run") for src in (a, b)]
    for proc in first:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh", catalog_uri=catalog_uri))
    assert wh.info("customer_landing").rows == 4
    assert wh.info("ingest_manifest").rows == 4  # two files each, none lost
    assert sorted(wh.scan("accelerometer_trusted").collect()["user"]) == sorted(p["email"].lower() for p in people)


def test_a_writer_on_another_machine_holds_the_lock(tmp_path, catalog_uri):
    import psycopg

    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh", catalog_uri=catalog_uri))
    with psycopg.connect(catalog_uri.replace("+psycopg", ""), autocommit=True) as other:  # its own session
        other.execute("SELECT pg_advisory_lock(%s)", (locks.lock_id(wh),))
        with pytest.raises(StediError, match="a writer on another machine holds its lock"), wh.lock("stedi-etl run", timeout=0.5):
            pass
        other.execute("SELECT pg_advisory_unlock(%s)", (locks.lock_id(wh),))
    with wh.lock("stedi-etl run", timeout=0.5):
        pass  # free again


def test_a_conflicting_commit_through_postgresql_is_retried(tmp_path, catalog_uri):
    from tests.test_crashes import _quarantine_rows

    mine, theirs = (Warehouse.open(Settings(warehouse=tmp_path / "wh", catalog_uri=catalog_uri)) for _ in range(2))
    mine.commit_staged([mine.stage(Change("quarantine", _quarantine_rows("first"), "append"))])
    theirs.table("quarantine")
    staged = mine.stage(Change("quarantine", _quarantine_rows("mine"), "overwrite"))
    theirs.commit_staged([theirs.stage(Change("quarantine", _quarantine_rows("theirs"), "overwrite"))])
    mine.commit_staged([staged])
    assert mine.scan("quarantine").collect()["reason"].to_list() == ["mine"]


def test_one_catalog_database_is_not_shared_by_two_warehouses(tmp_path, catalog_uri):
    Warehouse.open(Settings(warehouse=tmp_path / "one", catalog_uri=catalog_uri)).table("customer_landing")
    other = Warehouse.open(Settings(warehouse=tmp_path / "two", catalog_uri=catalog_uri))
    with pytest.raises(ConfigError, match="holds the tables of another warehouse"):
        other.table("customer_landing")


def test_an_unreachable_catalog_is_one_clear_line(tmp_path, postgres_server):
    uri = f"{postgres_server.rsplit(':', 1)[0]}:1/nowhere".replace("stedi@", "stedi:secret@")  # nothing listens on port 1
    proc = _cli(tmp_path, uri, "tables")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot open the Iceberg catalog at postgresql+psycopg://stedi:***@127.0.0.1:1/nowhere" in lines[0]
    assert "secret" not in err
