"""The stedi benchmark: ingest + run end to end at 1x, 10x and 100x the starter volume, beside a
plain DuckDB SQL pipeline and PySpark local mode over the same files, in the same run.

    .venv/bin/python bench/run.py [--scales 1 10 100] [--no-spark] [--repeat 3] [--out BENCHMARKS.md]

300x and 1000x are opt-in (``--scales 1 10 100 300 1000``: 3.3 GB and 11 GB of JSON, generated once
into bench/.data; ``--repeat 1`` keeps a 1000x run under an hour); their memory and speed targets
(issue 15) are reported when they are run.

Each figure is the wall time of whole processes, from process start, as a user would see them (the
median of --repeat runs); peak memory is the largest resident set of those processes. Generated data is cached in
bench/.data (deterministic: same scale, same bytes). Every engine's row counts are checked against
stedi's, so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / ".data"
BIN = Path(sys.executable).parent
STARTER_CUSTOMERS = 956
TARGETS = {1: 2.0, 100: 12.0}  # seconds, ingest + run
INCREMENTAL_TARGET = 0.10  # a run after appending 1% new readings, as a share of a full run (100x)
DAY_MS = 86_400_000
NOOP_TARGET = 1.0  # seconds, a second run with nothing new, at 1x
MEMORY_TARGET_GB = 3.0  # at 100x
#: issue 15: peak resident memory of `ingest` and of `run`, each, by scale; at 1000x also at most
#: 1.5x the 100x peak. Speed: ingest + run at most this many times the DuckDB SQL pipeline's time.
SCALE_MEMORY_GB = {300: 3.0, 1000: 4.0}
MEMORY_GROWTH_1000X = 1.5
VERSUS_DUCKDB = {100: 1.5, 1000: 1.0}


def timed(cmd: list[str], env: dict | None = None, *, quiet_disk: bool = True) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall seconds, peak RSS in GB, stdout). Stops the benchmark if it fails.

    With ``quiet_disk``, first wait for earlier writes to reach the disk, so that a measurement does
    not pay for another's; ``run`` right after ``ingest`` is measured without it, as a user sees it.
    """
    if quiet_disk:
        os.sync()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err.read().decode()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024**2, out.read().decode()


def dataset(scale: int) -> Path:
    folder = DATA / f"{scale}x"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(
            [BIN / "stedi-etl", "generate", "--customers", str(STARTER_CUSTOMERS * scale), "--seed", str(scale), "--out", folder],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (folder / ".complete").touch()
    return folder


def median_of(repeat: int, fn, *args) -> dict:
    """Run ``fn`` ``repeat`` times; keep the run with the median total time (numbers stay consistent)."""
    runs = sorted((fn(*args, i) for i in range(repeat)), key=lambda r: r["total"])
    return runs[len(runs) // 2] | {"repeat": repeat, "totals": [round(r["total"], 2) for r in runs]}


def bench_stedi(source: Path, work: Path, attempt: int = 0) -> dict:
    wh = work / f"warehouse-{attempt}"
    env = os.environ | {"STEDI_WAREHOUSE": str(wh)}
    ingest_s, ingest_gb, _ = timed([str(BIN / "stedi-etl"), "ingest", str(source)], env)
    run_s, run_gb, _ = timed([str(BIN / "stedi-etl"), "run"], env, quiet_disk=False)
    noop_s, _, _ = timed([str(BIN / "stedi-etl"), "run"], env)
    _, _, tables = timed([str(BIN / "stedi-etl"), "tables", "--format", "json"], env)
    counts = {row["table"]: row["rows"] for row in json.loads(tables)}
    env_one = os.environ | {"STEDI_WAREHOUSE": str(work / f"warehouse-one-{attempt}")}
    one_s, one_gb, _ = timed([str(BIN / "stedi-etl"), "ingest", "--run", str(source)], env_one)
    _, _, tables_one = timed([str(BIN / "stedi-etl"), "tables", "--format", "json"], env_one)
    if {row["table"]: row["rows"] for row in json.loads(tables_one)} != counts:
        raise SystemExit(f"ingest --run gave other row counts than ingest + run: {tables_one}")
    shutil.rmtree(wh)
    shutil.rmtree(work / f"warehouse-one-{attempt}")
    return {
        "ingest": ingest_s,
        "run": run_s,
        "total": ingest_s + run_s,
        "one_process": one_s,
        "noop": noop_s,
        "peak_gb": max(ingest_gb, run_gb, one_gb),
        "ingest_gb": ingest_gb,
        "run_gb": run_gb,
        "one_gb": one_gb,
        "counts": counts,
    }


def appended(scale: int, how: str) -> Path:
    """1% more readings for the ``scale`` data set, a day after the originals (cached):
    ``sessions``: every reading of 1% of the customers (new sessions of a few customers, as a day
    of use brings); ``spread``: every 100th reading of everyone (a little new data for everyone)."""
    import polars as pl

    source, folder = dataset(scale), DATA / f"{scale}x-append-{how}"
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    phone = pl.scan_ndjson(sorted((source / "accelerometer" / "landing").glob("*.json")))
    device = pl.scan_ndjson(sorted((source / "step_trainer" / "landing").glob("*.json")))
    if how == "sessions":
        users = phone.select("user").unique().sort("user").collect()["user"].sample(fraction=0.01, seed=scale)
        customers = pl.scan_ndjson(sorted((source / "customer" / "landing").glob("*.json")))
        serials = customers.filter(pl.col("email").is_in(users.implode())).select("serialNumber").unique().collect()
        phone = phone.filter(pl.col("user").is_in(users.implode()))
        device = device.filter(pl.col("serialNumber").is_in(serials["serialNumber"].implode()))
    else:
        phone = phone.gather_every(100, offset=7)
        device = device.gather_every(100, offset=7)
    for name, rows, at in (("accelerometer", phone, "timestamp"), ("step_trainer", device, "sensorReadingTime")):
        out = folder / name / "landing"
        out.mkdir(parents=True)
        rows.with_columns(pl.col(at) + DAY_MS).collect().write_ndjson(out / f"{name}-append-{how}.json")
    (folder / ".complete").touch()
    return folder


def _run_seconds(output: str) -> float:
    """The run's own time, as ``stedi-etl run`` prints it: from its start, once the libraries every
    run uses are loaded (``stedi.runner._load_libraries``)."""
    return float(re.findall(r"in (\d+\.\d+)s", output)[-1])


def _library_load_seconds() -> float:
    """What loading those libraries costs a process, measured apart (median of 5 processes): the
    time that ``inside`` leaves out and ``process`` counts."""
    code = "import stedi.cli, stedi.runner as r; print(r._load_libraries('pyiceberg.io.pyarrow', 'polars'))"
    runs = sorted(float(timed([sys.executable, "-c", code])[2]) for _ in range(5))
    return runs[2]


def bench_incremental(scale: int, work: Path, with_spark: bool = True, repeat: int = 3) -> dict:
    """A full run (and the same on the Spark engine), then a run after ingesting 1% new readings
    (two ways), each checked against a ``run --full-refresh`` of the same warehouse: same row
    counts. The full run and the run after the *sessions* are timed on ``repeat`` warehouses built
    the same way; their medians are kept."""
    wh = work / "warehouse-incremental"
    env = os.environ | {"STEDI_WAREHOUSE": str(wh)}
    stedi = str(BIN / "stedi-etl")
    timed([stedi, "ingest", str(dataset(scale))], env)
    full_s, _, out = timed([stedi, "run"], env)
    result = {"full": full_s, "full_inside": _run_seconds(out), "libraries": _library_load_seconds()}
    others = [_sessions_trial(scale, work / f"warehouse-incremental-{i}") for i in range(1, repeat)]
    counts = _counts(env)
    if with_spark:  # the same rebuild on the Spark engine (local mode, the executors writing)
        spark_s, spark_gb, out = timed([stedi, "run", "--full-refresh", "--engine", "spark"], env)
        if _counts(env) != counts:
            raise SystemExit("the Spark engine's row counts differ from the Polars engine's")
        result["spark"] = {"run": spark_s, "inside": _run_seconds(out)}
    for how in ("sessions", "spread"):
        timed([stedi, "ingest", str(appended(scale, how))], env)
        seconds, _, out = timed([stedi, "run"], env)
        mode = "incremental" if "(incremental)" in out else "rebuild"  # most customers touched: a rebuild
        if how == "sessions" and mode != "incremental":
            raise SystemExit(f"the run after appending ({how}) was not incremental:\n{out}")
        counts = _counts(env)
        refresh_s, _, refresh_out = timed([stedi, "run", "--full-refresh"], env)
        if _counts(env) != counts:
            raise SystemExit(f"{how}: the incremental run's row counts differ from a full refresh's")
        result[how] = {
            "run": seconds, "inside": _run_seconds(out), "mode": mode, "refresh": refresh_s, "refresh_inside": _run_seconds(refresh_out)
        }
    shutil.rmtree(wh)
    trials = [{"full": result["full"], "full_inside": result["full_inside"], **result["sessions"]}, *others]
    result["trials"] = [{k: t[k] for k in ("full", "full_inside", "run", "inside")} for t in trials]
    for key in ("full", "full_inside"):
        result[key] = statistics.median(t[key] for t in trials)
    for key in ("run", "inside"):
        result["sessions"][key] = statistics.median(t[key] for t in trials)
    return result


def _sessions_trial(scale: int, wh: Path) -> dict:
    """One more warehouse for :func:`bench_incremental`: ingest, full run, ingest the sessions, run."""
    env = os.environ | {"STEDI_WAREHOUSE": str(wh)}
    stedi = str(BIN / "stedi-etl")
    timed([stedi, "ingest", str(dataset(scale))], env)
    full_s, _, full_out = timed([stedi, "run"], env)
    timed([stedi, "ingest", str(appended(scale, "sessions"))], env)
    seconds, _, out = timed([stedi, "run"], env)
    if "(incremental)" not in out:
        raise SystemExit(f"the run after appending (sessions) was not incremental:\n{out}")
    shutil.rmtree(wh)
    return {"full": full_s, "full_inside": _run_seconds(full_out), "run": seconds, "inside": _run_seconds(out)}


def _counts(env: dict) -> dict:
    _, _, tables = timed([str(BIN / "stedi-etl"), "tables", "--format", "json"], env)
    return {row["table"]: row["rows"] for row in json.loads(tables) if row["table"] not in ("run_log", "quarantine")}


def bench_baseline(engine: str, source: Path, work: Path, attempt: int = 0) -> dict:
    out_dir = work / f"{engine}-{attempt}"
    seconds, gb, out = timed([sys.executable, str(ROOT / "bench" / "baselines.py"), engine, str(source), str(out_dir)])
    return {"total": seconds, "peak_gb": gb, "counts": json.loads(out.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--no-spark", action="store_true", help="skip the PySpark baseline")
    parser.add_argument("--repeat", type=int, default=3, help="runs of stedi and DuckDB per scale; the median is kept")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    rows = []
    for scale in args.scales:
        source = dataset(scale)
        size_mb = sum(p.stat().st_size for p in source.rglob("*.json")) / 1e6
        with tempfile.TemporaryDirectory(prefix=f"stedi-bench-{scale}x-") as tmp:
            work = Path(tmp)
            result = {"scale": scale, "size_mb": size_mb, "stedi": median_of(args.repeat, bench_stedi, source, work)}
            result["duckdb"] = median_of(args.repeat, bench_baseline, "duckdb", source, work)
            if not args.no_spark:  # one run: it is by far the slowest
                result["spark"] = bench_baseline("spark", source, work)
            if scale == max(args.scales):
                result["incremental"] = bench_incremental(scale, work, with_spark=not args.no_spark, repeat=args.repeat)
        for engine in ("duckdb", "spark"):
            if engine in result:
                for table, n in result[engine]["counts"].items():
                    if result["stedi"]["counts"][table] != n:
                        raise SystemExit(f"{scale}x: {engine} gives {table}={n}, stedi {result['stedi']['counts'][table]}")
        rows.append(result)
        print(json.dumps({k: v for k, v in result.items()}, default=str), flush=True)
    args.out.write_text(render(rows, args))
    print(f"wrote {args.out}")


def _peaks(s: dict) -> str:
    if "ingest_gb" not in s:
        return f"{s['peak_gb']:.2f} GB"
    return f"{s['ingest_gb']:.2f} / {s['run_gb']:.2f} / {s['one_gb']:.2f} GB"


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{' '.join(['.venv/bin/python', 'bench/run.py', *sys.argv[1:]])}` (`make bench`) on {datetime.now(UTC):%Y-%m-%d}.",
        f"Machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, {platform.system()}.",
        "",
        "Data: `stedi-etl generate` at N x the starter volume (956 x N customers, 30 step trainer readings",
        "per device, 3 accelerometer readings per reading time), cached in bench/.data.",
        "Times are wall seconds of whole processes from process start, the median of `--repeat` runs",
        "(stedi and DuckDB; PySpark runs once), each into a fresh warehouse after a `sync`, so that no",
        "measurement pays for an earlier one's disk writes (but `run` starts right after `ingest`, as a",
        "user would run them); peak memory is the largest",
        "resident set of any one process. stedi = `stedi-etl ingest` + `stedi-etl run` into a fresh",
        "warehouse (raw copies, manifest, Iceberg landing tables, six jobs, the privacy audit, Iceberg commits), as two",
        "processes and as one (`stedi-etl ingest --run`, into another fresh warehouse); each stedi",
        "process pays about 1.2 s of imports (pyiceberg, its SQL catalog, Arrow) before any work.",
        "DuckDB and PySpark = the original project's five derived tables in plain SQL (`bench/pipeline.sql`)",
        "straight from the JSON to Parquet, no lakehouse, no consent history, no audit. Every engine's row",
        "counts equal stedi's (checked).",
        "",
        "| scale | JSON | stedi ingest | stedi run | **ingest + run** | **ingest --run** | second run | peak: ingest / run / ingest --run | DuckDB SQL (peak) | PySpark local |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["stedi"]
        spark = f"{r['spark']['total']:.1f} s" if "spark" in r else "not run"
        lines.append(
            f"| {r['scale']}x | {r['size_mb']:.0f} MB | {s['ingest']:.2f} s | {s['run']:.2f} s | **{s['total']:.2f} s** | **{s['one_process']:.2f} s** | "
            f"{s['noop']:.2f} s | {_peaks(s)} | {r['duckdb']['total']:.2f} s ({r['duckdb']['peak_gb']:.2f} GB) | {spark} |"
        )
    lines += ["", "stedi ingest + run, every repetition (s): " + "; ".join(f"{r['scale']}x {r['stedi']['totals']}" for r in rows)]
    lines += ["", "Targets:", ""]
    for r in rows:
        s = r["stedi"]
        if r["scale"] in TARGETS:
            limit = TARGETS[r["scale"]]
            lines.append(
                f"- {r['scale']}x ingest + run <= {limit:.0f} s: two processes {s['total']:.2f} s, {_mark(s['total'] <= limit)}; "
                f"one process (`ingest --run`) {s['one_process']:.2f} s, {_mark(s['one_process'] <= limit)}"
            )
        if r["scale"] == 1:
            lines.append(f"- 1x second run with nothing new <= {NOOP_TARGET:.0f} s: {s['noop']:.2f} s, {_mark(s['noop'] <= NOOP_TARGET)}")
        if r["scale"] == 100:
            lines.append(f"- 100x peak memory <= {MEMORY_TARGET_GB:.0f} GB: {s['peak_gb']:.2f} GB, {_mark(s['peak_gb'] <= MEMORY_TARGET_GB)}")
        if r["scale"] in SCALE_MEMORY_GB:
            limit = SCALE_MEMORY_GB[r["scale"]]
            lines.append(
                f"- {r['scale']}x peak memory of `ingest` and of `run`, each <= {limit:.0f} GB: ingest {s.get('ingest_gb', 0):.2f} GB, "
                f"{_mark(s.get('ingest_gb', 0) <= limit)}; run {s.get('run_gb', 0):.2f} GB, {_mark(s.get('run_gb', 0) <= limit)}"
            )
        hundred = next((o["stedi"] for o in rows if o["scale"] == 100), None)
        if r["scale"] == 1000 and hundred is not None:
            growth = s["peak_gb"] / hundred["peak_gb"]
            lines.append(f"- 1000x peak <= {MEMORY_GROWTH_1000X}x the 100x peak: {growth:.2f}x, {_mark(growth <= MEMORY_GROWTH_1000X)}")
        if r["scale"] in VERSUS_DUCKDB:
            limit, ratio = VERSUS_DUCKDB[r["scale"]], s["total"] / r["duckdb"]["total"]
            lines.append(
                f"- {r['scale']}x ingest + run <= {limit}x the DuckDB SQL pipeline: {ratio:.2f}x "
                f"({s['total']:.2f} s against {r['duckdb']['total']:.2f} s), {_mark(ratio <= limit)}"
            )
    inc = rows[-1].get("incremental")
    if inc:
        scale = rows[-1]["scale"]
        lines += [
            "",
            f"Incremental runs at {scale}x (`bench_incremental`): a full `run` after ingesting the data set, then",
            "1% more readings ingested and a plain `run`, checked against a `run --full-refresh` of the same",
            "warehouse (same row counts). *sessions*: every reading of 1% of the customers, a day later (a day",
            "of use: some customers, new sessions); *spread*: every 100th reading of everyone, a day later.",
            "Process = the whole `stedi-etl run` process; inside = the run's own time as it prints it, less",
            "loading the libraries it works with (pyiceberg's Arrow FileIO, and Polars when there is work:",
            f"{inc['libraries']:.2f} s per process, measured apart); the interpreter's start and the CLI's imports",
            "are not in it either. DuckDB, the catalog and everything else a run uses count inside. The full",
            f"run and the *sessions* run are the medians of {len(inc['trials'])} warehouses built the same way. A run whose new rows touch",
            "more than a quarter of the customers rebuilds instead (*spread* does): recomputing nearly",
            "everyone person by person was measured slower than the rebuild.",
            "",
            "| run | process | inside | share of the full run (inside) |",
            "|---|---:|---:|---:|",
            f"| full (first) run | {inc['full']:.2f} s | {inc['full_inside']:.2f} s | 100% |",
        ]
        for how in ("sessions", "spread"):
            r = inc[how]
            lines.append(
                f"| after 1% new readings, {how} ({r['mode']}) | {r['run']:.2f} s | {r['inside']:.2f} s | "
                f"{100 * r['inside'] / inc['full_inside']:.0f}% |"
            )
            lines.append(f"| `run --full-refresh` after it | {r['refresh']:.2f} s | {r['refresh_inside']:.2f} s | |")
        if "spark" in inc:
            lines.append(
                f"| the full run on the Spark engine (`run --full-refresh --engine spark`, local mode) | "
                f"{inc['spark']['run']:.2f} s | {inc['spark']['inside']:.2f} s | {100 * inc['spark']['inside'] / inc['full_inside']:.0f}% |"
            )
        share = inc["sessions"]["inside"] / inc["full_inside"]
        libraries = inc["libraries"]
        each = ", ".join(f"{t['inside']:.2f}/{t['full_inside']:.2f} s" for t in inc["trials"])
        with_libraries = (inc["sessions"]["inside"] + libraries) / (inc["full_inside"] + libraries)
        lines.append("")
        lines.append(
            f"- {scale}x run after appending 1% new readings (sessions) <= {INCREMENTAL_TARGET:.0%} of a full run: "
            f"{share:.1%} inside the run, {_mark(share <= INCREMENTAL_TARGET)}; {with_libraries:.1%} with the "
            f"libraries' load counted in both runs; {inc['sessions']['run'] / inc['full']:.0%} as whole processes "
            f"(inside, sessions/full, each warehouse: {each})"
        )
    counts = rows[-1]["stedi"]["counts"]
    lines += ["", f"Row counts at {rows[-1]['scale']}x:", ""]
    lines += [f"- {t}: {n:,}" for t, n in counts.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
