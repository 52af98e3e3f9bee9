"""The audit finds every hostile case that gets into a table: each is planted directly (a pyiceberg
append, a schema change, a file rewritten), as a bug or an adversary would leave it, and must be
flagged."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.types import LongType

from stedi.audit import audit
from stedi.config import Settings
from stedi.contracts import contract
from stedi.erasure import forget
from stedi.ingest import ingest
from stedi.privacy import customer_key, subject_key
from stedi.runner import run
from stedi.warehouse import Change, Warehouse
from tests.factories import KEY, T0, customer, reading, step, write_landing

ANN = customer("Ann A", serialNumber="0b1f2a3c-0000-4000-8000-00000000aaaa")
BOB = customer("Bob B", serialNumber="0b1f2a3c-0000-4000-8000-00000000bbbb")
CY = customer("Cy C", shareWithResearchAsOfDate=None)
AT = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def wh(tmp_path):
    people = (ANN, BOB, CY)
    readings = [reading(c["email"], T0 + i) for c in people for i in (0, 20)]
    steps = [step(c["serialNumber"], T0 + i) for c in people for i in (0, 20)]
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, write_landing(tmp_path / "src", people, readings, steps), KEY)
    run(wh, KEY)
    assert audit(wh, KEY) == []
    return wh


def _append(wh, table, rows):
    schema = contract(table).arrow_schema()
    wh.commit_staged([wh.stage(Change(table, pa.Table.from_pylist(rows, schema=schema), "append"))])


def _landing(record: dict, n: int = 99) -> dict:
    return record | {"birthDay": date(1990, 1, 1), "_extra": None, "_source_file": "landing/customer/x.json", "_line_number": n, "_ingested_at": AT}


def _set_aside(who: dict, at: int | None) -> dict:
    return {"target_table": "customer_landing", "reason": "planted", "raw": "{}", "source_file": None, "line_number": None,
            "owner": who["email"].lower(), "record_time": at, "batch_id": "b", "quarantined_at": AT}


def _undeclared_file(wh):
    """A data file of customers_curated holding a column its contract does not have (which an
    Iceberg reader skips, but anyone reading the file sees). pyiceberg refuses to add such a file,
    so the table is made to list it beside its own."""
    (own,) = wh.data_files("customers_curated")
    planted = own.replace(".parquet", "-planted.parquet")
    rows = pq.read_table(own)
    pq.write_table(rows.append_column("serialNumber", pa.array([ANN["serialNumber"]] * rows.num_rows)), planted)
    listed = wh.data_files
    wh.data_files = lambda name: listed(name) + ([planted] if name == "customers_curated" else [])


def _mention_after_forget(wh, table):
    forget(wh, KEY, [CY["email"]])
    if table == "ingest_manifest":
        manifest = wh.scan("ingest_manifest").collect().head(1).with_columns(file_name=__import__("polars").lit(f"from {CY['email']}.json"))
        _append(wh, "ingest_manifest", manifest.to_dicts())
    else:
        _append(wh, "accelerometer_landing", [reading(BOB["email"], T0 + 5) | {"_extra": json.dumps({"friend": CY["email"].upper()}),
                                                                             "_source_file": "landing/a.json", "_line_number": 9, "_ingested_at": AT}])


def _same_size_tamper(wh):
    path = next((wh.root / "landing" / "accelerometer").iterdir())
    data = bytearray(path.read_bytes())
    data[data.index(b'"x": 1.0')+6] = ord("7")  # one digit changed: the size is the same
    path.write_bytes(bytes(data))


CASES = [
    pytest.param(lambda wh: _append(wh, "quarantine", [_set_aside(BOB, T0 + 1)]), "customer_trusted: customer without research consent",
                 id="a later record of theirs set aside"),
    pytest.param(lambda wh: _append(wh, "quarantine", [_set_aside(BOB, None)]), "accelerometer_trusted: customer without research consent",
                 id="a record of theirs set aside with no readable time"),
    pytest.param(lambda wh: _append(wh, "customer_landing", [_landing(BOB | {"lastUpdateDate": T0 + 1, "shareWithResearchAsOfDate": 5})]),
                 "machine_learning_curated: customer without research consent", id="their consent is not a date in the window"),
    pytest.param(lambda wh: _append(wh, "customer_landing", [_landing(BOB | {"lastUpdateDate": T0 + 1, "shareWithResearchAsOfDate": None})]),
                 "customers_curated: customer without research consent", id="a withdrawal the run did not see"),
    pytest.param(lambda wh: _append(wh, "accelerometer_trusted", [reading(BOB["email"].upper(), T0 + 3)]),
                 "accelerometer_trusted: customer without research consent", id="an email not in its normal form"),
    pytest.param(lambda wh: _append(wh, "accelerometer_trusted", [reading(BOB["email"].lower() + "\u200b", T0 + 3)]),
                 "accelerometer_trusted: customer without research consent", id="an email with a zero-width space"),
    pytest.param(lambda wh: _append(wh, "machine_learning_curated", [{"customer_key": customer_key("bob.b@test.com", KEY + b"x"), "timestamp": T0,
                                                                      "distanceFromObject": 250, "x": 1.0, "y": 0.0, "z": -1.0}]),
                 "machine_learning_curated: customer without research consent", id="a pseudonym of nobody"),
    pytest.param(lambda wh: _append(wh, "step_trainer_trusted", [step(BOB["serialNumber"].upper(), T0 + 7)]),
                 "step_trainer_trusted: customer without research consent", id="a serial number not in its normal form"),
    pytest.param(lambda wh: _append(wh, "customer_landing", [_landing(CY | {"serialNumber": " " + ANN["serialNumber"].upper(), "lastUpdateDate": T0 + 1})]),
                 "step_trainer_trusted: device of several customers", id="a device registered again in upper case"),
    pytest.param(lambda wh: _append(wh, "customer_consent_history", [{"subject_key": subject_key("nobody@test.com", KEY), "version": 1,
                 "consenting": True, "change": "given", "shareWithResearchAsOfDate": T0, "valid_from": T0, "valid_to": None, "is_current": True,
                 "recorded_at": AT, "source_file": "x", "line_number": 1}]), "customer_consent_history: unknown customer", id="a history of nobody"),
    pytest.param(_undeclared_file, "customers_curated: column not in its contract", id="a data file with an undeclared column"),
    pytest.param(lambda wh: (wh.table("machine_learning_curated").update_schema().add_column("registrationDate", LongType()).commit()),
                 "machine_learning_curated: column not in its contract", id="an instant added to a curated table"),
    pytest.param(lambda wh: _mention_after_forget(wh, "accelerometer_landing"), "accelerometer_landing: erased person mentioned",
                 id="an erased person in someone's _extra"),
    pytest.param(lambda wh: _mention_after_forget(wh, "ingest_manifest"), "ingest_manifest: erased person mentioned",
                 id="a file named after an erased person"),
    pytest.param(_same_size_tamper, "ingest_manifest: raw file changed since it was recorded", id="a raw file changed, same size"),
]


@pytest.mark.parametrize(("plant", "expected"), CASES)
def test_the_audit_flags_each_planted_case(wh, plant, expected):
    plant(wh)
    found = [str(v) for v in audit(wh, KEY)]
    assert any(v.startswith(expected) for v in found), found
    assert not any(c["email"].lower() in v for c in (ANN, BOB, CY) for v in found)  # never an email
