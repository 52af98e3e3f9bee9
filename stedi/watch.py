"""Continuous ingestion: watch a source, take each file once it is complete, and run after each
micro-batch, in one long-lived process.

The source (a folder or ``s3://bucket/prefix``, laid out as for ``ingest``) is looked at
(:class:`stedi.inbox.Inbox`: which files are complete) on every file-system event (``watchfiles``)
and every ``interval`` seconds whatever happens (events can be missed: network folders,
overflowing queues).

Each micro-batch (at most ``max_batch_files`` complete files) is ingested (:func:`stedi.ingest.ingest_files`)
and then run incrementally (:func:`stedi.runner.run`) under one hold of the writers' lock, which is
released between batches: other writers (``forget``, a manual ``ingest``) go in between. The ingest
manifest is the checkpoint: a file is taken once whatever its name (by content), and a watch
killed at any moment starts again where the warehouse is (a first run catches up on what an
interrupted batch landed). When idle it compacts small files and expires older snapshots
(:mod:`stedi.compaction`), and between batches it does so for the table with the most snapshots
once it reads more than ``max_files`` data files. Every snapshot a batch writes says when its
oldest file was complete (:data:`ARRIVED`): the delay from arrival to commit shows in ``tables``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stedi import properties, resources
from stedi.errors import SourceError, StediError, first_line
from stedi.inbox import Inbox
from stedi.ingest import RawFile, ingest_files
from stedi.storage import storage_error

if TYPE_CHECKING:
    from stedi.compaction import MaintenanceSummary
    from stedi.keys import Keys
    from stedi.runner import RunSummary
    from stedi.warehouse import Warehouse

#: Snapshot property of every table a micro-batch writes: when its oldest file was complete (epoch ms).
ARRIVED = properties.ARRIVED
#: Pause after a micro-batch when more are waiting: another writer polling for the lock gets it.
FAIR_GAP_S = 0.2


@dataclass(frozen=True)
class Options:
    interval: float = 1.0  # seconds between looks when nothing happens
    settle: float = 0.5  # seconds a local file must stay unchanged to be complete
    max_batch_files: int = 100
    once: bool = False  # take what is complete now, then stop
    maintain_idle: float = 30.0  # seconds idle before maintaining every table (compaction, expiry)
    max_files: int = 32  # after a micro-batch, the table reading more data files than this is maintained
    events: bool = True  # file-system events (local sources)
    #: The caller's SIGINT handler stops the watch (:meth:`Watcher.stop`) and raises :class:`SecondPress`
    #: only on a second press: a plain KeyboardInterrupt is then a library's, the step it hit is done again.
    finish_interrupted: bool = False


class SecondPress(KeyboardInterrupt):
    """A second Ctrl-C: the micro-batch in progress is abandoned (what it had not committed is rolled back)."""


@dataclass
class Batch:
    """One micro-batch, as the line it prints says."""

    files: int  # files taken (new content)
    skipped: int  # complete files already ingested (same content under another name, or before)
    rows_landed: int
    rows_quarantined: int
    tables_updated: int
    seconds: float
    delay: float | None  # seconds from the oldest file being complete to its rows committed
    error: str | None = None
    run: RunSummary | None = None


class Watcher:
    """A long-lived watch of one source into one warehouse. :meth:`serve` loops until :meth:`stop`."""

    def __init__(
        self,
        wh: Warehouse,
        source: str,
        keys: Keys,
        options: Options = Options(),
        report: Callable[[Batch], None] = lambda batch: None,
        maintained: Callable[[MaintenanceSummary], None] = lambda summary: None,
    ):
        self.wh, self.keys, self.options = wh, keys, options
        self.inbox = Inbox(source, options.settle)
        self.report, self.maintained = report, maintained
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self.batches = 0
        self.interrupted = 0  # steps a library's KeyboardInterrupt stopped midway, done again
        self._since_maintenance = 0
        self._idle_since: float | None = None

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def serve(self) -> int:
        """Loop until stopped (or, with ``once``, until nothing complete is left); returns the number
        of micro-batches that took files."""
        from stedi import runner

        runner._load_libraries("pyiceberg.io.pyarrow", "polars")  # once, not in the first batch's delay
        self.inbox.looks = 0  # the first look lists everything
        self._finishing(self._catch_up)
        events = self._events() if self.options.events and self.inbox.local and not self.options.once else None
        try:
            while not self.stopping.is_set():
                complete, writing = self.inbox.look()
                if complete:
                    self._idle_since = None
                    self.micro_batch(complete[: self.options.max_batch_files])
                    self._finishing(self.upkeep)
                    if len(complete) > self.options.max_batch_files or writing:
                        self._wake.wait(FAIR_GAP_S)  # let a waiting writer take the lock
                    continue
                if self.options.once and not writing:
                    break
                if not writing:
                    self._idle_since = self._idle_since or time.monotonic()
                    if self._since_maintenance and time.monotonic() - self._idle_since >= self.options.maintain_idle:
                        self._finishing(self.maintain)
                        continue
                self._wake.wait(min(self.options.settle, self.options.interval) if writing else self.options.interval)
                self._wake.clear()
        finally:
            if events is not None:
                self.stopping.set()
                events.join(timeout=5)
        return self.batches

    def _events(self) -> threading.Thread:
        import watchfiles

        def listen() -> None:
            try:
                for _ in watchfiles.watch(self.inbox.base, stop_event=self.stopping, debounce=50, step=20, rust_timeout=1000, yield_on_timeout=False):
                    self._wake.set()
            except Exception:  # noqa: BLE001 — events are a shortcut; the periodic looks still find everything
                return

        thread = threading.Thread(target=listen, name="stedi-watch-events", daemon=True)
        thread.start()
        return thread

    def _catch_up(self) -> None:
        """A run before the first batch: a watch killed between its ingest and its run left rows landed
        and not yet run (a run with nothing new changes nothing)."""
        from stedi.runner import run

        with self.wh.lock("stedi-etl watch"):
            if self.wh.info("ingest_manifest").snapshot_id is not None:  # nothing was ever ingested: nothing to run
                run(self.wh, self.keys)

    def micro_batch(self, complete: list[tuple[str, RawFile, float]]) -> Batch:
        """Ingest these complete files and run, under one hold of the lock; print its line."""
        started = time.perf_counter()
        files = [f for _, f, _ in complete]
        when = {(name, f.name): at for name, f, at in complete}
        taken: dict = {}
        try:
            self._finishing(lambda: self._take(complete, when, taken))
        except (StediError, OSError) as err:  # a file unreadable, the lock busy, the storage failing: later
            self.inbox.not_taken(files)
            if isinstance(err, OSError):
                err = storage_error(err, self.wh.location) if self.wh.files.remote else SourceError(f"{err.strerror or err}: {err.filename or ''}")
            batch = Batch(0, 0, 0, 0, 0, time.perf_counter() - started, None, first_line(err))
            self.report(batch)
            return batch
        self.inbox.taken(files)
        summary, result, arrived = taken["summary"], taken["result"], taken["arrived"]
        seconds = time.perf_counter() - started
        batch = Batch(
            files=len(summary.ingested),
            skipped=len(summary.skipped),
            rows_landed=sum(f.rows_landed for f in summary.ingested),
            rows_quarantined=sum(f.rows_quarantined for f in summary.ingested),
            tables_updated=sum(r.status == "updated" for r in result.results) if result else 0,
            seconds=seconds,
            delay=time.time() - arrived if arrived is not None else None,
            run=result,
        )
        if summary.ingested:
            self.batches += 1
            self._since_maintenance += 1
        self.report(batch)
        resources.release()  # (after the line: the rows are committed, the delay measured)
        return batch

    def _take(self, complete: list[tuple[str, RawFile, float]], when: dict, taken: dict) -> None:
        """Ingest and run under one hold of the lock; what is done is kept in ``taken`` (done again,
        a step already committed is not repeated)."""
        from stedi.runner import run

        taken["tries"] = taken.get("tries", 0) + 1
        oldest = min(when.values())
        with self.wh.lock("stedi-etl watch"):
            if "summary" not in taken:
                taken["summary"] = ingest_files(self.wh, [(name, f) for name, f, _ in complete], self.keys, {ARRIVED: str(int(oldest * 1000))})
            summary = taken["summary"]
            # the oldest file taken (not one found ingested before, say by a watch started again)
            taken["arrived"] = min((when.get((r.source, r.file), oldest) for r in summary.ingested), default=None)
            stamps = {ARRIVED: str(int((taken["arrived"] or oldest) * 1000))}
            # done again: an ingest interrupted after its commit found its files taken; run what it landed
            taken["result"] = run(self.wh, self.keys, stamps=stamps) if summary.ingested or taken["tries"] > 1 else None

    def _finishing(self, step: Callable[[], object]) -> object:
        """Run ``step``; with ``finish_interrupted``, again when a library interrupted it on the first
        Ctrl-C, which asks the work in progress to finish. Polars aborts a query it is running on any
        SIGINT (its own signal hook, whatever Python's handler does), so the first press can stop a
        step midway; every step (ingest, run, maintenance) is all or nothing and done again safely."""
        while True:
            try:
                return step()
            except KeyboardInterrupt as interrupted:
                if isinstance(interrupted, SecondPress) or not self.options.finish_interrupted:
                    raise
                self.interrupted += 1

    def maintain(self) -> MaintenanceSummary:
        """Every table compacted and the retention applied (when idle)."""
        from stedi.compaction import maintain

        summary = maintain(self.wh, self.keys)
        self._since_maintenance = 0
        self.maintained(summary)
        resources.release()
        return summary

    def upkeep(self) -> None:
        """Between micro-batches, the one table reading the most data files, once more than
        ``max_files``: a long stream of batches never idle stays fast to read, a table at a time
        (each its own short hold of the lock)."""
        from stedi.compaction import maintain, most_files

        name = most_files(self.wh, self.options.max_files)  # the tables as the batch left them
        if name is not None:
            self.maintained(maintain(self.wh, self.keys, tables=[name]))
            resources.release()


# -- freshness ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Freshness:
    table: str
    updated_at: datetime | None  # when its rows last changed (a compaction is no change)
    delay: float | None  # seconds from the last micro-batch's files arriving to their commit


def freshness(wh: Warehouse, name: str) -> Freshness:
    """When table ``name``'s rows last changed, and the delay of the micro-batch that changed them."""
    snap = wh.table(name).current_snapshot()
    if snap is None:
        return Freshness(name, None, None)
    return freshness_of(name, snap.summary.additional_properties if snap.summary else {}, snap.timestamp_ms)


def freshness_of(name: str, summary: dict[str, str], timestamp_ms: int) -> Freshness:
    """:func:`freshness` from a snapshot's summary and time, however they were read."""
    from stedi.compaction import DATA_AT

    at_ms = int(summary.get(DATA_AT) or timestamp_ms)
    delay = (at_ms - int(summary[ARRIVED])) / 1000 if ARRIVED in summary else None
    return Freshness(name, datetime.fromtimestamp(at_ms / 1000, tz=UTC), delay)


def stale(tables: list[Freshness], max_delay: float, now: datetime | None = None) -> list[str]:
    """Why each of these tables is staler than ``max_delay`` seconds (none: fresh). A table is fresh
    when its last update is at most that old, or when the micro-batch that last updated it had at
    most that delay (a watch keeps it fresh; no file came since)."""
    now = now or datetime.now(UTC)
    late = []
    for t in tables:
        if t.updated_at is None:
            late.append(f"{t.table} was never updated")
        elif t.delay is not None and t.delay > max_delay:
            late.append(f"{t.table}'s last micro-batch took {t.delay:.1f}s from arrival to commit")
        elif t.delay is None and (now - t.updated_at).total_seconds() > max_delay:
            late.append(f"{t.table} was last updated {(now - t.updated_at).total_seconds():.0f}s ago, by no watch")
    return late
