"""The warehouse in object storage: every command against a real S3 HTTP endpoint (moto's
standalone server, started here on 127.0.0.1, behind a relay the tests can cut), an ``s3://``
ingest source, and the endpoint failing mid-command: one clear line, nothing half-written, and the
next command finishes the job."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from click.testing import CliRunner

import stedi
from stedi.cli import cli
from stedi.config import Settings
from stedi.contracts import load_contracts
from stedi.journal import JOURNAL
from stedi.warehouse import Warehouse
from tests.conftest import SAMPLE
from tests.factories import KEY as FACTORY_KEY
from tests.s3 import Relay, moto_server
from tests.tables import assert_same, tables

KEY = FACTORY_KEY.decode()
# Lineage that differs between two ingests of the same files (when, not what).
TABLES = sorted(n for n in load_contracts() if n not in ("run_log", "erasure_log"))
OUTPUTS = sorted(n for n, c in load_contracts().items() if c.zone in ("trusted", "curated"))


@pytest.fixture(scope="module")
def s3_port():
    with moto_server() as port:
        yield port


@pytest.fixture
def relay(s3_port):
    r = Relay(s3_port)
    yield r
    r.close()


@pytest.fixture
def s3(relay, monkeypatch, tmp_path):
    """An empty bucket behind the relay; the standard AWS variables point at it (and at no
    credentials file of the machine's)."""
    import s3fs

    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{relay.port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "STEDI_PSEUDONYM_KEY": KEY,
    }
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    bucket = f"stedi-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    fs.mkdir(bucket)
    return SimpleNamespace(bucket=bucket, fs=fs, warehouse=f"s3://{bucket}/wh", catalog=f"sqlite:///{tmp_path}/catalog.db")


def etl(warehouse: str, catalog: str | None, *args: str):
    options = ["--warehouse", warehouse] + (["--catalog-uri", catalog] if catalog else [])
    return CliRunner().invoke(cli, [*options, *args], catch_exceptions=False)


def ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def state(warehouse: str, catalog: str | None, names=TABLES) -> dict[str, pl.DataFrame]:
    wh = Warehouse.open(Settings(warehouse=warehouse, catalog_uri=catalog))
    return tables(wh, names)


def second_batch(root: Path) -> Path:
    """New customers and readings, generated (not the sample's)."""
    out = root / "batch2"
    ok(CliRunner().invoke(cli, ["generate", "--customers", "12", "--seed", "11", "--out", str(out)]))
    return out


def test_every_command_on_an_s3_warehouse_gives_the_tables_of_a_local_one(s3, tmp_path):
    local = str(tmp_path / "local")
    person = None
    for where, catalog in ((local, None), (s3.warehouse, s3.catalog)):
        ok(etl(where, catalog, "ingest", str(SAMPLE)))
        ok(etl(where, catalog, "run"))
        person = person or json.loads(ok(etl(where, catalog, "sql", "--format", "json", "SELECT email FROM customer_trusted ORDER BY email LIMIT 1")))[0]["email"]
        assert "1 person(s) erased" in ok(etl(where, catalog, "forget", "--email", person))
        ok(etl(where, catalog, "run"))
        assert "audit passed" in ok(etl(where, catalog, "audit"))
    assert_same(state(s3.warehouse, s3.catalog), state(local, None))

    counts = {row["table"]: row["rows"] for row in json.loads(ok(etl(s3.warehouse, s3.catalog, "tables", "--format", "json")))}
    assert counts["machine_learning_curated"] > 0
    sql = json.loads(ok(etl(s3.warehouse, s3.catalog, "sql", "--format", "json", "SELECT count(*) AS n FROM machine_learning_curated")))
    assert sql == [{"n": counts["machine_learning_curated"]}]
    # in a notebook: DuckDB and Polars over the same tables in the bucket
    con = stedi.connect(s3.warehouse, catalog_uri=s3.catalog)
    assert con.sql("SELECT count(*) FROM machine_learning_curated").fetchall() == [(counts["machine_learning_curated"],)]
    assert stedi.table("customers_curated", s3.warehouse, s3.catalog).collect().height == counts["customers_curated"]
    assert "run" in ok(etl(s3.warehouse, s3.catalog, "runs"))
    ok(etl(s3.warehouse, s3.catalog, "quarantine"))
    # a re-run finds nothing new; the landing copies, tables and private state are in the bucket
    assert "nothing new" in ok(etl(s3.warehouse, s3.catalog, "run"))
    stored = s3.fs.find(s3.bucket)
    assert any(p.startswith(f"{s3.bucket}/wh/landing/customer/") for p in stored)
    assert any(p.startswith(f"{s3.bucket}/wh/iceberg/stedi/machine_learning_curated/data/") for p in stored)
    assert f"{s3.bucket}/wh/.stedi/audit-passed" in stored
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.db", "local"]  # nothing else on this disk
    # forget removed the person's raw lines from the bucket too
    assert not [p for p in stored if "/landing/" in p and person.encode() in s3.fs.cat_file(p).lower()]


def test_the_pseudonym_key_is_kept_in_the_bucket_when_not_given(s3, monkeypatch):
    monkeypatch.delenv("STEDI_PSEUDONYM_KEY")
    ok(etl(s3.warehouse, s3.catalog, "ingest", "--run", str(SAMPLE)))
    key = s3.fs.cat_file(f"{s3.bucket}/wh/.stedi/pseudonym.key")
    assert len(key) == 64
    before = state(s3.warehouse, s3.catalog, ["customers_curated"])
    assert "nothing new" in ok(etl(s3.warehouse, s3.catalog, "run"))  # the same key read back
    assert_same(state(s3.warehouse, s3.catalog, ["customers_curated"]), before)


def test_ingest_takes_an_s3_source_laid_out_like_the_public_bucket(s3, tmp_path):
    for source, folder in (("customer", "customers"), ("accelerometer", "accelerometer"), ("step_trainer", "step_trainer")):
        for path in (SAMPLE / source / "landing").iterdir():
            s3.fs.put_file(str(path), f"{s3.bucket}/stedi-data/{folder}/{path.name}")
    from_s3, from_disk = str(tmp_path / "a"), str(tmp_path / "b")
    files = len([p for p in SAMPLE.rglob("*.json")])
    assert f"{files} file(s) ingested, 0 skipped" in ok(etl(from_s3, None, "ingest", f"s3://{s3.bucket}/stedi-data"))
    ok(etl(from_disk, None, "ingest", str(SAMPLE)))
    landing = ["customer_landing", "accelerometer_landing", "step_trainer_landing", "ingest_manifest"]
    assert_same(state(from_s3, None, landing), state(from_disk, None, landing))
    # the same files again, from S3: recognised by content
    assert "0 file(s) ingested" in ok(etl(from_s3, None, "ingest", f"s3://{s3.bucket}/stedi-data"))


def test_clear_errors_for_what_s3_cannot_do(s3, tmp_path):
    assert "--catalog-uri" in one_line_error(etl(s3.warehouse, None, "tables"))
    assert "does not exist" in one_line_error(etl("s3://no-such-bucket-here/wh", s3.catalog, "tables"))
    assert "does not exist" in one_line_error(etl(str(tmp_path / "wh"), None, "ingest", f"s3://{s3.bucket}/nothing"))
    assert "gs://" in one_line_error(etl("gs://bucket/wh", s3.catalog, "tables"))


def test_an_endpoint_that_does_not_answer_is_one_line(s3, relay):
    relay.cut()
    assert "storage at s3://" in one_line_error(etl(s3.warehouse, s3.catalog, "tables"))
    assert "storage at s3://" in one_line_error(etl(str(Path.cwd() / "wh"), None, "ingest", f"s3://{s3.bucket}/src"))


# -- the endpoint failing mid-command ----------------------------------------------------------------


@pytest.fixture
def reference(tmp_path_factory):
    """The tables after ingest + run of the sample, then ingest + run of a second batch, locally."""
    root = tmp_path_factory.mktemp("reference")
    batch = second_batch(root)
    where = str(root / "wh")
    ok(etl(where, None, "ingest", "--run", str(SAMPLE)))
    first = state(where, None)
    ok(etl(where, None, "ingest", "--run", str(batch)))
    return SimpleNamespace(batch=batch, first=first, last=state(where, None))


def _requests(relay: Relay, *command: str, s3) -> int:
    before = relay.requests
    ok(etl(s3.warehouse, s3.catalog, *command))
    return relay.requests - before


@pytest.mark.parametrize("when", [0.3, 0.65, 0.9, 0.98])
def test_the_endpoint_failing_mid_run_leaves_nothing_half_written(s3, relay, reference, when, tmp_path):
    ok(etl(s3.warehouse, s3.catalog, "ingest", "--run", str(SAMPLE)))
    ok(etl(s3.warehouse, s3.catalog, "ingest", str(reference.batch)))
    # how many requests a run makes here, measured on a copy of the catalog (the bucket is shared,
    # but a run that commits to the copy leaves the original's snapshots untouched)
    probe = tmp_path / "probe.db"
    shutil.copy(s3.catalog.removeprefix("sqlite:///"), probe)
    total = relay.requests
    ok(etl(s3.warehouse, f"sqlite:///{probe}", "run"))
    total = relay.requests - total

    relay.cut_after = relay.requests + max(1, int(when * total))
    line = one_line_error(etl(s3.warehouse, s3.catalog, "run"))
    said = ("storage at s3://", "run failed", "could not be put back", "committed its tables, but its run_log", "committed its tables, but expiring")
    assert any(s in line for s in said), line
    relay.restore()

    # whoever comes next sees a whole warehouse: every output as before the run, or every one as after
    outputs = state(s3.warehouse, s3.catalog, OUTPUTS)  # opening settles a half-done commit first
    first = {n: reference.first[n] for n in OUTPUTS}
    last = {n: reference.last[n] for n in OUTPUTS}
    try:
        assert_same(outputs, first)
    except AssertionError:
        assert_same(outputs, last)
    assert not s3.fs.exists(f"{s3.bucket}/wh/{JOURNAL}")
    # and the next run finishes the job
    ok(etl(s3.warehouse, s3.catalog, "run"))
    assert_same(state(s3.warehouse, s3.catalog), reference.last)
    assert "audit passed" in ok(etl(s3.warehouse, s3.catalog, "audit"))


def test_the_endpoint_failing_mid_ingest_keeps_nothing_and_the_next_ingest_lands_all(s3, relay, reference):
    ok(etl(s3.warehouse, s3.catalog, "ingest", "--run", str(SAMPLE)))
    before = state(s3.warehouse, s3.catalog)
    relay.cut_after = relay.requests + 25  # copies are being written
    one_line_error(etl(s3.warehouse, s3.catalog, "ingest", str(reference.batch)))
    relay.restore()
    assert_same(state(s3.warehouse, s3.catalog), before)
    ok(etl(s3.warehouse, s3.catalog, "ingest", "--run", str(reference.batch)))
    assert_same(state(s3.warehouse, s3.catalog), reference.last)
    assert "audit passed" in ok(etl(s3.warehouse, s3.catalog, "audit"))  # no stray copy in landing/


def test_writers_of_one_s3_warehouse_on_this_machine_wait_for_each_other(s3):
    from stedi.errors import StediError

    first = Warehouse.open(Settings(warehouse=s3.warehouse, catalog_uri=s3.catalog))
    second = Warehouse.open(Settings(warehouse=s3.warehouse, catalog_uri=s3.catalog))
    other = Warehouse.open(Settings(warehouse=f"s3://{s3.bucket}/another", catalog_uri=s3.catalog + "-2"))
    busy = pytest.raises(StediError, match=rf"s3://{s3.bucket}/wh is busy \(stedi-etl run, pid \d+\)")
    with first.lock("stedi-etl run"):
        with busy, second.lock("stedi-etl ingest", timeout=0.3):
            pass
        with other.lock("stedi-etl ingest", timeout=0.3):  # another warehouse: its own lock
            pass
    with second.lock("stedi-etl ingest", timeout=0.3):  # free again once the first is done
        pass


def test_the_settings_file_of_an_s3_warehouse_is_read_from_the_bucket(s3):
    s3.fs.pipe_file(f"{s3.bucket}/wh/stedi.toml", f'catalog_uri = "{s3.catalog}"\nconsent_scope = "since-consent"\n'.encode())
    ok(etl(s3.warehouse, None, "ingest", "--run", str(SAMPLE)))  # no --catalog-uri: the file names it
    wh = Warehouse.open(Settings(warehouse=s3.warehouse, catalog_uri=s3.catalog))
    assert wh.snapshot_property("accelerometer_trusted", "stedi.consent-scope") == "since-consent"
    s3.fs.pipe_file(f"{s3.bucket}/wh/stedi.toml", b"consent_scope = 'sometimes'\n")
    assert "consent scope must be one of" in one_line_error(etl(s3.warehouse, s3.catalog, "tables"))


def test_two_processes_creating_the_key_of_a_new_s3_warehouse_at_once_get_the_same_key(s3):
    from stedi import keys
    from stedi.config import Settings
    from stedi.storage import Storage

    settings = Settings(warehouse=s3.warehouse)
    first, second = Storage(s3.warehouse), Storage(s3.warehouse)
    real_read = Storage.read_bytes
    seen: list[str] = []

    def read_after_the_other_created_it(self, rel):  # both found no key (nor its check), then both create one
        if rel.endswith(("pseudonym.key", "key.json")) and rel not in seen:
            seen.append(rel)
            raise FileNotFoundError(rel)
        return real_read(self, rel)

    key = keys.load(settings, first, create=True, holds_data=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Storage, "read_bytes", read_after_the_other_created_it)
        assert keys.load(settings, second, create=True, holds_data=False) == key
    assert keys.load(settings, first, create=False, holds_data=True) == key  # and the first one's is still the key


def test_the_compose_setup_an_s3_warehouse_with_its_catalog_in_postgresql(s3, catalog_uri, tmp_path, monkeypatch):
    """What docker-compose.yml runs (MinIO + PostgreSQL), with moto in MinIO's place, through the
    environment variables only."""
    local = str(tmp_path / "local")
    ok(etl(local, None, "ingest", "--run", str(SAMPLE)))
    monkeypatch.setenv("STEDI_WAREHOUSE", s3.warehouse)
    monkeypatch.setenv("STEDI_CATALOG_URI", catalog_uri)
    runner = CliRunner()
    for command in (["ingest", str(SAMPLE)], ["run"], ["tables"]):
        ok(runner.invoke(cli, command, catch_exceptions=False))
    assert_same(state(s3.warehouse, catalog_uri), state(local, None))
    # the same catalog named for another warehouse (the variable left set by mistake) is refused
    line = one_line_error(etl(local, None, "tables"))
    assert "holds the tables of another warehouse" in line and s3.warehouse in line
