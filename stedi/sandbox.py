"""The SQL sandbox: a DuckDB connection that reads the allowed tables' current data files and nothing else.

Built with DuckDB's own controls, not by parsing SQL: the views live in a database file opened
read-only (no CREATE, INSERT, ATTACH of a new database); ``allowed_paths`` lists exactly the tables'
data files, then ``enable_external_access`` is turned off (no other file, no COPY TO, no INSTALL or
LOAD, no glob) and ``lock_configuration`` on (no SET turns any of it back); extensions are never
autoloaded or autoinstalled. A table that cannot be read (a missing data file, corrupt metadata) is
a view that fails with its reason when queried, so the other tables stay readable.

The same views and settings serve ``sql``, :func:`stedi.connect`, and, as a script for the DuckDB
1.5 command-line shell, ``stedi-etl shell`` (:func:`shell_script`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stedi import resources
from stedi.errors import QueryError, StediError, first_line

if TYPE_CHECKING:
    import duckdb

    from stedi.lakeview import Lake

#: Contract types (Spark SQL) as DuckDB names them (TIMESTAMP is an instant).
DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "BIGINT": "BIGINT",
    "INT": "INTEGER",
    "DOUBLE": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMPTZ",
}

#: What a sandboxed query may be (DuckDB's own parser says which a statement is).
QUERY_TYPES = ("SELECT", "EXPLAIN")

REFUSED = "refused: the SQL sandbox reads the tables only"


@dataclass(frozen=True)
class View:
    """One table as the sandbox shows it: its columns, data files, or why it cannot be read."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type)
    files: tuple[str, ...]
    problem: str | None = None


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def views(lake: Lake, names: list[str]) -> list[View]:
    """The views of tables ``names`` over the snapshots ``lake`` reads."""
    out = []
    for name in names:
        state = lake.state(name)
        columns = tuple((c.name, DUCKDB_TYPES[c.sql_type]) for c in state.contract.columns)
        problem, files = state.problem, []
        if problem is None:
            try:
                files = lake.data_files(state)
            except StediError as err:
                problem = str(err)
        if problem is None and not lake.remote:
            missing = next((f for f in files if not os.path.isfile(f)), None)
            if missing is not None:
                problem = f"table {name}: its data file {missing} is missing (restore it from a backup; the other tables read)"
        out.append(View(name, columns, tuple(files), problem))
    return out


def view_sql(v: View) -> str:
    """The CREATE VIEW of ``v``, in SQL both DuckDB 2.0 and the 1.5 shell read."""
    cols = ", ".join(quote(n) for n, _ in v.columns)
    typed_nulls = ", ".join(f"CAST(NULL AS {t}) AS {quote(n)}" for n, t in v.columns)
    if v.problem is not None:
        body = f"SELECT {typed_nulls} FROM range(1) WHERE error({literal(v.problem)}) IS NULL"
    elif v.files:
        body = f"SELECT {cols} FROM read_parquet([{', '.join(literal(f) for f in v.files)}])"
    else:
        body = f"SELECT {typed_nulls} WHERE false"
    return f"CREATE VIEW {quote(v.name)} AS {body}"


def allowed_paths(vs: list[View], remote: bool) -> list[str]:
    paths = [f for v in vs if v.problem is None for f in v.files]
    if remote:  # DuckDB names a file of a registered fsspec filesystem either way
        paths += [f.replace("://", ":///", 1) for f in paths]
    return paths


def lock_statements(vs: list[View], remote: bool, directories: list[str] = ()) -> list[str]:
    """The settings that confine a connection to ``vs``'s files, in the order DuckDB takes them."""
    out = [
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        f"SET allowed_paths = [{', '.join(literal(p) for p in allowed_paths(vs, remote))}]",
    ]
    if directories:
        out.append(f"SET allowed_directories = [{', '.join(literal(d) for d in directories)}]")
    out += ["SET enable_external_access = false", "SET lock_configuration = true"]
    return out


def connect(lake: Lake, vs: list[View], directories: list[str] = ()) -> duckdb.DuckDBPyConnection:
    """A read-only, confined DuckDB connection with one view per ``vs``, named as its table."""
    import duckdb

    # a memory-backed folder where there is one: the views' commit then costs no disk flush
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="stedi-sql-", dir=shm)  # private to this user (0700)
    path = os.path.join(folder, "views.duckdb")
    quiet = {"autoload_known_extensions": False, "autoinstall_known_extensions": False}
    try:
        builder = resources.connect(path, config=quiet)
        try:
            if lake.remote:
                builder.register_filesystem(lake.fs)
            try:
                builder.execute("BEGIN")
                for v in vs:
                    builder.execute(view_sql(v))
                builder.execute("COMMIT")
            except duckdb.Error:  # a data file unreadable: that table fails when queried, the others read
                builder.execute("ROLLBACK")
                for v in vs:
                    try:
                        builder.execute(view_sql(v))
                    except duckdb.Error as err:
                        builder.execute(view_sql(View(v.name, v.columns, (), f"table {v.name} cannot be read: {first_line(err)}")))
        finally:
            builder.close()
        con = resources.connect(path, read_only=True, config=quiet)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the open connection keeps what it needs
    if lake.remote:
        con.register_filesystem(lake.fs)
    for statement in lock_statements(vs, lake.remote, list(directories)):
        con.execute(statement)
    return con


def check_query(query: str, con: duckdb.DuckDBPyConnection | None = None) -> list:
    """The statements of ``query``, refused unless each is a query (DuckDB's parser says which)."""
    import duckdb

    if not query.strip():
        raise QueryError("empty query: give a SELECT (e.g. stedi-etl sql \"SELECT count(*) FROM customers_curated\")")
    try:
        statements = (con or duckdb).extract_statements(query)
    except duckdb.Error as err:
        raise QueryError(f"malformed query: {first_line(err)}") from err
    if not statements:
        raise QueryError("empty query: only comments; give a SELECT")
    for s in statements:
        kind = s.type.name
        if kind not in QUERY_TYPES:
            raise QueryError(f"{REFUSED} (SELECT, WITH, FROM, DESCRIBE, SHOW, EXPLAIN), not {kind}")
    return statements


def explain(err: BaseException, tables: list[str]) -> QueryError:
    """One line for a DuckDB error of a sandboxed query."""
    import duckdb

    text = first_line(err)
    if text.startswith("Invalid Input Error: table "):  # a table that cannot be read says why (its view's error())
        return QueryError(text.removeprefix("Invalid Input Error: "))
    if isinstance(err, duckdb.PermissionException) or "external access" in text or "disabled" in text:
        return QueryError(f"{REFUSED}, no other file ({text})")
    if "configuration has been locked" in text:
        return QueryError(f"{REFUSED}; its settings are locked ({text})")
    if "read-only mode" in text or "read-only" in text:
        return QueryError(f"{REFUSED}; it writes nothing ({text})")
    if isinstance(err, duckdb.CatalogException):
        return QueryError(f"{text} (tables: {', '.join(tables)})")
    if isinstance(err, duckdb.ParserException):
        return QueryError(f"malformed query: {text}")
    return QueryError(text)
