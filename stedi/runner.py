"""The runner: orders the jobs in ``pipelines/`` by their inputs, evaluates their transforms on an
engine, checks each output against its contract, and commits every output table at the end.

A run is all or nothing: outputs are computed first and committed last, together (see
:meth:`stedi.warehouse.Warehouse.commit_staged`). A job whose code, contract and inputs are unchanged
since the snapshot it last wrote is skipped, so a second run with nothing new changes no table.
Polars and pyarrow are imported only when a job has to run: the no-op path stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stedi import privacy, properties, quality, retention, run_log
from stedi.engines import Engine, PolarsEngine
from stedi.errors import AuditError, JobError, StediError, first_line
from stedi.evaluation import DERIVED, drop_marked, evaluate, input_state
from stedi.jobs import DEFAULT_PARAMS, PSEUDONYMS, Job, load_jobs
from stedi.warehouse import Warehouse

if TYPE_CHECKING:
    import polars as pl

    from stedi import incremental
    from stedi.keys import Keys

# -- runs on a warehouse -------------------------------------------------------------------------


@dataclass
class JobResult:
    job: str
    output: str
    status: str  # "updated" | "unchanged"
    rows_in: int
    rows_out: int
    rows_quarantined: int
    seconds: float
    rows_out_of_scope: int = 0
    rows_unattributable: int = 0
    rules: dict = field(default_factory=dict)  # rule name -> {"action", "passed", "failed"}
    rows_removed: int = 0  # an incremental run's rows deleted to be recomputed
    rows_uncertain: int = 0  # customers kept out: their latest record cannot be read with certainty


@dataclass
class RunSummary:
    run_id: str
    consent_scope: str = DEFAULT_PARAMS["consent_scope"]
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0  # the run's own time, less loading its libraries (see _load_libraries)
    mode: str = "full"  # "full": every stale table rebuilt; "incremental": see stedi.incremental
    changed_customers: int = 0  # an incremental run's customers recomputed whole
    reading_customers: int = 0  # an incremental run's customers with new readings only
    retained: retention.Retained = field(default_factory=retention.Retained)  # what retention expired after the commit

    @property
    def out_of_scope(self) -> int:
        """Readings of consenting customers that the consent scope kept out (all tables)."""
        return sum(r.rows_out_of_scope for r in self.results if r.output.endswith("_trusted"))

    @property
    def unattributable(self) -> int:
        """Readings of devices registered to several customers, kept out."""
        return sum(r.rows_unattributable for r in self.results)

    @property
    def uncertain(self) -> int:
        """Customers kept out because their latest record cannot be read with certainty."""
        return sum(r.rows_uncertain for r in self.results)

    @property
    def changed(self) -> bool:
        return any(r.status == "updated" for r in self.results)


def _fingerprints(jobs: list[Job], wh: Warehouse, keys: Keys, params: Mapping[str, str]) -> dict[str, str]:
    """A fingerprint per table: for inputs, their current snapshot; for outputs, a digest of the job's
    code, contract and settings and of its inputs' fingerprints (so a change upstream reaches
    downstream). The pseudonym map is the key's (random) id; the records set aside, the last
    snapshot of the quarantine that an ingest or a forget wrote (a run's own rows there are not
    customer records)."""
    prints: dict[str, str] = {PSEUDONYMS: f"key {keys.key_id}", privacy.SET_ASIDE: f"quarantine@{input_state(wh, DERIVED[privacy.SET_ASIDE])}"}
    for job in jobs:
        parts = [job.code_hash, *(f"{p}={params[p]}" for p in job.parameters)]
        for name in job.inputs:
            if name not in prints:
                prints[name] = f"{name}@{wh.content_id(name) or 'empty'}"
            parts.append(prints[name])
        prints[job.output] = hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
    return prints


def run(
    wh: Warehouse,
    key: bytes | Keys | None = None,
    *,
    engine: Engine | None = None,
    progress: Callable[[str, str], None] | None = None,
    full_refresh: bool = False,
    consent_scope: str | None = None,
    audit: bool = True,
    stamps: Mapping[str, str] | None = None,
) -> RunSummary:
    """Run every job of ``pipelines/`` against the warehouse, all or nothing; skip the unchanged
    unless ``full_refresh``. ``stamps``: properties stamped on every output snapshot besides the
    run's own (``stedi-etl watch``: when the micro-batch's files arrived). ``consent_scope`` defaults to the warehouse's setting. One writer at a
    time: a run waits for the warehouse's lock. The run ends with the audit of :mod:`stedi.audit`,
    over what it is about to commit: a violation raises :class:`~stedi.errors.AuditError` and
    nothing is committed."""
    with wh.lock("stedi-etl run"):
        started_at = datetime.now(UTC)
        consenting = wh.table(retention.CONSENTING).current_snapshot()
        try:
            keys = wh.keys(key, create=True)
            summary = _run(wh, keys, engine, progress, full_refresh, consent_scope, audit, stamps or {})
        except StediError as err:
            run_log.log_failed(wh, started_at, consent_scope or wh.settings.consent_scope, err)
            raise
        if summary.changed:  # a run that changed nothing leaves no trace, not even in the log
            try:
                run_log.log_run(wh, summary, started_at)
            except Exception as err:  # the storage or catalog failing now: say what is already done
                raise StediError(
                    f"run {summary.run_id} committed its tables, but its run_log rows could not be written: {first_line(err)}"
                ) from err
            try:
                summary.retained = retention.enforce(wh, keys, before=consenting.snapshot_id if consenting else None)
            except Exception as err:
                raise StediError(
                    f"run {summary.run_id} committed its tables, but expiring old snapshots failed: {first_line(err)}; "
                    "`stedi-etl maintain` finishes it"
                ) from err
        return summary


def _load_libraries(*modules: str) -> float:
    """Import the libraries a run works with, once per process; return the seconds it took. A run's
    reported time leaves this out, so that it is the run's own work, the same whether the process
    loaded them before (``ingest --run``, a notebook) or not: pyiceberg's Arrow FileIO, which
    every run opens tables with, and Polars, which a run with something to do computes with
    (about 0.25 s together). DuckDB, for the rules, counts in."""
    start = time.perf_counter()
    for module in modules:
        importlib.import_module(module)
    return time.perf_counter() - start


def _run(
    wh: Warehouse,
    keys: Keys,
    engine: Engine | None,
    progress: Callable[[str, str], None] | None,
    full_refresh: bool,
    consent_scope: str | None,
    audit: bool,
    stamps: Mapping[str, str] = {},  # noqa: B006 — read only
) -> RunSummary:
    started = time.perf_counter()
    loading = _load_libraries("pyiceberg.io.pyarrow")
    jobs = load_jobs()
    scope = consent_scope or wh.settings.consent_scope
    params = {**DEFAULT_PARAMS, "consent_scope": scope}
    summary = RunSummary(run_id=f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}", consent_scope=scope)
    prints = _fingerprints(jobs, wh, keys, params)
    stale = [j for j in jobs if full_refresh or wh.snapshot_property(j.output, properties.FINGERPRINT) != prints[j.output]]
    notify = progress or (lambda job, state: None)
    engine = engine or PolarsEngine()
    if stale:
        loading += _load_libraries("polars")

    plan = None
    if stale and not full_refresh and engine.incremental:
        from stedi import incremental

        plan = incremental.plan(wh, jobs, keys, params)
    if plan is not None:
        summary.mode = "incremental"
        summary.changed_customers, summary.reading_customers = len(plan.changed.emails), len(plan.readers.emails)
    if not stale:
        results = {}
    else:
        results = _run_stale(_Stale(wh, stale, keys, engine, prints, params, summary.run_id, notify, audit, stamps), plan)
    for job in jobs:
        if job.output not in results:
            rows_in, rows_out = wh.info(job.inputs[0]).rows, wh.info(job.output).rows
            outside = int(wh.snapshot_property(job.output, properties.OUT_OF_SCOPE) or 0)
            shared = int(wh.snapshot_property(job.output, properties.UNATTRIBUTABLE) or 0)
            uncertain = int(wh.snapshot_property(job.output, properties.UNCERTAIN) or 0)
            results[job.output] = JobResult(
                job.name, job.output, "unchanged", rows_in, rows_out, 0, 0.0, outside, shared, rows_uncertain=uncertain
            )
            notify(job.name, "unchanged")
        summary.results.append(results[job.output])
    if audit:
        from stedi.audit import audit_unless_unchanged, remember_passed

        if stale:  # audited before its commit, in _run_stale
            with contextlib.suppress(OSError):  # without the marker, the next run audits everything: still right
                remember_passed(wh, keys)
        else:
            found = audit_unless_unchanged(wh, keys)
            if found:
                raise AuditError(f"the audit found {len(found)} privacy violation(s); the run changed no table", found)
    summary.seconds = time.perf_counter() - started - loading
    return summary


@dataclass(frozen=True)
class _Stale:
    """What a run hands the step that computes, checks, audits and commits its stale jobs."""

    wh: Warehouse
    jobs: list[Job]  # the stale ones, in dependency order
    keys: Keys
    engine: Engine
    prints: Mapping[str, str]  # fingerprints, stamped on each output
    params: Mapping[str, str]
    run_id: str
    notify: Callable[[str, str], None]
    audit: bool
    stamps: Mapping[str, str] = field(default_factory=dict)  # stamped besides the run's own


def _run_stale(step: _Stale, plan: incremental.Plan | None = None) -> dict[str, JobResult]:
    """Evaluate the stale jobs (all their rows, or with ``plan`` only the rows of the people it
    touches) on the run's engine; check and stage each output as its job finishes (its files
    written while the next job computes); audit what is about to be published; commit all,
    unless the audit objects. The engine's :mod:`outputs <stedi.outputs>` do the checking and
    staging its way."""
    import polars as pl

    from stedi import incremental

    wh, keys, params = step.wh, step.keys, step.params
    out = step.engine.outputs(wh)
    results: dict[str, JobResult] = {}
    set_aside: list[pl.DataFrame] = []  # reason, raw, target_table
    dropped: dict[str, dict[str, int]] = {}
    pending: dict[str, pl.LazyFrame] = {}  # each output as it will be once committed
    reads = incremental.read_properties(wh, load_jobs())
    passed_before = False
    if step.audit and plan is not None:
        from stedi.audit import outputs_passed

        passed_before = outputs_passed(wh, keys)
    clock = time.perf_counter()

    def check(job: Job, frame: Any, remove: incremental.People | None = None) -> Any:
        nonlocal clock
        good, bad, rules = out.check(job, frame)
        if bad.height:
            set_aside.append(bad.with_columns(target_table=pl.lit(job.output)))
        props = {**step.stamps, **_props(job, step.run_id, step.prints, params, keys, reads, dropped, rules, out.engine_name)}
        staging = out.stage(job, good, props, remove)
        pending[job.output] = staging.pending
        primary = job.inputs[0]
        rows_in = results[primary].rows_out if primary in results else wh.info(primary).rows
        now = time.perf_counter()
        results[job.output] = _updated(job, rows_in, staging.rows_out, bad.height, now - clock, dropped, rules, staging.removed)
        clock = now
        step.notify(job.name, "done")
        return staging.downstream

    for job in step.jobs:
        step.notify(job.name, "queued")
    views: dict[str, Any] = {}  # an incremental run's rows for its audit
    try:
        try:
            if plan is None:
                evaluate(step.jobs, out.load, keys.pseudonym, step.engine, params=params, after=check, dropped=dropped, set_aside=set_aside)
            else:
                finish = lambda job, result: drop_marked(job, result, step.engine, dropped, set_aside)  # noqa: E731
                views = incremental.evaluate(step.jobs, plan, out.load, step.engine, params=params, finish=finish, after=check)
        except StediError:
            raise
        except Exception as err:  # a transform failed: nothing was committed
            raise JobError(f"run failed before any table changed: {type(err).__name__}: {out.explain(err)}") from err
        change = quality.quarantine(wh, pl.concat(set_aside, how="diagonal"), step.run_id) if set_aside else None
        if change is not None:
            out.stage_change(change)
        if step.audit:
            from stedi.audit import audit as audit_tables

            # After an audit that passed, an incremental run only needs the people it touched checked.
            focus = (plan.changed | plan.readers) if passed_before else None
            found = audit_tables(wh, keys, pending=views if focus is not None else pending, consent_scope=params["consent_scope"], focus=focus)
            if found:
                raise AuditError(f"the audit of the run's output found {len(found)} privacy violation(s); nothing was committed", found)
        wh.commit_staged(out.staged())
    except StediError:
        out.discard()
        raise
    except Exception as err:
        out.discard()
        raise JobError(f"run failed; every table is as it was before: {type(err).__name__}: {out.explain(err)}") from err
    finally:
        out.close()
    return results


def _props(
    job: Job,
    run_id: str,
    prints: Mapping[str, str],
    params: Mapping[str, str],
    keys: Keys,
    reads: Mapping[str, str],
    dropped: Mapping[str, Mapping[str, int]],
    rules: Mapping[str, dict],
    engine: str | None = None,
) -> dict[str, str]:
    """The properties stamped on the snapshot a run writes for ``job`` (:mod:`stedi.properties`):
    who wrote it, from what, with which settings, what it kept out and how its rules fared."""
    from stedi import incremental

    kept_out = dropped.get(job.output, {})
    return properties.run_properties(
        run_id=run_id,
        job=job.name,
        fingerprint=prints[job.output],
        inputs={n: prints[n] for n in job.inputs},
        consent_scope=params["consent_scope"],
        kept_out={
            properties.OUT_OF_SCOPE: kept_out.get(privacy.IN_SCOPE, 0),
            properties.UNATTRIBUTABLE: kept_out.get(privacy.ATTRIBUTABLE, 0),
            properties.UNCERTAIN: kept_out.get(privacy.CERTAIN, 0),
        },
        rules=rules,
        read=reads[job.output],
        code=incremental.code_print(job, params, keys),
        engine=engine,
    )


def _updated(
    job: Job,
    rows_in: int,
    rows_out: int,
    quarantined: int,
    seconds: float,
    dropped: Mapping[str, Mapping[str, int]],
    rules: dict,
    removed: int = 0,
) -> JobResult:
    kept_out = dropped.get(job.output, {})
    return JobResult(
        job.name,
        job.output,
        "updated",
        rows_in,
        rows_out,
        quarantined,
        seconds,
        kept_out.get(privacy.IN_SCOPE, 0),
        kept_out.get(privacy.ATTRIBUTABLE, 0),
        rules,
        removed,
        kept_out.get(privacy.CERTAIN, 0),
    )


