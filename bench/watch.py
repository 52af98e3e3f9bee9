"""Benchmark of `stedi-etl watch`: latency from a file complete in the inbox to its readings
queryable in machine_learning_curated, and what hours of micro-batches leave behind.

    PYTHONPATH=. .venv/bin/python bench/watch.py [--scale 100] [--batches 60] [--long-scale 10] [--long-batches 1000]

*Latency*: a warehouse holding ``--scale`` x the starter volume (the data set of bench/run.py,
cached in bench/.data, ingested and run), then one `stedi-etl watch` process on an empty inbox
and ``--batches`` micro-batches, one after the other: each is the new sessions (every reading,
some days later) of a few consenting customers, written under a hidden name and renamed into the
inbox (complete at the rename). Latency = from the rename to the watch's line for the batch (printed
once its run committed), checked by querying the batch's readings in machine_learning_curated.

*Long*: ``--long-batches`` more micro-batches on a warehouse of ``--long-scale`` x, the watch
maintaining as it does by default (every 200 batches; idle never comes); the watch's resident
memory and the metadata folders are sampled every 50 batches; at the end, a full scan of
machine_learning_curated is timed (median of 3), as the micro-batches left it and after a
`stedi-etl maintain`, against the same table rebuilt in one run (`run --full-refresh`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from run import dataset  # noqa: E402  (the cached data sets of bench/run.py)

DAY_MS = 86_400_000
KEY = "5f1d4e0c3b2a19087766554433221100ffeeddccbbaa99887766554433221100"
# retention 0: maintenance keeps only each table's current snapshot, as a stream's warehouse would be set
ENV = os.environ | {"PYTHONPATH": str(ROOT), "STEDI_PSEUDONYM_KEY": KEY, "ARROW_DEFAULT_MEMORY_POOL": "system", "STEDI_RETENTION_DAYS": "0"}
STEDI = [sys.executable, "-m", "stedi.cli"]
TARGET_MEDIAN, TARGET_P95, TARGET_SCAN = 2.0, 5.0, 1.2


def stedi(wh: Path, *args: str) -> str:
    proc = subprocess.run([*STEDI, "--warehouse", str(wh), *args], env=ENV, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"stedi-etl {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc.stdout


class Sessions:
    """New sessions of consenting customers of a data set: their readings, some days later."""

    def __init__(self, source: Path, customers: int, seed: int = 1):
        import polars as pl

        records = pl.scan_ndjson(sorted((source / "customer" / "landing").glob("*.json")))
        consenting = (
            records.group_by("email")
            .agg(pl.col("serialNumber").last(), pl.col("shareWithResearchAsOfDate").is_null().any().alias("ever_not"))
            .filter(~pl.col("ever_not"))
            .collect()
            .sort("email")  # (group_by's order varies: the same seed picks the same customers)
        )
        phone = pl.scan_ndjson(sorted((source / "accelerometer" / "landing").glob("*.json")))
        users = phone.select("user").unique().collect()["user"]
        first, self.last = phone.select(pl.col("timestamp").min().alias("first"), pl.col("timestamp").max().alias("last")).collect().row(0)
        self.span = self.last - first + 1  # every new reading is later than every reading of the data set
        eligible = consenting.filter(pl.col("email").is_in(users.implode()))
        chosen = eligible.sample(min(customers, eligible.height), seed=seed, shuffle=True)  # (a small set: taken again, later)
        self.phone = phone.filter(pl.col("user").is_in(chosen["email"].implode())).collect().partition_by("user", as_dict=True)
        device = pl.scan_ndjson(sorted((source / "step_trainer" / "landing").glob("*.json")))
        self.device = device.filter(pl.col("serialNumber").is_in(chosen["serialNumber"].implode())).collect().partition_by(
            "serialNumber", as_dict=True
        )
        self.people = list(chosen.iter_rows(named=True))

    def write(self, inbox: Path, batch: int, per_batch: int) -> tuple[float, int]:
        """Batch ``batch``'s files into the inbox (hidden, then renamed); (when complete, readings)."""
        import polars as pl

        who = [self.people[(batch * per_batch + i) % len(self.people)] for i in range(per_batch)]
        shift = self.span + batch * DAY_MS
        phone = pl.concat([self.phone[(p["email"],)] for p in who if (p["email"],) in self.phone]).with_columns(
            pl.col("timestamp") + shift
        )
        device = pl.concat([self.device[(p["serialNumber"],)] for p in who if (p["serialNumber"],) in self.device]).with_columns(
            pl.col("sensorReadingTime") + shift
        )
        paths = []
        for name, rows in (("accelerometer", phone), ("step_trainer", device)):
            folder = inbox / name / "landing"
            folder.mkdir(parents=True, exist_ok=True)
            hidden = folder / f".{name}-{batch:05d}.json"
            rows.write_ndjson(hidden)
            paths.append((hidden, folder / f"{name}-{batch:05d}.json"))
        for hidden, final in paths:
            hidden.rename(final)
        return time.time(), phone.height


class Watch:
    """A `stedi-etl watch` process; its lines read on a thread as they come."""

    def __init__(self, wh: Path, inbox: Path, *extra: str):
        self.proc = subprocess.Popen(
            [*STEDI, "--warehouse", str(wh), "watch", *extra, str(inbox)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append((time.time(), line.rstrip()))
                self.cond.notify_all()

    def next_batch(self, seen: int, timeout: float = 120) -> tuple[float, str]:
        """The first micro-batch line after the ``seen`` first ones that took files."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                batches = [(t, line) for t, line in self.lines if "micro-batch:" in line and " 0 file(s)" not in line]
                if len(batches) > seen:
                    return batches[seen]
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"watch stopped or stalled: {self.proc.stderr.read()[-2000:] if self.proc.poll() is not None else 'timeout'}")
                self.cond.wait(0.5)

    def memory_mb(self) -> dict[str, float]:
        """The watch's resident memory: all of it, its own (anonymous: heaps, the engines' pools) and
        the pages of files it maps (the libraries' code, shared, bounded by their size)."""
        fields = {"VmRSS:": "rss_mb", "RssAnon:": "anon_mb", "RssFile:": "file_mb"}
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name = line.split(maxsplit=1)[0] if line else ""
            if name in fields:
                out[fields[name]] = round(int(line.split()[1]) / 1024, 1)
        return out

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=300)
        return err.strip()


def warehouse(scale: int, work: Path) -> Path:
    wh = work / f"wh-{scale}x"
    started = time.perf_counter()
    stedi(wh, "ingest", "--run", str(dataset(scale)))
    print(f"{scale}x warehouse built in {time.perf_counter() - started:.1f}s", flush=True)
    return wh


def metadata(wh: Path) -> tuple[int, int]:
    files = [p for p in (wh / "iceberg").rglob("*") if p.is_file() and "/metadata/" in str(p)]
    return len(files), sum(p.stat().st_size for p in files)


def ml_rows_after(wh: Path, first_ms: int) -> int:
    out = stedi(wh, "sql", "--format", "json", f"SELECT count(*) AS n FROM machine_learning_curated WHERE timestamp >= {first_ms}")
    return json.loads(out)[0]["n"]


def latency(scale: int, batches: int, per_batch: int, work: Path) -> dict:
    wh = warehouse(scale, work)
    sessions = Sessions(dataset(scale), batches * per_batch)
    inbox = work / f"inbox-{scale}x"
    inbox.mkdir()
    watch = Watch(wh, inbox)
    time.sleep(8)  # its start: libraries, the catch-up run (nothing to do)
    seconds, delays, readings = [], [], []
    for b in range(batches):
        complete, n = sessions.write(inbox, b, per_batch)
        at, line = watch.next_batch(b)
        seconds.append(at - complete)
        delays.append(float(line.rsplit("delay ", 1)[1].rstrip("s")))
        readings.append(n)
        time.sleep(0.3)
    last = watch.stop()
    # every new reading is later than the data set's: the watch's pairs are those of a rebuild
    new_pairs = ml_rows_after(wh, sessions.last + 1)
    stedi(wh, "run", "--full-refresh")
    if new_pairs != ml_rows_after(wh, sessions.last + 1) or not new_pairs:
        raise SystemExit(f"the watch left {new_pairs} new pairs in machine_learning_curated, a rebuild {ml_rows_after(wh, sessions.last + 1)}")
    return {
        "scale": scale,
        "batches": batches,
        "per_batch": per_batch,
        "readings": readings,
        "seconds": seconds,
        "delays": delays,
        "median": statistics.median(seconds),
        "p95": sorted(seconds)[int(0.95 * (len(seconds) - 1) + 0.5)],
        "max": max(seconds),
        "stop_line": last,
        "ml_rows_new_days": new_pairs,
    }


def scan_seconds(wh: Path, repeat: int = 3) -> float:
    code = (
        "import sys, time; from stedi.config import Settings; from stedi.warehouse import Warehouse;"
        "wh = Warehouse.open(Settings(warehouse=sys.argv[1])); t = wh.table('machine_learning_curated');"
        "s = time.perf_counter(); n = t.scan().to_arrow().num_rows; print(time.perf_counter() - s, n, len(wh.data_files('machine_learning_curated')))"
    )
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code, str(wh)], env=ENV, capture_output=True, text=True, check=True).stdout.split()
        runs.append((float(out[0]), int(out[1]), int(out[2])))
    runs.sort()
    return runs[len(runs) // 2]


def long(scale: int, batches: int, per_batch: int, work: Path) -> dict:
    wh = warehouse(scale, work)
    sessions = Sessions(dataset(scale), min(batches * per_batch, 2000), seed=2)
    inbox = work / f"inbox-long-{scale}x"
    inbox.mkdir()
    watch = Watch(wh, inbox)
    time.sleep(8)
    samples, seconds = [], []
    started = time.perf_counter()
    for b in range(batches):
        complete, _ = sessions.write(inbox, b, per_batch)
        at, _ = watch.next_batch(b, timeout=600)
        seconds.append(at - complete)
        if b % 50 == 0 or b == batches - 1:
            files, size = metadata(wh)
            samples.append({"batch": b + 1, **watch.memory_mb(), "metadata_files": files, "metadata_bytes": size})
            print(f"  long: {samples[-1]}", flush=True)
    elapsed = time.perf_counter() - started
    lines = [line for _, line in watch.lines if "maintenance:" in line]
    watch.stop()
    before = scan_seconds(wh)  # as the micro-batches left it, small files and all
    files_before, size_before = metadata(wh)
    stedi(wh, "maintain")  # what the watch does when idle, done now as a user would
    after = scan_seconds(wh)
    files, size = metadata(wh)
    stedi(wh, "run", "--full-refresh")
    stedi(wh, "maintain")  # the one-run build's own files only
    built = scan_seconds(wh)
    return {
        "scale": scale,
        "batches": batches,
        "elapsed": elapsed,
        "median": statistics.median(seconds),
        "p95": sorted(seconds)[int(0.95 * (len(seconds) - 1) + 0.5)],
        "samples": samples,
        "maintenance_lines": lines,
        "scan_before_maintain": before,
        "metadata_before_maintain": {"files": files_before, "bytes": size_before},
        "scan_after": after,
        "scan_one_run": built,
        "metadata_after_maintain": {"files": files, "bytes": size},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--per-batch", type=int, default=3, help="customers whose new sessions make one micro-batch")
    parser.add_argument("--long-scale", type=int, default=10)
    parser.add_argument("--long-batches", type=int, default=1000)
    parser.add_argument("--skip-long", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "watch.json", help="where the raw figures go")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stedi-bench-watch-"))
    try:
        result = {}
        if not args.skip_latency:
            result["latency"] = lat = latency(args.scale, args.batches, args.per_batch, work)
            print(f"latency at {args.scale}x: median {lat['median']:.2f}s, p95 {lat['p95']:.2f}s, max {lat['max']:.2f}s", flush=True)
            shutil.rmtree(work / f"wh-{args.scale}x", ignore_errors=True)
        if not args.skip_long:
            result["long"] = long(args.long_scale, args.long_batches, args.per_batch, work)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(json.dumps({k: {kk: vv for kk, vv in v.items() if not isinstance(vv, list)} for k, v in result.items()}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
