"""``stedi-etl``: the command line. A thin shell over the library, one module per group of commands:
:mod:`~stedi.cli.write` (ingest, run, forget, rotate-key), :mod:`~stedi.cli.read` (sql, tables, runs,
quarantine, audit), :mod:`~stedi.cli.look` (shell, describe, history), :mod:`~stedi.cli.admin` (init,
repair, relocate), :mod:`~stedi.cli.tools` (ddl, generate), :mod:`~stedi.cli.report` (report),
:mod:`~stedi.cli.watch` (watch, maintain); :mod:`~stedi.cli.app` holds the group and the options
every command takes (``--warehouse``, ``--catalog-uri`` after its name too).
"""

from __future__ import annotations

import os

from stedi.cli import admin, look, read, report, tools, watch, write  # noqa: F401  (each registers its commands on the group)
from stedi.cli.app import add_warehouse_options, cli

add_warehouse_options(cli)

__all__ = ["cli", "main"]


def main() -> None:
    # Arrow's default allocator (mimalloc) returns and re-faults memory so often on large ingests that
    # the kernel time dominates; the system allocator measured 15-20 % faster end to end (BENCHMARKS.md).
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    try:
        cli(prog_name="stedi-etl")
    except KeyboardInterrupt:  # before a command's own handling (while importing, parsing)
        import sys

        print("interrupted: nothing more was done", file=sys.stderr)
        sys.exit(130)

