"""Retention: after a customer withdraws, no snapshot returns their rows and no file holds them; the
people who stay keep time travel; ordinary snapshots are kept for the configured days."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from stedi import retention
from stedi.cli import cli
from stedi.config import Settings
from stedi.contracts import load_contracts
from stedi.ingest import ingest
from stedi.privacy import customer_key
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY, T0, customer, reading, step, write_landing

CONSENT_FILTERED = sorted(n for n, c in load_contracts().items() if c.zone in ("trusted", "curated") and c.owner and not c.holds_everyone)


def _values(email: str, serial: str) -> dict[str, set[str]]:
    return {"email": {email}, "serial": {serial}, "customer_key": {customer_key(email, KEY)}, "identifier": {email, serial}}


def _rows_of(table, snapshot_id: int, owner: str, values: set[str]) -> int:
    got = table.scan(snapshot_id=snapshot_id, selected_fields=(owner,)).to_arrow()[owner]
    return int(pc.sum(pc.is_in(pc.cast(got, "string"), value_set=pc.cast(list(values), "string"))).as_py() or 0)


def _files_holding(root: Path, name: str, owner: str, values: set[str]) -> list[Path]:
    """Data files of table ``name`` in the folder (whatever the metadata says) holding one of ``values``."""
    found = []
    for path in (root / "iceberg" / "stedi" / name).rglob("*.parquet"):
        column = pq.read_table(path, columns=[owner])[owner]
        if pc.any(pc.is_in(pc.cast(column, "string"), value_set=pc.cast(list(values), "string"))).as_py():
            found.append(path)
    return found


@pytest.fixture
def withdrawn(tmp_path):
    """Bea consents throughout; Ann consents in the second run and withdraws in the third."""
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    bea = customer("Bea Stay")
    ann = customer("Ann Leave", shareWithResearchAsOfDate=None)
    readings = [reading(p["email"], T0 + i) for p in (ann, bea) for i in range(3)]
    steps = [step(p["serialNumber"], T0 + i) for p in (ann, bea) for i in range(3)]
    ingest(wh, write_landing(tmp_path / "b1", [bea, ann], readings, steps, name="b1"), KEY)
    first = run(wh, KEY)
    snapshots = {"first": {n: wh.table(n).current_snapshot().snapshot_id for n in CONSENT_FILTERED}, "first_run": first.run_id}
    ingest(wh, write_landing(tmp_path / "b2", [ann | {"lastUpdateDate": T0 + 1000, "shareWithResearchAsOfDate": T0 + 1000}], name="b2"), KEY)
    snapshots["consented_run"] = run(wh, KEY).run_id
    assert ann["email"].lower() in set(wh.scan("customer_trusted").collect()["email"])  # Ann is in now
    snapshots["consented"] = {n: wh.table(n).current_snapshot().snapshot_id for n in CONSENT_FILTERED}
    ingest(wh, write_landing(tmp_path / "b3", [ann | {"lastUpdateDate": T0 + 2000, "shareWithResearchAsOfDate": None}], name="b3"), KEY)
    last = run(wh, KEY)
    return wh, ann, bea, first, last, snapshots


def test_no_snapshot_returns_a_withdrawn_customers_rows(withdrawn):
    wh, ann, _, _, last, snapshots = withdrawn
    assert last.retained.departed == 1 and last.retained.snapshots_expired > 0 and last.retained.files_deleted > 0
    theirs = _values(ann["email"].lower(), ann["serialNumber"])
    for name in CONSENT_FILTERED:
        c, table = load_contracts()[name], wh.table(name)
        assert snapshots["consented"][name] not in {s.snapshot_id for s in table.metadata.snapshots}, name
        for s in table.metadata.snapshots:
            assert _rows_of(table, s.snapshot_id, c.owner, theirs[c.owner_kind]) == 0, (name, s.snapshot_id)


def test_no_file_in_the_folder_holds_them(withdrawn):
    wh, ann, _, _, _, _ = withdrawn
    theirs = _values(ann["email"].lower(), ann["serialNumber"])
    for name in CONSENT_FILTERED:
        c = load_contracts()[name]
        assert _files_holding(wh.root, name, c.owner, theirs[c.owner_kind]) == [], name
    metadata = [p for n in CONSENT_FILTERED for p in (wh.root / "iceberg" / "stedi" / n / "metadata").iterdir()]
    assert all(p.suffix != ".json" or p.name == Path(wh.table(p.parent.parent.name).metadata_location).name for p in metadata)


def test_the_people_who_stay_keep_time_travel(withdrawn):
    wh, _, bea, _, _, snapshots = withdrawn
    table = wh.table("customer_trusted")
    before_ann = snapshots["first"]["customer_trusted"]  # from before Ann consented: nothing of hers
    assert before_ann in {s.snapshot_id for s in table.metadata.snapshots}
    assert table.scan(snapshot_id=before_ann).to_arrow()["email"].to_pylist() == [bea["email"].lower()]
    for name in ("customer_landing", "ingest_manifest"):  # landing keeps its history (within retention)
        assert len(wh.table(name).metadata.snapshots) == 3, name


def test_sql_as_of_says_expired_rather_than_show_another_state(withdrawn):
    wh, _, bea, _, _, snapshots = withdrawn
    env = {"STEDI_PSEUDONYM_KEY": KEY.decode()}

    def as_of(run_id: str):
        return CliRunner().invoke(cli, ["--warehouse", str(wh.root), "sql", "--format", "csv", "--as-of", run_id, "SELECT email FROM customer_trusted"], env=env)

    gone = as_of(snapshots["consented_run"])  # the run that let Ann in: its customer_trusted is gone
    assert gone.exit_code == 1 and "expired" in gone.output and len(gone.output.strip().splitlines()) == 1
    kept = as_of(snapshots["first_run"])
    assert kept.exit_code == 0, kept.output
    assert list(csv.reader(io.StringIO(kept.output))) == [["email"], [bea["email"].lower()]]


def test_ordinary_snapshots_are_kept_for_the_retention_days(tmp_path):
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    people = [customer(f"P{i} Q") for i in range(2)]
    for i, p in enumerate(people):
        ingest(wh, write_landing(tmp_path / f"b{i}", [p], [reading(p["email"])], name=f"b{i}"), KEY)
        run(wh, KEY)
    assert len(wh.table("customer_trusted").metadata.snapshots) >= 2  # within 7 days: all kept
    with wh.lock("test"):
        week_on = int(time.time() * 1000) + 8 * retention.DAY_MS
        done = retention.enforce(wh, wh.keys(KEY), before=None, now_ms=week_on)
    assert done.departed == 0 and done.snapshots_expired > 0
    for name in load_contracts():
        table = wh.table(name)
        assert len(table.metadata.snapshots) <= 1, name  # the current one is kept however old
        if table.current_snapshot() is not None:
            assert table.scan().to_arrow().num_rows == wh.info(name).rows
            files = {p.as_uri() for p in (wh.root / "iceberg" / "stedi" / name / "data").rglob("*.parquet")}
            assert files == set(_current_files(table)), name  # only the current snapshot's files remain


def _current_files(table) -> list[str]:
    from stedi.maintenance import data_files

    return sorted(data_files(table, table.current_snapshot()))


def test_retention_zero_keeps_only_the_current_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv("STEDI_RETENTION_DAYS", "0")
    monkeypatch.setenv("STEDI_PSEUDONYM_KEY", KEY.decode())
    runner = CliRunner()
    for i in range(2):
        p = customer(f"R{i} S")
        src = write_landing(tmp_path / f"b{i}", [p], [reading(p["email"])], name=f"b{i}")
        result = runner.invoke(cli, ["--warehouse", str(tmp_path / "wh"), "ingest", "--run", str(src)])
        assert result.exit_code == 0, result.output
    assert "old snapshot(s) expired" in result.output
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    assert all(len(wh.table(n).metadata.snapshots) <= 1 for n in load_contracts())
    assert wh.info("customer_trusted").rows == 2


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_a_bad_retention_is_one_line(tmp_path, monkeypatch, value):
    monkeypatch.setenv("STEDI_RETENTION_DAYS", value)
    result = CliRunner().invoke(cli, ["--warehouse", str(tmp_path / "wh"), "run"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: retention_days must be a whole number of days, 0 or more, not {value!r}"]


def test_the_warehouse_file_sets_the_retention(tmp_path):
    (tmp_path / "wh").mkdir()
    (tmp_path / "wh" / "stedi.toml").write_text("retention_days = 30\n")
    from stedi.config import resolve

    assert resolve({}, warehouse=str(tmp_path / "wh")).retention_days == 30


def test_as_of_a_run_all_of_whose_snapshots_went_says_expired(tmp_path):
    """Every snapshot a table had as of the run held the withdrawn customer: none survives before the
    withdrawal, and pyiceberg unlinks the next snapshot from its expired parent."""
    people = [customer(n) for n in ("Ann First", "Bob First", "Cat First")]
    env = {"STEDI_PSEUDONYM_KEY": KEY.decode()}
    runner, wh = CliRunner(), str(tmp_path / "wh")
    b1 = write_landing(tmp_path / "b1", people, [reading(p["email"], T0 + i) for p in people for i in range(3)], name="b1")
    b2 = write_landing(tmp_path / "b2", [people[0] | {"lastUpdateDate": T0 + 5000, "shareWithResearchAsOfDate": None}], name="b2")
    for src in (b1, b2):
        assert runner.invoke(cli, ["--warehouse", wh, "ingest", "--run", str(src)], env=env).exit_code == 0
    w = Warehouse.open(Settings(warehouse=wh))
    first = w.scan("run_log").collect().sort("started_at")["run_id"][0]  # (ids of one second sort by their random part)
    result = runner.invoke(cli, ["--warehouse", wh, "sql", "--as-of", first, "SELECT count(*) FROM accelerometer_trusted"], env=env)
    assert result.exit_code == 1 and "has expired" in result.output, result.output
    landing = runner.invoke(cli, ["--warehouse", wh, "sql", "--format", "csv", "--as-of", first, "SELECT count(*) AS n FROM accelerometer_landing"], env=env)
    assert landing.exit_code == 0 and landing.output.split()[-1] == "9"  # landing keeps its history
