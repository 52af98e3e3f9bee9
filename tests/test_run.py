"""Runs against a warehouse: all or nothing, and a second run with nothing new changes nothing."""

from __future__ import annotations

import dataclasses
import secrets

import pytest

import pipelines.machine_learning_curated as ml_job
from stedi.config import Settings
from stedi.errors import ConfigError, JobError
from stedi.generate import generate
from stedi.ingest import ingest
from stedi.jobs import load_jobs
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY, customer, reading, step, write_landing

TABLES = [job.output for job in load_jobs()]
ORIGINAL = (
    "customer_landing_to_trusted",
    "accelerometer_landing_to_trusted",
    "customer_trusted_to_curated",
    "step_trainer_landing_to_trusted",
    "machine_learning_curated",
)


@pytest.fixture
def wh(tmp_path):
    generate(30, seed=5, out=tmp_path / "src")
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, tmp_path / "src")
    return wh


def snapshots(wh):
    return {name: wh.info(name).snapshot_id for name in [*TABLES, "quarantine"]}


def test_jobs_run_in_dependency_order():
    jobs = load_jobs()
    position = {job.output: i for i, job in enumerate(jobs)}
    for i, job in enumerate(jobs):
        assert all(position[name] < i for name in job.inputs if name in position), job.name
    assert [j.name for j in jobs if j.name in ORIGINAL] == list(ORIGINAL)  # the original order still holds


def test_a_second_run_with_nothing_new_changes_no_table(wh):
    first = run(wh, KEY)
    assert all(r.status == "updated" for r in first.results)
    before = snapshots(wh)
    second = run(wh, KEY)
    assert all(r.status == "unchanged" for r in second.results)
    assert not second.changed
    assert snapshots(wh) == before
    assert [r.rows_out for r in second.results] == [r.rows_out for r in first.results]


def test_new_landing_data_reruns_what_depends_on_it(wh, tmp_path):
    run(wh, KEY)
    ann = customer("Ann Late")
    ingest(wh, write_landing(tmp_path / "more", readings=[reading("nobody@test.com")], name="late"))
    summary = {r.job: r.status for r in run(wh, KEY).results}
    assert summary["customer_landing_to_trusted"] == "unchanged"
    assert summary["accelerometer_landing_to_trusted"] == "updated"
    ingest(wh, write_landing(tmp_path / "more2", [ann], [reading(ann["email"])], [step(ann["serialNumber"])], name="l2"))
    out = run(wh, KEY)
    assert all(r.status == "updated" for r in out.results)
    assert wh.scan("customer_trusted").filter(email="ann.late@test.com").collect().height == 1


def test_rerunning_never_appends_duplicates(wh, monkeypatch):
    run(wh, KEY)
    counts = {t: wh.info(t).rows for t in TABLES}
    keys = {t: set(wh.scan(t).collect()["customer_key"]) for t in ("customers_curated", "machine_learning_curated")}
    # another key is refused: the warehouse's pseudonyms are its key's
    with pytest.raises(ConfigError, match="not the pseudonym key"):
        run(wh, b"c0ffee" * 11)
    assert {t: wh.info(t).rows for t in TABLES} == counts
    # a deliberate change of key changes every pseudonym: the curated tables are rebuilt, not appended to
    from stedi.rotation import rotate_key

    monkeypatch.setattr(wh, "settings", dataclasses.replace(wh.settings, pseudonym_key=KEY.decode(), new_pseudonym_key=secrets.token_hex(32)))
    rotate_key(wh)
    assert {t: wh.info(t).rows for t in TABLES} == counts
    for table, before in keys.items():
        assert not before & set(wh.scan(table).collect()["customer_key"]), table


def test_a_failing_job_changes_no_table(wh, replace_job):
    run(wh, KEY)
    before = snapshots(wh)

    def broken(*frames):
        raise RuntimeError("boom")

    replace_job(ml_job, transform=broken)
    with pytest.raises(JobError, match="boom"):
        run(wh, KEY, full_refresh=True)  # every job is stale
    assert snapshots(wh) == before


def test_a_commit_failing_midway_puts_back_the_tables_already_committed(wh, monkeypatch):
    from pyiceberg.table import Transaction

    run(wh, KEY)
    before = snapshots(wh)
    rows_before = {t: wh.info(t).rows for t in TABLES}
    history_before = len(wh.table("customer_trusted").snapshots())
    real_commit = Transaction.commit_transaction

    def flaky(self):
        if self._table.name()[-1] == "step_trainer_trusted":  # the 4th of 5 commits
            raise OSError("disk full")
        return real_commit(self)

    monkeypatch.setattr(Transaction, "commit_transaction", flaky)
    with pytest.raises(JobError, match="every table is as it was before"):
        run(wh, KEY, full_refresh=True)
    monkeypatch.undo()
    # customer_trusted was committed before the failure (its history grew), then put back
    assert len(wh.table("customer_trusted").snapshots()) > history_before
    assert snapshots(wh) == before
    assert {t: wh.info(t).rows for t in TABLES} == rows_before


def test_a_run_log_that_cannot_be_written_is_said_after_the_tables_are_committed(wh, monkeypatch):
    from pyiceberg.table import Transaction

    from stedi.errors import StediError

    real_commit = Transaction.commit_transaction

    def storage_down_for_the_log(self):
        if self._table.name()[-1] == "run_log":
            raise OSError("connection reset")
        return real_commit(self)

    monkeypatch.setattr(Transaction, "commit_transaction", storage_down_for_the_log)
    with pytest.raises(StediError, match=r"committed its tables, but its run_log rows could not be written: connection reset"):
        run(wh, KEY)
    monkeypatch.undo()
    assert all(wh.info(t).snapshot_id is not None for t in TABLES)  # published, whole
    assert wh.info("run_log").rows == 0
    assert not run(wh, KEY).changed  # and the next run finds nothing to do


def test_output_rows_breaking_the_contract_are_quarantined_not_written():
    import polars as pl

    from stedi.contracts import contract
    from stedi.quality import split_invalid

    frame = pl.DataFrame({"user": ["a@b.c", None], "timestamp": [1, None], "x": [1.0, 2.0], "y": [0.0, 0.0], "z": [0.0, 0.0]})
    good, bad = split_invalid(frame, contract("accelerometer_trusted"))
    assert good["user"].to_list() == ["a@b.c"]
    assert bad["reason"].to_list() == ["user is null; timestamp is null"]
    assert '"x":2.0' in bad["raw"][0]
    clean, none = split_invalid(good, contract("accelerometer_trusted"))
    assert clean.height == 1 and none.height == 0


def test_full_refresh_rebuilds_every_table_to_the_same_rows(wh):
    run(wh, KEY)
    before = snapshots(wh)
    counts = {t: wh.info(t).rows for t in TABLES}
    refreshed = run(wh, KEY, full_refresh=True)
    assert all(r.status == "updated" for r in refreshed.results)
    after = snapshots(wh)
    assert all(after[t] != before[t] for t in TABLES)
    assert {t: wh.info(t).rows for t in TABLES} == counts
    assert not run(wh, KEY).changed


def test_a_second_writer_waits_for_the_lock_then_says_who_holds_it(tmp_path):
    from stedi.errors import StediError

    first = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    second = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    busy = pytest.raises(StediError, match=r"is busy \(stedi-etl run, pid \d+\); waited 0s")
    with first.lock("stedi-etl run"), busy, second.lock("stedi-etl ingest", timeout=0.3):
        pass
    with second.lock("stedi-etl ingest", timeout=0.3):  # free again once the first is done
        pass


def test_a_second_run_does_not_audit_again(wh, monkeypatch):
    run(wh, KEY)
    import stedi.audit

    def must_not_run(*args, **kwargs):
        raise AssertionError("the audit ran again although nothing it reads changed")

    monkeypatch.setattr(stedi.audit, "audit", must_not_run)
    assert not run(wh, KEY).changed
