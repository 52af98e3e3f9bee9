"""How instant the read commands feel: `stedi-etl sql`, `tables` and `describe` against a bare
``python -c "import duckdb; duckdb.sql('select 1')"``, whole processes from start, interleaved in
rounds so that a busy moment of the machine hits every command alike; the median of each.

    .venv/bin/python bench/cli_latency.py [--rounds 15] [--customers 956]

Builds a warehouse at 1x the starter volume (``stedi-etl generate`` then ``ingest --run``) in a
temporary folder, unless ``--warehouse`` names one. Prints a Markdown table with each command's
ratio to the bare DuckDB process (target: at most 3x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 3.0


def _timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--customers", type=int, default=956)
    parser.add_argument("--warehouse", default=None)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ARROW_DEFAULT_MEMORY_POOL": "system"}
    py = sys.executable
    etl = [py, "-m", "stedi.cli"]
    with tempfile.TemporaryDirectory(prefix="stedi-latency-") as tmp:
        warehouse = args.warehouse
        if warehouse is None:
            data, warehouse = f"{tmp}/data", f"{tmp}/wh"
            subprocess.run([*etl, "generate", "--customers", str(args.customers), "--seed", "1", "--out", data], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            subprocess.run([*etl, "--warehouse", warehouse, "ingest", data, "--run"], env=env, check=True, stdout=subprocess.DEVNULL)
        commands = {
            "python -c \"import duckdb; duckdb.sql('select 1')\"": [py, "-c", "import duckdb; duckdb.sql('select 1')"],
            'stedi-etl sql "SELECT count(*) FROM machine_learning_curated"': [
                *etl, "--warehouse", warehouse, "sql", "SELECT count(*) FROM machine_learning_curated"],
            "stedi-etl tables": [*etl, "--warehouse", warehouse, "tables"],
            "stedi-etl describe customer_trusted": [*etl, "--warehouse", warehouse, "describe", "customer_trusted"],
        }
        for argv in commands.values():  # warm the page cache and the contracts' cache
            _timed(argv, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                times[name].append(_timed(argv, env))
    base = statistics.median(next(iter(times.values())))
    print(f"{args.rounds} rounds, interleaved; median wall seconds of whole processes; {os.cpu_count()} cores\n")
    print("| command | median | ratio to bare DuckDB | target |")
    print("|---|---:|---:|---|")
    for i, (name, ts) in enumerate(times.items()):
        med = statistics.median(ts)
        ratio = med / base
        verdict = "baseline" if i == 0 else ("met" if ratio <= TARGET else "**missed**")
        print(f"| `{name}` | {med:.3f} s | {ratio:.2f}x | {verdict} |")


if __name__ == "__main__":
    main()
