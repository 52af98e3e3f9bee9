"""End-to-end runs of ``stedi-etl`` through click's CliRunner, on the committed sample data."""

from __future__ import annotations

import csv
import io
import json
import os
import stat

import pytest
from click.testing import CliRunner

from stedi.cli import cli
from tests.conftest import SAMPLE


@pytest.fixture
def etl(tmp_path):
    runner = CliRunner()
    warehouse = str(tmp_path / "wh")

    def invoke(*args: str, env: dict | None = None):
        return runner.invoke(cli, ["--warehouse", warehouse, *args], env=env, catch_exceptions=False)

    invoke.warehouse = warehouse
    return invoke


@pytest.fixture
def loaded(etl):
    assert etl("ingest", str(SAMPLE)).exit_code == 0
    assert etl("run").exit_code == 0
    return etl


def counts(etl) -> dict[str, int]:
    result = etl("tables", "--format", "json")
    assert result.exit_code == 0, result.output
    return {row["table"]: row["rows"] for row in json.loads(result.output)}


def test_ingest_run_tables_on_the_sample_data(etl):
    ingested = etl("ingest", str(SAMPLE))
    assert ingested.exit_code == 0, ingested.output
    assert "0 skipped" in ingested.output
    ran = etl("run")
    assert ran.exit_code == 0, ran.output
    for job in ("customer_landing_to_trusted", "machine_learning_curated"):
        assert job in ran.output
    tables = counts(etl)
    assert set(tables) >= {
        "customer_landing", "accelerometer_landing", "step_trainer_landing", "customer_trusted",
        "accelerometer_trusted", "customers_curated", "step_trainer_trusted", "machine_learning_curated",
    }
    assert all(tables[t] > 0 for t in tables if t not in ("quarantine", "suppression_list", "erasure_log"))
    assert "machine_learning_curated" in etl("tables").output


def test_ingest_and_run_again_change_nothing(loaded):
    before = counts(loaded)
    again = loaded("ingest", str(SAMPLE))
    assert again.exit_code == 0 and "0 file(s) ingested" in again.output and "already ingested" in again.output
    rerun = loaded("run")
    assert rerun.exit_code == 0 and "nothing new" in rerun.output
    assert counts(loaded) == before


def test_sql_formats(loaded):
    n = counts(loaded)["machine_learning_curated"]
    table = loaded("sql", "SELECT count(*) AS n FROM machine_learning_curated")
    assert table.exit_code == 0 and str(n) in table.output
    as_csv = loaded("sql", "--format", "csv", "SELECT customer_key, count(*) AS n FROM machine_learning_curated GROUP BY 1")
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert sum(int(r["n"]) for r in rows) == n
    as_json = loaded("sql", "--format", "json", "SELECT count(*) AS n FROM customer_trusted")
    assert json.loads(as_json.output) == [{"n": counts(loaded)["customer_trusted"]}]


def test_the_warehouse_can_come_from_the_environment(tmp_path):
    runner = CliRunner()
    env = {"STEDI_WAREHOUSE": str(tmp_path / "from-env")}
    assert runner.invoke(cli, ["ingest", str(SAMPLE)], env=env).exit_code == 0
    assert (tmp_path / "from-env" / "catalog.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["sql", "SELECT 1"], "no warehouse at", id="no warehouse"),
        pytest.param(["ingest", "/no/such/folder"], "does not exist", id="missing source"),
    ],
)
def test_errors_are_one_line_with_a_non_zero_exit(etl, args, message):
    result = etl(*args)
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.startswith("Error: ")
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_an_empty_source_is_an_error(etl, tmp_path):
    (tmp_path / "empty").mkdir()
    result = etl("ingest", str(tmp_path / "empty"))
    assert result.exit_code == 1 and "no landing files" in result.output


def test_every_command_explains_itself_with_an_example(etl):
    for command in ("ingest", "run", "sql", "tables", "generate", "ddl"):
        help_text = etl(command, "--help").output
        assert "Example" in help_text, command


def test_the_pseudonym_key_is_private_and_never_shown(loaded, tmp_path):
    key_file = tmp_path / "wh" / ".stedi" / "pseudonym.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    key = key_file.read_bytes().strip()
    outputs = "".join(
        loaded(*args).output
        for args in (["tables"], ["run"], ["sql", "SELECT * FROM customers_curated"], ["sql", "SELECT * FROM machine_learning_curated LIMIT 5"])
    )
    assert key.decode() not in outputs
    for path in (tmp_path / "wh").rglob("*"):
        if path.is_file() and path != key_file:
            assert key not in path.read_bytes(), path


def test_the_key_from_the_environment_is_used_and_no_file_is_written(etl, tmp_path):
    env = {"STEDI_PSEUDONYM_KEY": "9d1e5c0b7a2f4e8c6b3a1d0f9e8c7b6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a"}
    assert etl("ingest", str(SAMPLE), env=env).exit_code == 0
    assert etl("run", env=env).exit_code == 0
    assert not (tmp_path / "wh" / ".stedi" / "pseudonym.key").exists()


def test_generate_is_deterministic_and_matches_the_committed_sample(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["generate", "--customers", "40", "--seed", "7", "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    made = sorted(p.relative_to(tmp_path / "g") for p in (tmp_path / "g").rglob("*.json"))
    committed = sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*.json"))
    assert made == committed
    for rel in made:
        assert (tmp_path / "g" / rel).read_bytes() == (SAMPLE / rel).read_bytes()
    refused = runner.invoke(cli, ["generate", "--customers", "3", "--out", str(tmp_path / "g")])
    assert refused.exit_code == 1 and "not empty" in refused.output


def test_run_shows_progress_on_a_terminal(etl, monkeypatch):
    import io as _io

    from rich.console import Console

    import stedi.cli.output as cli_module

    screen = _io.StringIO()
    monkeypatch.setattr(cli_module, "_is_terminal", lambda: True)
    real_console = cli_module._console
    monkeypatch.setattr(
        cli_module, "_console", lambda stderr=False: Console(file=screen, force_terminal=True, width=120) if stderr else real_console()
    )
    assert etl("ingest", str(SAMPLE)).exit_code == 0
    result = etl("run")
    assert result.exit_code == 0, result.output
    assert "machine_learning_curated" in screen.getvalue()  # the bar named the jobs as they ran
    assert "customer_landing_to_trusted" in result.output  # and the summary still went to stdout
