"""stedi: a privacy-first lakehouse for STEDI Step Trainer data.

For notebooks::

    import stedi
    con = stedi.connect("lakehouse")              # DuckDB, one view per table, read-only and confined
    con = stedi.connect("lakehouse", zone="curated")          # only the curated tables
    con = stedi.connect("lakehouse", as_of="run-20261123T101500-1a2b3c")   # as that run left them
    con.sql("SELECT count(*) FROM machine_learning_curated").fetchall()
    lf = stedi.table("accelerometer_trusted", "lakehouse")   # a Polars LazyFrame
    con = stedi.connect("s3://bucket/stedi", catalog_uri="postgresql+psycopg://...")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import polars as pl

__version__ = "0.1.0"


def _settings(warehouse, catalog_uri, zone=None, tables=None):
    from stedi.config import resolve

    return resolve(warehouse=warehouse, catalog_uri=catalog_uri, zone=zone, tables=tuple(tables) if tables else None)


def connect(
    warehouse: str | Path | None = None,
    catalog_uri: str | None = None,
    *,
    zone: str | None = None,
    tables: list[str] | None = None,
    as_of: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection over the current snapshot of every table the reader may see,
    each a view under its name; it reads those tables' data files and nothing else.

    ``warehouse`` (a folder or ``s3://bucket/prefix``) defaults to ``STEDI_WAREHOUSE``, else
    ``./lakehouse``; ``catalog_uri`` to ``STEDI_CATALOG_URI``, else the warehouse's SQLite file.
    ``zone`` (``all``, ``landing``, ``trusted``, ``curated``; default ``STEDI_ZONE`` or the
    warehouse's ``stedi.toml``) limits the tables to that zone and those after it, plus ``tables``;
    ``as_of`` a run id: the tables as that run left them.
    """
    from stedi.query import connect as _connect

    return _connect(_settings(warehouse, catalog_uri, zone, tables), as_of=as_of)


def table(
    name: str, warehouse: str | Path | None = None, catalog_uri: str | None = None, *, zone: str | None = None
) -> pl.LazyFrame:
    """The current snapshot of table ``name`` as a Polars LazyFrame (warehouse, catalog and zone as
    :func:`connect`)."""
    from stedi.query import table as _table

    return _table(_settings(warehouse, catalog_uri, zone), name)


__all__ = ["connect", "table", "__version__"]
