"""Ad-hoc SQL through DuckDB over the current snapshot of every table (in place of Athena).

Each table is a view under its own name over the Parquet files of its current Iceberg snapshot,
planned by pyiceberg (Iceberg deletes are copy-on-write here, so the data files are the table).
"""

from __future__ import annotations

from collections.abc import Collection

import duckdb
import pyarrow as pa

from stedi.contracts import load_contracts
from stedi.errors import QueryError, first_line
from stedi.warehouse import Warehouse


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def connect(wh: Warehouse, tables: Collection[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per table of the warehouse, named as the table.

    ``tables``: read only these (a reader that must create nothing passes those the catalog holds);
    every other table is an empty view. Default: every table, created when missing.
    """
    con = duckdb.connect()
    if wh.files.remote:  # DuckDB reads s3:// through the warehouse's fsspec filesystem (no httpfs here)
        con.register_filesystem(wh.files.fs)
    for name, c in load_contracts().items():
        files = wh.data_files(name) if tables is None or name in tables else []
        if files:
            listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            cols = ", ".join(_quote(n) for n in c.column_names)
            con.execute(f"CREATE VIEW {_quote(name)} AS SELECT {cols} FROM read_parquet([{listing}])")
        else:
            con.register(f"__empty_{name}", c.arrow_schema().empty_table())
            con.execute(f"CREATE VIEW {_quote(name)} AS SELECT * FROM {_quote('__empty_' + name)}")
    return con


def sql(wh: Warehouse, query: str) -> pa.Table:
    """Run ``query`` over the warehouse's tables and return the result as Arrow."""
    con = connect(wh)
    try:
        return con.sql(query).to_arrow_table()
    except duckdb.CatalogException as err:
        raise QueryError(f"{first_line(err)} (tables: {', '.join(sorted(load_contracts()))})") from err
    except duckdb.ParserException as err:
        raise QueryError(f"malformed query: {first_line(err)}") from err
    except duckdb.Error as err:
        raise QueryError(first_line(err)) from err
    finally:
        con.close()
