"""The right to erasure: after `forget`, no byte of the warehouse holds the person, and they do not
come back."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from stedi.cli import cli
from stedi.config import Settings
from stedi.contracts import contract
from stedi.erasure import ErasureError, forget
from stedi.generate import generate
from stedi.ingest import ingest
from stedi.jobs import load_jobs
from stedi.privacy import customer_key, keyed_hash, subject_key
from stedi.runner import run
from stedi.warehouse import Change, Warehouse
from tests.factories import KEY, contract_names, customer, reading, step, warehouse_mentions, write_landing

JOB_TABLES = [job.output for job in load_jobs()]
LANDING = ("customer_landing", "accelerometer_landing", "step_trainer_landing")


def _landing_lines(src):
    return {p: p.read_text().splitlines() for p in sorted(src.rglob("*.json"))}


def _person_in_training_data(wh):
    """A consenting customer with rows in machine_learning_curated: (email, serial number)."""
    trusted = wh.scan("customer_trusted").collect()
    ml_keys = set(wh.scan("machine_learning_curated").collect()["customer_key"])
    for email, serial in trusted.select("email", "serialNumber").sort("email").iter_rows():
        if customer_key(email, KEY) in ml_keys:
            return email, serial
    raise AssertionError("no customer in machine_learning_curated")


@pytest.fixture
def world(tmp_path):
    """A generated warehouse, run, with one extra file holding a bad line that names a person."""
    src = tmp_path / "src"
    generate(30, seed=11, out=src)
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, src, KEY)
    run(wh, KEY)
    email, serial = _person_in_training_data(wh)
    upper = email.upper()  # as a phone app might send it
    bad = f'{{"user": "{upper}", "timestamp": "yesterday", "x": 1, "y": 2, "z": 3}}\n'
    extra = write_landing(tmp_path / "extra", readings=[reading(upper, 1_700_000_000_000)], name="extra")
    path = extra / "accelerometer" / "landing" / "accelerometer-extra.json"
    path.write_text(path.read_text() + bad)
    ingest(wh, extra, KEY)
    run(wh, KEY)
    assert wh.info("quarantine").rows == 1
    return wh, src, extra, email, serial


def _rebuilt_without(tmp_path, sources, email, serial):
    """A fresh warehouse from the same files minus every line naming the person, ingested and run."""
    clean = tmp_path / "clean"
    for src in sources:
        for path, lines in _landing_lines(src).items():
            kept = [line for line in lines if email not in line.lower() and serial not in line]
            out = clean / path.relative_to(src).parent / f"{src.name}-{path.name}"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("".join(line + "\n" for line in kept))
    fresh = Warehouse.open(Settings(warehouse=tmp_path / "rebuilt"))
    ingest(fresh, clean, KEY)
    run(fresh, KEY)
    return fresh


def _table(wh, name):
    frame = wh.scan(name).collect()
    drop = [c for c in ("_source_file", "_line_number", "_ingested_at", "recorded_at", "source_file", "line_number") if c in frame.columns]
    frame = frame.drop(drop)
    return frame.sort(frame.columns)


def test_forget_leaves_no_byte_of_the_person_anywhere(world, tmp_path):
    wh, src, extra, email, serial = world
    old = {name: [s.snapshot_id for s in wh.table(name).metadata.snapshots] for name in [*LANDING, *JOB_TABLES, "quarantine"]}
    assert warehouse_mentions(wh, [email, serial])  # the check finds them before

    summary = forget(wh, KEY, [f"  {email.upper()} "])

    assert warehouse_mentions(wh, [email, serial]) == []
    (person,) = summary.people
    assert person.matched and person.serial_numbers == 1
    assert person.rows_removed["quarantine"] == 1
    assert set(person.rows_removed) >= {*LANDING, "customer_trusted", "machine_learning_curated", "customer_consent_history"}
    assert summary.files_rewritten >= 3 and summary.files_deleted > 0
    # time travel cannot return them: every older snapshot is gone
    for name, ids in old.items():
        table = wh.table(name)
        for snapshot_id in ids:
            if snapshot_id != (table.current_snapshot() and table.current_snapshot().snapshot_id):
                with pytest.raises(ValueError):
                    table.scan(snapshot_id=snapshot_id).to_arrow()


def test_after_forget_every_table_equals_a_rebuild_without_the_person(world, tmp_path):
    wh, src, extra, email, serial = world
    forget(wh, KEY, [email])
    fresh = _rebuilt_without(tmp_path, [src, extra], email, serial)
    for name in [*LANDING, *JOB_TABLES]:
        assert_frame_equal(_table(wh, name), _table(fresh, name), check_row_order=False)
    assert wh.info("quarantine").rows == fresh.info("quarantine").rows == 0
    # the next run agrees, and the raw files still hold everyone else, line for line
    run(wh, KEY)
    for name in JOB_TABLES:
        assert_frame_equal(_table(wh, name), _table(fresh, name), check_row_order=False)
    originals = {p.name: p.read_bytes() for s in (src, extra) for p in s.rglob("*.json")}
    manifest = wh.scan("ingest_manifest").collect()
    rewritten = manifest.filter(manifest["rewritten_at"].is_not_null())
    assert rewritten.height >= 3
    for row in rewritten.iter_rows(named=True):
        data = (wh.root / row["stored_path"]).read_bytes()
        original = originals[row["file_name"]]
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (row["stored_sha256"], row["stored_size"])
        assert hashlib.sha256(original).hexdigest() == row["sha256"]
        assert data.count(b"\n") == original.count(b"\n")  # lines blanked, not removed: lineage holds
        assert row["rows_erased"] == sum(1 for a, b in zip(original.split(b"\n"), data.split(b"\n"), strict=True) if a != b)


def test_the_erasure_log_and_suppression_list_hold_hashes_never_the_email(world):
    wh, src, extra, email, serial = world
    forget(wh, KEY, [email, "nobody@example.com"])
    log = wh.scan("erasure_log").collect().sort("matched")
    assert log["customer_key"].to_list() == [customer_key("nobody@example.com", KEY), customer_key(email, KEY)]
    assert log["matched"].to_list() == [False, True]
    removed = json.loads(log.filter(matched=True)["rows_removed"].item())
    assert removed["customer_trusted"] == 1 and removed["accelerometer_landing"] > 0
    assert json.loads(log.filter(matched=False)["rows_removed"].item()) == {}
    suppressed = wh.scan("suppression_list").collect()
    assert sorted(zip(suppressed["kind"], suppressed["key_hash"], strict=True)) == sorted(
        [
            ("email", customer_key(email, KEY)),
            ("email", customer_key("nobody@example.com", KEY)),
            ("serialNumber", keyed_hash(serial, KEY)),
        ]
    )


def test_an_old_copy_of_the_files_does_not_bring_the_person_back(world, tmp_path):
    wh, src, extra, email, serial = world
    forget(wh, KEY, [email])
    # the very same files again: recognised by their original hash, skipped whole
    again = ingest(wh, src, KEY)
    assert not again.ingested
    # the same lines in a new file (say a re-export): the person's lines are skipped, counted, blanked
    reexport = tmp_path / "reexport"
    for path, lines in _landing_lines(src).items():
        out = reexport / path.relative_to(src).parent / f"re-{path.name}"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(line + "\n" for line in lines) + "\n")  # one more byte: a new file
    summary = ingest(wh, reexport, KEY)
    by_source = {}
    for f in summary.files:
        by_source[f.source] = by_source.get(f.source, 0) + f.rows_suppressed
    assert by_source["customer"] >= 1 and by_source["accelerometer"] > 0 and by_source["step_trainer"] > 0
    run(wh, KEY)
    assert warehouse_mentions(wh, [email, serial]) == []
    assert subject_key(email, KEY) not in wh.scan("customer_consent_history").collect()["subject_key"].to_list()


def test_a_serial_number_shared_with_another_customer_is_kept_and_reported(tmp_path):
    ann = customer("Ann A")
    bob = customer("Bob B", serialNumber=ann["serialNumber"])
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, write_landing(tmp_path / "src", [ann, bob], [reading(ann["email"])], [step(ann["serialNumber"])]), KEY)
    run(wh, KEY)
    summary = forget(wh, KEY, [ann["email"]])
    (person,) = summary.people
    assert (person.serial_numbers, person.serials_kept) == (0, 1)
    assert wh.info("step_trainer_landing").rows == 1
    assert "step_trainer_landing" not in person.rows_removed


@pytest.mark.parametrize("bad", ["not-an-email", "ann@", "two words@test.com", "", '"ann@test.com"', "ann@test.com,bob@test.com"])
def test_a_malformed_email_is_an_error_and_changes_nothing(tmp_path, bad):
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    with pytest.raises(ErasureError):
        forget(wh, KEY, [bad])
    assert wh.info("suppression_list").rows == 0


def test_forget_from_the_command_line(tmp_path):
    ann, bob = customer("Ann A"), customer("Bob B")
    src = write_landing(tmp_path / "src", [ann, bob], [reading(ann["email"]), reading(bob["email"])])
    runner = CliRunner()
    wh = ["--warehouse", str(tmp_path / "wh")]
    assert runner.invoke(cli, [*wh, "ingest", "--run", str(src)]).exit_code == 0
    requests = tmp_path / "requests.txt"
    requests.write_text(f"# erasure requests\n{bob['email']}\n\nnobody@test.com\n")
    result = runner.invoke(cli, [*wh, "forget", "--email", ann["email"], "--from-file", str(requests)])
    assert result.exit_code == 0, result.output
    assert "2 person(s) erased, 1 matched nobody" in result.output
    assert "none: matched nobody" in result.output
    bad = runner.invoke(cli, [*wh, "forget", "--email", "ann at test.com"])
    assert bad.exit_code == 1
    assert bad.output.strip() == "Error: not an email address: 'ann at test.com'"
    none = runner.invoke(cli, [*wh, "forget"])
    assert none.exit_code == 1 and "no email given" in none.output
    remaining = runner.invoke(cli, [*wh, "sql", "--format", "json", "SELECT count(*) AS n FROM customer_landing"])
    assert json.loads(remaining.output) == [{"n": 0}]
    assert contract("erasure_log")  # and the log is a table like any other


def test_forget_deletes_orphans_of_writes_that_never_committed(world):
    wh, src, extra, email, serial = world
    import pyarrow as pa

    rows = wh.scan("customer_trusted").collect().filter(email=email).to_arrow()
    staged = wh.stage(Change("customer_trusted", pa.Table.from_pylist(rows.to_pylist()), "append"))  # a crash before commit
    orphans = [p for p in (wh.root / "iceberg").rglob("*.parquet") if str(p) not in {f for n in contract_names() for f in wh.data_files(n)}]
    assert orphans and staged  # the staged file holds the person, and no table refers to it
    (wh.root / "landing" / "customer" / ".left-by-a-killed-ingest.tmp").write_text(f'{{"email": "{email}"}}\n')
    forget(wh, KEY, [email])
    assert not any(p.exists() for p in orphans)
    assert not (wh.root / "landing" / "customer" / ".left-by-a-killed-ingest.tmp").exists()
    assert warehouse_mentions(wh, [email, serial]) == []


def test_forget_in_a_file_holding_one_json_array(tmp_path):
    ann, bob = customer("Ann A"), customer("Bob B")
    folder = tmp_path / "src" / "customer" / "landing"
    folder.mkdir(parents=True)
    (folder / "customers.json").write_text(json.dumps([ann, bob], indent=2))
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, tmp_path / "src", KEY)
    run(wh, KEY)
    forget(wh, KEY, [ann["email"]])
    assert warehouse_mentions(wh, [ann["email"], ann["serialNumber"]]) == []
    (stored,) = (wh.root / "landing" / "customer").iterdir()
    assert json.loads(stored.read_bytes())[1]["email"] == bob["email"]
    assert wh.scan("customer_trusted").collect()["email"].to_list() == [bob["email"].lower()]


def test_a_suppressed_person_in_a_new_json_array_file_is_blanked_there(tmp_path):
    ann, bob = customer("Ann A"), customer("Bob B")
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    forget(wh, KEY, [ann["email"]])  # asked to be forgotten before any data arrived
    folder = tmp_path / "src" / "customer" / "landing"
    folder.mkdir(parents=True)
    (folder / "customers.json").write_text(json.dumps([bob, ann, bob | {"phone": "2"}], indent=2))
    (result,) = ingest(wh, tmp_path / "src", KEY).files
    assert (result.rows_landed, result.rows_suppressed) == (2, 1)
    (stored,) = (wh.root / "landing" / "customer").iterdir()
    records = json.loads(stored.read_bytes())
    assert records[1] is None and records[0]["email"] == records[2]["email"] == bob["email"]
    assert warehouse_mentions(wh, [ann["email"], ann["serialNumber"]]) == []
