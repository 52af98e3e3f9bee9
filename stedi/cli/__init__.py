"""``stedi-etl``: the command line. A thin shell over the library, one module per group of commands:
:mod:`~stedi.cli.write` (ingest, run, forget, rotate-key), :mod:`~stedi.cli.read` (sql, tables, runs,
quarantine, audit), :mod:`~stedi.cli.tools` (ddl, generate), :mod:`~stedi.cli.watch` (watch, maintain); :mod:`~stedi.cli.app` holds the group.
"""

from __future__ import annotations

import os

from stedi.cli import admin, look, read, tools, watch, write  # noqa: F401  (each registers its commands on the group)
from stedi.cli.app import add_warehouse_options, cli

add_warehouse_options(cli)

__all__ = ["cli", "main"]


def main() -> None:
    # Arrow's default allocator (mimalloc) returns and re-faults memory so often on large ingests that
    # the kernel time dominates; the system allocator measured 15-20 % faster end to end (BENCHMARKS.md).
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    cli(prog_name="stedi-etl")

