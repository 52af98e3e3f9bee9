"""The long-lived commands: watch (continuous ingestion) and maintain (compaction, expiry)."""

from __future__ import annotations

import signal
import sys
import time

import click

from stedi.cli.app import _Context, _fail_cleanly, cli
from stedi.cli.output import _console


def _batch_line(batch) -> str:
    if batch.error:
        return f"micro-batch failed, nothing of it kept (tried again later): {batch.error}"
    skipped = f" ({batch.skipped} already ingested, skipped)" if batch.skipped else ""
    delay = f"; delay {batch.delay:.2f}s" if batch.delay is not None else ""
    return (
        f"{datetime_now()} micro-batch: {batch.files} file(s){skipped}, {batch.rows_landed} row(s) landed, "
        f"{batch.rows_quarantined} quarantined, {batch.tables_updated} table(s) updated in {batch.seconds:.2f}s{delay}"
    )


def datetime_now() -> str:
    from datetime import UTC, datetime

    return f"{datetime.now(UTC):%H:%M:%S}"


def _maintenance_line(summary) -> str:
    rewritten = sum(c.files_before for c in summary.compacted)
    tables = ", ".join(c.table for c in summary.compacted) if 0 < len(summary.compacted) < 3 else f"{len(summary.compacted)} table(s)"
    return (
        f"{datetime_now()} maintenance: {rewritten} small file(s) of {tables} compacted, "
        f"{summary.snapshots_expired} older snapshot(s) expired, {summary.files_deleted} file(s) deleted in {summary.seconds:.2f}s"
    )


#: A second Ctrl-C counts as one this long after the first (a press repeated sooner is the same press).
SECOND_PRESS_S = 0.5


@cli.command()
@click.argument("source")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between two looks at SOURCE when no file-system event comes (the only looks for S3).")
@click.option("--settle", type=click.FloatRange(min=0.0), default=0.5, show_default=True,
              help="Seconds a local file must stay unchanged (size and modification time) to be complete.")
@click.option("--max-batch-files", type=click.IntRange(min=1), default=100, show_default=True,
              help="At most this many files in one micro-batch.")
@click.option("--once", is_flag=True, help="Take the files complete now, in micro-batches, then exit (for schedulers).")
@click.option("--maintain-idle", type=click.FloatRange(min=0.0), default=30.0, show_default=True,
              help="Seconds without new files before compacting small files and applying the retention.")
@click.option("--max-files", type=click.IntRange(min=2), default=32, show_default=True,
              help="Between micro-batches, compact the table reading the most data files once it reads more than this.")
@click.pass_obj
@_fail_cleanly
def watch(obj: _Context, source: str, interval: float, settle: float, max_batch_files: int, once: bool,
          maintain_idle: float, max_files: int) -> None:
    """Watch SOURCE and ingest each new file once complete, running the jobs after each micro-batch.

    SOURCE is laid out as for `ingest` (a folder or s3://bucket/prefix). A local file is complete
    once unchanged for --settle seconds (write under a hidden name, or with a suffix other than
    .json, and rename it when done, if writing takes longer); an S3 object once listed. A file is
    taken once, whatever its name (its content is recorded in ingest_manifest), and a watch
    stopped in any way starts again where it was. Each micro-batch prints one line: files, rows
    landed and quarantined, tables updated, seconds, and the delay from its oldest file being
    complete to its rows committed. The writers' lock is held only while a micro-batch commits.
    SIGTERM or Ctrl-C finish the micro-batch in progress and exit (0, or 130 for Ctrl-C); a second
    Ctrl-C interrupts it (what it had not committed is rolled back; the next watch finishes it).

    \b
    Examples:
      stedi-etl watch inbox/
      stedi-etl watch s3://my-bucket/stedi-landing/ --interval 5
      stedi-etl watch --once inbox/     # from cron
    """
    from stedi import resources

    resources.long_lived()  # before the engines load: their allocators told to give memory back
    from stedi.watch import Options, SecondPress, Watcher

    out = _console()
    options = Options(interval=interval, settle=settle, max_batch_files=max_batch_files, once=once,
                      maintain_idle=maintain_idle, max_files=max_files, finish_interrupted=True)
    watcher = Watcher(obj.warehouse, source, obj.keys(create=True), options,
                      report=lambda batch: (out.print(_batch_line(batch), soft_wrap=True), sys.stdout.flush()),
                      maintained=lambda summary: (out.print(_maintenance_line(summary), soft_wrap=True), sys.stdout.flush()))
    how: list[str] = []
    first_at = 0.0

    def on_signal(signum, frame):
        nonlocal first_at
        if how and signum == signal.SIGINT:
            # A second Ctrl-C abandons the batch in progress (any other KeyboardInterrupt is a
            # library's on the first press: the watcher does that step again, see Options).
            if time.monotonic() - first_at >= SECOND_PRESS_S:
                raise SecondPress
            return
        how.append("SIGTERM" if signum == signal.SIGTERM else "Ctrl-C")
        first_at = time.monotonic()
        watcher.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        batches = watcher.serve()
    except SecondPress:
        click.echo("watch interrupted by a second Ctrl-C: what the micro-batch in progress had not committed was rolled back; "
                   "the next watch finishes it", err=True)
        sys.exit(130)
    except KeyboardInterrupt:  # a library's, on the first press, outside a micro-batch
        batches = watcher.batches
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if how:
        click.echo(f"watch stopped by {how[0]} after {batches} micro-batch(es); every batch taken is committed", err=True)
        if how[0] == "Ctrl-C":
            sys.exit(130)
        return
    out.print(f"nothing more complete under {source}: {batches} micro-batch(es) taken")


@cli.command()
@click.pass_obj
@_fail_cleanly
def maintain(obj: _Context) -> None:
    """Compact small data files and expire older snapshots of every table.

    Each table's small files (many micro-batches of `watch`) are rewritten into few large ones,
    rows unchanged, as one Iceberg snapshot; then every snapshot but the current one is expired and
    the files only they used are deleted. `watch` does the same when idle. Holds the writers' lock.

    \b
    Example:
      stedi-etl maintain
    """
    from stedi.compaction import maintain as run_maintain

    _console().print(_maintenance_line(run_maintain(obj.warehouse, obj.keys(create=False))).split(" ", 1)[1])
