"""Every input is accounted for: each file ingest does not take is listed with its reason, compressed
exports are read, JSON's non-literals are set aside, and nothing is taken or set aside twice."""

from __future__ import annotations

import gzip
import json

from click.testing import CliRunner

from stedi.cli import cli
from stedi.config import Settings
from stedi.ingest import ingest
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY, customer, reading, write_landing


def _lines(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_each_file_is_taken_or_listed_with_its_reason(tmp_path):
    folder = tmp_path / "src" / "customer" / "landing"
    folder.mkdir(parents=True)
    people = [customer(f"G{i} Zip") for i in range(4)]
    (folder / "a.json.gz").write_bytes(gzip.compress(_lines(people[:1])))
    (folder / "b.JSON").write_bytes(_lines(people[1:2]))
    (folder / "c.ndjson.GZ").write_bytes(gzip.compress(_lines(people[2:3])))
    (folder / "d.jsonl").write_bytes(_lines(people[3:]))
    (folder / "e.csv").write_text("email\nx@y.z\n")
    (folder / "f.json.zip").write_bytes(b"PK")
    (folder / ".hidden.json").write_bytes(_lines(people[:1]))
    (folder / "g.json").symlink_to(folder / "d.jsonl")
    (folder / "sub").mkdir()
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    summary = ingest(wh, str(tmp_path / "src"), KEY)
    assert sorted(f.file for f in summary.ingested) == ["a.json.gz", "b.JSON", "c.ndjson.GZ", "d.jsonl"]
    why = {f.file: f.detail for f in summary.skipped}
    assert why == {
        "e.csv": "not a JSON file (.csv; taken: .json, .jsonl, .ndjson, each also .gz)",
        "f.json.zip": "not a JSON file (.zip; taken: .json, .jsonl, .ndjson, each also .gz)",
        ".hidden.json": "a hidden file",
        "g.json": "a symbolic link: not followed",
        "sub": "a folder: not searched",
    }
    assert wh.info("customer_landing").rows == 4


def test_the_cli_lists_the_skipped_files(tmp_path):
    src = write_landing(tmp_path / "src", [customer()])
    (src / "customer" / "landing" / "notes.txt").write_text("hello")
    result = CliRunner().invoke(cli, ["--warehouse", str(tmp_path / "wh"), "ingest", str(src)], env={"STEDI_PSEUDONYM_KEY": KEY.decode()})
    assert result.exit_code == 0, result.output
    assert "skipped (not a JSON file (.txt" in result.output and "1 skipped" in result.output


def test_what_is_not_json_is_set_aside_though_duckdb_would_take_it(tmp_path):
    folder = tmp_path / "src" / "accelerometer" / "landing"
    folder.mkdir(parents=True)
    good = json.dumps(reading("a@b.co", x=0.5))
    odd = [good.replace("0.5", v) for v in ("NaN", "Infinity", "-Infinity", "--Infinity", "nan1", "Inf", "-inf", "nan")]
    odd += [good.replace("}", ",}"), good.replace("}", ", }"), good.replace("0.5", "[1,]")]
    (folder / "r.json").write_text("\n".join([good, *odd, good.replace("a@b.co", "infinity@b.co")]) + "\n")
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, str(tmp_path / "src"), KEY)
    assert wh.info("accelerometer_landing").rows == 2  # an address may say "infinity"
    reasons = wh.scan("quarantine").collect()["reason"].to_list()
    assert len(reasons) == len(odd) and all(r.startswith("not valid JSON") for r in reasons)
    assert reasons.count("not valid JSON: NaN and Infinity are not JSON values") == 3


def test_reingesting_the_warehouses_own_landing_folder_takes_nothing_twice(tmp_path):
    people = [customer(f"H{i} Home") for i in range(3)]
    src = write_landing(tmp_path / "src", people, [reading(p["email"]) for p in people])
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, str(src), KEY)
    before = {n: wh.info(n).rows for n in ("customer_landing", "accelerometer_landing", "ingest_manifest")}
    again = ingest(wh, str(tmp_path / "wh" / "landing"), KEY)
    assert again.ingested == [] and len(again.skipped) == 2
    assert {n: wh.info(n).rows for n in before} == before


def test_a_rules_quarantine_rows_are_kept_once_across_runs(tmp_path):
    bad = customer("Bad Serial", serialNumber="not-a-uuid")
    src = write_landing(tmp_path / "src", [bad, customer("Good One")])
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, str(src), KEY)
    run(wh, KEY)
    once = wh.scan("quarantine").collect()
    assert once.filter(once["target_table"] == "customer_trusted").height == 1
    run(wh, KEY, full_refresh=True)
    run(wh, KEY, full_refresh=True)
    assert wh.scan("quarantine").collect().height == once.height
