"""stedi: a privacy-first lakehouse for STEDI Step Trainer data.

For notebooks::

    import stedi
    con = stedi.connect("lakehouse")              # DuckDB, one view per table
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


def _warehouse(warehouse: str | Path | None, catalog_uri: str | None):
    from stedi.config import resolve
    from stedi.warehouse import Warehouse

    return Warehouse.open(resolve(warehouse=warehouse, catalog_uri=catalog_uri))


def connect(warehouse: str | Path | None = None, catalog_uri: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection over the current snapshot of every table, each a view under its name.

    ``warehouse`` (a folder or ``s3://bucket/prefix``) defaults to ``STEDI_WAREHOUSE``, else
    ``./lakehouse``; ``catalog_uri`` to ``STEDI_CATALOG_URI``, else the warehouse's SQLite file.
    """
    from stedi.query import connect as _connect

    return _connect(_warehouse(warehouse, catalog_uri))


def table(name: str, warehouse: str | Path | None = None, catalog_uri: str | None = None) -> pl.LazyFrame:
    """The current snapshot of table ``name`` as a Polars LazyFrame (warehouse and catalog as
    :func:`connect`)."""
    from stedi.contracts import contract

    contract(name)  # a clear error for an unknown table
    return _warehouse(warehouse, catalog_uri).scan(name)


__all__ = ["connect", "table", "__version__"]
