"""The commands that change the warehouse: ingest, run, forget, rotate-key."""

from __future__ import annotations

import sys

import click

from stedi.cli.app import _Context, _fail_cleanly, cli
from stedi.cli.output import _console, _fail_on, _file_progress, _is_terminal, _print_table, _progress
from stedi.config import CONSENT_SCOPES
from stedi.errors import StediError, first_line


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
        with _file_progress() as progress:
            summary = run_ingest(obj.warehouse, source, obj.keys(create=True), progress=progress)
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
    from stedi.jobs import load_jobs
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
    kept = summary.retained
    if kept.departed or kept.snapshots_expired:
        _console().print(
            f"retention: {kept.departed} customer(s) withdrew, {kept.snapshots_expired} old snapshot(s) expired and "
            f"{kept.files_deleted} file(s) deleted (time travel keeps {obj.settings.retention_days} day(s), never a withdrawn customer)"
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

    _whole_warehouse(obj, "forget")
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

    _whole_warehouse(obj, "rotate-key")
    if not yes and _is_terminal() and sys.stdin.isatty():
        click.confirm(f"change the pseudonym key of {obj.settings.location} and rebuild every table?", abort=True)
    with obj.warehouse.lock("stedi-etl rotate-key"):
        keys, summary = run_rotate(obj.warehouse)
    _console().print(
        f"pseudonym key changed to key {keys.key_id}; {sum(r.status == 'updated' for r in summary.results)} table(s) "
        f"rebuilt under it in {summary.seconds:.2f}s"
        + ("; now set STEDI_PSEUDONYM_KEY to the new key" if keys.from_environment else "")
    )


def _whole_warehouse(obj: _Context, command: str) -> None:
    """``forget`` and ``rotate-key`` look people up by email and print their pseudonyms (a dry run
    too): not for a reader limited to a zone, for whom an email must not lead to a customer_key."""
    if obj.settings.zone != "all" or obj.settings.tables:
        raise StediError(
            f"{command} needs the whole warehouse: a reader limited to the {obj.settings.zone} zone may not look people up "
            "(it would link an email to its customer_key)"
        )
