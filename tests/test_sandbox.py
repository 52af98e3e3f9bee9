"""The SQL sandbox: `sql` and stedi.connect() read the tables' current data and nothing else.

Each attempted escape goes through the CLI: exit 1, one line naming why, and no file of the
warehouse changed; plain queries (joins, aggregates) still work.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

import stedi
from stedi.cli import cli
from tests.conftest import SAMPLE
from tests.factories import loaded_warehouse


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return loaded_warehouse(tmp_path_factory.mktemp("sandbox") / "wh", SAMPLE).root


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` by path, with a digest of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def sql(root: Path, *args: str):
    return CliRunner().invoke(cli, ["sql", "--warehouse", str(root), *args])


def data_file(root: Path, table: str) -> str:
    return str(next((root / "iceberg" / "stedi" / table / "data").rglob("*.parquet")))


ESCAPES = {
    "key by read_text": "SELECT * FROM read_text('{root}/.stedi/pseudonym.key')",
    "key by read_csv": "SELECT * FROM read_csv('{root}/.stedi/key.json')",
    "key by read_parquet": "SELECT * FROM read_parquet('{root}/.stedi/pseudonym.key')",
    "key by read_blob": "SELECT * FROM read_blob('{root}/.stedi/*')",
    "private folder by glob": "SELECT * FROM glob('{root}/.stedi/*')",
    "catalog file": "SELECT * FROM read_blob('{root}/catalog.db')",
    "table metadata": "SELECT * FROM read_text('{root}/iceberg/stedi/customer_trusted/metadata/*.json')",
    "landing copies": "SELECT * FROM read_json_auto('{root}/landing/**/*.json')",
    "a system file": "SELECT * FROM read_text('/etc/passwd')",
    "COPY TO a file": "COPY (SELECT 1) TO '{out}/leak.csv'",
    "COPY over a table's file": "COPY (SELECT * FROM customer_landing) TO '{trusted_file}' (FORMAT parquet)",
    "EXPORT DATABASE": "EXPORT DATABASE '{out}/export'",
    "ATTACH a database": "ATTACH '{out}/other.duckdb' AS other",
    "ATTACH in memory": "ATTACH ':memory:' AS scratch",
    "INSTALL": "INSTALL httpfs",
    "LOAD": "LOAD httpfs",
    "SET external access back": "SET enable_external_access = true",
    "SET allowed paths": "SET allowed_paths = ['/etc/passwd']",
    "RESET": "RESET enable_external_access",
    "CREATE TABLE": "CREATE TABLE kept AS SELECT 1 AS x",
    "CREATE VIEW": "CREATE VIEW v AS SELECT 1 AS x",
    "INSERT": "INSERT INTO customer_trusted SELECT * FROM customer_trusted",
    "PRAGMA": "PRAGMA database_list",
    "CALL": "CALL pragma_version()",
    "a query then a write": "SELECT 1; COPY (SELECT 1) TO '{out}/second.csv'",
}


@pytest.mark.parametrize("query", ESCAPES.values(), ids=ESCAPES.keys())
def test_every_escape_is_refused_in_one_line(root, tmp_path, query):
    before = tree(root)
    text = query.format(root=root, out=tmp_path, trusted_file=data_file(root, "customer_trusted"))
    result = sql(root, text)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: refused: the SQL sandbox reads the tables only"), result.stderr
    assert "Traceback" not in result.output
    assert tree(root) == before
    assert list(tmp_path.iterdir()) == []


def test_a_table_created_does_not_persist(root):
    # CREATE is refused; and nothing a session does is there for the next one
    assert sql(root, "CREATE TEMP TABLE t AS SELECT 1 AS x").exit_code in (0, 1)
    result = sql(root, "SELECT * FROM t")
    assert result.exit_code == 1 and "t does not exist" in result.stderr


def test_plain_queries_still_work(root):
    result = sql(
        root,
        "--format",
        "csv",
        """
        SELECT count(*) AS pairs, count(DISTINCT c.customer_key) AS people, round(avg(m.x), 6) AS mean_x
        FROM machine_learning_curated m JOIN customers_curated c USING (customer_key)
        """,
    )
    assert result.exit_code == 0, result.output
    header, row = result.stdout.strip().splitlines()
    assert header == '"pairs","people","mean_x"'
    con = duckdb.connect()
    files = [str(p) for p in (root / "iceberg/stedi/machine_learning_curated/data").rglob("*.parquet")]
    expected = con.execute("SELECT count(*), count(DISTINCT customer_key) FROM read_parquet(?)", [files]).fetchone()
    assert [int(v) for v in row.split(",")[:2]] == list(expected)


def test_connect_is_confined_too(root):
    con = stedi.connect(root)
    assert con.sql("SELECT count(*) FROM customers_curated").fetchall()[0][0] > 0
    for attempt in (
        f"SELECT * FROM read_text('{root}/.stedi/pseudonym.key')",
        "CREATE TABLE x AS SELECT 1",
        "SET enable_external_access = true",
        f"ATTACH '{root}/other.duckdb'",
        "LOAD httpfs",
    ):
        with pytest.raises(duckdb.Error):
            con.execute(attempt)
    assert not (root / "other.duckdb").exists()


def test_an_unknown_table_names_those_there_are(root):
    result = sql(root, "SELECT * FROM no_such_table")
    assert result.exit_code == 1
    assert "no_such_table" in result.stderr and "customers_curated" in result.stderr
