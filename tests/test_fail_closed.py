"""Consent fails closed: a customer whose latest record cannot be read with certainty is kept out of
every trusted and curated table, counted and visible in quarantine; a value that plainly means no
consent withdraws; a consent date outside the contract's window is not consent; a timestamp in
another notation is read exactly when that is lossless; a record means the same in a JSON-lines
file and in a JSON array."""

from __future__ import annotations

import json

import pytest

from stedi.config import Settings
from stedi.ingest import ingest
from stedi.privacy import customer_key
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY, T0, customer, reading, step

ANN = customer("Ann A", serialNumber="0b1f2a3c-0000-4000-8000-00000000aaaa")
BOB = customer("Bob B", serialNumber="0b1f2a3c-0000-4000-8000-00000000bbbb")
LATER = T0 + 60_000
TRUSTED_AND_CURATED = ("customer_trusted", "accelerometer_trusted", "step_trainer_trusted", "customers_curated", "machine_learning_curated")


def _write(root, name, lines, source="customer"):
    folder = root / source / "landing"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(line + "\n" for line in lines))
    return root


def _line(record: dict, **raw_fields: str) -> str:
    """A customer record as one JSON line; ``raw_fields`` are written as given (raw JSON text)."""
    fields = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in record.items() if k not in raw_fields]
    fields += [f"{json.dumps(k)}: {text}" for k, text in raw_fields.items()]
    return "{" + ", ".join(fields) + "}"


@pytest.fixture
def wh(tmp_path):
    """Ann and Bob consent, with readings; a first run has them both in every table."""
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    src = tmp_path / "first"
    _write(src, "customers.json", [json.dumps(ANN), json.dumps(BOB)])
    _write(src, "readings.json", [json.dumps(reading(c["email"], T0)) for c in (ANN, BOB)], "accelerometer")
    _write(src, "steps.json", [json.dumps(step(c["serialNumber"], T0)) for c in (ANN, BOB)], "step_trainer")
    ingest(wh, src, KEY)
    run(wh, KEY)
    assert _who(wh) == {name: {"ann", "bob"} for name in TRUSTED_AND_CURATED}
    return wh


def _who(wh) -> dict[str, set[str]]:
    """Whose rows each trusted and curated table holds, as first names."""
    names = {c["email"].lower(): c["customerName"].split()[0].lower() for c in (ANN, BOB)}
    keys = {customer_key(e, KEY): n for e, n in names.items()}
    serials = {c["serialNumber"]: c["customerName"].split()[0].lower() for c in (ANN, BOB)}
    out = {}
    for name in TRUSTED_AND_CURATED:
        frame = wh.scan(name).collect()
        column = next(c for c in ("email", "user", "customer_key", "serialNumber") if c in frame.columns)
        lookup = {"email": names, "user": names, "customer_key": keys, "serialNumber": serials}[column]
        out[name] = {lookup.get(v, f"unknown {v}") for v in frame[column]}
    return out


WITHDRAWALS = ['""', '"null"', '"NULL"', "false", "0", "0.0", '"0"', "null"]


@pytest.mark.parametrize("value", WITHDRAWALS)
def test_a_value_that_plainly_means_no_consent_withdraws(wh, tmp_path, value):
    later = ANN | {"lastUpdateDate": LATER}
    ingest(wh, _write(tmp_path / "b2", "withdraw.json", [_line(later, shareWithResearchAsOfDate=value)]), KEY)
    summary = run(wh, KEY)
    assert _who(wh) == {name: {"bob"} for name in TRUSTED_AND_CURATED}
    assert summary.uncertain == 0  # a plain withdrawal, read with certainty
    assert wh.info("quarantine").rows == 0


UNCERTAIN = [
    pytest.param(lambda r: _line(r, shareWithResearchAsOfDate='"soon"'), id="consent a word"),
    pytest.param(lambda r: _line(r, shareWithResearchAsOfDate="true"), id="consent true"),
    pytest.param(lambda r: _line(r, shareWithResearchAsOfDate="1655564001000.5"), id="consent not a whole millisecond"),
    pytest.param(lambda r: _line(r, birthDay='"01/02/1990"'), id="a birthday in another format"),
    pytest.param(lambda r: _line(r, lastUpdateDate='"yesterday"'), id="lastUpdateDate a word, consent given"),
    pytest.param(lambda r: _line(r | {"shareWithResearchAsOfDate": None}, registrationDate='"x"'), id="a withdrawal with a bad field"),
    pytest.param(lambda r: _line(r, lastUpdateDate=str(LATER) + ".5"), id="lastUpdateDate not lossless"),
    pytest.param(lambda r: json.dumps(r)[:-1] + ', "email": "someone@else.com"}', id="a field given twice"),
    pytest.param(lambda r: json.dumps(r)[:-1] + ', "x": NaN}', id="NaN in the record"),
    pytest.param(lambda r: json.dumps(r)[: json.dumps(r).index('"phone"')], id="a truncated line naming the customer"),
    pytest.param(lambda r: json.dumps(r)[:-1], id="not JSON, with a later time"),
    pytest.param(lambda r: "{'email': '" + r["email"] + "'}", id="not JSON, no time at all"),
]


@pytest.mark.parametrize("bad", UNCERTAIN)
def test_a_later_record_that_cannot_be_read_keeps_the_customer_out(wh, tmp_path, bad):
    later = ANN | {"lastUpdateDate": LATER, "email": ANN["email"].upper()}  # any spelling names them
    ingest(wh, _write(tmp_path / "b2", "update.json", [bad(later)]), KEY)
    summary = run(wh, KEY)
    assert _who(wh) == {name: {"bob"} for name in TRUSTED_AND_CURATED}
    # counted in the run summary and its run_log, and visible in the quarantine
    assert summary.uncertain == 1
    logged = wh.scan("run_log").collect().filter(run_id=summary.run_id, output_table="customer_trusted")
    assert logged["rows_uncertain"].to_list() == [1]
    reasons = wh.scan("quarantine").collect()["reason"].to_list()
    assert any(r.startswith("customer kept out: their latest record cannot be read with certainty") for r in reasons)
    assert len(reasons) == 2  # the line set aside at ingest, and the customer the run kept out
    run(wh, KEY, full_refresh=True)  # kept once, however often the table is computed
    assert wh.info("quarantine").rows == 2


def test_an_older_record_that_cannot_be_read_changes_nothing(wh, tmp_path):
    older = ANN | {"lastUpdateDate": T0 - 60_000, "registrationDate": T0 - 60_000, "shareWithResearchAsOfDate": T0 - 60_000}
    ingest(wh, _write(tmp_path / "b2", "old.json", [_line(older, birthDay='"01/02/1990"')]), KEY)
    assert run(wh, KEY).uncertain == 0
    assert _who(wh) == {name: {"ann", "bob"} for name in TRUSTED_AND_CURATED}


@pytest.mark.parametrize("consent", [946_684_799_999, 4_102_444_800_001, 5, -T0])
def test_a_consent_date_outside_the_window_is_not_consent(wh, tmp_path, consent):
    later = ANN | {"lastUpdateDate": LATER, "shareWithResearchAsOfDate": consent}
    ingest(wh, _write(tmp_path / "b2", "update.json", [json.dumps(later)]), KEY)
    summary = run(wh, KEY)
    assert _who(wh) == {name: {"bob"} for name in TRUSTED_AND_CURATED}
    assert summary.uncertain == 1  # a value set, but no date: reported, and set aside with the reason
    assert wh.info("quarantine").rows == 1


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("1.655564001e12", 1_655_564_001_000),
        ("1655564001000.0", 1_655_564_001_000),
        ("1655564001000.000", 1_655_564_001_000),
        ('"1655564001000"', 1_655_564_001_000),
        ('"1.655564001E12"', 1_655_564_001_000),
        ('" 1655564001000 "', 1_655_564_001_000),
    ],
)
def test_a_timestamp_in_another_notation_is_read_exactly(tmp_path, text, read):
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, _write(tmp_path / "src", "c.json", [_line(ANN, lastUpdateDate=text)]), KEY)
    assert wh.scan("customer_landing").collect()["lastUpdateDate"].to_list() == [read]
    assert wh.info("quarantine").rows == 0


def test_a_later_record_in_another_notation_decides(wh, tmp_path):
    later = ANN | {"shareWithResearchAsOfDate": None}
    ingest(wh, _write(tmp_path / "b2", "w.json", [_line(later, lastUpdateDate=f"{LATER / 1e12}e12")]), KEY)
    run(wh, KEY)
    assert _who(wh) == {name: {"bob"} for name in TRUSTED_AND_CURATED}


@pytest.mark.parametrize(
    "record",
    [
        '{"email": "a@test.com", "email": "b@test.com"}',
        '{"user": "a@test.com", "timestamp": 1655564001000, "x": 1, "y": 2, "z": 3, "x": 4}',
    ],
    ids=["customer", "reading"],
)
def test_a_record_means_the_same_in_a_json_lines_file_and_a_json_array(tmp_path, record):
    source = "customer" if record.startswith('{"email"') else "accelerometer"
    full = record if source == "accelerometer" else record[:-1] + ', "serialNumber": "s", "registrationDate": 1, "lastUpdateDate": 1}'
    results = []
    for framing, text in (("lines", full + "\n"), ("array", "[\n  " + full + "\n]\n")):
        wh = Warehouse.open(Settings(warehouse=tmp_path / framing))
        folder = tmp_path / f"src-{framing}" / source / "landing"
        folder.mkdir(parents=True)
        (folder / "f.json").write_text(text)
        ingest(wh, tmp_path / f"src-{framing}", KEY)
        landed = wh.scan(f"{source}_landing").collect().drop("_source_file", "_ingested_at").to_dicts()
        set_aside = wh.scan("quarantine").select("reason", "line_number", "owner").collect().to_dicts()
        results.append((landed, set_aside))
    assert results[0] == results[1]
    assert results[0][1] and results[0][1][0]["reason"].endswith("is given twice")


def test_nan_and_infinity_are_not_json(tmp_path):
    lines = [json.dumps(reading("a@test.com", T0 + i)) for i in range(3)]
    lines[1] = lines[1].replace('"x": 1.0', '"x": NaN')
    lines[2] = lines[2].replace('"y": 0.0', '"y": -Infinity')
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, _write(tmp_path / "src", "r.json", lines, "accelerometer"), KEY)
    assert wh.info("accelerometer_landing").rows == 1
    assert sorted(wh.scan("quarantine").collect()["reason"]) == ["not valid JSON: NaN and Infinity are not JSON values"] * 2
