"""Compaction and expiry (`stedi-etl maintain`): rows kept exactly, files and snapshots bounded, and
the runs after it as incremental as before (what they compare survives the rewrite)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from stedi.cli import cli
from stedi.compaction import compact, maintain
from stedi.config import Settings
from stedi.contracts import load_contracts
from stedi.generate import generate
from stedi.ingest import ingest
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY
from tests.readers import assert_plain_iceberg_files

DAY_MS = 86_400_000


def session(source: Path, out: Path, n: int, days: int = 1) -> Path:
    """Every reading of the n-th consenting customer with readings, ``days`` later: a new session
    of one customer, as a micro-batch of `watch` brings."""
    customers = [json.loads(x) for f in sorted(source.rglob("customer-*.json")) for x in f.read_text().splitlines()]
    phone = [json.loads(x) for f in sorted(source.rglob("accelerometer-*.json")) for x in f.read_text().splitlines()]
    device = [json.loads(x) for f in sorted(source.rglob("step_trainer-*.json")) for x in f.read_text().splitlines()]
    users = sorted({r["user"] for r in phone})
    people = [c for c in customers if c["email"] in users and c.get("shareWithResearchAsOfDate")]
    who = people[n % len(people)]
    shift = days * DAY_MS
    rows = {
        "accelerometer": [r | {"timestamp": r["timestamp"] + shift} for r in phone if r["user"] == who["email"]],
        "step_trainer": [r | {"sensorReadingTime": r["sensorReadingTime"] + shift} for r in device if r["serialNumber"] == who["serialNumber"]],
    }
    for name, records in rows.items():
        folder = out / name / "landing"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}-session-{n}-{days}.json").write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


def contents(wh: Warehouse) -> dict[str, pl.DataFrame]:
    """Every table's rows, every column."""
    out = {}
    for name in load_contracts():
        frame = wh.scan(name).collect()
        out[name] = frame.sort(frame.columns)
    return out


@pytest.fixture
def source(tmp_path) -> Path:
    src = tmp_path / "src"
    generate(40, seed=7, out=src)
    return src


@pytest.fixture
def many_batches(tmp_path, source) -> Warehouse:
    """A warehouse fed like a watch does: the data set, then eight micro-batches of one customer's
    new session each, every one ingested and run; its retention keeps only current snapshots."""
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh", retention_days=0))
    ingest(wh, source, KEY)
    run(wh, KEY)
    for n in range(8):
        ingest(wh, session(source, tmp_path / f"batch{n}", n), KEY)
        assert run(wh, KEY).mode == "incremental"
    return wh


def data_files(wh: Warehouse, name: str) -> int:
    return len(wh.data_files(name))


def test_maintain_keeps_every_row_and_bounds_files_and_snapshots(tmp_path, many_batches):
    wh = many_batches
    before = contents(wh)
    files_before = {n: data_files(wh, n) for n in before}
    assert files_before["machine_learning_curated"] >= 9  # one per micro-batch
    summary = maintain(wh, KEY)
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh", retention_days=0))
    for name, frame in contents(wh).items():
        assert_frame_equal(frame, before[name], check_row_order=True), name
    for name in before:
        assert data_files(wh, name) <= max(1, files_before[name] // 4), name
        table = wh.table(name)
        assert len(table.metadata.snapshots) <= 1, name
    assert {c.table for c in summary.compacted} >= {"machine_learning_curated", "accelerometer_landing", "ingest_manifest"}
    assert all(c.rows > 0 and c.files_after == 1 for c in summary.compacted), summary.compacted
    # the rewritten files as any file stedi writes: full URIs, field ids, no statistics of a personal column
    assert assert_plain_iceberg_files(wh, [c.table for c in summary.compacted], footers=True) >= len(summary.compacted)
    # every file under a table is one its current snapshot uses: the metadata folder is bounded
    for name in before:
        table = wh.table(name)
        on_disk = {str(p) for p in Path(wh.files.strip(table.location())).rglob("*") if p.is_file()}
        metadata = {p for p in on_disk if "/metadata/" in p}
        assert len(metadata) <= 4, (name, sorted(metadata))  # its metadata.json, manifest list, manifests


def test_after_maintain_runs_stay_incremental_and_equal_a_full_refresh(tmp_path, source, many_batches):
    wh = many_batches
    maintain(wh, KEY)
    again = run(wh, KEY)
    assert not again.changed  # the rewrite changed no row: no job is stale
    ingest(wh, session(source, tmp_path / "after", 2, days=3), KEY)
    assert run(wh, KEY).mode == "incremental"
    maintain(wh, KEY)  # twice: a compaction of a compaction
    ingest(wh, session(source, tmp_path / "after2", 3, days=4), KEY)
    assert run(wh, KEY).mode == "incremental"
    got = contents(wh)
    run(wh, KEY, full_refresh=True)  # the same warehouse rebuilt from its landing tables
    expected = contents(wh)
    for name in ("accelerometer_trusted", "step_trainer_trusted", "customers_curated", "machine_learning_curated", "customer_trusted"):
        assert_frame_equal(got[name], expected[name]), name


def test_compact_leaves_a_table_with_few_small_files_alone(tmp_path, source):
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, source, KEY)
    snapshot = wh.info("customer_landing").snapshot_id
    assert compact(wh, "customer_landing") is None  # one file
    assert wh.info("customer_landing").snapshot_id == snapshot


def test_maintain_command_prints_one_line(tmp_path, many_batches):
    result = CliRunner().invoke(cli, ["--warehouse", str(tmp_path / "wh"), "maintain"], env={"STEDI_PSEUDONYM_KEY": KEY.decode()})
    assert result.exit_code == 0, result.output
    assert result.output.startswith("maintenance: ") and "small file(s)" in result.output and "expired" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_maintain_keeps_time_travel_within_the_retention(tmp_path, source):
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))  # retention_days: the default 7
    ingest(wh, source, KEY)
    run(wh, KEY)
    for n in range(6):
        ingest(wh, session(source, tmp_path / f"batch{n}", n), KEY)
        run(wh, KEY)
    table = wh.table("machine_learning_curated")
    first = table.metadata.snapshots[0]
    rows_then = table.scan(snapshot_id=first.snapshot_id).to_arrow().num_rows
    summary = maintain(wh, KEY)
    assert "machine_learning_curated" in {c.table for c in summary.compacted}
    table = Warehouse.open(Settings(warehouse=tmp_path / "wh")).table("machine_learning_curated")
    assert first.snapshot_id in {s.snapshot_id for s in table.metadata.snapshots}  # a day old at most: kept
    assert table.scan(snapshot_id=first.snapshot_id).to_arrow().num_rows == rows_then  # and its files with it


def test_compaction_reads_a_bounded_group_of_files_at_a_time(tmp_path, many_batches, monkeypatch):
    """Memory bounded by design: however many small files a table has, a compaction reads one group
    of them (at most BIN_BYTES on disk) at a time, streaming the rows to the writer, and keeps every
    row in files of the table's target size."""
    from pyiceberg.io.pyarrow import ArrowScan

    from stedi import compaction

    wh = many_batches
    name = "machine_learning_curated"
    before = contents(wh)[name]
    files = {t.file.file_path: t.file.file_size_in_bytes for t in wh.table(name).scan().plan_files()}
    monkeypatch.setattr(compaction, "BIN_BYTES", max(files.values()))  # the first run's file alone, the micro-batches' together
    read = []
    to_record_batches = ArrowScan.to_record_batches

    def recorded(self, tasks):
        read.append([t.file for t in tasks])
        yield from to_record_batches(self, tasks)

    monkeypatch.setattr(ArrowScan, "to_record_batches", recorded)
    done = compact(wh, name)
    assert done is not None and done.files_before == len(files) >= 9
    assert len(read) >= 2 and sorted(f.file_path for group in read for f in group) == sorted(files)  # each file read once
    for group, after in zip(read, [*read[1:], None], strict=True):
        size = sum(f.file_size_in_bytes for f in group)
        assert size <= compaction.BIN_BYTES
        assert after is None or size + after[0].file_size_in_bytes > compaction.BIN_BYTES  # full, or it would not start another
    assert done.files_after == 1 and done.rows == before.height  # (the table's target size holds them all)
    assert_frame_equal(contents(Warehouse.open(Settings(warehouse=tmp_path / "wh", retention_days=0)))[name], before)



def test_a_file_another_tool_wrote_with_other_arrow_types_is_compacted_with_the_rest(tmp_path, source):
    """A table's Iceberg string is large_string in stedi's files; a file another engine added may
    hold plain strings. The compaction's one stream takes both."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, source, KEY)
    name = "step_trainer_landing"
    rows = wh.table(name).scan().to_arrow()
    assert any(pa.types.is_large_string(f.type) for f in rows.schema)
    plain = rows.cast(pa.schema([f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f for f in rows.schema]))
    other = str(tmp_path / "wh" / "written-by-another-tool.parquet")
    pq.write_table(plain, other)
    wh.table(name).add_files([other])
    before = contents(Warehouse.open(Settings(warehouse=tmp_path / "wh")))[name]
    assert before.height == 2 * rows.num_rows
    done = compact(wh, name)
    assert done is not None and done.files_before == 2 and done.rows == before.height
    assert_frame_equal(contents(Warehouse.open(Settings(warehouse=tmp_path / "wh")))[name], before)
