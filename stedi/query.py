"""Ad-hoc SQL through DuckDB over the current snapshot of the tables a reader may see (in place of Athena).

Each table is a view under its own name over the Parquet files of its current Iceberg snapshot
(Iceberg deletes are copy-on-write here, so the data files are the table), read without pyiceberg
(:mod:`stedi.lakeview`) and confined by :mod:`stedi.sandbox`; the reader's zone (:mod:`stedi.zones`)
decides which tables there are. Nothing here writes to the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stedi.errors import StediError

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    import pyarrow as pa

    from stedi.config import Settings
    from stedi.lakeview import Lake
    from stedi.sandbox import View


def _settings(where) -> Settings:
    """Settings from a Warehouse (older callers) or Settings."""
    return getattr(where, "settings", where)


def open_views(settings: Settings, as_of: str | None = None) -> tuple[Lake, list[View], list[str]]:
    """The reader's tables (by zone), their views, and the folders beside them they may read."""
    from stedi.lakeview import Lake
    from stedi.sandbox import views
    from stedi.zones import visible

    lake = Lake(settings)
    names = visible(settings.zone, settings.tables)
    lake.check_exists()
    if as_of is not None:
        lake.as_of(as_of, names)
    # raw landing copies: only for a reader who asked for the landing zone by name
    directories = [lake.location.rstrip("/") + "/landing/"] if settings.zone == "landing" else []
    return lake, views(lake, names), directories


def connect(where, as_of: str | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only, confined DuckDB connection with one view per table the reader may see."""
    from stedi.sandbox import connect as sandbox

    lake, vs, directories = open_views(_settings(where), as_of)
    return sandbox(lake, vs, directories)


@dataclass(frozen=True)
class Result:
    """A query's rows as Python values, with its column names and DuckDB types (no pyarrow: the
    CLI answers without importing it)."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: list[tuple]

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    def to_pylist(self) -> list[dict]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


def run(where, query: str, as_of: str | None = None, *, arrow: bool = False):
    """Run ``query`` (one or more SELECTs; the last one's rows are returned) in the sandbox: a
    :class:`Result`, or with ``arrow`` a pyarrow Table."""
    import duckdb

    from stedi.sandbox import check_query, explain
    from stedi.sandbox import connect as sandbox

    if not query.strip():
        check_query(query)  # the empty query's line, before any table is read
    lake, vs, directories = open_views(_settings(where), as_of)
    con = sandbox(lake, vs, directories)
    try:
        statements = check_query(query, con)
        for s in statements[:-1]:
            con.execute(s)
        if arrow:
            return con.sql(statements[-1].query).to_arrow_table()
        cursor = con.execute(statements[-1])
        rows = cursor.fetchall()
        return Result(tuple(d[0] for d in cursor.description), tuple(str(d[1]) for d in cursor.description), rows)
    except duckdb.Error as err:
        raise explain(err, [v.name for v in vs]) from err
    finally:
        con.close()


def sql(where, query: str, as_of: str | None = None) -> pa.Table:
    """Run ``query`` (one or more SELECTs; the last one's rows are returned) as Arrow."""
    return run(where, query, as_of, arrow=True)


def table(settings: Settings, name: str) -> pl.LazyFrame:
    """Table ``name``'s current snapshot as a Polars LazyFrame, for a reader allowed to see it."""
    import polars as pl

    from stedi.contracts import contract
    from stedi.lakeview import Lake
    from stedi.zones import visible

    c = contract(name)  # a clear error for an unknown table
    if name not in visible(settings.zone, settings.tables):
        raise StediError(f"table {name} is not in the {settings.zone} zone this reader is limited to")
    lake = Lake(settings)
    state = lake.state(name)
    if state.problem:
        raise StediError(state.problem)
    if state.snapshot is None:
        return pl.from_arrow(c.arrow_schema().empty_table()).lazy()
    from pyiceberg.table import StaticTable

    from stedi.storage import Storage

    static = StaticTable.from_metadata(state.metadata_location, properties=Storage(lake.location).iceberg_properties)
    return pl.scan_iceberg(static, snapshot_id=state.snapshot.id)
