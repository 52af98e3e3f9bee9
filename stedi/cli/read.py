"""The commands that read the warehouse: sql, tables, runs, quarantine, audit."""

from __future__ import annotations

import json
import sys

import click

from stedi.cli.app import _Context, _fail_cleanly, cli
from stedi.cli.output import _console, _fail_on, _print_table
from stedi.errors import StediError


@cli.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.pass_obj
@_fail_cleanly
def sql(obj: _Context, query: str, fmt: str) -> None:
    """Run QUERY through DuckDB over the current snapshot of every table.

    Each table is visible under its own name (customer_landing ... machine_learning_curated,
    quarantine, ingest_manifest).

    \b
    Examples:
      stedi-etl sql "SELECT count(*) FROM machine_learning_curated"
      stedi-etl sql --format csv "SELECT * FROM customers_curated LIMIT 10"
    """
    from stedi.query import sql as run_sql

    result = run_sql(obj.warehouse, query)
    if fmt == "csv":
        import pyarrow.csv as pacsv

        sink = sys.stdout.buffer
        pacsv.write_csv(result, sink)
        sink.flush()
    elif fmt == "json":
        click.echo(json.dumps(result.to_pylist(), default=str, indent=None))
    else:
        _print_table(None, tuple(result.column_names), [tuple(r.values()) for r in result.to_pylist()])
        _console().print(f"{result.num_rows} row(s)")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--max-delay",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Exit 1 if a curated table is staler: its last update older than SECONDS, unless a watch "
    "(`stedi-etl watch`) brought it its last files within SECONDS of their arrival. For monitoring.",
)
@click.pass_obj
@_fail_cleanly
def tables(obj: _Context, fmt: str, max_delay: float | None) -> None:
    """List every table with its zone, row count, last update and the delay of its last micro-batch.

    The delay is that of `stedi-etl watch`: from the micro-batch's oldest file being complete in the
    source to its rows committed to the table.

    \b
    Examples:
      stedi-etl tables
      stedi-etl tables --max-delay 60   # exit 1 when the curated tables are staler
    """
    from stedi.contracts import ZONES, load_contracts
    from stedi.watch import freshness, stale

    wh = obj.warehouse
    infos = sorted((wh.info(n) for n in load_contracts()), key=lambda i: (ZONES.index(i.zone), i.name))
    fresh = {i.name: freshness(wh, i.name) for i in infos}
    if fmt == "json":
        rows = [
            {
                "table": i.name,
                "zone": i.zone,
                "rows": i.rows,
                "updated_at": fresh[i.name].updated_at.isoformat() if fresh[i.name].updated_at else None,
                "delay_seconds": fresh[i.name].delay,
            }
            for i in infos
        ]
        click.echo(json.dumps(rows))
    else:
        _print_table(
            None,
            ("table", "zone", "rows", "last update", "delay"),
            [
                (
                    i.name,
                    i.zone,
                    i.rows,
                    f"{fresh[i.name].updated_at:%Y-%m-%d %H:%M:%S} UTC" if fresh[i.name].updated_at else "never",
                    f"{fresh[i.name].delay:.2f}s" if fresh[i.name].delay is not None else "",
                )
                for i in infos
            ],
        )
    if max_delay is not None:
        late = stale([fresh[i.name] for i in infos if i.zone == "curated"], max_delay)
        if late:
            raise StediError(f"stale beyond {max_delay:g}s: " + "; ".join(late))


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True, help="How many recent runs.")
@click.option("--run", "run_id", default=None, help="Show this run job by job, with its rules' counts.")
@click.pass_obj
@_fail_cleanly
def runs(obj: _Context, limit: int, run_id: str | None) -> None:
    """Show the recent runs (from the run_log table), or one run job by job.

    \b
    Examples:
      stedi-etl runs
      stedi-etl runs --run run-20261123T101500-1a2b3c
    """
    from stedi.query import sql as run_sql

    if run_id is None:
        rows = run_sql(
            obj.warehouse,
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

    rows = run_sql(obj.warehouse, f"SELECT * FROM run_log WHERE run_id = {sql_literal(run_id)} ORDER BY job").to_pylist()
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
    from stedi.query import sql as run_sql

    where = ""
    if target is not None:
        contract(target)  # a clear error for an unknown table
        where = f"WHERE target_table = {sql_literal(target)}"
    counts = run_sql(
        obj.warehouse, f"SELECT target_table, reason, count(*) AS n FROM quarantine {where} GROUP BY ALL ORDER BY n DESC, reason"
    ).to_pylist()
    if not counts:
        _console().print(f"nothing was set aside{f' for {target}' if target else ''}")
        return
    _print_table("set aside, by reason", ("table", "reason", "rows"), [(r["target_table"], r["reason"], r["n"]) for r in counts])
    rows = run_sql(
        obj.warehouse,
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

    found = run_audit(obj.warehouse, obj.keys(create=False))
    _fail_on(found, f"the audit found {len(found)} privacy violation(s)")
    _console().print("audit passed: no privacy violation found")


