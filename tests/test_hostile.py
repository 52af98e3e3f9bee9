"""Hostile input: whatever arrives, no run crashes and no good record is lost; what cannot be kept
is set aside or kept out, and reported."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from stedi.audit import audit
from stedi.config import Settings
from stedi.contracts import contract
from stedi.ingest import ingest
from stedi.runner import run
from stedi.warehouse import Change, Warehouse
from tests.factories import KEY, T0, customer, reading, run_jobs, step, write_landing


def test_a_device_registered_to_several_customers_is_kept_out_and_reported(tmp_path):
    ann, bob = customer("Ann A"), customer("Bob B")
    cy = customer("Cy C", serialNumber=ann["serialNumber"], shareWithResearchAsOfDate=None)  # the fulfillment defect
    readings = [reading(c["email"], T0) for c in (ann, bob)]
    steps = [step(ann["serialNumber"], T0), step(ann["serialNumber"], T0 + 1), step(bob["serialNumber"], T0)]
    out = run_jobs([ann, bob, cy], readings, steps)
    assert out["step_trainer_trusted"]["serialNumber"].to_list() == [bob["serialNumber"]]
    assert out["machine_learning_curated"].height == 1  # Bob's only
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, write_landing(tmp_path / "src", [ann, bob, cy], readings, steps), KEY)
    summary = run(wh, KEY)
    assert summary.unattributable == 2
    assert {r.output: r.rows_unattributable for r in summary.results}["step_trainer_trusted"] == 2


@pytest.mark.parametrize("one_run", [True, False])
def test_the_same_record_in_two_files_is_one_row(tmp_path, one_run):
    """Two exports overlapping by some readings (other bytes, so both files land): each reading is
    kept once, whether both files arrive before one run or each before its own (incremental) run."""
    ann = customer("Ann A")
    first = [reading(ann["email"], T0 + i) for i in range(3)]
    again = [reading(ann["email"], T0 + 2), reading(" ANN.A@TEST.COM", T0 + 1), reading(ann["email"], T0 + 3)]
    steps = [step(ann["serialNumber"], T0 + i) for i in range(4)]
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, write_landing(tmp_path / "a", [ann], first, steps[:3], name="a"), KEY)
    if not one_run:
        run(wh, KEY)
    ingest(wh, write_landing(tmp_path / "b", [], again, steps[1:], name="b"), KEY)
    run(wh, KEY)
    assert wh.info("accelerometer_landing").rows == 6  # landing keeps what was sent
    assert wh.info("accelerometer_trusted").rows == 4  # T0 .. T0+3, once each
    assert wh.info("step_trainer_trusted").rows == 4
    assert wh.info("machine_learning_curated").rows == 4
    assert wh.scan("customers_curated").collect()["accelerometer_readings"].to_list() == [4]


def test_a_device_is_no_longer_shared_once_its_other_owner_moves_on():
    ann = customer("Ann A")
    cy = customer("Cy C", serialNumber=ann["serialNumber"])
    cy_later = cy | {"serialNumber": "00000000-0000-0000-0000-00000000beef", "lastUpdateDate": T0 + 5}
    out = run_jobs([ann, cy, cy_later], [reading(ann["email"])], [step(ann["serialNumber"])])
    assert out["step_trainer_trusted"].height == 1  # by the latest records, the device is Ann's alone


def test_the_audit_finds_readings_of_a_shared_device(tmp_path):
    ann, cy = customer("Ann A"), customer("Cy C")
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, write_landing(tmp_path / "src", [ann, cy], [reading(ann["email"])], [step(ann["serialNumber"])]), KEY)
    run(wh, KEY)
    ingest(wh, write_landing(tmp_path / "src2", [cy | {"serialNumber": ann["serialNumber"], "lastUpdateDate": T0 + 1}], name="b2"), KEY)
    rows = pa.Table.from_pylist([step(ann["serialNumber"], T0 + 9)], schema=contract("step_trainer_trusted").arrow_schema())
    wh.commit_staged([wh.stage(Change("step_trainer_trusted", rows, "append"))])
    assert any(str(v).startswith("step_trainer_trusted: device of several customers") for v in audit(wh, KEY))


@pytest.mark.parametrize("scope", ["all-history", "since-consent"])
def test_a_shared_device_is_kept_out_under_either_scope(scope):
    ann, cy = customer("Ann A"), customer("Cy C")
    cy = cy | {"serialNumber": ann["serialNumber"]}
    out = run_jobs([ann, cy], [reading(ann["email"])], [step(ann["serialNumber"], T0 + 5)], params={"consent_scope": scope})
    assert out["step_trainer_trusted"].height == 0


# -- raw files that are not what they should be ----------------------------------------------------

ANN = customer("Ann A")
LINE = json.dumps(reading(ANN["email"], T0)).encode()


def _line(**overrides) -> bytes:
    return json.dumps(reading(ANN["email"], T0) | overrides).encode()


FILES = [
    pytest.param(LINE + b"\n" + LINE[:-7], 1, ["not valid JSON"], id="truncated last line"),
    pytest.param(LINE + b"\nhello\n", 1, ["not valid JSON"], id="a line that is not JSON"),
    pytest.param(LINE + b"\n" + LINE.replace(b"Ann", b"\xc3\x28nn") + b"\n", 1, ["not valid UTF-8"], id="bytes that are not UTF-8"),
    pytest.param(b"", 0, [], id="an empty file"),
    pytest.param(b"\n\n  \n", 0, [], id="only blank lines"),
    pytest.param(b"[" + LINE + b",\n  " + LINE + b"]\n", 2, [], id="one JSON array of records"),
    pytest.param(b"[" + LINE + b", 17]", 1, ["not a JSON object"], id="an array holding a non-record"),
    pytest.param(_line(x="0.5") + b"\n" + _line(timestamp=str(T0)) + b"\n", 2, [], id="numbers sent as exact strings"),
    pytest.param(_line(x="half") + b"\n" + _line(timestamp="12.5") + b"\n", 0, ["is a string that is not exactly a double", "is a string that is not exactly a bigint"], id="numbers sent as inexact strings"),
    pytest.param(json.dumps({k: v for k, v in reading(ANN["email"]).items() if k != "timestamp"}).encode(), 0, ['missing required field "timestamp"'], id="a missing timestamp"),
    pytest.param(_line(note="x" * 10_000_000) + b"\n" + LINE, 2, [], id="a 10 MB line"),
]


@pytest.mark.parametrize(("content", "landed", "reasons"), FILES)
def test_a_hostile_accelerometer_file(tmp_path, content, landed, reasons):
    folder = tmp_path / "src" / "accelerometer" / "landing"
    folder.mkdir(parents=True)
    (folder / "accelerometer-hostile.json").write_bytes(content)
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    (result,) = ingest(wh, tmp_path / "src", KEY).files
    assert (result.rows_landed, result.rows_quarantined) == (landed, len(reasons))
    got = wh.scan("quarantine").collect()["reason"].to_list()
    assert all(any(expected in reason for reason in got) for expected in reasons), got
    if landed:
        values = wh.scan("accelerometer_landing").collect()
        assert values["timestamp"].to_list() == [T0] * landed
        assert set(values["x"]) <= {1.0, 0.5}


def test_unknown_fields_are_kept_in_the_landing_record(tmp_path):
    folder = tmp_path / "src" / "accelerometer" / "landing"
    folder.mkdir(parents=True)
    (folder / "accelerometer-extra.json").write_bytes(
        _line(battery=0.9, meta={"os": "android"}) + b"\n" + LINE + b"\n"
    )
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    (result,) = ingest(wh, tmp_path / "src", KEY).files
    assert (result.rows_landed, result.rows_quarantined) == (2, 0)
    extra = wh.scan("accelerometer_landing").collect().sort("_line_number")["_extra"].to_list()
    assert json.loads(extra[0]) == {"battery": 0.9, "meta": {"os": "android"}}
    assert extra[1] is None


def test_the_ingest_summary_counts_each_kind_of_bad_line(tmp_path):
    from click.testing import CliRunner

    from stedi.cli import cli

    folder = tmp_path / "src" / "accelerometer" / "landing"
    folder.mkdir(parents=True)
    (folder / "a.json").write_bytes(
        LINE + b"\nnope\n{oops\n" + _line(x="half") + b"\n" + _line(y="many") + b"\n" + LINE.replace(b"Ann", b"\xff") + b"\n"
    )
    summary = ingest(Warehouse.open(Settings(warehouse=tmp_path / "wh")), tmp_path / "src", KEY)
    assert dict(summary.reasons) == {
        "not valid JSON": 2,
        'field "x" is a string that is not exactly a double': 1,
        'field "y" is a string that is not exactly a double': 1,
        "not valid UTF-8": 1,
    }
    result = CliRunner().invoke(cli, ["--warehouse", str(tmp_path / "wh2"), "ingest", str(tmp_path / "src")])
    assert result.exit_code == 0, result.output
    assert "set aside, by reason" in result.output and "not valid UTF-8" in result.output
