"""``stedi-etl``: the command line. A thin shell over the library: it resolves the settings once,
opens the warehouse into ``ctx.obj`` and maps every :class:`~stedi.errors.StediError` to one line on
stderr and exit code 1.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from pathlib import Path

import click

from stedi.config import CONSENT_SCOPES
from stedi.errors import StediError, first_line
from stedi.storage import storage_error

EPILOG_WAREHOUSE = (
    "The warehouse defaults to ./lakehouse (or STEDI_WAREHOUSE) and is created on first use. "
    "--warehouse s3://bucket/prefix keeps it in object storage (endpoint, region and credentials from the "
    "standard AWS variables and files) with the catalog named by --catalog-uri."
)


def _fail_cleanly(fn):
    """Turn expected errors into one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StediError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:
            ctx = click.get_current_context(silent=True)
            wh = getattr(ctx.obj, "_wh", None) if ctx else None
            if wh is not None and wh.files.remote:  # an endpoint down, a refused request, ...
                raise click.ClickException(str(storage_error(err, wh.location))) from None
            raise click.ClickException(f"{err.strerror or first_line(err)}: {err.filename or ''}".rstrip(": ")) from None

    return wrapper


class _Context:
    def __init__(self, warehouse: str | None, catalog_uri: str | None = None):
        self._given = {"warehouse": warehouse, "catalog_uri": catalog_uri}
        self._wh = None

    @functools.cached_property
    def settings(self):
        """Resolved when a command needs them (inside its error handling; `--help` reads nothing)."""
        from stedi.config import resolve

        return resolve(**self._given)

    @property
    def warehouse(self):
        if self._wh is None:
            from stedi.warehouse import Warehouse

            self._wh = Warehouse.open(self.settings)
        return self._wh

    def keys(self, *, create: bool):
        """The warehouse's keys, checked (a writer may make those of a new warehouse)."""
        return self.warehouse.keys(create=create)


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # On a terminal rich fits the screen; into a pipe or file, print tables whole.
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 240)


@click.group(epilog=EPILOG_WAREHOUSE)
@click.option(
    "--warehouse",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Warehouse folder, or s3://bucket/prefix. [default: $STEDI_WAREHOUSE or ./lakehouse]",
)
@click.option(
    "--catalog-uri",
    default=None,
    metavar="URI",
    help="SQLAlchemy URI of the Iceberg catalog, e.g. postgresql+psycopg://user:password@host/db to share "
    "it, or glue://DATABASE for the AWS Glue Data Catalog (Athena reads the tables there). "
    "[default: $STEDI_CATALOG_URI, the warehouse's stedi.toml, or a SQLite file in the warehouse]",
)
@click.version_option(package_name="stedi")
@click.pass_context
def cli(ctx: click.Context, warehouse: str | None, catalog_uri: str | None) -> None:
    """stedi: a privacy-first lakehouse for STEDI Step Trainer data.

    \b
    Typical session:
      stedi-etl ingest sample_data
      stedi-etl run
      stedi-etl sql "SELECT count(*) FROM machine_learning_curated"
    """
    ctx.obj = _Context(warehouse, catalog_uri)


@cli.command()
@click.argument("source")
@click.option("--run", "then_run", is_flag=True, help="Then run every job, in the same process (as `stedi-etl run`).")
@click.pass_obj
@_fail_cleanly
def ingest(obj: _Context, source: str, then_run: bool) -> None:
    """Copy the raw files under SOURCE into the warehouse and land their records.

    SOURCE is a folder or s3://bucket/prefix, laid out like the STEDI starter data
    (customer/landing/*.json, accelerometer/landing/*.json, step_trainer/landing/*.json) or like
    the public bucket (customers/, accelerometer/, step_trainer/ holding the files). A file whose content was
    ingested before, under any name, is skipped. Lines that are not JSON objects, lack a required
    field or hold a wrongly typed value go to the quarantine table.

    \b
    Examples:
      stedi-etl ingest ../shared/stedi-starter
      stedi-etl ingest --run new-files/      # ingest, then run the jobs
      stedi-etl ingest s3://my-bucket/stedi-landing/
    """
    from stedi.ingest import ingest as run_ingest

    with obj.warehouse.lock("stedi-etl ingest --run" if then_run else "stedi-etl ingest"):  # one hold for both steps
        summary = run_ingest(obj.warehouse, source, obj.keys(create=True))
        _print_ingest(summary)
        if then_run:
            _run_jobs(obj)


def _print_ingest(summary) -> None:
    _print_table(
        f"ingest {summary.batch_id}",
        ("file", "source", "status", "landed", "quarantined", "suppressed"),
        [
            (
                f.file,
                f.source,
                f.status if f.status == "ingested" else f"skipped ({f.detail})",
                f.rows_landed,
                f.rows_quarantined,
                f.rows_suppressed,
            )
            for f in summary.files
        ],
    )
    landed = sum(f.rows_landed for f in summary.files)
    bad = sum(f.rows_quarantined for f in summary.files)
    suppressed = sum(f.rows_suppressed for f in summary.files)
    if summary.reasons:
        _print_table("set aside, by reason", ("reason", "lines"), sorted(summary.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    _console().print(
        f"{len(summary.ingested)} file(s) ingested, {len(summary.skipped)} skipped; "
        f"{landed} row(s) landed, {bad} quarantined, {suppressed} skipped as erased people"
    )


@cli.command()
@click.option("--full-refresh", is_flag=True, help="Rebuild every table, even those whose inputs did not change.")
@click.option(
    "--consent-scope",
    type=click.Choice(CONSENT_SCOPES),
    default=None,
    help="Readings kept for a consenting customer: all of them, or those taken since consent. "
    "[default: the warehouse's stedi.toml, else all-history]",
)
@click.option(
    "--engine",
    type=click.Choice(["polars", "spark"]),
    default="polars",
    show_default=True,
    help="Where the transforms run: Polars in this process, or PySpark (every table rebuilt).",
)
@click.option(
    "--spark-master",
    default=None,
    metavar="URL",
    help="With --engine spark: local[*] (the default) or spark://HOST:PORT of a standalone cluster.",
)
@click.pass_obj
@_fail_cleanly
def run(obj: _Context, full_refresh: bool, consent_scope: str | None, engine: str, spark_master: str | None) -> None:
    """Run the jobs of pipelines/ in dependency order.

    \b
    customer_landing_to_trusted       -> customer_trusted
    accelerometer_landing_to_trusted  -> accelerometer_trusted
    customer_trusted_to_curated       -> customers_curated
    step_trainer_landing_to_trusted   -> step_trainer_trusted
    machine_learning_curated          -> machine_learning_curated

    customer_landing_to_consent_history -> customer_consent_history

    Every output is committed at the end, all or nothing. A job whose inputs, code and settings did
    not change since its last run is skipped, so running again with nothing new changes no table.
    Under the since-consent scope, accelerometer and step trainer readings taken before the
    customer's shareWithResearchAsOfDate are kept out of every trusted and curated table.

    \b
    Examples:
      stedi-etl run
      stedi-etl run --full-refresh
      stedi-etl run --consent-scope since-consent
      stedi-etl run --engine spark --spark-master spark://10.0.0.5:7077
    """
    if spark_master and engine != "spark":
        raise click.UsageError("--spark-master needs --engine spark")
    _run_jobs(obj, full_refresh=full_refresh, consent_scope=consent_scope, engine=engine, spark_master=spark_master)


def _run_jobs(
    obj: _Context,
    *,
    full_refresh: bool = False,
    consent_scope: str | None = None,
    engine: str = "polars",
    spark_master: str | None = None,
) -> None:
    from stedi.errors import AuditError
    from stedi.runner import load_jobs
    from stedi.runner import run as run_jobs

    on = None
    if engine == "spark":
        on = _spark_engine(obj, spark_master)
    try:
        with _progress(total=len(load_jobs())) as notify:
            summary = run_jobs(
                obj.warehouse, obj.keys(create=True), engine=on, progress=notify, full_refresh=full_refresh, consent_scope=consent_scope
            )
    except AuditError as err:
        _fail_on(err.violations, str(err))
    incremental = summary.mode == "incremental"
    _print_table(
        f"run {summary.run_id}" + (" (incremental)" if incremental else ""),
        ("job", "output", "status", "rows in", "rows written", *(("rows removed",) if incremental else ()), "quarantined", "seconds"),
        [
            (r.job, r.output, r.status, r.rows_in, r.rows_out, *((r.rows_removed,) if incremental else ()), r.rows_quarantined, round(r.seconds, 2))
            for r in summary.results
        ],
    )
    if incremental:
        _console().print(
            f"incremental: {summary.changed_customers} customer(s) recomputed whole (new records, first readings, "
            f"shared devices), {summary.reading_customers} with new readings only; `run --full-refresh` rebuilds everything"
        )
    if summary.uncertain:
        _console().print(
            f"{summary.uncertain} customer(s) kept out: their latest record cannot be read with certainty (a later "
            "record was set aside at ingest, or its consent is not a valid date); `stedi-etl quarantine` shows why"
        )
    if summary.unattributable:
        _console().print(
            f"{summary.unattributable} step trainer reading(s) kept out: their device is registered to several "
            "customers, so they cannot be attributed to one (see customer_landing by serialNumber)"
        )
    _console().print(
        f"consent scope {summary.consent_scope} kept {summary.out_of_scope} reading(s) out; "
        f"{'done' if summary.changed else 'nothing new: no table changed'} in {summary.seconds:.2f}s"
    )


def _spark_engine(obj: _Context, master: str | None):
    from stedi.errors import ConfigError

    try:
        from stedi import spark
    except ImportError as err:
        raise ConfigError(f"--engine spark needs PySpark: pip install 'stedi[spark]' ({err})") from err
    warehouse = obj.warehouse  # opened (or a clear line) before the seconds Spark takes to start
    try:
        session = spark.session(master or spark.DEFAULT_MASTER)
    except ConfigError:
        raise
    except Exception as err:  # no PySpark, no Java, ...
        raise ConfigError(f"cannot start Spark on {master or spark.DEFAULT_MASTER}: {first_line(err)}") from err
    return spark.SparkTables(session, warehouse)


def _fail_on(violations: list, message: str) -> None:
    """Print the audit's violations on stderr and exit 1 with ``message``, if there are any."""
    if violations:
        err = _console(stderr=True)
        for v in violations:
            err.print(f"  - {v}", soft_wrap=True)
        raise click.ClickException(f"{message}; listed above")


def _is_terminal() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def _progress(total: int):
    """A progress bar on stderr over the jobs, only on a terminal; yields the runner's callback."""
    if not _is_terminal():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task("run", total=total)

        def notify(job: str, state: str) -> None:
            bar.update(task, description=f"{job}: {state}", advance=1 if state in ("done", "unchanged") else 0)

        yield notify


def _print_table(title: str | None, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Rows as a table on stdout; numbers right-aligned, None as NULL."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    numeric = [
        any(isinstance(r[i], int | float) for r in rows) and all(r[i] is None or isinstance(r[i], int | float) for r in rows)
        for i in range(len(columns))
    ]
    for name, right in zip(columns, numeric, strict=True):
        table.add_column(name, justify="right" if right else "left", overflow="fold")  # never cut a value
    for row in rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    _console().print(table)


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
@click.pass_obj
@_fail_cleanly
def tables(obj: _Context, fmt: str) -> None:
    """List every table with its zone, row count and last update.

    \b
    Example:
      stedi-etl tables
    """
    from stedi.contracts import ZONES, load_contracts

    wh = obj.warehouse
    infos = sorted((wh.info(n) for n in load_contracts()), key=lambda i: (ZONES.index(i.zone), i.name))
    if fmt == "json":
        rows = [
            {"table": i.name, "zone": i.zone, "rows": i.rows, "updated_at": i.updated_at.isoformat() if i.updated_at else None}
            for i in infos
        ]
        click.echo(json.dumps(rows))
        return
    _print_table(
        None,
        ("table", "zone", "rows", "last update"),
        [(i.name, i.zone, i.rows, f"{i.updated_at:%Y-%m-%d %H:%M:%S} UTC" if i.updated_at else "never") for i in infos],
    )


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


@cli.command()
@click.option("--email", "emails", multiple=True, help="Email of a person to erase (repeatable; any spelling).")
@click.option(
    "--from-file",
    type=click.File("rb"),
    default=None,
    help="File of emails to erase, one a line ('-' for stdin).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be erased, and which snapshots expired; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
@click.pass_obj
@_fail_cleanly
def forget(obj: _Context, emails: tuple[str, ...], from_file, dry_run: bool, yes: bool) -> None:
    """Erase people, by email, from every table, raw file and older version of the warehouse.

    Their rows go from every table (landing, trusted, curated, quarantine, consent history); their
    records are blanked in the raw landing files, and anyone else's record that mentions them has
    the mention erased; older snapshots are expired and every file no longer used is deleted. Their
    email and serial numbers join the suppression list, as keyed hashes, so ingesting an old copy
    of the files does not bring them back. The erasure_log table records what was done, without
    the email.

    \b
    Examples:
      stedi-etl forget --email ann.a@example.com --email bob@example.com
      stedi-etl forget --from-file requests.txt
      stedi-etl forget --dry-run --email ann.a@example.com
    """
    from stedi.erasure import forget as run_forget
    from stedi.erasure import normalised_emails, read_emails

    wanted = [*emails, *(read_emails(_text_lines(from_file)) if from_file else [])]
    people = normalised_emails(wanted)  # a malformed one is an error before anything is touched
    if not dry_run and not yes and _is_terminal() and sys.stdin.isatty():
        click.confirm(f"erase {len(people)} person(s) from {obj.settings.location}, raw files included? This cannot be undone", abort=True)
    summary = run_forget(obj.warehouse, obj.keys(create=not dry_run), wanted, dry_run=dry_run)

    _print_table(
        f"forget {summary.erasure_id}" + (" (dry run: nothing changed)" if dry_run else ""),
        ("email", "customer_key", "rows removed", "rows of others rewritten", "serial numbers"),
        [
            (
                email,
                p.customer_key[:16] + "...",
                ", ".join(f"{t} {n}" for t, n in sorted(p.rows_removed.items())) or "none: matched nobody",
                ", ".join(f"{t} {n}" for t, n in sorted(p.rows_rewritten.items())) or "none",
                f"{p.serial_numbers} erased" + (f", {p.serials_kept} kept (shared with another customer)" if p.serials_kept else ""),
            )
            for email, p in zip(people, summary.people, strict=True)
        ],
    )
    unmatched = sum(not p.matched for p in summary.people)
    would = "would be " if dry_run else ""
    _console().print(
        f"{len(summary.people) - unmatched} person(s) {would}erased, {unmatched} matched nobody ({would}suppressed all the same); "
        f"{sum(summary.rows_removed().values())} row(s) {would}removed, {summary.files_rewritten} raw file(s) {would}rewritten, "
        f"{summary.names_blanked} received file name(s) {would}blanked, {summary.snapshots_expired} older snapshot(s) {would}expired"
        + ("" if dry_run else f", {summary.files_deleted} file(s) deleted")
    )


def _text_lines(stream) -> list[str]:
    """The lines of a file of emails, which must be UTF-8 text."""
    data = stream.read()
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise StediError(f"{getattr(stream, 'name', 'the file')} is not UTF-8 text (byte {err.start}): give one email a line") from None


@cli.command("rotate-key")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
@click.pass_obj
@_fail_cleanly
def rotate_key(obj: _Context, yes: bool) -> None:
    """Change the pseudonym key deliberately, then rebuild every table under the new key.

    The new key is STEDI_NEW_PSEUDONYM_KEY when set (required when the key comes from
    STEDI_PSEUDONYM_KEY: set that to the new key afterwards), else a new random key written to the
    warehouse's key file. Every customer_key changes; every past erasure still holds (the
    suppression list keeps its own key); older snapshots of the pseudonymised tables are expired,
    so time travel cannot link old and new pseudonyms.

    \b
    Example:
      stedi-etl rotate-key
    """
    from stedi.rotation import rotate_key as run_rotate

    if not yes and _is_terminal() and sys.stdin.isatty():
        click.confirm(f"change the pseudonym key of {obj.settings.location} and rebuild every table?", abort=True)
    with obj.warehouse.lock("stedi-etl rotate-key"):
        keys, summary = run_rotate(obj.warehouse)
    _console().print(
        f"pseudonym key changed to key {keys.key_id}; {sum(r.status == 'updated' for r in summary.results)} table(s) "
        f"rebuilt under it in {summary.seconds:.2f}s"
        + ("; now set STEDI_PSEUDONYM_KEY to the new key" if keys.from_environment else "")
    )


@cli.command()
@click.option("--dialect", type=click.Choice(["athena", "duckdb", "spark"]), required=True, help="Engine to write the DDL for.")
@click.option(
    "--location",
    default=None,
    help="Root the tables live under, e.g. s3://bucket/stedi [default: the warehouse folder].",
)
@click.pass_obj
@_fail_cleanly
def ddl(obj: _Context, dialect: str, location: str | None) -> None:
    """Print the DDL of every table for another engine, generated from catalog/.

    Landing tables are the raw JSON files of the landing area (for Athena: CREATE EXTERNAL TABLE
    with the JSON SerDe); trusted, curated and system tables are Iceberg tables. For Athena these
    are new, empty tables: Athena reads only Iceberg tables registered in the Glue Data Catalog, so
    to query the tables stedi writes, run stedi with --catalog-uri glue://DATABASE instead.

    \b
    Examples:
      stedi-etl ddl --dialect athena --location s3://my-bucket/stedi > athena.sql
      stedi-etl ddl --dialect duckdb | duckdb lakehouse.duckdb
    """
    from stedi.ddl import ddl as make_ddl

    click.echo(make_ddl(dialect, location or obj.settings.location), nl=False)


@cli.command()
@click.option("--customers", type=click.IntRange(min=1), required=True, help="Number of customers.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: same seed, same bytes.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write.")
@_fail_cleanly
def generate(customers: int, seed: int, out: Path) -> None:
    """Write a deterministic synthetic data set in the starter layout.

    About half the customers consent to research; each device sends 30 step trainer readings; a
    phone sends 3 accelerometer readings per step trainer reading time; many timestamps are shared
    by several customers; some customers have a later, updated record.

    \b
    Example:
      stedi-etl generate --customers 956 --seed 1 --out /tmp/stedi-1x
    """
    from stedi.generate import generate as gen

    if out.exists() and any(out.iterdir()):
        raise StediError(f"{out} is not empty; choose a new folder")
    g = gen(customers, seed, out)
    click.echo(
        f"wrote {g.files} file(s) to {out}: {g.customer_records} customer records ({g.customers} customers), "
        f"{g.accelerometer_readings} accelerometer and {g.step_trainer_readings} step trainer readings"
    )


def main() -> None:
    # Arrow's default allocator (mimalloc) returns and re-faults memory so often on large ingests that
    # the kernel time dominates; the system allocator measured 15-20 % faster end to end (BENCHMARKS.md).
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    cli(prog_name="stedi-etl")


if __name__ == "__main__":
    main()
