"""Data quality rules declared in the contracts, the run log, and the `runs` and `quarantine` commands."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
from click.testing import CliRunner

from stedi.cli import cli
from stedi.config import Settings
from stedi.contracts import contract, parse_contract
from stedi.errors import ContractError, JobError
from stedi.ingest import ingest
from stedi.quality import apply_rules
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY, T0, customer, reading, step, write_landing

SECONDS = T0 // 1000  # the same moment in epoch seconds: a classic sender bug
YEAR_3000 = 32_503_680_000_000


def _contract(rules: str, props: str = "") -> str:
    return f"""CREATE TABLE t (a BIGINT, b STRING, {rules})
    TBLPROPERTIES ('stedi.zone' = 'trusted'{props})"""


def test_rules_are_read_from_the_contract():
    c = contract("accelerometer_trusted")
    assert [(r.name, r.action) for r in c.rules] == [("timestamp_in_ms", "drop"), ("xyz_finite", "drop")]
    assert "BETWEEN 946684800000 AND 4102444800000" in c.rules[0].predicate


@pytest.mark.parametrize(
    ("ddl", "message"),
    [
        (_contract("CONSTRAINT r CHECK (a > 0)", ", 'stedi.rule.r' = 'shout'"), "action must be one of"),
        (_contract("CONSTRAINT r CHECK (a > 0)", ", 'stedi.rule.other' = 'warn'"), "name rules with no CHECK"),
    ],
)
def test_a_badly_declared_rule_is_a_contract_error(ddl, message):
    with pytest.raises(ContractError, match=message):
        parse_contract(ddl)


@pytest.mark.parametrize(
    ("action", "kept", "set_aside"),
    [("warn", 3, 0), ("drop", 1, 2)],
)
def test_warn_counts_and_drop_sets_aside(action, kept, set_aside):
    c = parse_contract(_contract("CONSTRAINT positive CHECK (a > 0)", f", 'stedi.rule.positive' = '{action}'"))
    good, bad, results = apply_rules(pl.DataFrame({"a": [1, -1, -2], "b": ["x", "y", None]}), c)
    assert (good.height, bad.height) == (kept, set_aside)
    assert [(r.rule, r.passed, r.failed) for r in results] == [("positive", 1, 2)]
    if set_aside:
        assert bad["reason"].to_list() == ["rule positive failed: a > 0"] * 2
        assert json.loads(bad["raw"][0]) == {"a": -1, "b": "y"}


def test_a_fail_rule_stops_the_job():
    c = parse_contract(_contract("CONSTRAINT positive CHECK (a > 0)", ", 'stedi.rule.positive' = 'fail'"))
    with pytest.raises(JobError, match=r"rule positive \(a > 0\) failed for 1 row"):
        apply_rules(pl.DataFrame({"a": [1, -1], "b": ["x", "y"]}), c)


def test_a_null_passes_as_in_sql():
    c = parse_contract(_contract("CONSTRAINT positive CHECK (a > 0)"))
    good, bad, _ = apply_rules(pl.DataFrame({"a": [None, 1]}, schema={"a": pl.Int64}).with_columns(b=pl.lit("x")), c)
    assert (good.height, bad.height) == (2, 0)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e9])
def test_accelerometer_values_must_be_finite_and_sane(value):
    frame = pl.DataFrame({"user": ["a@b.co"] * 2, "timestamp": [T0, T0], "x": [0.5, value], "y": [0.0, 0.0], "z": [1.0, 1.0]})
    good, bad, _ = apply_rules(frame, contract("accelerometer_trusted"))
    assert good["x"].to_list() == [0.5] and bad["reason"].to_list() == ["rule xyz_finite failed: ABS(x) < 1000000 AND ABS(y) < 1000000 AND ABS(z) < 1000000"]


def _world(tmp_path):
    ann = customer("Ann A")
    bad_email = customer("Bob B", email="bob-at-test.com")
    bad_serial = customer("Cy C", serialNumber="not-a-uuid")
    future = customer("Di D", birthDay="2999-01-01")
    seconds = customer("Ed E", shareWithResearchAsOfDate=SECONDS)  # consent in seconds: no date in the window, no consent
    people = [ann, bad_email, bad_serial, future, seconds]
    readings = [reading(ann["email"], T0), reading(ann["email"], SECONDS), reading(ann["email"], YEAR_3000)]
    readings += [reading(p["email"], T0) for p in people[1:]]
    steps = [step(ann["serialNumber"], T0), step(ann["serialNumber"], T0 + 1, distanceFromObject=-5), step(ann["serialNumber"], SECONDS)]
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, write_landing(tmp_path / "src", people, readings, steps), KEY)
    return wh, people


def test_rules_on_a_warehouse_run(tmp_path):
    wh, (ann, bob, cy, di, ed) = _world(tmp_path)
    summary = run(wh, KEY)
    trusted = wh.scan("customer_trusted").collect()
    assert trusted["email"].to_list() == [ann["email"].lower()]  # Ed's consent is no date: kept out, and said why
    assert wh.scan("accelerometer_trusted").collect().filter(user=ann["email"].lower())["timestamp"].to_list() == [T0]
    assert wh.scan("step_trainer_trusted").collect()["sensorReadingTime"].to_list() == [T0]
    reasons = wh.scan("quarantine").collect().group_by("target_table", "reason").len().sort("reason")
    got = {(r["target_table"], r["reason"].split(":")[0]): r["len"] for r in reasons.iter_rows(named=True)}
    assert got == {
        ("customer_trusted", "rule email_shaped failed"): 1,
        ("customer_trusted", "rule serial_is_uuid failed"): 1,
        ("customer_trusted", "rule birthday_not_in_future failed"): 1,
        ("customer_trusted", "customer kept out"): 1,
        ("accelerometer_trusted", "rule timestamp_in_ms failed"): 2,
        ("step_trainer_trusted", "rule distance_not_negative failed"): 1,
        ("step_trainer_trusted", "rule time_in_ms failed"): 1,
    }
    by_job = {r.output: r for r in summary.results}
    assert by_job["customer_trusted"].rules["consent_in_ms"] == {"action": "fail", "passed": 4, "failed": 0}  # never reached: not consent
    assert by_job["customer_trusted"].rows_quarantined == 3
    assert by_job["customer_trusted"].rows_uncertain == 1


def test_every_run_is_logged_job_by_job_with_its_snapshots(tmp_path):
    wh, _ = _world(tmp_path)
    summary = run(wh, KEY)
    log = wh.scan("run_log").collect()
    assert set(log["run_id"]) == {summary.run_id} and log.height == len(summary.results)
    row = log.filter(output_table="accelerometer_trusted").row(0, named=True)
    assert row["output_snapshot_id"] == wh.info("accelerometer_trusted").snapshot_id
    assert json.loads(row["input_snapshots"]) == {
        "accelerometer_landing": wh.info("accelerometer_landing").snapshot_id,
        "customer_trusted": wh.info("customer_trusted").snapshot_id,
    }
    assert json.loads(row["rule_results"])["timestamp_in_ms"] == {"action": "drop", "passed": 1, "failed": 2}
    snapshot = wh.table("accelerometer_trusted").current_snapshot().summary.additional_properties
    assert json.loads(snapshot["stedi.rules"]) == json.loads(row["rule_results"])
    run(wh, KEY)  # nothing new: nothing logged
    assert wh.info("run_log").rows == log.height


def test_a_failed_run_is_logged_with_its_error(tmp_path, replace_job):
    wh, _ = _world(tmp_path)
    import pipelines.machine_learning_curated as job

    def broken(*frames):
        raise RuntimeError("boom")

    replace_job(job, transform=broken)
    with pytest.raises(JobError, match="boom"):
        run(wh, KEY)
    log = wh.scan("run_log").collect()
    assert set(log["status"]) == {"failed"} and "boom" in log["error"][0]


def test_runs_and_quarantine_commands(tmp_path):
    wh, _ = _world(tmp_path)
    summary = run(wh, KEY)
    runner = CliRunner()
    args = ["--warehouse", str(wh.root)]
    listed = runner.invoke(cli, [*args, "runs"])
    assert listed.exit_code == 0, listed.output
    assert summary.run_id in listed.output and "ok" in listed.output
    one = runner.invoke(cli, [*args, "runs", "--run", summary.run_id])
    assert one.exit_code == 0, one.output
    assert "timestamp_in_ms 1/2 (drop)" in one.output
    missing = runner.invoke(cli, [*args, "runs", "--run", "run-nope"])
    assert missing.exit_code == 1 and "no run 'run-nope'" in missing.output
    q = runner.invoke(cli, [*args, "quarantine", "--table", "step_trainer_trusted"])
    assert q.exit_code == 0, q.output
    assert "rule distance_not_negative failed" in q.output and "email_shaped" not in q.output
    unknown = runner.invoke(cli, [*args, "quarantine", "--table", "nope"])
    assert unknown.exit_code == 1 and "no contract for table 'nope'" in unknown.output
