"""The commands that look around: shell, describe, history."""

from __future__ import annotations

import json
import sys

import click

from stedi.cli.app import _Context, _fail_cleanly, cli, warehouse_options, zone_options
from stedi.cli.output import _console, _print_table


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--as-of", "as_of", default=None, metavar="RUN_ID", help="The tables as this run left them.")
@zone_options
@warehouse_options
@click.argument("shell_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
@_fail_cleanly
def shell(obj: _Context, as_of: str | None, shell_args: tuple[str, ...]) -> None:
    """Open the DuckDB shell over the current snapshot of every table you may see.

    Each table is a view under its name; the shell's own features work (.tables, .mode, .timer,
    history). It is confined like `sql`: it reads those tables' data files and nothing else, and
    its escapes (.shell, .output, .read, .open) are off. SQL piped on stdin runs as a script and
    exits. Arguments after the options go to the duckdb shell (e.g. -csv).

    \b
    Examples:
      stedi-etl shell
      echo "SELECT count(*) FROM customers_curated;" | stedi-etl shell
      stedi-etl shell --zone curated -csv < queries.sql
    """
    from stedi.shell import run

    code = run(obj.settings, as_of, shell_args)
    if code:
        sys.exit(code)


@cli.command()
@click.argument("table")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@zone_options
@warehouse_options
@click.pass_obj
@_fail_cleanly
def describe(obj: _Context, table: str, fmt: str) -> None:
    """Show TABLE: its contract (comment, columns, grain, rules, owner, zone), snapshot and rows.

    \b
    Example:
      stedi-etl describe machine_learning_curated
    """
    from stedi.describe import describe as run_describe

    d = run_describe(obj.settings, table)
    if fmt == "json":
        click.echo(json.dumps(d))
        return
    out = _console()
    for label, value in (
        ("table", d["table"]),
        ("comment", d["comment"]),
        ("zone", d["zone"]),
        ("grain", d["grain"]),
        ("owner", f"{d['owner']} ({d['owner_kind']})" if d["owner"] else "-"),
        ("snapshot", f"{d['snapshot_id']} of {d['updated']}" if d["snapshot_id"] else "none (never written)"),
        ("rows", d["rows"]),
    ):
        out.print(f"{label + ':':<10} {value}", markup=False, highlight=False)
    _print_table(
        "columns",
        ("column", "type", "required", "comment"),
        [(c["name"], c["type"], "yes" if c["required"] else "", c["comment"]) for c in d["columns"]],
    )
    if d["rules"]:
        _print_table("rules", ("rule", "check", "when it fails"), [(r["name"], r["check"], r["action"]) for r in d["rules"]])


@cli.command()
@click.argument("table")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@zone_options
@warehouse_options
@click.pass_obj
@_fail_cleanly
def history(obj: _Context, table: str, fmt: str) -> None:
    """List TABLE's snapshots still kept: when, what wrote it (run and job, ingest, forget), rows
    added and deleted. `stedi-etl sql --as-of RUN_ID` queries the tables as a run left them.

    \b
    Example:
      stedi-etl history customer_trusted
    """
    from stedi.describe import history as run_history

    entries = run_history(obj.settings, table)
    if fmt == "json":
        click.echo(json.dumps([e.__dict__ for e in entries]))
        return
    if not entries:
        _console().print(f"{table} has no snapshot: it was never written", markup=False)
        return
    _print_table(
        f"{table}: {len(entries)} snapshot(s), oldest first",
        ("snapshot", "when", "operation", "written by", "added", "deleted", "rows", ""),
        [(e.snapshot_id, e.when, e.operation, e.by, e.added, e.deleted, e.rows, "current" if e.current else "") for e in entries],
    )
