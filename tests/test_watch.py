"""`stedi-etl watch`: files arriving while it runs end in the same tables as one batch ingest + run
of the same files; a file is taken once complete, and once whatever its name; kills, SIGTERM,
an erasure meanwhile and an S3 source."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from stedi.cli import cli
from stedi.config import Settings
from stedi.contracts import load_contracts
from stedi.generate import generate
from stedi.ingest import ingest
from stedi.runner import run
from stedi.warehouse import Warehouse
from stedi.watch import ARRIVED, Options, Watcher, freshness, stale
from tests.factories import KEY, warehouse_mentions

ENV = {**os.environ, "STEDI_PSEUDONYM_KEY": KEY.decode(), "ARROW_DEFAULT_MEMORY_POOL": "system"}
# Columns that differ between two warehouses fed the same files: when, in which batch, under which stored name.
WHEN = ("_ingested_at", "recorded_at", "batch_id", "ingested_at", "quarantined_at", "rewritten_at", "_source_file", "source_file", "stored_path")
PARTS = 4


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> list[Path]:
    """A generated data set cut in PARTS sources of the same layout: each file's lines in PARTS
    slices (so customers, readings and devices arrive in any order across the parts)."""
    whole = tmp_path_factory.mktemp("whole")
    generate(40, seed=21, out=whole)
    out = []
    for i in range(PARTS):
        part = tmp_path_factory.mktemp(f"part{i}")
        for f in sorted(whole.rglob("*.json")):
            lines = f.read_text().splitlines(keepends=True)
            size = -(-len(lines) // PARTS)
            dst = part / f.relative_to(whole).parent / f"{f.stem}-part{i}.json"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text("".join(lines[i * size : (i + 1) * size]))
        out.append(part)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, parts) -> dict[str, pl.DataFrame]:
    """One batch ingest of every part's files, then one run."""
    every = tmp_path_factory.mktemp("every")
    for part in parts:
        shutil.copytree(part, every, dirs_exist_ok=True)
    wh = Warehouse.open(Settings(warehouse=tmp_path_factory.mktemp("reference") / "wh"))
    ingest(wh, every, KEY)
    run(wh, KEY)
    return tables(wh)


def tables(wh: Warehouse) -> dict[str, pl.DataFrame]:
    out = {}
    for name in load_contracts():
        if name in ("erasure_log", "suppression_list", "run_log"):  # about runs, not data
            continue
        frame = wh.scan(name).collect()
        frame = frame.drop([c for c in WHEN if c in frame.columns])
        out[name] = frame.sort(frame.columns)
    return out


def assert_same(got: dict[str, pl.DataFrame], expected: dict[str, pl.DataFrame]) -> None:
    for name, frame in expected.items():
        try:
            assert_frame_equal(got[name], frame)
        except AssertionError as err:
            raise AssertionError(f"{name} differs from one batch ingest + run: {err}") from None


def deliver(part: Path, inbox: Path, rename: str = "") -> list[Path]:
    """Copy a part's files into the inbox, each written under a hidden name and renamed when whole."""
    placed = []
    for f in sorted(part.rglob("*.json")):
        dst = inbox / f.relative_to(part).parent / f"{rename}{f.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}")
        shutil.copyfile(f, tmp)
        tmp.rename(dst)
        placed.append(dst)
    return placed


def manifest_rows(root: Path) -> int:
    return Warehouse(Settings(warehouse=root)).info("ingest_manifest").rows


def wait_for(condition, timeout: float = 60.0, what: str = "the watch") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not get there in {timeout:.0f}s")
        time.sleep(0.1)


class Running:
    """A Watcher serving on a thread (in this process), with the lines it would print."""

    def __init__(self, root: Path, inbox: Path, **options):
        self.wh = Warehouse.open(Settings(warehouse=root))
        self.batches = []
        self.watcher = Watcher(self.wh, str(inbox), self.wh.keys(KEY, create=True), Options(**{"settle": 0.2, "interval": 0.3} | options), report=self.batches.append)
        self.thread = threading.Thread(target=self.watcher.serve, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.watcher.stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()

    def taken(self) -> int:
        return sum(b.files for b in self.batches)


def test_a_watch_on_an_empty_inbox_ends_where_one_batch_ingest_and_run_does(tmp_path, parts, reference):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    root = tmp_path / "wh"
    files = 0
    with Running(root, inbox) as watching:
        for part in parts:
            files += len(deliver(part, inbox))
            wait_for(lambda: watching.taken() == files)  # noqa: B023
        assert all(b.error is None for b in watching.batches)
        assert all(b.delay is not None and b.delay < 30 for b in watching.batches if b.files)
        landed = sum(reference[t].height for t in ("customer_landing", "accelerometer_landing", "step_trainer_landing"))
        assert sum(b.rows_landed for b in watching.batches) == landed
    assert_same(tables(Warehouse.open(Settings(warehouse=root))), reference)
    # the curated tables know the delay of the micro-batch that last changed them
    wh = Warehouse.open(Settings(warehouse=root))
    assert wh.snapshot_property("machine_learning_curated", ARRIVED) is not None
    assert freshness(wh, "machine_learning_curated").delay is not None


def test_a_half_written_file_waits_until_it_is_complete(tmp_path, parts):
    inbox = tmp_path / "inbox" / "accelerometer" / "landing"
    inbox.mkdir(parents=True)
    data = next(parts[0].rglob("accelerometer*.json")).read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 5  # the middle of a line
    target = inbox / "readings.json"
    with Running(tmp_path / "wh", tmp_path / "inbox", settle=1.0) as watching, open(target, "wb") as out:
        out.write(data[:cut])
        out.flush()
        time.sleep(0.7)  # looked at, several times, while it is being written
        assert watching.batches == []
        out.write(data[cut:])
        out.close()
        wait_for(lambda: watching.taken() == 1)
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    row = wh.scan("ingest_manifest").collect().row(0, named=True)
    assert (row["size_bytes"], row["rows_landed"], row["rows_quarantined"]) == (len(data), data.count(b"\n"), 0)


def test_the_same_file_delivered_twice_under_two_names_is_taken_once(tmp_path, parts, reference):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with Running(tmp_path / "wh", inbox) as watching:
        first = deliver(parts[0], inbox)
        wait_for(lambda: watching.taken() == len(first))
        deliver(parts[0], inbox, rename="again-")  # later, under other names
        for part in parts[1:]:
            deliver(part, inbox)
            deliver(part, inbox, rename="twin-")  # in the same micro-batch as its twin
        wait_for(lambda: watching.taken() == len(first) * PARTS and sum(b.skipped for b in watching.batches) == len(first) * PARTS)
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    assert wh.info("ingest_manifest").rows == len(first) * PARTS
    got = tables(wh)
    names = got.pop("ingest_manifest")["file_name"].to_list()  # a twin's name or its own, whichever came first
    assert sorted(n.removeprefix("twin-") for n in names) == sorted(reference["ingest_manifest"]["file_name"].to_list())
    assert_same(got, {k: v for k, v in reference.items() if k != "ingest_manifest"})


def test_an_erasure_while_watching_is_honoured_by_the_next_micro_batch(tmp_path, parts):
    from stedi.erasure import forget

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    root = tmp_path / "wh"
    # someone whose readings are in every part: erased after the first
    customers = [json.loads(line) for f in parts[0].rglob("customer*.json") for line in f.read_text().splitlines()]
    users = {json.loads(line)["user"] for f in parts[-1].rglob("accelerometer*.json") for line in f.read_text().splitlines()}
    person = next(c["email"] for c in customers if c["email"] in users and c.get("shareWithResearchAsOfDate"))
    with Running(root, inbox) as watching:
        n = len(deliver(parts[0], inbox))
        wait_for(lambda: watching.taken() == n)
        forget(Warehouse.open(Settings(warehouse=root)), KEY, [person])  # another writer, between batches
        for part in parts[1:]:
            n += len(deliver(part, inbox))
        wait_for(lambda: watching.taken() == n)
    assert all(b.error is None for b in watching.batches)
    wh = Warehouse.open(Settings(warehouse=root))
    assert wh.info("accelerometer_landing").rows > 0
    assert warehouse_mentions(wh, [person]) == []  # nor in the parts that came after the erasure


def test_freshness_check_exits_1_when_the_curated_tables_are_staler_than_the_bound(tmp_path, parts):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    deliver(parts[0], inbox)
    cli_runner = CliRunner()
    base = ["--warehouse", str(tmp_path / "wh")]
    env = {"STEDI_PSEUDONYM_KEY": KEY.decode()}
    assert cli_runner.invoke(cli, [*base, "init"], env=env).exit_code == 0
    never = cli_runner.invoke(cli, [*base, "tables", "--max-delay", "60"], env=env)
    assert never.exit_code == 1 and "never updated" in never.output
    done = cli_runner.invoke(cli, [*base, "watch", "--once", "--settle", "0", str(inbox)], env=env)
    assert done.exit_code == 0, done.output
    assert "micro-batch: 4 file(s)" in done.output and "delay" in done.output
    listed = json.loads(cli_runner.invoke(cli, [*base, "tables", "--format", "json"], env=env).output)
    delays = {r["table"]: r["delay_seconds"] for r in listed}
    assert delays["machine_learning_curated"] is not None and delays["machine_learning_curated"] > 0
    assert cli_runner.invoke(cli, [*base, "tables", "--max-delay", "3600"], env=env).exit_code == 0
    late = cli_runner.invoke(cli, [*base, "tables", "--max-delay", "0.001"], env=env)
    assert late.exit_code == 1 and "machine_learning_curated's last micro-batch took" in late.output


def test_stale_without_a_watch_is_by_the_age_of_the_last_update():
    from datetime import UTC, datetime, timedelta

    from stedi.watch import Freshness

    now = datetime(2026, 12, 1, tzinfo=UTC)
    cases = [
        (Freshness("t", now - timedelta(seconds=30), None), 60, []),
        (Freshness("t", now - timedelta(seconds=90), None), 60, ["t was last updated 90s ago, by no watch"]),
        (Freshness("t", now - timedelta(hours=5), 2.0), 60, []),  # a watch brought its last files; none since
        (Freshness("t", now, 75.0), 60, ["t's last micro-batch took 75.0s from arrival to commit"]),
        (Freshness("t", None, None), 60, ["t was never updated"]),
    ]
    for fresh, bound, expected in cases:
        assert stale([fresh], bound, now) == expected


# -- whole processes: SIGTERM, SIGKILL ---------------------------------------------------------------


def _watch_cmd(root: Path, inbox: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stedi.cli", "--warehouse", str(root), "watch", "--settle", "0.2", "--interval", "0.3", *extra, str(inbox)]


# Runs the CLI with stedi.runner.run wrapped: its n-th call first sends the process the signals named.
TERM_IN_RUN = """
import os, signal, sys, time
import stedi.runner as runner
original, calls, n, signals = runner.run, [0], int(sys.argv[1]), sys.argv[2].split(",")
def wrapped(*args, **kwargs):
    calls[0] += 1
    if calls[0] == n:
        for name in signals:
            os.kill(os.getpid(), getattr(signal, name))
            time.sleep(0.8)  # a second press, a moment later (stedi.cli.watch.SECOND_PRESS_S)
    return original(*args, **kwargs)
runner.run = wrapped
sys.argv = ["stedi-etl", *sys.argv[3:]]
from stedi.cli import main
main()
"""


def test_sigterm_mid_batch_finishes_the_batch_and_exits_0(tmp_path, parts, reference):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    root = tmp_path / "wh"
    for part in parts:
        deliver(part, inbox)
    # (no catch-up run at start: nothing was ever ingested) the first micro-batch's run
    cmd = [sys.executable, "-c", TERM_IN_RUN, "1", "SIGTERM", *_watch_cmd(root, inbox)[3:]]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == ["watch stopped by SIGTERM after 1 micro-batch(es); every batch taken is committed"]
    assert proc.stdout.count("micro-batch:") == 1
    assert_same(tables(Warehouse.open(Settings(warehouse=root))), reference)  # every file was in that batch


def test_a_second_ctrl_c_interrupts_the_batch_and_the_next_watch_finishes_it(tmp_path, parts, reference):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    root = tmp_path / "wh"
    for part in parts:
        deliver(part, inbox)
    cmd = [sys.executable, "-c", TERM_IN_RUN, "1", "SIGINT,SIGINT", *_watch_cmd(root, inbox)[3:]]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "rolled back" in proc.stderr
    wh = Warehouse.open(Settings(warehouse=root))
    assert wh.info("accelerometer_landing").rows > 0 and wh.info("machine_learning_curated").rows == 0  # landed, not run
    done = subprocess.run([*_watch_cmd(root, inbox)[:-1], "--once", str(inbox)], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_same(tables(Warehouse.open(Settings(warehouse=root))), reference)


# Runs the CLI with stedi.runner.run wrapped: its first call presses Ctrl-C once while a Polars
# query is running, as a run's are: Polars' own SIGINT hook aborts the query (KeyboardInterrupt),
# whatever Python's handler does. The marker file says the press did interrupt it.
POLARS_IN_RUN = """
import os, signal, sys, threading
import stedi.runner as runner
original, calls, marker = runner.run, [0], sys.argv[1]
def wrapped(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 1:
        import polars as pl
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        side = pl.LazyFrame({"a": range(100_000)})
        try:  # a few seconds of streaming, unless interrupted
            side.join(side.rename({"a": "b"}), how="cross").select((pl.col("a") * pl.col("b")).sum()).collect(engine="streaming")
        except KeyboardInterrupt:
            open(marker, "w").close()
            raise
    return original(*args, **kwargs)
runner.run = wrapped
sys.argv = ["stedi-etl", *sys.argv[2:]]
from stedi.cli import main
main()
"""


def test_a_first_ctrl_c_that_polars_turns_into_an_interrupt_still_finishes_the_batch(tmp_path, parts, reference):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    root, marker = tmp_path / "wh", tmp_path / "interrupted"
    for part in parts:
        deliver(part, inbox)
    cmd = [sys.executable, "-c", POLARS_IN_RUN, str(marker), *_watch_cmd(root, inbox)[3:]]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert marker.exists(), "the press did not interrupt the Polars query: this test tests nothing"
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["watch stopped by Ctrl-C after 1 micro-batch(es); every batch taken is committed"]
    assert_same(tables(Warehouse.open(Settings(warehouse=root))), reference)


def test_ctrl_c_exits_130(tmp_path, parts):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    proc = subprocess.Popen(_watch_cmd(tmp_path / "wh", inbox), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    n = len(deliver(parts[0], inbox))
    wait_for(lambda: manifest_rows(tmp_path / "wh") == n)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["watch stopped by Ctrl-C after 1 micro-batch(es); every batch taken is committed"]


@pytest.mark.slow
def test_a_watch_killed_at_random_moments_loses_nothing_and_takes_nothing_twice(tmp_path, parts, reference):
    """SIGKILL at random moments while parts keep arriving; a watch started again after each kill.
    In the end, the tables equal one batch ingest + run of every file."""
    rng = random.Random(20261202)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    root = tmp_path / "wh"
    killed = 0
    for part in parts:
        deliver(part, inbox)
        proc = subprocess.Popen(_watch_cmd(root, inbox), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 4.0))  # start-up, the catch-up run, the batch's ingest or run
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    done = subprocess.run([*_watch_cmd(root, inbox)[:-1], "--once", str(inbox)], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert killed >= 3
    wh = Warehouse.open(Settings(warehouse=root))
    assert wh.info("ingest_manifest").rows == sum(len(list(p.rglob("*.json"))) for p in parts)
    assert_same(tables(wh), reference)


# -- an S3 source ----------------------------------------------------------------------------------


@pytest.fixture
def s3_env(monkeypatch):
    pytest.importorskip("moto")
    from tests.s3 import moto_server

    with moto_server() as port:
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        yield env


def test_an_s3_source_is_listed_from_the_last_key_and_each_object_taken_once(tmp_path, parts, reference, s3_env):
    import s3fs

    from stedi.inbox import RELIST_EVERY, Inbox

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_env["AWS_ENDPOINT_URL"]})
    fs.mkdir("inbox")
    root = tmp_path / "wh"
    wh = Warehouse.open(Settings(warehouse=root))
    taken = []
    watcher = Watcher(wh, "s3://inbox/drop", wh.keys(KEY, create=True), Options(once=True), report=taken.append)
    for i, part in enumerate(parts):
        for f in sorted(part.rglob("*.json")):  # names that sort in the order they arrive, as with timestamps
            fs.pipe(f"inbox/drop/{f.relative_to(part).parent.as_posix()}/{i:03d}-{f.name}", f.read_bytes())
        watcher.serve()  # --once, again
    assert sum(b.files for b in taken) == sum(len(list(p.rglob("*.json"))) for p in parts)
    assert all(b.skipped == 0 for b in taken)  # what was taken is not taken again
    got = tables(Warehouse.open(Settings(warehouse=root)))
    manifest = got["ingest_manifest"].with_columns(pl.col("file_name").str.slice(4))  # less the order prefix
    got["ingest_manifest"] = manifest.sort(manifest.columns)
    assert_same(got, reference)

    # listed from the last key seen: a key sorting before it is found by the next whole listing
    inbox = Inbox("s3://inbox/drop")
    assert len(inbox.look()[0]) == 16
    fs.pipe("inbox/drop/customer/landing/000-late.json", b"{}\n")
    seen = [len(inbox.look()[0]) for _ in range(RELIST_EVERY)]
    assert seen[:-1] == [16] * (RELIST_EVERY - 1) and seen[-1] == 17


@pytest.mark.parametrize(("make", "expected"), [(None, "does not exist"), ("file", "is not a folder")])
def test_a_bad_source_is_one_line_and_exit_1(tmp_path, make, expected):
    source = tmp_path / "inbox"
    if make == "file":
        source.write_text("{}")
    result = CliRunner().invoke(cli, ["--warehouse", str(tmp_path / "wh"), "watch", "--once", str(source)], env={"STEDI_PSEUDONYM_KEY": KEY.decode()})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: source {source} {expected}" + (" (expected customer/landing/*.json, ...)" if make else "")]


@pytest.mark.parametrize(("shift", "why"), [(2 * 3600, "a clock ahead"), (-25 * 365 * 86400, "a copy keeping an old time")])
def test_a_files_odd_modification_time_neither_blocks_it_nor_skews_the_delay(tmp_path, parts, shift, why):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for f in deliver(parts[0], inbox):
        os.utime(f, (time.time() + shift, time.time() + shift))
    started = time.monotonic()
    done = subprocess.run([*_watch_cmd(tmp_path / "wh", inbox)[:-1], "--once", str(inbox)], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    delays = [float(line.rsplit("delay ", 1)[1].rstrip("s")) for line in done.stdout.splitlines() if "delay " in line]
    assert delays and all(0 <= d <= time.monotonic() - started for d in delays), (why, done.stdout)
    assert manifest_rows(tmp_path / "wh") == len(list(inbox.rglob("*.json")))


def test_each_micro_batch_and_each_compaction_gives_memory_back(tmp_path, parts, monkeypatch):
    """A watch lives for hours: after each micro-batch (its line printed) and each compaction between
    them, the allocators return what the burst freed (:func:`stedi.resources.release`)."""
    from stedi import resources

    events = []
    monkeypatch.setattr(resources, "release", lambda: events.append("release"))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    watcher = Watcher(wh, str(inbox), wh.keys(KEY, create=True), Options(once=True, settle=0.0, max_files=2),
                      report=lambda batch: events.append("batch"), maintained=lambda summary: events.append("compacted"))
    for part in parts[:3]:
        shutil.copytree(part, inbox, dirs_exist_ok=True)
        watcher.serve()
    assert events.count("batch") == 3 and "compacted" in events
    assert all(after == "release" for before, after in zip(events, events[1:], strict=False) if before in ("batch", "compacted"))


def test_an_inbox_emptied_as_it_goes_holds_nothing_per_file_taken(tmp_path, parts):
    """A watch lives for hours over an inbox that its feeder empties: what it remembers of a file
    goes with the file, and a file put back later is found taken by its content."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    watcher = Watcher(wh, str(inbox), wh.keys(KEY, create=True), Options(once=True, settle=0.0))
    placed = deliver(parts[0], inbox)
    assert watcher.serve() == 1 and len(watcher.inbox.done) == len(placed)
    landed = manifest_rows(tmp_path / "wh")
    for f in placed:
        f.unlink()
    watcher.inbox.look()
    assert not (watcher.inbox.seen or watcher.inbox.done or watcher.inbox.failed)
    deliver(parts[0], inbox)
    assert watcher.serve() == 1  # (its micro-batch counter: nothing new was taken)
    assert manifest_rows(tmp_path / "wh") == landed
