"""stedi: a privacy-first lakehouse for STEDI Step Trainer data.

For notebooks::

    import stedi
    con = stedi.connect("lakehouse")              # DuckDB, one view per table
    con.sql("SELECT count(*) FROM machine_learning_curated").fetchall()
    lf = stedi.table("accelerometer_trusted", "lakehouse")   # a Polars LazyFrame
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import polars as pl

__version__ = "0.1.0"


def _warehouse(warehouse: str | Path | None):
    from stedi.config import resolve
    from stedi.warehouse import Warehouse

    return Warehouse.open(resolve(warehouse=warehouse))


def connect(warehouse: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection over the current snapshot of every table, each a view under its name.

    ``warehouse`` defaults to ``STEDI_WAREHOUSE``, else ``./lakehouse``.
    """
    from stedi.query import connect as _connect

    return _connect(_warehouse(warehouse))


def table(name: str, warehouse: str | Path | None = None) -> pl.LazyFrame:
    """The current snapshot of table ``name`` as a Polars LazyFrame."""
    from stedi.contracts import contract

    contract(name)  # a clear error for an unknown table
    return _warehouse(warehouse).scan(name)


__all__ = ["connect", "table", "__version__"]
