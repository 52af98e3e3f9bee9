"""Erasure leaves nothing: after `forget`, the person is in no file name, in no other person's
lineage or `_extra`, in no quarantined line -- however their email is written there -- and
re-delivered copies stay erased under the same matching. `--dry-run` changes nothing."""

from __future__ import annotations

import json
import unicodedata

import pytest
from click.testing import CliRunner

from stedi.cli import cli
from stedi.config import Settings
from stedi.erasure import forget
from stedi.ingest import ingest
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY, T0, customer, reading, step, warehouse_mentions

ANN = customer("Ann A", email="ann.josé@test.com")
BOB = customer("Bob B")

# Ann's email as another record may hold it
SPELLINGS = [
    pytest.param("ann.josé@test.com", id="plain"),
    pytest.param("ANN.JOSÉ@TEST.COM", id="upper-cased"),
    pytest.param("ann.jos\\u00e9\\u0040test\\u002ecom", id="JSON-escaped"),
    pytest.param(unicodedata.normalize("NFD", "ann.josé@test.com"), id="another normal form"),
    pytest.param("mailto:ann.josé@test.com?subject=hi", id="inside a link"),
]


def _write(root, source, name, lines):
    folder = root / source / "landing"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(line + "\n" for line in lines))


def _world(tmp_path, mention: str):
    """Ann and Bob; Bob's record, one of his readings and a bad line mention Ann (as ``mention``
    writes her); one file is named after her."""
    src = tmp_path / "src"
    bob_line = json.dumps(BOB)[:-1] + f', "referred_by": "{mention}"}}'
    _write(src, "customer", "customers.json", [json.dumps(ANN), bob_line])
    _write(src, "customer", f"export for {ANN['email']}.json", [json.dumps(ANN | {"lastUpdateDate": T0 - 5})])
    readings = [json.dumps(reading(c["email"], T0)) for c in (ANN, BOB)]
    readings.append(json.dumps(reading(BOB["email"], T0 + 1))[:-1] + f', "note": "phone of {mention}"}}')
    readings.append('{"user": "' + mention + '", "timestamp": "yesterday"}')  # set aside
    _write(src, "accelerometer", "readings.json", readings)
    _write(src, "step_trainer", "steps.json", [json.dumps(step(c["serialNumber"], T0)) for c in (ANN, BOB)])
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, src, KEY)
    run(wh, KEY)
    return wh, src


def _ann(wh) -> list[str]:
    """Every place Ann is, in any of the spellings (and her device)."""
    needles = [ANN["email"], ANN["email"].upper(), "ann.jos\\u00e9", unicodedata.normalize("NFD", ANN["email"]), ANN["serialNumber"], "ann.jos"]
    return warehouse_mentions(wh, needles)


@pytest.mark.parametrize("mention", SPELLINGS)
def test_forget_erases_every_mention_of_the_person(tmp_path, mention):
    wh, src = _world(tmp_path, mention)
    assert _ann(wh)
    summary = forget(wh, KEY, ["  Ann.JOSÉ@test.com "])
    assert _ann(wh) == []
    (person,) = summary.people
    assert person.rows_rewritten["customer_landing"] == 1 and person.rows_rewritten["accelerometer_landing"] == 1
    assert person.rows_removed["quarantine"] == 1
    # everyone else stays, their records rewritten only where they named her
    bob = wh.scan("customer_landing").collect().row(0, named=True)
    assert bob["email"] == BOB["email"] and json.loads(bob["_extra"]) == {"referred_by": "[erased]"}
    readings = wh.scan("accelerometer_landing").collect().sort("timestamp")
    assert readings["user"].to_list() == [BOB["email"]] * 2
    assert json.loads(readings["_extra"][1]) == {"note": "[erased]"}
    # the file named after her keeps its place in the manifest, with its name blanked
    names = sorted(wh.scan("ingest_manifest").collect()["file_name"])
    assert "(erased)" in names and not any("ann" in n.lower() for n in names)
    # and each table equals the parse of the rewritten raw files
    for table in ("customer_landing", "accelerometer_landing"):
        before = wh.scan(table).collect()
        run(wh, KEY, full_refresh=True)
        assert wh.scan(table).collect().equals(before)
    assert summary.files_rewritten >= 3


@pytest.mark.parametrize("mention", SPELLINGS[:3])
def test_a_redelivered_copy_stays_erased_under_the_same_matching(tmp_path, mention):
    wh, src = _world(tmp_path, mention)
    forget(wh, KEY, [ANN["email"]])
    again = tmp_path / "again"  # the same records, new bytes (a re-export)
    for path in src.rglob("*.json"):
        out = again / path.relative_to(src).parent / f"re-{path.name}"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(path.read_bytes() + b"\n")
    result = ingest(wh, again, KEY)
    assert sum(f.rows_suppressed for f in result.files) >= 4
    run(wh, KEY)
    assert _ann(wh) == []
    assert json.loads(wh.scan("customer_landing").collect().filter(email=BOB["email"])["_extra"][-1]) == {"referred_by": "[erased]"}


def test_a_dry_run_says_what_forget_would_do_and_changes_nothing(tmp_path):
    wh, _ = _world(tmp_path, ANN["email"])
    run(wh, KEY, full_refresh=True)  # older snapshots, which a forget would expire
    tree = {p: p.read_bytes() for p in wh.root.rglob("*") if p.is_file() and "lock" not in p.name}
    summary = forget(wh, KEY, [ANN["email"]], dry_run=True)
    (person,) = summary.people
    assert person.matched and person.rows_removed["customer_landing"] == 2 and summary.snapshots_expired > 0
    assert {p: p.read_bytes() for p in wh.root.rglob("*") if p.is_file() and "lock" not in p.name} == tree
    result = CliRunner().invoke(cli, ["--warehouse", str(wh.root), "forget", "--dry-run", "--email", ANN["email"]], env={"STEDI_PSEUDONYM_KEY": KEY.decode()})
    assert result.exit_code == 0, result.output
    assert "dry run: nothing changed" in result.output and "1 person(s) would be erased" in result.output
    assert {p: p.read_bytes() for p in wh.root.rglob("*") if p.is_file() and "lock" not in p.name} == tree


@pytest.mark.parametrize("shared", ["phone", "customerName"])
def test_erasing_a_mention_keeps_everyone_who_shares_another_value_with_that_row(tmp_path, shared):
    """The row that mentions Eve is replaced; rows that share its phone (or, in its other text
    columns, any value) with it are other people's, and stay whole."""
    phone = "8015551212"
    eve = customer("Eve E", phone=phone)
    friend = customer("Fay F", phone=phone, customerName="friend of eve.e@test.com")
    others = [customer(f"Oth{i} O", phone=phone) for i in range(3)]
    if shared == "customerName":
        others = [o | {"customerName": "Same Name"} for o in others] + [customer("Gus G", customerName="Same Name")]
    for i, record in enumerate([eve, friend, *others]):
        _write(tmp_path / "src", "customer", f"c{i}.json", [json.dumps(record)])
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, tmp_path / "src", KEY)
    run(wh, KEY)
    before = {e.lower() for e in wh.scan("customer_landing").collect()["email"]}
    forget(wh, KEY, ["EVE.E@test.com"])
    after = wh.scan("customer_landing").collect()
    assert {e.lower() for e in after["email"]} == before - {"eve.e@test.com"}
    fay = after.filter(after["email"].str.to_lowercase() == friend["email"].lower())
    assert fay["customerName"].to_list() == ["[erased]"] and fay["phone"].to_list() == [phone]
    assert wh.info("customer_trusted").rows == len(before) - 1
