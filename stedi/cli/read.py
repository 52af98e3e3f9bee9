"""The commands that read the warehouse: sql, tables, runs, quarantine, audit."""

from __future__ import annotations

import json
import sys

import click

from stedi.cli.app import _Context, _fail_cleanly, cli, warehouse_options, zone_options
from stedi.cli.output import _console, _fail_on, _print_table
from stedi.errors import StediError


def _query_text(query: tuple[str, ...], file: str | None) -> str:
    """The SQL given: the argument's words, a file, or stdin (``-``, or nothing on a pipe)."""
    if file is not None:
        if query:
            raise StediError("give the SQL either as QUERY or with --file, not both")
        return _read_sql(file)
    if query == ("-",) or (not query and not sys.stdin.isatty()):
        return sys.stdin.read()
    if not query:
        raise StediError('no query: give one, e.g. stedi-etl sql "SELECT count(*) FROM customers_curated", or --file, or - for stdin')
    import re

    for word in query:  # a mistyped option, not a comment (a comment holds a space or a newline)
        if re.fullmatch(r"--[A-Za-z][\w-]*(=\S*)?", word):
            raise StediError(f"no such option: {word.split('=')[0]} (see stedi-etl sql --help)")
    return " ".join(query)


def _read_sql(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        with open(file, encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError:
        raise StediError(f"{file} is not UTF-8 text") from None
    except OSError as err:
        raise StediError(f"cannot read {file}: {err.strerror}") from None


# A query may start with a `--` SQL comment: such an argument is the query, not an unknown option.
@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("query", nargs=-1)
@click.option("--file", "file", default=None, metavar="PATH", help="Read the SQL from this file (- for stdin).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help="Rows shown in table format (0: all). [default: a screenful on a terminal, else all; csv and json: all]",
)
@click.option("--as-of", "as_of", default=None, metavar="RUN_ID", help="Query the tables as this run left them.")
@zone_options
@warehouse_options
@click.pass_obj
@_fail_cleanly
def sql(obj: _Context, query: tuple[str, ...], file: str | None, fmt: str, limit: int | None, as_of: str | None) -> None:
    """Run QUERY through DuckDB over the current snapshot of every table you may see.

    Each table is a view under its own name (customer_landing ... machine_learning_curated,
    quarantine, ingest_manifest). The sandbox reads those tables' data files and nothing else:
    no other file, no write, no ATTACH, INSTALL or SET; a refused statement is one line.

    \b
    Examples:
      stedi-etl sql "SELECT count(*) FROM machine_learning_curated"
      stedi-etl sql --format csv "SELECT * FROM customers_curated LIMIT 10"
      stedi-etl sql --file report.sql
      echo "SELECT 1" | stedi-etl sql -
      stedi-etl sql --zone curated "SHOW TABLES"
      stedi-etl sql --as-of run-20261123T101500-1a2b3c "SELECT count(*) FROM customer_trusted"
    """
    from stedi.query import run

    result = run(obj.settings, _query_text(query, file), as_of=as_of)
    if fmt == "csv":
        _write_csv(result)
    elif fmt == "json":
        click.echo(json.dumps(result.to_pylist(), default=str, indent=None))
    else:
        _print_result(result, limit)


def _write_csv(result) -> None:
    """CSV with a header, as pyarrow writes it: text quoted, numbers, booleans and times bare, NULL
    empty; lists and structs as JSON text."""
    from stedi.cli.output import visible

    # into a file or a pipe the data as it is; on a terminal, nothing in it may act on the terminal
    shown = visible if sys.stdout.isatty() else (lambda text: text)
    write = sys.stdout.write
    write(shown(",".join(_quoted(c) for c in result.columns)) + "\n")
    for row in result.rows:
        write(shown(",".join(_csv_cell(v) for v in row)) + "\n")
    sys.stdout.flush()


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _csv_cell(v) -> str:
    from datetime import datetime

    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v) if isinstance(v, float) else str(v)
    if isinstance(v, datetime):
        return f"{v:%Y-%m-%d %H:%M:%S.%f%z}"
    if isinstance(v, list | dict | tuple):
        return _quoted(json.dumps(v, default=str))
    if isinstance(v, bytes | bytearray):
        return _quoted(v.hex())
    return _quoted(str(v)) if isinstance(v, str) else str(v)


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _print_result(result, limit: int | None) -> None:
    import shutil

    if limit is None:  # a screenful on a terminal (the header, the note and the prompt fit too)
        limit = max(shutil.get_terminal_size().lines - 8, 5) if _stdout_is_terminal() else 0
    shown = result.rows if limit == 0 else result.rows[:limit]
    _print_table(None, result.columns, shown)
    left = result.num_rows - len(shown)
    note = f"{result.num_rows} row(s)" + (f"; {left} not shown (--limit N shows N, --limit 0 all)" if left else "")
    _console().print(note, markup=False)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--max-delay",
    type=click.FloatRange(min=0, max=10 * 365 * 86400),
    callback=lambda ctx, param, v: _finite(v),  # nan, inf: a monitor that would never alarm
    default=None,
    metavar="SECONDS",
    help="Exit 1 if a curated table is staler: its last update older than SECONDS, unless a watch "
    "(`stedi-etl watch`) brought it its last files within SECONDS of their arrival. For monitoring.",
)
@zone_options
@warehouse_options
@click.pass_obj
@_fail_cleanly
def tables(obj: _Context, fmt: str, max_delay: float | None) -> None:
    """List every table you may see with its zone, row count, last update and the delay of its last
    micro-batch (`stedi-etl watch`: from its oldest file being complete to its rows committed).

    \b
    Examples:
      stedi-etl tables
      stedi-etl tables --max-delay 60   # exit 1 when the curated tables are staler
    """
    from stedi.contracts import ZONES
    from stedi.watch import freshness_of, stale
    from stedi.zones import visible

    lake = obj.lake()
    lake.check_exists()
    names = visible(obj.settings.zone, obj.settings.tables)
    states = sorted((lake.state(n) for n in names), key=lambda s: (ZONES.index(s.zone), s.name))
    fresh = {s.name: freshness_of(s.name, s.snapshot.summary, s.snapshot.timestamp_ms) for s in states if s.snapshot}
    if fmt == "json":
        rows = [
            {
                "table": s.name,
                "zone": s.zone,
                "rows": s.snapshot.rows if s.snapshot else 0,
                "updated_at": fresh[s.name].updated_at.isoformat() if s.name in fresh else None,
                "delay_seconds": fresh[s.name].delay if s.name in fresh else None,
                "problem": s.problem,
            }
            for s in states
        ]
        click.echo(json.dumps(rows))
    else:
        _print_table(
            None,
            ("table", "zone", "rows", "last update", "delay"),
            [
                (
                    s.name,
                    s.zone,
                    s.snapshot.rows if s.snapshot else 0,
                    f"{fresh[s.name].updated_at:%Y-%m-%d %H:%M:%S} UTC" if s.name in fresh else "never",
                    f"{fresh[s.name].delay:.2f}s" if s.name in fresh and fresh[s.name].delay is not None else "",
                )
                if s.problem is None
                else (s.name, s.zone, None, "unreadable", "")
                for s in states
            ],
        )
    bad = [s for s in states if s.problem]
    if bad:
        raise StediError(f"{len(bad)} table(s) cannot be read: " + "; ".join(s.problem for s in bad))
    if max_delay is not None:
        from stedi.watch import Freshness

        late = stale([fresh.get(s.name, Freshness(s.name, None, None)) for s in states if s.zone == "curated"], max_delay)
        if late:
            raise StediError(f"stale beyond {max_delay:g}s: " + "; ".join(late))


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _when(ms: int) -> str:
    """An epoch-milliseconds instant as a person reads it."""
    from datetime import UTC, datetime

    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M:%S} UTC"


def _system(obj: _Context, table: str) -> None:
    """Refuse, in one line, a reader limited to a zone: ``table`` is a system table."""
    if obj.settings.zone != "all":
        raise StediError(f"{table} is a system table; a reader limited to the {obj.settings.zone} zone does not see it")


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True, help="How many recent runs.")
@click.option("--run", "run_id", default=None, help="Show this run job by job, with its rules' counts.")
@warehouse_options
@click.pass_obj
@_fail_cleanly
def runs(obj: _Context, limit: int, run_id: str | None) -> None:
    """Show the recent runs (from the run_log table), or one run job by job.

    \b
    Examples:
      stedi-etl runs
      stedi-etl runs --run run-20261123T101500-1a2b3c
    """
    from stedi.query import run as run_sql

    _system(obj, "run_log")
    if run_id is None:
        rows = run_sql(
            obj.settings,
            f"""
            SELECT run_id, min(started_at) AS started_at, min(status) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'updated') AS updated, sum(rows_out)::BIGINT AS rows_out,
                   sum(rows_quarantined)::BIGINT AS quarantined, round(sum(seconds), 2) AS seconds, any_value(error) AS error
            FROM run_log GROUP BY run_id ORDER BY started_at DESC, run_id DESC LIMIT {limit}
            """,
        ).to_pylist()
        _print_table(
            "recent runs",
            ("run", "started", "status", "jobs updated", "rows out", "quarantined", "seconds"),
            [
                (
                    r["run_id"],
                    f"{r['started_at']:%Y-%m-%d %H:%M:%S}",
                    f"failed: {r['error']}" if r["failed"] else "ok",
                    r["updated"],
                    r["rows_out"],
                    r["quarantined"],
                    r["seconds"],
                )
                for r in rows
            ],
        )
        return
    from stedi.contracts import sql_literal

    rows = run_sql(obj.settings, f"SELECT * FROM run_log WHERE run_id = {sql_literal(run_id)} ORDER BY job").to_pylist()
    if not rows:
        raise StediError(f"no run {run_id!r} in run_log; `stedi-etl runs` lists the recent ones")
    _print_table(
        f"run {run_id} ({rows[0]['consent_scope']})",
        ("job", "status", "rows in", "rows out", "quarantined", "out of scope", "rules (passed/failed)", "output snapshot"),
        [
            (
                r["job"],
                r["status"] if r["status"] != "failed" else f"failed: {r['error']}",
                r["rows_in"],
                r["rows_out"],
                r["rows_quarantined"],
                r["rows_out_of_scope"],
                ", ".join(
                    f"{name} {v['passed']}/{v['failed']} ({v['action']})" for name, v in json.loads(r["rule_results"] or "{}").items()
                ),
                r["output_snapshot_id"],
            )
            for r in rows
        ],
    )


@cli.command()
@click.option("--table", "target", default=None, help="Only rows meant for this table.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many rows, newest first.")
@warehouse_options
@click.pass_obj
@_fail_cleanly
def quarantine(obj: _Context, target: str | None, limit: int) -> None:
    """Show what was set aside and why: a count per table and reason, then the newest rows.

    \b
    Examples:
      stedi-etl quarantine
      stedi-etl quarantine --table accelerometer_trusted --limit 50
    """
    from stedi.contracts import contract, sql_literal
    from stedi.query import run as run_sql

    _system(obj, "quarantine")
    where = ""
    if target is not None:
        contract(target)  # a clear error for an unknown table
        where = f"WHERE target_table = {sql_literal(target)}"
    counts = run_sql(
        obj.settings, f"SELECT target_table, reason, count(*) AS n FROM quarantine {where} GROUP BY ALL ORDER BY n DESC, reason"
    ).to_pylist()
    if not counts:
        _console().print(f"nothing was set aside{f' for {target}' if target else ''}")
        return
    _print_table("set aside, by reason", ("table", "reason", "rows"), [(r["target_table"], r["reason"], r["n"]) for r in counts])
    rows = run_sql(
        obj.settings,
        f"SELECT * FROM quarantine {where} ORDER BY quarantined_at DESC, source_file, line_number LIMIT {limit}",
    ).to_pylist()
    _print_table(
        "newest rows",
        ("table", "reason", "file", "line", "raw"),
        [
            (r["target_table"], r["reason"], r["source_file"], r["line_number"], _clip(r["raw"]))
            for r in rows
        ],
    )


def _clip(text: str | None, width: int = 120) -> str | None:
    return text if text is None or len(text) <= width else text[: width - 3] + "..."


@cli.command()
@warehouse_options
@click.pass_obj
@_fail_cleanly
def audit(obj: _Context) -> None:
    """Check the warehouse against the privacy rules; exit 1 with the list of violations.

    \b
    Checks:
      - no customer without research consent (never given, withdrawn) or erased by forget,
        nor their device, in a trusted or curated table
      - no identifying column or email-shaped value in a curated table
      - every machine_learning_curated row pairs one customer's own readings
      - under since-consent, no reading taken before the customer's consent
      - every raw file of the landing area is in the manifest, present, of the recorded size
    Every run ends with the same audit.

    \b
    Example:
      stedi-etl audit
    """
    from stedi.audit import audit as run_audit

    found = run_audit(obj.reader, obj.reader.keys(create=False))
    _fail_on(found, f"the audit found {len(found)} privacy violation(s)")
    _console().print("audit passed: no privacy violation found")


def _finite(value: float | None) -> float | None:
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds")
    return value
