"""One line, never a traceback: data printed literally, and each bad input or damaged file is one
line on stderr and exit 1, while the other tables stay readable."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from stedi.cli import cli
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oneline") / "wh"
    assert CliRunner().invoke(cli, ["--warehouse", str(root), "ingest", str(SAMPLE), "--run"]).exit_code == 0
    return root


@pytest.fixture
def damaged(built, tmp_path) -> Path:
    """A copy of the built warehouse, its own (relocated), to damage."""
    root = tmp_path / "wh"
    shutil.copytree(built, root)
    assert etl(root, "relocate").exit_code == 0
    return root


def etl(root: Path, *args: str, **kw):
    return CliRunner().invoke(cli, ["--warehouse", str(root), *args], **kw)


def one_line(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("value", ["[/x]", "[bold]loud[/bold]", ":x: :thumbs_up:", "[link=http://e.x]y[/link]", "\\[a]"])
def test_values_and_names_are_printed_literally(built, value):
    literal = value.replace("'", "''")
    result = etl(built, "sql", "--limit", "0", f"SELECT '{literal}' AS v, 1 AS \"{literal}\"")
    assert result.exit_code == 0, result.output
    assert result.stdout.count(value) == 2  # the value and the column name, as they are


def test_a_wide_table_stays_readable_on_100_columns(built):
    result = etl(built, "sql", "SELECT * FROM customer_trusted LIMIT 2", env={"COLUMNS": "100"}, terminal_width=100)
    assert result.exit_code == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= 240  # pipes print whole
    from stedi.cli.output import _too_wide

    assert _too_wide(tuple(f"column_{i}" for i in range(16)), [["x" * 30] * 16], 100)
    assert not _too_wide(("a", "b"), [["1", "2"]], 100)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["sql", ""], "empty query"),
        (["sql", "   "], "empty query"),
        (["sql", "-- nothing but a comment"], "empty query"),
        (["sql", "SELEC oops"], "malformed query"),
        (["sql", "SELECT 1", "--file", "x.sql"], "not both"),
        (["sql", "--file", "/no/such.sql"], "cannot read /no/such.sql"),
        (["generate", "--customers", "3", "--seed", "-1", "--out", "g"], "--seed"),
        (["describe", "no_such_table"], "no contract for table 'no_such_table'"),
        (["history", "no_such_table"], "no contract for table 'no_such_table'"),
    ],
)
def test_bad_input_is_one_line(built, args, needle):
    result = etl(built, *args)
    assert result.exit_code in (1, 2), result.output  # 2: click's own usage errors
    assert needle in result.stderr and "Traceback" not in result.output


def test_a_leading_sql_comment_is_not_an_option(built):
    result = etl(built, "sql", "--format", "csv", "-- the curated people\nSELECT count(*) AS n FROM customers_curated")
    assert result.exit_code == 0, result.output
    assert int(result.stdout.splitlines()[1]) > 0


def test_sql_from_a_file_and_from_stdin(built, tmp_path):
    query = tmp_path / "q.sql"
    query.write_text("SELECT 41 + 1 AS n")
    assert etl(built, "sql", "--format", "csv", "--file", str(query)).stdout.split() == ['"n"', "42"]
    assert etl(built, "sql", "--format", "csv", "-", input="SELECT 7 AS n").stdout.split() == ['"n"', "7"]
    not_text = tmp_path / "bin.sql"
    not_text.write_bytes(b"\xff\xfe\x00select")
    one_line(etl(built, "sql", "--file", str(not_text)), "not UTF-8")


def test_csv_of_lists_and_structs(built):
    result = etl(built, "sql", "--format", "csv", "SELECT [1, 2] AS l, {'a': 1, 'b': 'x'} AS s, 3 AS n")
    assert result.exit_code == 0, result.output
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert json.loads(row["l"]) == [1, 2] and json.loads(row["s"]) == {"a": 1, "b": "x"} and row["n"] == "3"


def test_a_screenful_on_a_terminal_and_a_note_of_the_rest(built, monkeypatch):
    import os
    import shutil as sh

    from stedi.cli import read

    monkeypatch.setattr(read, "_stdout_is_terminal", lambda: True)
    monkeypatch.setattr(sh, "get_terminal_size", lambda *a: os.terminal_size((100, 30)))
    result = etl(built, "sql", "SELECT * FROM range(50) t(i)")
    assert result.exit_code == 0
    assert "50 row(s); 28 not shown (--limit N shows N, --limit 0 all)" in result.stdout  # 30 lines - 8
    assert "45 not shown" in etl(built, "sql", "--limit", "5", "SELECT * FROM range(50) t(i)").stdout
    assert "not shown" not in etl(built, "sql", "--limit", "0", "SELECT * FROM range(50) t(i)").stdout
    assert len(etl(built, "sql", "--format", "csv", "SELECT * FROM range(50) t(i)").stdout.splitlines()) == 51
    monkeypatch.setattr(read, "_stdout_is_terminal", lambda: False)
    assert "not shown" not in etl(built, "sql", "SELECT * FROM range(50) t(i)").stdout  # a pipe gets every row


def test_forget_dry_run_changes_nothing_and_says_what_would_go(built, tmp_path):
    import hashlib

    def tree(root):
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "lock"}

    email = json.loads((SAMPLE / "customer" / "landing").glob("*.json").__next__().read_text().splitlines()[0])["email"]
    before = tree(built)
    result = etl(built, "forget", "--dry-run", "--email", email)
    assert result.exit_code == 0, result.output
    assert "dry run: nothing changed" in result.stdout and "would be erased" in result.stdout
    assert "snapshot(s) would be expired" in result.stdout
    assert tree(built) == before


def test_a_corrupt_metadata_file_breaks_only_its_table(damaged):
    import sqlite3

    con = sqlite3.connect(damaged / "catalog.db")
    (location,) = con.execute("SELECT metadata_location FROM iceberg_tables WHERE table_name = 'customer_trusted'").fetchone()
    con.close()
    Path(location.removeprefix("file://")).write_text('{"format-version": 2, "snapsh')
    one_line(etl(damaged, "sql", "SELECT count(*) FROM customer_trusted"), "is corrupt")
    assert etl(damaged, "sql", "SELECT count(*) FROM customers_curated").exit_code == 0
    one_line(etl(damaged, "describe", "customer_trusted"), "is corrupt")
    result = etl(damaged, "tables")
    assert result.exit_code == 1 and "customers_curated" in result.stdout and "is corrupt" in result.stderr


def test_a_missing_data_file_breaks_only_its_table(damaged):
    for f in (damaged / "iceberg/stedi/step_trainer_trusted/data").rglob("*.parquet"):
        f.unlink()
    one_line(etl(damaged, "sql", "SELECT count(*) FROM step_trainer_trusted"), "step_trainer_trusted", "missing")
    result = etl(damaged, "sql", "--format", "csv", "SELECT count(*) AS n FROM machine_learning_curated")
    assert result.exit_code == 0 and int(result.stdout.splitlines()[1]) > 0


def test_ctrl_c_is_one_line_and_exit_130(built, monkeypatch):
    import stedi.query

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(stedi.query, "run", interrupted)
    result = etl(built, "sql", "SELECT 1")
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted: nothing more was done"


def test_a_mistyped_option_is_not_taken_for_sql(built):
    one_line(etl(built, "sql", "--limt", "5", "SELECT 1"), "no such option: --limt")


def test_options_after_the_command_name(built, tmp_path):
    result = CliRunner().invoke(cli, ["tables", "--format", "json", "--warehouse", str(built)])
    assert result.exit_code == 0 and json.loads(result.stdout)
    fresh = tmp_path / "after"
    result = CliRunner().invoke(cli, ["ingest", str(SAMPLE), "--warehouse", str(fresh)])
    assert result.exit_code == 0, result.output
    assert (fresh / "catalog.db").exists()


def test_wide_rows_print_as_records_on_100_columns(monkeypatch):
    from rich.console import Console

    from stedi.cli import output

    sink = io.StringIO()
    monkeypatch.setattr(output, "_console", lambda stderr=False: Console(file=sink, width=100, highlight=False))
    columns = tuple(f"column_number_{i}" for i in range(12))
    values = tuple(f"value-{i}-" + "x" * 20 for i in range(12))
    output._print_table(None, columns, [values])
    lines = sink.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 100
    for name, value in zip(columns, values, strict=True):
        assert any(line.startswith(name) and line.endswith(value) for line in lines)  # each value whole, on its line
    sink.truncate(0)
    sink.seek(0)
    output._print_table(None, ("a", "b"), [(1, "two")])
    assert "┃ a ┃ b" in sink.getvalue()  # a narrow table stays a table


@pytest.mark.parametrize("command", [["audit"], ["run"], ["forget", "--dry-run", "--email", "a@b.co"]])
def test_a_truncated_metadata_file_is_one_line_for_writers_and_the_audit_too(damaged, command):
    metadata = sorted((damaged / "iceberg" / "stedi" / "customer_trusted" / "metadata").glob("*.metadata.json"))[-1]
    metadata.write_text(metadata.read_text()[:200])
    one_line(etl(damaged, *command), "metadata")


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("catalog_uri = 5", "catalog_uri must be a string, not 5"),
        ("retention_days = true", "retention_days must be a whole number, not True"),
        ('tables = ["step_trainer_trusted", 1]', "tables must be a list of table names"),
        ('zone = ["curated"]', "zone must be a string"),
        ('memory_limit = "lots"', "memory_limit must be a size such as 4GB or 512MiB, not 'lots'"),
        ("memory_limit = 4", "memory_limit must be a string, not 4"),
        ('memory_limit = "1MB"', "memory_limit '1MB' is too small: stedi needs at least 64MB"),
    ],
)
def test_a_mistyped_setting_in_stedi_toml_is_one_line(built, tmp_path, setting, says):
    root = tmp_path / "wh"
    shutil.copytree(built, root)
    (root / "stedi.toml").write_text(setting + "\n")
    one_line(etl(root, "tables"), says)
