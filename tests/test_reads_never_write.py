"""Reads never write: read commands create no folder, table or catalog row, run for a user who
cannot write, and a warehouse that is not there (or lost its catalog, or moved) is one clear line."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import stedi
from stedi.cli import cli
from tests.conftest import ROOT, SAMPLE

READS = [
    ["sql", "SELECT count(*) FROM customers_curated"],
    ["tables"],
    ["runs"],
    ["quarantine"],
    ["audit"],
]


def etl(root: Path, *args: str):
    return CliRunner().invoke(cli, ["--warehouse", str(root), *args])


def state(root: Path) -> tuple[dict, list]:
    """Every file and folder under ``root`` (with its bytes' digest) and every catalog row."""
    files = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }
    con = sqlite3.connect(root / "catalog.db")
    rows = sorted(con.execute("SELECT * FROM iceberg_tables").fetchall()) + sorted(
        con.execute("SELECT * FROM iceberg_namespace_properties").fetchall()
    )
    con.close()
    return files, rows


def built(root: Path) -> Path:
    """A warehouse ingested and run through the CLI (its own key file)."""
    assert etl(root, "ingest", str(SAMPLE), "--run").exit_code == 0
    return root


@pytest.fixture
def ingested(tmp_path) -> Path:
    """A warehouse after ingest only: the trusted and curated tables were never created."""
    root = tmp_path / "wh"
    assert etl(root, "ingest", str(SAMPLE)).exit_code == 0
    return root


def test_read_commands_create_nothing(ingested):
    before = state(ingested)
    for args in READS:
        result = etl(ingested, *args)
        assert result.exit_code == 0, (args, result.output)
    assert stedi.connect(ingested).sql("SELECT count(*) FROM customers_curated").fetchall() == [(0,)]
    assert stedi.table("customer_trusted", ingested).collect().height == 0
    assert state(ingested) == before


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="drops root's capabilities with setpriv")
def test_read_commands_run_for_a_user_who_cannot_write(tmp_path):
    root = built(tmp_path / "wh")
    before = state(root)
    subprocess.run(["chmod", "-R", "a-w", str(root)], check=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    try:
        for args in [*READS, ["describe", "customer_trusted"], ["history", "customer_trusted"]]:
            # root without CAP_DAC_OVERRIDE: the files' write bits hold, as for any other user
            done = subprocess.run(
                ["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-m", "stedi.cli", "--warehouse", str(root), *args],
                capture_output=True, text=True, env=env, timeout=120,
            )
            assert done.returncode == 0, (args, done.stderr)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)
    assert state(root) == before


@pytest.mark.parametrize("args", READS, ids=[a[0] for a in READS])
def test_a_missing_warehouse_is_one_line_and_stays_missing(tmp_path, args):
    root = tmp_path / "typo"
    result = etl(root, *args)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"no warehouse at {root}" in result.stderr
    assert not root.exists()


def test_init_makes_an_empty_warehouse(tmp_path):
    root = tmp_path / "new"
    assert etl(root, "init").exit_code == 0
    result = etl(root, "sql", "--format", "csv", "SELECT count(*) AS n FROM machine_learning_curated")
    assert result.exit_code == 0 and result.stdout.splitlines()[1] == "0"


def counts(root: Path) -> dict[str, int]:
    con = stedi.connect(root)
    return {t: con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("customer_trusted", "machine_learning_curated", "run_log")}


def test_a_lost_catalog_is_an_error_until_repaired(tmp_path):
    root = built(tmp_path / "wh")
    expected = counts(root)
    (root / "catalog.db").unlink()
    for args in (["tables"], ["sql", "SELECT 1"], ["ingest", str(SAMPLE)]):
        result = etl(root, *args)
        assert result.exit_code == 1 and "stedi-etl repair" in result.stderr, (args, result.output)
    assert not (root / "catalog.db").exists()
    result = etl(root, "repair")
    assert result.exit_code == 0, result.output
    assert counts(root) == expected
    result = etl(root, "audit")
    assert result.exit_code == 0, result.output


def test_a_moved_warehouse_opens_at_its_new_place_after_relocate(tmp_path):
    old = built(tmp_path / "old")
    expected = counts(old)
    new = tmp_path / "new"
    shutil.copytree(old, new)
    old_state = state(old)
    result = etl(new, "tables")
    assert result.exit_code == 1 and "stedi-etl relocate" in result.stderr
    result = etl(new, "relocate")
    assert result.exit_code == 0, result.output
    assert counts(new) == expected
    assert state(old) == old_state  # the old copy untouched, and still its own
    assert counts(old) == expected
    # a writer works at the new place, and writes only there
    shutil.rmtree(old)
    result = etl(new, "run", "--full-refresh")
    assert result.exit_code == 0, result.output
    assert etl(new, "audit").exit_code == 0
    assert counts(new)["customer_trusted"] == expected["customer_trusted"]


def test_a_half_done_commit_is_read_as_before_it_and_left_to_a_writer(tmp_path):
    import json

    first = tmp_path / "first"
    shutil.copytree(SAMPLE, first)
    for extra in sorted((first / "customer" / "landing").glob("*.json"))[1:]:
        extra.unlink()
    root = tmp_path / "wh"
    assert etl(root, "ingest", str(first)).exit_code == 0
    assert etl(root, "ingest", str(SAMPLE)).exit_code == 0
    history = json.loads(etl(root, "history", "customer_landing", "--format", "json").stdout)
    assert len(history) == 2
    # as a writer killed between the tables of one commit leaves it: the snapshot to go back to
    journal = root / ".stedi" / "commit-journal.json"
    journal.write_text(json.dumps({"before": {"customer_landing": history[0]["snapshot_id"]}}))
    before = state(root)
    result = etl(root, "sql", "--format", "csv", "SELECT count(*) AS n FROM customer_landing")
    assert result.exit_code == 0 and int(result.stdout.split()[1]) == history[0]["rows"]
    assert state(root) == before and journal.exists()  # a reader finishes nothing
    assert etl(root, "run").exit_code == 0  # a writer puts the table back, then runs
    assert not journal.exists()
    assert json.loads(etl(root, "describe", "customer_landing", "--format", "json").stdout)["rows"] == history[0]["rows"]


def test_a_moved_warehouse_that_lost_its_catalog_too(tmp_path):
    old = built(tmp_path / "old")
    expected = counts(old)
    new = tmp_path / "new"
    shutil.move(old, new)
    (new / "catalog.db").unlink()
    assert "stedi-etl repair" in etl(new, "tables").stderr
    result = etl(new, "repair")
    assert result.exit_code == 0, result.output
    assert counts(new) == expected
    result = etl(new, "audit")
    assert result.exit_code == 0, result.output


def test_relocate_writes_privately(tmp_path):
    old = built(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    before = {p for p in new.rglob("*")}
    assert etl(new, "relocate").exit_code == 0
    written = [p for p in new.rglob("*") if p not in before or p.suffix == ".avro"]
    assert written and all(p.stat().st_mode & 0o077 == 0 for p in written), [oct(p.stat().st_mode) for p in written]
