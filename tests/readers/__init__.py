"""Iceberg readers that share no code with stedi, run in their own environment (``make
.venv-readers``; ``make test`` builds it): DuckDB 1.5 with its Iceberg extension, iceberg-rust
(pyiceberg-core) through DataFusion, and Daft. :func:`assert_readers_agree` has each read every
table of a warehouse from its metadata file and compares the rows with stedi's."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from stedi.contracts import load_contracts

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv-readers" / "bin" / "python"
SCRIPT = Path(__file__).with_name("read_tables.py")
READERS = ("duckdb", "iceberg-rust", "daft")
#: What each reader needs importable, to tell "not installed" from "cannot read the table".
MODULES = {"duckdb": "duckdb_extension_iceberg", "iceberg-rust": "pyiceberg_core.datafusion", "daft": "daft"}


def available() -> dict[str, str | None]:
    """Each reader, with why it cannot run here (None when it can)."""
    if not PYTHON.exists():
        return dict.fromkeys(READERS, "no readers' environment: `make .venv-readers` (make test builds it) installs it")
    why = {}
    for reader in READERS:
        done = subprocess.run([str(PYTHON), "-c", f"import {MODULES[reader]}"], capture_output=True, text=True)
        why[reader] = None if done.returncode == 0 else f"{reader} is not installed in .venv-readers: {done.stderr.strip()[-200:]}"
    return why


def stedi_rows(wh, name: str) -> pl.DataFrame:
    frame = wh.scan(name).collect()
    return frame.sort(frame.columns, nulls_last=True)


def assert_readers_agree(wh, out: Path, readers: tuple[str, ...] = READERS) -> list[str]:
    """Every table of ``wh`` read by each of ``readers`` from its metadata file gives stedi's rows;
    a table with no snapshot too (no rows). Skips the readers that cannot run here, and the test when
    none can. Returns the readers that read."""
    reasons = available()
    usable = [r for r in readers if reasons[r] is None]
    if not usable:
        pytest.skip("; ".join(reasons[r] for r in readers))
    names = sorted(load_contracts())
    tables = {name: wh.table(name).metadata_location for name in names}
    # a reader that dies in native code prints where (faulthandler), and says which table it was on
    env = os.environ | {"READER_S3": json.dumps(wh.files.iceberg_properties), "PYTHONFAULTHANDLER": "1"}
    for reader in usable:
        folder = out / reader
        done = subprocess.run(
            [str(PYTHON), str(SCRIPT), reader, str(folder)], input=json.dumps(tables), env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{reader} exited {done.returncode}: {done.stderr[-3000:]}"  # (negative: killed by that signal)
        errors = {p.stem: p.read_text()[:500] for p in folder.glob("*.error")}
        assert not errors, f"{reader} could not read: {errors}"
        for name in names:
            with pa.memory_map(str(folder / f"{name}.arrow")) as source:
                got = pa.ipc.open_file(source).read_all()
            want = stedi_rows(wh, name)
            assert got.column_names == want.columns, (reader, name)
            frame = pl.from_arrow(got).cast(dict(want.schema))
            try:
                assert_frame_equal(frame.sort(frame.columns, nulls_last=True), want)
            except AssertionError as err:
                raise AssertionError(f"{reader}, {name}: {err}") from None
    return usable


def assert_plain_iceberg_files(wh, names, *, footers: bool) -> int:
    """Each current data file of tables ``names`` is named by a full URI (``file://`` or ``s3://``,
    never a bare path), its Parquet columns carry their Iceberg field ids, and no personal column
    has a lower or upper bound in the manifest entry (nor, with ``footers``, min/max statistics in
    the Parquet footer). Returns how many files were checked."""
    import pyarrow.parquet as pq

    from stedi.contracts import contract

    checked = 0
    for name in names:
        table = wh.table(name)
        schema = table.schema()
        personal = {f.field_id: f.name for f in schema.fields if f.name in contract(name).personal}
        snapshot = table.current_snapshot()
        assert snapshot is not None, name
        for manifest in snapshot.manifests(table.io):
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                data = entry.data_file
                assert data.file_path.startswith(("file:///", "s3://")), (name, data.file_path)
                for bounds in (data.lower_bounds or {}, data.upper_bounds or {}):
                    assert not set(bounds) & set(personal), (name, "bounds of", [personal[i] for i in bounds if i in personal])
                with table.io.new_input(data.file_path).open() as f:
                    meta = pq.ParquetFile(f).metadata
                arrow = meta.schema.to_arrow_schema()
                for field in schema.fields:
                    assert arrow.field(field.name).metadata[b"PARQUET:field_id"] == str(field.field_id).encode(), (name, field.name)
                if footers:
                    for g in range(meta.num_row_groups):
                        for i in range(meta.num_columns):
                            column = meta.row_group(g).column(i)
                            if column.path_in_schema in personal.values():
                                assert not (column.is_stats_set and column.statistics.has_min_max), (name, column.path_in_schema)
                checked += 1
    return checked
