"""Looking around: the DuckDB shell over the tables (fed a script on stdin), describe, history,
and sql --as-of a past run."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stedi.cli import cli
from stedi.config import Settings
from tests.conftest import ROOT, SAMPLE


def etl(root: Path, *args: str):
    return CliRunner().invoke(cli, ["--warehouse", str(root), *args])


def rows(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, str, str]:
    """A warehouse run twice: first over one customer file, then over the whole sample."""
    base = tmp_path_factory.mktemp("look")
    first = base / "first"
    shutil.copytree(SAMPLE, first)
    for extra in sorted((first / "customer" / "landing").glob("*.json"))[1:]:
        extra.unlink()
    root = base / "wh"
    assert etl(root, "ingest", str(first), "--run").exit_code == 0
    assert etl(root, "ingest", str(SAMPLE), "--run").exit_code == 0
    runs = rows(etl(root, "sql", "--format", "csv", "SELECT run_id FROM run_log GROUP BY run_id ORDER BY min(started_at)"))
    return root, runs[0]["run_id"], runs[-1]["run_id"]


def shell(root: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "stedi.cli", "--warehouse", str(root), "shell", *args],
        input=script, capture_output=True, text=True, env=env, timeout=120,
    )


def test_the_shell_runs_a_script_from_stdin(two_runs):
    root, _, _ = two_runs
    done = shell(root, "SELECT count(*) AS n FROM machine_learning_curated;\n.mode csv\nSELECT 40 + 2 AS answer;\n", "-csv")
    assert done.returncode == 0, done.stderr
    expected = rows(etl(root, "sql", "--format", "csv", "SELECT count(*) AS n FROM machine_learning_curated"))[0]["n"]
    assert done.stdout.split() == ["n", expected, "answer", "42"]


def test_the_shell_shows_only_the_zone(two_runs):
    root, _, _ = two_runs
    done = shell(root, ".mode csv\nSHOW TABLES;\n", "--zone", "curated")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["name", "customers_curated", "machine_learning_curated"]
    done = shell(root, ".tables\n", "--zone", "curated")
    assert "customers_curated" in done.stdout and "customer_trusted" not in done.stdout


@pytest.mark.parametrize(
    "attempt",
    [
        "SELECT * FROM read_text('{root}/.stedi/pseudonym.key');",
        "SELECT * FROM read_text('/etc/passwd');",
        "COPY (SELECT 1) TO '{out}/leak.csv';",
        "ATTACH '{out}/other.duckdb';",
        "CREATE TABLE kept AS SELECT 1;",
        "SET enable_external_access = true;",
        "INSTALL httpfs;",
        ".shell touch {out}/shell-ran",
        ".system touch {out}/shell-ran",
        ".output {out}/out.txt",
        ".once {out}/out.txt",
        ".open {out}/other.duckdb",
        ".read {root}/.stedi/pseudonym.key",
    ],
)
def test_the_shell_is_confined_like_sql(two_runs, tmp_path, attempt):
    root, _, _ = two_runs
    done = shell(root, attempt.format(root=root, out=tmp_path) + "\nSELECT 1;\n")
    assert done.returncode != 0
    assert list(tmp_path.iterdir()) == []


def test_the_shell_of_an_s3_warehouse_says_why_not(monkeypatch):
    from stedi.errors import StediError
    from stedi.lakeview import Lake
    from stedi.shell import prepared

    monkeypatch.setattr(Lake, "check_exists", lambda self: None)
    monkeypatch.setattr(Lake, "pointers", {})
    with pytest.raises(StediError, match="local warehouses only"), prepared(Settings(warehouse="s3://bucket/stedi", catalog_uri="sqlite:////tmp/x.db")):
        pass


def test_describe_shows_the_contract_and_the_snapshot(two_runs):
    root, _, _ = two_runs
    result = etl(root, "describe", "customer_trusted", "--format", "json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["zone"] == "trusted" and d["grain"] == "one row per customer" and d["owner"] == "email"
    assert {"name": "email", "type": "STRING", "required": True} | {"comment": d["columns"][1]["comment"]} == d["columns"][1]
    assert "email_shaped" in {r["name"] for r in d["rules"]}
    count = rows(etl(root, "sql", "--format", "csv", "SELECT count(*) AS n FROM customer_trusted"))[0]["n"]
    assert d["rows"] == int(count) and d["snapshot_id"]
    text = etl(root, "describe", "customer_trusted").stdout
    assert "one row per customer" in text and "Consenting customers" in text
    assert etl(root, "describe", "customer_trusted", "--zone", "curated").exit_code == 1


def test_history_lists_what_each_run_did(two_runs):
    root, first, last = two_runs
    result = etl(root, "history", "customer_landing", "--format", "json")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    assert len(entries) == 2 and all(e["by"].startswith("ingest ") for e in entries)
    assert entries[1]["current"] and entries[1]["rows"] == entries[0]["rows"] + entries[1]["added"]
    # (the consent history holds everyone: no withdrawal expires its snapshots, see stedi.retention)
    trusted = json.loads(etl(root, "history", "customer_consent_history", "--format", "json").stdout)
    assert list(dict.fromkeys(e["by"].split()[0] for e in trusted)) == [first, last]  # an overwrite: delete, then append
    assert all(e["when"].endswith("UTC") and e["when"][:2] == "20" for e in trusted)


def test_sql_as_of_a_run_reads_the_tables_as_it_left_them(two_runs):
    root, first, _ = two_runs
    q = "SELECT (SELECT count(*) FROM customer_landing) AS landing, (SELECT count(*) FROM customer_consent_history) AS history"
    now = rows(etl(root, "sql", "--format", "csv", q))[0]
    then = rows(etl(root, "sql", "--format", "csv", "--as-of", first, q))[0]
    file_lines = sum(1 for _ in sorted((SAMPLE / "customer" / "landing").glob("*.json"))[0].open())
    assert int(then["landing"]) == file_lines < int(now["landing"])
    assert 0 < int(then["history"]) <= int(now["history"])
    # the second batch withdrew someone's consent: customer_trusted as the first run left it held them
    gone = etl(root, "sql", "--as-of", first, "SELECT count(*) FROM customer_trusted")
    assert gone.exit_code == 1 and "has expired" in gone.stderr
    result = etl(root, "sql", "--as-of", "run-nope", "SELECT 1")
    assert result.exit_code == 1 and "no run 'run-nope'" in result.stderr


def test_as_of_an_expired_run_says_so(two_runs, tmp_path):
    root, first, _ = two_runs
    copy = tmp_path / "wh"
    shutil.copytree(root, copy)
    assert etl(copy, "relocate").exit_code == 0
    from stedi.contracts import load_contracts
    from stedi.warehouse import Warehouse

    wh = Warehouse.open(Settings(warehouse=copy))
    from stedi import maintenance

    with wh.lock("test"):
        for name in load_contracts():
            maintenance.expire_all_older(wh, name)
    result = etl(copy, "sql", "--as-of", first, "SELECT count(*) FROM customer_trusted")
    assert result.exit_code == 1 and "expired" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["-f", "/etc/passwd"], ["-init", "/etc/passwd"], ["/tmp/other.duckdb"], ["-unsigned"], ["-csv", "-f", "x"]])
def test_the_shell_refuses_options_that_would_read_a_file(two_runs, args):
    root, _, _ = two_runs
    done = shell(root, "SELECT 1;\n", *args)
    assert done.returncode == 1 and done.stderr.strip().startswith("Error: refused: the shell takes only these of its options")
    assert "root:" not in done.stdout + done.stderr


def test_the_shell_takes_its_output_options_and_commands(two_runs):
    root, _, _ = two_runs
    done = shell(root, "", "-csv", "-noheader", "-c", "SELECT 40 + 2")
    assert done.returncode == 0 and done.stdout.split() == ["42"], done.stderr
