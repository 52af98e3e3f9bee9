"""The AWS Glue Data Catalog as the Iceberg catalog (``--catalog-uri glue://DATABASE``), against
moto's Glue and S3 server on 127.0.0.1 (with Glue's optimistic locking, tests/moto_glue.py): the
whole flow gives the tables of a local warehouse, each table is registered in Glue as an Iceberg
table at its current metadata, commits that race are retried, and the bucket's lock keeps writers
on other machines out."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from stedi.cli import cli
from stedi.config import Settings
from stedi.errors import ConfigError, StediError
from stedi.locks import BucketLock
from stedi.warehouse import Change, Warehouse
from tests.conftest import SAMPLE
from tests.factories import KEY as FACTORY_KEY
from tests.s3 import moto_server
from tests.test_object_storage import assert_same, ok, one_line_error, state

KEY = FACTORY_KEY.decode()


@pytest.fixture(scope="module")
def aws_port():
    with moto_server("tests.moto_glue") as port:
        yield port


@pytest.fixture
def aws(aws_port, monkeypatch, tmp_path):
    """A bucket and a Glue database name of their own, the standard AWS variables pointing at moto."""
    import boto3

    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    for var, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{aws_port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "STEDI_PSEUDONYM_KEY": KEY,
    }.items():
        monkeypatch.setenv(var, value)
    tag = uuid.uuid4().hex[:10]
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=f"stedi-{tag}")
    return SimpleNamespace(
        bucket=f"stedi-{tag}", warehouse=f"s3://stedi-{tag}/wh", catalog=f"glue://stedi_{tag}", database=f"stedi_{tag}",
        glue=boto3.client("glue", region_name="us-east-1"), s3=boto3.client("s3", region_name="us-east-1"),
    )


def etl(aws, *args: str):
    return CliRunner().invoke(cli, ["--warehouse", aws.warehouse, "--catalog-uri", aws.catalog, *args], catch_exceptions=False)


def glue_warehouse(aws) -> Warehouse:
    return Warehouse.open(Settings(warehouse=aws.warehouse, catalog_uri=aws.catalog))


def test_the_whole_flow_on_glue_gives_the_tables_of_a_local_warehouse(aws, tmp_path):
    local = str(tmp_path / "local")
    for warehouse, catalog in ((local, None), (aws.warehouse, aws.catalog)):
        options = ["--warehouse", warehouse] + (["--catalog-uri", catalog] if catalog else [])
        run = lambda *args, options=options: ok(CliRunner().invoke(cli, [*options, *args], catch_exceptions=False))  # noqa: E731
        run("ingest", str(SAMPLE))
        run("run")
        person = json.loads(run("sql", "--format", "json", "SELECT email FROM customer_trusted ORDER BY email LIMIT 1"))[0]["email"]
        assert "1 person(s) erased" in run("forget", "--email", person)
        run("run")
        assert "audit passed" in run("audit")
    assert_same(state(aws.warehouse, aws.catalog), state(local, None))
    assert "nothing new" in ok(etl(aws, "run"))

    # Every table is in Glue as an Iceberg table at its current metadata: what Athena reads.
    wh = glue_warehouse(aws)
    tables = {t["Name"]: t for page in aws.glue.get_paginator("get_tables").paginate(DatabaseName=aws.database) for t in page["TableList"]}
    assert set(tables) == set(state(aws.warehouse, aws.catalog)) | {"run_log", "erasure_log"}
    for name, table in tables.items():
        assert table["Parameters"]["table_type"] == "ICEBERG", name
        assert table["Parameters"]["metadata_location"] == wh.table(name).metadata_location, name
        assert table["StorageDescriptor"]["Location"] == f"{aws.warehouse}/iceberg/stedi/{name}"
        columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
        assert list(columns) == [f.name for f in wh.table(name).schema().fields], name
        assert not [t for t in columns.values() if "zone" in t]  # timestamps as Athena's plain timestamp
    assert aws.glue.get_database(Name=aws.database)["Database"]["Parameters"]["stedi.warehouse"] == aws.warehouse
    # the writers' lock lives in the bucket, released
    lock = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key="wh/.stedi/writer.lock")["Body"].read())
    assert lock["released"] is True


def test_a_glue_database_of_another_warehouse_is_refused(aws):
    glue_warehouse(aws).table("customer_landing")
    other = Settings(warehouse=f"s3://{aws.bucket}/another", catalog_uri=aws.catalog)
    with pytest.raises(ConfigError, match="holds the tables of another warehouse"):
        Warehouse.open(other).table("customer_landing")


def test_clear_lines_for_what_glue_cannot_do(aws, tmp_path, monkeypatch):
    assert "needs an s3:// warehouse" in one_line_error(
        CliRunner().invoke(cli, ["--warehouse", str(tmp_path / "wh"), "--catalog-uri", aws.catalog, "tables"])
    )
    assert "lowercase letters" in one_line_error(etl(SimpleNamespace(warehouse=aws.warehouse, catalog="glue://My-DB"), "tables"))
    from tests.s3 import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", f"http://127.0.0.1:{free_port()}")  # Glue's endpoint alone, and dead
    assert f"cannot open the Iceberg catalog at {aws.catalog}" in one_line_error(etl(aws, "tables"))


def _quarantine(reason: str):
    from tests.test_crashes import _quarantine_rows

    return _quarantine_rows(reason)


def test_a_commit_another_writer_beat_to_glue_is_retried(aws):
    """Between our read of the Glue table and our UpdateTable, another writer commits: Glue refuses
    our stale VersionId, and the change is rebuilt over theirs and committed."""
    mine, theirs = glue_warehouse(aws), glue_warehouse(aws)
    mine.commit_staged([mine.stage(Change("quarantine", _quarantine("first"), "append"))])
    theirs.table("quarantine")
    staged = mine.stage(Change("quarantine", _quarantine("mine"), "append"))
    catalog = mine.catalog
    real_update = catalog._update_glue_table
    raced: list[str] = []

    def update_after_theirs(**kwargs):
        if not raced:  # their commit lands after we read the table's version
            raced.append("theirs")
            theirs.commit_staged([theirs.stage(Change("quarantine", _quarantine("theirs"), "append"))])
        return real_update(**kwargs)

    catalog._update_glue_table = update_after_theirs
    mine.commit_staged([staged])
    assert raced == ["theirs"]
    assert sorted(glue_warehouse(aws).scan("quarantine").collect()["reason"]) == ["first", "mine", "theirs"]


# -- the bucket's lock ------------------------------------------------------------------------------


def lock_of(aws, lease: float = 1.0) -> BucketLock:
    return BucketLock.of(aws.warehouse, lease=lease)


def test_a_writer_on_another_machine_holds_the_glue_warehouse(aws):
    wh = glue_warehouse(aws)
    busy = pytest.raises(StediError, match=r"busy: stedi-etl forget on .* holds its lock \(s3://.*/wh/.stedi/writer.lock\)")
    # "another machine": the bucket's lock held, no lock file of this machine's
    with lock_of(aws, lease=30).held("stedi-etl forget", time.monotonic() + 5), busy, wh.lock("stedi-etl run", timeout=1.5):
        pass
    with wh.lock("stedi-etl run", timeout=1.5):  # released: free again
        pass


def test_a_holder_that_renews_keeps_the_lock_past_its_lease_and_a_dead_one_loses_it(aws):
    holder, waiter = lock_of(aws), lock_of(aws)
    holder.acquire("holder", time.monotonic() + 5)
    with pytest.raises(StediError, match="busy: holder"):
        waiter.acquire("waiter", time.monotonic() + 2.5)  # 2.5 leases: the holder renewed all along
    holder.check()
    holder._stop.set()  # it dies: no more renewals (and no release)
    holder._thread.join()
    started = time.monotonic()
    waiter.acquire("waiter", time.monotonic() + 10)
    assert time.monotonic() - started >= 0.9  # taken over only once a lease went by unrenewed
    with pytest.raises(StediError, match="lost the warehouse's lock"):
        holder.check()
    waiter.release()


def test_a_lock_taken_again_by_the_same_command_is_a_new_version(aws):
    """S3's ETag is the digest of the bytes: a command taking the lock again with the same record
    (watch, batch after batch) must still write a version no waiter saw before, or a waiter that
    saw the earlier one would count it unchanged for a lease and take over from a live holder."""
    versions = set()
    for _ in range(3):
        lock = lock_of(aws, lease=30)
        with lock.held("stedi-etl watch", time.monotonic() + 5):
            versions.add(lock._etag)
    assert len(versions) == 3


def test_writers_racing_for_the_lock_hold_it_one_at_a_time(aws):
    holding, most, errors = [0], [0], []
    guard = threading.Lock()

    def writer(n: int) -> None:
        try:
            for _ in range(3):
                with lock_of(aws, lease=2).held(f"writer {n}", time.monotonic() + 60):
                    with guard:
                        holding[0] += 1
                        most[0] = max(most[0], holding[0])
                    time.sleep(0.05)
                    with guard:
                        holding[0] -= 1
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and most[0] == 1


def test_a_writer_that_lost_the_lock_commits_nothing(aws):
    wh = glue_warehouse(aws)
    with wh.lock("stedi-etl run"):
        staged = wh.stage(Change("quarantine", _quarantine("late"), "append"))
        wh._lease._lost = "another writer took it over"  # as its renewal would find
        with pytest.raises(StediError, match="lost the warehouse's lock"):
            wh.commit_staged([staged])
    assert glue_warehouse(aws).info("quarantine").rows == 0


def test_a_store_that_ignores_conditional_writes_is_refused(aws):
    lock = lock_of(aws)
    real_put = lock.client.put_object

    def put_ignoring_conditions(**kwargs):
        kwargs.pop("IfMatch", None)
        kwargs.pop("IfNoneMatch", None)
        return real_put(**kwargs)

    lock.client.put_object = put_ignoring_conditions
    with pytest.raises(StediError, match="ignores conditional writes"):
        lock.acquire("stedi-etl run", time.monotonic() + 5)
