"""Ingest: byte-for-byte landing copies, the manifest, typing by contract, and quarantine."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

import stedi.ingest
from stedi.config import Settings
from stedi.errors import SourceError
from stedi.ingest import ingest
from stedi.warehouse import Warehouse
from tests.factories import customer, reading, step, write_landing


@pytest.fixture
def wh(tmp_path):
    return Warehouse.open(Settings(warehouse=tmp_path / "wh"))


def rows(wh, table):
    return wh.scan(table).collect()


def test_ingest_lands_records_typed_by_contract_with_lineage(wh, tmp_path):
    ann = customer("Ann A")
    src = write_landing(tmp_path / "src", [ann], [reading(ann["email"])], [step(ann["serialNumber"])])
    summary = ingest(wh, src)

    assert [f.status for f in summary.files] == ["ingested"] * 3
    landed = rows(wh, "customer_landing")
    assert landed.height == 1
    assert landed.schema["birthDay"] == pl.Date
    assert landed.schema["registrationDate"] == pl.Int64
    row = landed.row(0, named=True)
    assert row["email"] == "Ann.A@test.com"  # landing keeps what was received
    assert row["_line_number"] == 1
    assert row["_source_file"].startswith("landing/customer/")
    assert rows(wh, "accelerometer_landing").schema["x"] == pl.Float64
    assert rows(wh, "step_trainer_landing").height == 1


def test_raw_files_are_copied_byte_for_byte_and_recorded_in_the_manifest(wh, tmp_path):
    src = write_landing(tmp_path / "src", [customer("Ann A"), customer("Bob B")])
    original = next((src / "customer" / "landing").iterdir())
    ingest(wh, src)

    manifest = rows(wh, "ingest_manifest").row(0, named=True)
    stored = wh.root / manifest["stored_path"]
    assert stored.read_bytes() == original.read_bytes()
    assert manifest["sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
    assert manifest["size_bytes"] == original.stat().st_size
    assert manifest["file_name"] == original.name
    assert (manifest["rows_landed"], manifest["rows_quarantined"]) == (2, 0)


def test_ingesting_twice_is_a_no_op_even_under_another_name(wh, tmp_path):
    src = write_landing(tmp_path / "src", [customer("Ann A")], [reading("Ann.A@test.com")])
    ingest(wh, src)
    before = {t: wh.info(t).snapshot_id for t in ("customer_landing", "accelerometer_landing", "ingest_manifest")}

    again = ingest(wh, src)
    assert [f.status for f in again.files] == ["skipped", "skipped"]
    assert "already ingested as customer-batch.json" in again.files[0].detail

    renamed = tmp_path / "renamed" / "customer" / "landing"
    renamed.mkdir(parents=True)
    shutil.copy(src / "customer" / "landing" / "customer-batch.json", renamed / "customers-copy.json")
    assert [f.status for f in ingest(wh, tmp_path / "renamed").files] == ["skipped"]
    assert {t: wh.info(t).snapshot_id for t in before} == before
    assert rows(wh, "customer_landing").height == 1


def test_the_public_bucket_layout_is_accepted(wh, tmp_path):
    for folder, record in (("customers", customer("Ann A")), ("accelerometer", reading("a@b.c")), ("step_trainer", step("s"))):
        (tmp_path / "bucket" / folder).mkdir(parents=True)
        (tmp_path / "bucket" / folder / f"{folder}-1.json").write_text(json.dumps(record) + "\n")
    summary = ingest(wh, tmp_path / "bucket")
    assert sorted(f.source for f in summary.files) == ["accelerometer", "customer", "step_trainer"]


GOOD = json.dumps(customer("Good G"))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param("{not json", "not valid JSON", id="not json"),
        pytest.param("[1, 2]", "not a JSON object", id="array"),
        pytest.param(json.dumps({k: v for k, v in customer().items() if k != "email"}), 'missing required field "email"', id="missing"),
        pytest.param(json.dumps(customer(email=None)), 'missing required field "email"', id="null required"),
        pytest.param(json.dumps(customer(lastUpdateDate="yesterday")), 'field "lastUpdateDate" is a string that is not exactly a bigint: yesterday', id="string for number"),
        pytest.param(json.dumps(customer(registrationDate=1.5)), 'field "registrationDate" is double, expected bigint', id="fraction"),
        pytest.param(json.dumps(customer(birthDay="someday")), 'field "birthDay" does not fit date: someday', id="bad date"),
        pytest.param(json.dumps(customer(email=["a"])), 'field "email" is array, expected string', id="array value"),
    ],
)
def test_bad_lines_are_quarantined_with_their_reason_and_the_rest_lands(wh, tmp_path, line, reason):
    folder = tmp_path / "src" / "customer" / "landing"
    folder.mkdir(parents=True)
    (folder / "customer-1.json").write_text(f"{GOOD}\n{line}\n\n{GOOD.replace('Good', 'Fine')}\n")
    summary = ingest(wh, tmp_path / "src")

    assert (summary.files[0].rows_landed, summary.files[0].rows_quarantined) == (2, 1)
    assert rows(wh, "customer_landing")["_line_number"].to_list() == [1, 4]
    bad = rows(wh, "quarantine").row(0, named=True)
    assert bad["reason"] == reason
    assert bad["raw"] == line
    assert bad["line_number"] == 2
    assert bad["target_table"] == "customer_landing"
    assert bad["source_file"] == summary.files[0].detail


def test_accelerometer_numbers_may_be_integers(wh, tmp_path):
    src = write_landing(tmp_path / "src", readings=[reading("a@b.c", x=1, y=0, z=-1)])
    ingest(wh, src)
    assert rows(wh, "accelerometer_landing")["x"].to_list() == [1.0]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param(lambda p: None, "does not exist", id="missing"),
        pytest.param(lambda p: p.mkdir(), "no landing files", id="empty"),
        pytest.param(lambda p: (p.mkdir(), (p / "customer").mkdir(), (p / "customer" / "notes.txt").write_text("x")), "no landing files", id="no json"),
        pytest.param(lambda p: p.write_text("x"), "is not a folder", id="a file"),
    ],
)
def test_unusable_sources_raise_a_clear_error(wh, tmp_path, setup, message):
    setup(tmp_path / "src")
    with pytest.raises(SourceError, match=message):
        ingest(wh, tmp_path / "src")


def test_an_unreadable_file_raises_a_clear_error_and_stores_nothing(wh, tmp_path, monkeypatch):
    src = write_landing(tmp_path / "src", [customer("Ann A")], [reading("Ann.A@test.com")])
    locked = next((src / "accelerometer" / "landing").iterdir())
    real_open = open

    def refusing(path, *args, **kwargs):  # what chmod 000 does for a user who is not root (the tests may run as root)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(stedi.ingest, "open", refusing, raising=False)
    with pytest.raises(SourceError, match=f"cannot read {locked}: Permission denied"):
        ingest(wh, src)
    assert wh.info("customer_landing").rows == 0
    assert not [p for p in (wh.root / "landing").rglob("*") if p.is_file()]


def test_a_line_that_is_not_utf8_is_set_aside_and_the_rest_lands(wh, tmp_path):
    src = tmp_path / "src" / "step_trainer" / "landing"
    src.mkdir(parents=True)
    good = json.dumps(step("00000000-0000-0000-0000-000000000001")).encode()
    (src / "step_trainer-1.json").write_bytes(
        good + b'\n{"sensorReadingTime": 1, "serialNumber": "\xff\xfe", "distanceFromObject": 1}\n' + good + b"\n"
    )
    summary = ingest(wh, tmp_path / "src")
    assert (summary.files[0].rows_landed, summary.files[0].rows_quarantined) == (2, 1)
    bad = rows(wh, "quarantine").row(0, named=True)
    assert (bad["reason"], bad["line_number"]) == ("not valid UTF-8", 2)
    assert "\ufffd" in bad["raw"]
