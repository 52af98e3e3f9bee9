"""Comparing tables in tests: a table's rows in one canonical order, without the columns that say
when, where or by which batch something was recorded (two warehouses built alike differ there and
nowhere else), and assertions that name the table that differs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl
from polars.testing import assert_frame_equal

#: When and by which command a row was recorded: differs between two warehouses built alike.
WHEN = ("_ingested_at", "ingested_at", "recorded_at", "batch_id", "run_id", "quarantined_at", "rewritten_at", "suppressed_at", "erasure_id")
#: Where a record was read from and when: differs between a batch ingest and the same records ingested otherwise.
LINEAGE = ("recorded_at", "source_file", "line_number", "_ingested_at", "_source_file")


def canonical(frame: pl.DataFrame, drop: Iterable[str] = WHEN) -> pl.DataFrame:
    """``frame`` without the columns ``drop`` names, its rows sorted by every column."""
    frame = frame.drop([c for c in drop if c in frame.columns])
    return frame.sort(frame.columns)


def table(wh, name: str, drop: Iterable[str] = WHEN) -> pl.DataFrame:
    """Table ``name`` of warehouse ``wh`` (its current snapshot), canonical."""
    return canonical(wh.scan(name).collect(), drop)


def tables(wh, names: Iterable[str], drop: Iterable[str] = WHEN) -> dict[str, pl.DataFrame]:
    return {name: table(wh, name, drop) for name in names}


def assert_same(got: Mapping[str, pl.DataFrame], want: Mapping[str, pl.DataFrame], what: str = "differs") -> None:
    """The same tables with the same rows; a difference names its table."""
    assert set(got) == set(want), (sorted(got), sorted(want))
    for name in want:
        assert_same_table(name, got[name], want[name], what)


def assert_same_table(name: str, got: pl.DataFrame, want: pl.DataFrame, what: str = "differs") -> None:
    try:
        assert_frame_equal(got, want)
    except AssertionError as err:
        raise AssertionError(f"{name} {what}: {err}") from None
