"""The runner: orders the jobs in ``pipelines/`` by their inputs, evaluates their transforms on an
engine, checks each output against its contract, and commits every output table at the end.

A run is all or nothing: outputs are computed first and committed last, together (see
:meth:`stedi.warehouse.Warehouse.commit_staged`). A job whose code, contract and inputs are unchanged
since the snapshot it last wrote is skipped, so a second run with nothing new changes no table.
Polars and pyarrow are imported only when a job has to run: the no-op path stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import graphlib
import hashlib
import importlib
import inspect
import json
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import narwhals as nw

import pipelines
from stedi import privacy, retention
from stedi.contracts import Contract, contract, contract_digest
from stedi.errors import AuditError, JobError, StediError, first_line
from stedi.warehouse import Change, Staged, Warehouse

if TYPE_CHECKING:
    import polars as pl

    from stedi import incremental
    from stedi.keys import Keys

PSEUDONYMS = "customer_pseudonyms"


@dataclass(frozen=True)
class Job:
    """One job of ``pipelines/``: its inputs, its output table and its pure transform."""

    name: str
    inputs: tuple[str, ...]
    output: str
    transform: Callable[..., nw.LazyFrame]
    code_hash: str
    parameters: tuple[str, ...] = ()  # keyword-only parameters of the transform: run settings
    appends: tuple[str, ...] = ()  # inputs the transform maps row by row (see stedi.incremental)
    folds: str | None = None  # the input whose new rows ``fold`` takes into the rows before
    fold: Callable[..., nw.LazyFrame] | None = None

    @property
    def contract(self) -> Contract:
        return contract(self.output)


def _code_hash(*modules: ModuleType, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def load_jobs(names: tuple[str, ...] = pipelines.JOBS) -> list[Job]:
    """The jobs of ``pipelines/`` in dependency order (ties keep the order of ``pipelines.JOBS``)."""
    jobs = {}
    for name in names:
        module = importlib.import_module(f"pipelines.{name}")
        jobs[module.OUTPUT] = Job(
            name=name,
            inputs=tuple(module.INPUTS),
            output=module.OUTPUT,
            transform=module.transform,
            code_hash=_code_hash(module, privacy, extra=contract_digest(module.OUTPUT)),
            parameters=tuple(
                p.name for p in inspect.signature(module.transform).parameters.values() if p.kind is p.KEYWORD_ONLY
            ),
            appends=tuple(getattr(module, "APPENDS", ())),
            folds=getattr(module, "FOLDS", None),
            fold=getattr(module, "fold", None),
        )
    graph = {out: [i for i in job.inputs if i in jobs] for out, job in jobs.items()}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        raise JobError(f"the jobs in pipelines/ depend on each other in a cycle: {err.args[1]}") from err
    return [jobs[out] for out in order]


# -- engines -------------------------------------------------------------------------------------


class Engine(Protocol):
    """Where the transforms run. Frames passed between jobs are the engine's native lazy frames."""

    def materialize(self, frame: nw.LazyFrame) -> Any:
        """Compute a job's output; return a native lazy frame over the result for downstream jobs."""

    def from_polars(self, frame: pl.DataFrame) -> Any:
        """A native lazy frame over a small Polars frame (the pseudonym map)."""

    def to_polars(self, native: Any) -> pl.DataFrame:
        """Collect a native lazy frame into Polars."""


class PolarsEngine:
    """The default: lazy Polars, collected with the streaming engine."""

    def materialize(self, frame: nw.LazyFrame) -> pl.LazyFrame:
        return frame.to_native().collect(engine="streaming").lazy()

    def from_polars(self, frame: pl.DataFrame) -> pl.LazyFrame:
        return frame.lazy()

    def to_polars(self, native: pl.LazyFrame) -> pl.DataFrame:
        return native.collect()


class SparkEngine:
    """PySpark: outputs stay lazy, so Spark plans the whole chain of jobs at once."""

    def __init__(self, spark: Any):
        self.spark = spark

    def materialize(self, frame: nw.LazyFrame) -> Any:
        return frame.to_native()

    def from_polars(self, frame: pl.DataFrame) -> Any:
        return self.spark.createDataFrame(frame.to_arrow())

    def to_polars(self, native: Any) -> pl.DataFrame:
        return nw.from_native(native).collect(backend="polars").to_native()


#: Run settings passed to the transforms that declare them, and their defaults.
DEFAULT_PARAMS: Mapping[str, str] = {"consent_scope": "all-history"}


def evaluate(
    jobs: list[Job],
    load: Callable[[str], Any],
    key: bytes,
    engine: Engine,
    *,
    params: Mapping[str, str] = DEFAULT_PARAMS,
    after: Callable[[Job, Any], Any] | None = None,
    dropped: dict[str, dict[str, int]] | None = None,
    set_aside: list[pl.DataFrame] | None = None,
) -> dict[str, Any]:
    """Run ``jobs`` in order on ``engine``; return each output as a native lazy frame, by table name.

    ``load(name)`` gives an input that no job in ``jobs`` produces (a landing table, or the output of
    a job skipped this time). ``params`` are the run settings a transform may ask for by keyword.
    Rows a job marks as not to be kept (a ``privacy.MARKERS`` column false: outside the consent
    scope, of a device shared by several customers, of a customer whose consent is uncertain) are
    dropped and counted into ``dropped`` (and those to quarantine added to ``set_aside``).
    ``after(job, frame)`` may check or filter each output before downstream jobs see it. The derived
    inputs (:data:`DERIVED`) are built when a job asks.
    """
    frames: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in frames:
            frames[name] = derived_input(name, get, key, engine) if name in DERIVED else load(name)
        return frames[name]

    for job in jobs:
        result = job.transform(
            *(nw.from_native(get(name)) for name in job.inputs), **{p: params[p] for p in job.parameters}
        )
        native = drop_marked(job, result, engine, dropped, set_aside)
        frames[job.output] = after(job, native) if after else native
    return {job.output: frames[job.output] for job in jobs}


#: Inputs a job may ask for that are no table: derived by the runner from the table named.
DERIVED = {PSEUDONYMS: "customer_landing", privacy.SET_ASIDE: "quarantine"}


def derived_input(name: str, get: Callable[[str], Any], key: bytes, engine: Engine) -> Any:
    """A derived input, from ``get(table)``: the pseudonym map (email -> customer_key, subject_key;
    in memory, never written), or the customer records set aside at ingest (owner, record_time)."""
    if name == PSEUDONYMS:
        landing = privacy.normalise(nw.from_native(get("customer_landing")).select("email"), "email")
        emails = landing.unique().to_native()
        return engine.from_polars(privacy.pseudonyms(engine.to_polars(emails)["email"], key))
    records = nw.from_native(get("quarantine")).filter(nw.col("target_table") == "customer_landing")
    known = records.filter(~nw.col("owner").is_null()).select("owner", "record_time")
    # a record whose owner cannot be read for sure is each mentioned customer's (few: read in Python)
    unknown = engine.to_polars(records.filter(nw.col("owner").is_null()).select("raw", "record_time").to_native())
    if not unknown.height:
        return known.to_native()
    import polars as pl

    mentioned = pl.DataFrame(
        [(email, at) for raw, at in unknown.iter_rows() for email in sorted(privacy.identifiers_in(raw, ("email",)))],
        schema={"owner": pl.String, "record_time": pl.Int64},
        orient="row",
    )
    return nw.concat([known, nw.from_native(engine.from_polars(mentioned))]).to_native()


def drop_marked(
    job: Job,
    result: nw.LazyFrame,
    engine: Engine,
    dropped: dict[str, dict[str, int]] | None,
    set_aside: list[pl.DataFrame] | None = None,
) -> Any:
    """Compute a job's output; drop the rows it marks as not to keep (``privacy.MARKERS``) and the
    marker columns, adding the counts to ``dropped[job.output]``, and the rows of a marker that
    quarantines (``privacy.QUARANTINED_MARKERS``) to ``set_aside`` (reason, raw, target_table).
    Returns a native lazy frame."""
    native = engine.materialize(result)
    markers = [m for m in privacy.MARKERS if m in result.collect_schema()]
    if not markers:
        return native
    frame = nw.from_native(native)
    counts = frame.select(*((~nw.col(m)).cast(nw.Int64).sum().alias(m) for m in markers)).collect()
    counts = {m: int(counts[m][0] or 0) for m in markers}
    if dropped is not None:
        totals = dropped.setdefault(job.output, {})
        for m, n in counts.items():
            totals[m] = totals.get(m, 0) + n
    for m in markers:
        if counts[m] and m in privacy.QUARANTINED_MARKERS and set_aside is not None:
            import polars as pl

            rows = engine.to_polars(frame.filter(~nw.col(m)).drop(*markers).to_native())
            set_aside.append(
                rows.select(
                    reason=pl.lit(privacy.QUARANTINED_MARKERS[m]),
                    raw=pl.struct(rows.columns).struct.json_encode(),
                    target_table=pl.lit(job.output),
                )
            )
    # nothing to drop (the usual case): dropping the columns is free, filtering copies every row
    keep = nw.all_horizontal(*(nw.col(m) for m in markers), ignore_nulls=False)
    kept = (frame.filter(keep) if any(counts.values()) else frame).drop(*markers)
    return engine.materialize(kept) if any(counts.values()) else kept.to_native()


def split_invalid(df: pl.DataFrame, c: Contract) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows breaking the contract's NOT NULL columns, set apart with a reason and the row as JSON."""
    import polars as pl

    required = [n for n in c.required if n in df.columns]
    nobody = pl.DataFrame(schema={"reason": pl.String, "raw": pl.String})
    if not required or not any(df[n].null_count() for n in required):  # the usual case, at no cost
        return df, nobody
    reason = pl.concat_str(
        [pl.when(pl.col(n).is_null()).then(pl.lit(f"{n} is null")) for n in required], separator="; ", ignore_nulls=True
    )
    flagged = df.with_columns(_reason=reason)
    bad = flagged.filter(pl.col("_reason") != "")
    good = flagged.filter(pl.col("_reason") == "").drop("_reason")
    return good, bad.select(reason="_reason", raw=pl.struct(df.columns).struct.json_encode())


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
    prints: dict[str, str] = {PSEUDONYMS: f"key {keys.key_id}", privacy.SET_ASIDE: f"quarantine@{wh.last_snapshot_not_by_a_run('quarantine')}"}
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
    properties: Mapping[str, str] | None = None,
) -> RunSummary:
    """Run every job of ``pipelines/`` against the warehouse, all or nothing; skip the unchanged
    unless ``full_refresh``. ``properties`` are stamped on every snapshot the run writes (besides its
    own: ``stedi watch`` says when the micro-batch's files arrived). ``consent_scope`` defaults to the warehouse's setting. One writer at a
    time: a run waits for the warehouse's lock. The run ends with the audit of :mod:`stedi.audit`,
    over what it is about to commit: a violation raises :class:`~stedi.errors.AuditError` and
    nothing is committed."""
    with wh.lock("stedi-etl run"):
        started_at = datetime.now(UTC)
        consenting = wh.table(retention.CONSENTING).current_snapshot()
        try:
            keys = wh.keys(key, create=True)
            summary = _run(wh, keys, engine, progress, full_refresh, consent_scope, audit, properties or {})
        except StediError as err:
            _log_failed(wh, started_at, consent_scope or wh.settings.consent_scope, err)
            raise
        if summary.changed:  # a run that changed nothing leaves no trace, not even in the log
            try:
                _log(wh, summary, started_at)
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


def _log(wh: Warehouse, summary: RunSummary, started_at: datetime) -> None:
    """Append the run to ``run_log``: one row per job, with the snapshots it read and wrote."""
    import pyarrow as pa

    jobs = {job.output: job for job in load_jobs()}
    rows = []
    for r in summary.results:
        inputs = {n: wh.info(n).snapshot_id for n in jobs[r.output].inputs if n not in DERIVED}
        rows.append(
            {
                "run_id": summary.run_id,
                "job": r.job,
                "output_table": r.output,
                "status": r.status,
                "started_at": started_at,
                "seconds": round(r.seconds, 3),
                "rows_in": r.rows_in,
                "rows_out": r.rows_out,
                "rows_removed": r.rows_removed,
                "mode": summary.mode if r.status == "updated" else None,
                "rows_quarantined": r.rows_quarantined,
                "rows_out_of_scope": r.rows_out_of_scope,
                "rows_unattributable": r.rows_unattributable,
                "rows_uncertain": r.rows_uncertain,
                "rule_results": json.dumps(r.rules, sort_keys=True) if r.status == "updated" else None,
                "input_snapshots": json.dumps(inputs, sort_keys=True),
                "output_snapshot_id": wh.info(r.output).snapshot_id,
                "consent_scope": summary.consent_scope,
                "error": None,
            }
        )
    table = pa.Table.from_pylist(rows, schema=contract("run_log").arrow_schema())
    wh.commit_staged([wh.stage(Change("run_log", table, "append", {"stedi.run-id": summary.run_id}))])


def _log_failed(wh: Warehouse, started_at: datetime, scope: str, err: StediError) -> None:
    """Append a failed run to ``run_log``, one row per job, with the error; never hides the error."""
    import pyarrow as pa

    run_id = f"run-{started_at:%Y%m%dT%H%M%S}-failed-{uuid.uuid4().hex[:6]}"
    rows = [
        {"run_id": run_id, "job": job.name, "output_table": job.output, "status": "failed", "started_at": started_at,
         "consent_scope": scope, "error": str(err)}
        for job in load_jobs()
    ]
    table = pa.Table.from_pylist(rows, schema=contract("run_log").arrow_schema())
    with contextlib.suppress(Exception):  # the log is a courtesy: the run's own error is what the user must see
        wh.commit_staged([wh.stage(Change("run_log", table, "append", {"stedi.run-id": run_id}))])


def _run(
    wh: Warehouse,
    keys: Keys,
    engine: Engine | None,
    progress: Callable[[str, str], None] | None,
    full_refresh: bool,
    consent_scope: str | None,
    audit: bool,
    properties: Mapping[str, str] = {},  # noqa: B006 — read only
) -> RunSummary:
    started = time.perf_counter()
    loading = _load_libraries("pyiceberg.io.pyarrow")
    jobs = load_jobs()
    scope = consent_scope or wh.settings.consent_scope
    params = {**DEFAULT_PARAMS, "consent_scope": scope}
    summary = RunSummary(run_id=f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}", consent_scope=scope)
    prints = _fingerprints(jobs, wh, keys, params)
    stale = [j for j in jobs if full_refresh or wh.snapshot_property(j.output, "stedi.fingerprint") != prints[j.output]]
    notify = progress or (lambda job, state: None)
    engine = engine or PolarsEngine()
    if stale:
        loading += _load_libraries("polars")

    plan = None
    if stale and not full_refresh and isinstance(engine, PolarsEngine):
        from stedi import incremental

        plan = incremental.plan(wh, jobs, keys, params)
    if plan is not None:
        summary.mode = "incremental"
        summary.changed_customers, summary.reading_customers = len(plan.changed.emails), len(plan.readers.emails)
    if not stale:
        results = {}
    else:
        step = _Stale(wh, stale, keys, engine, prints, params, summary.run_id, notify, audit, properties)
        # the Spark engine's executors write the files themselves
        results = _run_stale_spark(step) if getattr(engine, "writes_tables", False) else _run_stale(step, plan)
    for job in jobs:
        if job.output not in results:
            rows_in, rows_out = wh.info(job.inputs[0]).rows, wh.info(job.output).rows
            outside = int(wh.snapshot_property(job.output, "stedi.out-of-scope") or 0)
            shared = int(wh.snapshot_property(job.output, "stedi.unattributable") or 0)
            uncertain = int(wh.snapshot_property(job.output, "stedi.uncertain") or 0)
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
    engine: Any
    prints: Mapping[str, str]  # fingerprints, stamped on each output
    params: Mapping[str, str]
    run_id: str
    notify: Callable[[str, str], None]
    audit: bool
    properties: Mapping[str, str] = dataclasses.field(default_factory=dict)  # stamped besides the run's own

    def unpack(self) -> tuple:
        return self.wh, self.jobs, self.keys, self.engine, self.prints, self.params, self.run_id, self.notify, self.audit


def _run_stale(step: _Stale, plan: incremental.Plan | None = None) -> dict[str, JobResult]:
    """Evaluate the stale jobs (all their rows, or with ``plan`` only the rows of the people it
    touches); write each output's files while the next job computes; audit what is about to be
    published while the last files are written; commit all, unless the audit objects."""
    import polars as pl

    from stedi import incremental
    from stedi.quality import apply_rules

    wh, stale, keys, engine, prints, params, run_id, notify, audit = step.unpack()

    results: dict[str, JobResult] = {}
    quarantined: list[pl.DataFrame] = []  # reason, raw, target_table
    rows: dict[str, int] = {}
    clock = [time.perf_counter()]
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stedi-writer")
    staged: list[Future[Staged]] = []
    dropped: dict[str, dict[str, int]] = {}
    outputs: dict[str, pl.LazyFrame] = {}  # each output as it will be once committed
    reads = incremental.read_properties(wh, load_jobs())
    if audit and plan is not None:
        from stedi.audit import outputs_passed

        passed_before = outputs_passed(wh, keys)
    else:
        passed_before = False

    def check(job: Job, frame: pl.LazyFrame, remove: incremental.People | None = None) -> pl.LazyFrame:
        good, bad = split_invalid(frame.collect(), job.contract)
        good, broke_rules, rules = apply_rules(good, job.contract)
        bad = pl.concat([bad, broke_rules])
        if bad.height:
            quarantined.append(bad.with_columns(target_table=pl.lit(job.output)))
        rule_results = {r.rule: r.as_dict() for r in rules}
        props = {**step.properties, **_props(job, run_id, prints, params, keys, reads, dropped, rule_results)}
        removed = 0
        if remove is None:
            change = Change(job.output, good, "overwrite", props)
            outputs[job.output] = good.lazy()
        else:
            committed = wh.scan(job.output)
            leaving = remove.restrict(committed, job.output) if remove else committed.head(0)
            removed = leaving.select(pl.len()).collect().item()
            staying = remove.exclude(committed, job.output) if removed else committed
            outputs[job.output] = pl.concat([staying, good.lazy()])
            if removed and job.contract.taken_at is None:
                # A table of people, one row or a few each: theirs are in every file, which a delete
                # would rewrite anyway. Writing it whole skips pyiceberg's delete filter (measured at
                # 100x: 65 ms against 100-140 ms for 1% of the customers of customers_curated).
                change = Change(job.output, outputs[job.output], "overwrite", props)
            else:
                # a delete that matches no row still reads every file (no statistics on personal columns)
                change = Change(job.output, good, "replace", props, remove.where(job.output) if removed else None)
        # Collecting what stays, converting to Arrow and writing Parquet happen on the writer
        # thread, beside the next job.
        staged.append(writer.submit(lambda: wh.stage(dataclasses.replace(change, data=_arrow(change.data)))))
        primary = job.inputs[0]
        rows_in = rows[primary] if primary in rows else wh.info(primary).rows
        rows[job.output] = good.height
        now = time.perf_counter()
        results[job.output] = _updated(job, rows_in, good.height, bad.height, now - clock[0], dropped, rule_results, removed)
        clock[0] = now
        notify(job.name, "done")
        return good.lazy()

    for job in stale:
        notify(job.name, "queued")
    views: dict[str, Any] = {}  # an incremental run's rows for its audit
    try:
        with writer:
            try:
                if plan is None:
                    evaluate(
                        stale, wh.scan, keys.pseudonym, engine, params=params, after=check, dropped=dropped, set_aside=quarantined
                    )
                else:
                    views = incremental.evaluate(
                        stale,
                        plan,
                        wh.scan,
                        engine,
                        params=params,
                        finish=lambda job, result: drop_marked(job, result, engine, dropped, quarantined),
                        after=check,
                    )
            except StediError:
                raise
            except Exception as err:  # a transform failed: nothing was committed
                raise JobError(f"run failed before any table changed: {type(err).__name__}: {first_line(err)}") from err
            change = _quarantine(wh, pl.concat(quarantined, how="diagonal"), run_id) if quarantined else None
            if change is not None:
                staged.append(writer.submit(wh.stage, change))
            if audit:
                from stedi.audit import audit as audit_tables

                # After an audit that passed, an incremental run only needs the people it touched checked.
                focus = (plan.changed | plan.readers) if passed_before else None
                pending = views if focus is not None else outputs
                found = audit_tables(wh, keys, pending=pending, consent_scope=params["consent_scope"], focus=focus)
                if found:
                    raise AuditError(
                        f"the audit of the run's output found {len(found)} privacy violation(s); nothing was committed", found
                    )
            ready = [f.result() for f in staged]
        wh.commit_staged(ready)
    except StediError:
        raise
    except Exception as err:
        raise JobError(f"run failed; every table is as it was before: {type(err).__name__}: {first_line(err)}") from err
    return results


def _run_stale_spark(step: _Stale) -> dict[str, JobResult]:
    """:func:`_run_stale` on Spark (:mod:`stedi.spark`): each output checked in Spark and written
    by the executors into its table's location, the audit over the written files, then every
    table committed through pyiceberg (the written files added), all or nothing."""
    import polars as pl
    from pyiceberg.expressions import AlwaysTrue

    from stedi import incremental

    wh, stale, keys, engine, prints, params, run_id, notify, audit = step.unpack()

    results: dict[str, JobResult] = {}
    quarantined: list[dict] = []
    set_aside: list[pl.DataFrame] = []
    dropped: dict[str, dict[str, int]] = {}
    staged: list[Staged] = []
    pending: dict[str, pl.LazyFrame] = {}
    reads = incremental.read_properties(wh, load_jobs())
    clock = [time.perf_counter()]

    def check(job: Job, frame: Any) -> Any:
        good, bad_rows, rules = engine.check(frame, job.contract)
        quarantined.extend(r | {"target_table": job.output} for r in bad_rows)
        written = engine.write(good, job.contract, run_id)
        files = written.uris
        props = _props(job, run_id, prints, params, keys, reads, dropped, rules) | {"stedi.engine": "spark"}

        def replace(name: str = job.output, files: list[str] = files, props: dict = props) -> Any:
            tx = wh.table(name).transaction()
            tx.delete(AlwaysTrue(), snapshot_properties=props)
            if files:
                tx.add_files(files, snapshot_properties=props)
            return tx

        staged.append(Staged(job.output, replace(), replace))
        pending[job.output] = engine.scan(written, job.output)
        primary = job.inputs[0]
        rows_in = results[primary].rows_out if primary in results else wh.info(primary).rows
        now = time.perf_counter()
        results[job.output] = _updated(job, rows_in, written.rows, len(bad_rows), now - clock[0], dropped, rules)
        clock[0] = now
        notify(job.name, "done")
        return engine.read(files, job.output)  # downstream jobs read the written files, not the whole lineage again

    for job in stale:
        notify(job.name, "queued")
    try:
        try:
            evaluate(stale, engine.load, keys.pseudonym, engine, params=params, after=check, dropped=dropped, set_aside=set_aside)
        except StediError:
            raise
        except Exception as err:
            raise JobError(f"run failed before any table changed: {type(err).__name__}: {engine.explain(err)}") from err
        if quarantined or set_aside:
            schema = {"reason": pl.String, "raw": pl.String, "target_table": pl.String}
            bad = pl.concat([pl.DataFrame(quarantined, schema=schema), *set_aside], how="diagonal")
            change = _quarantine(wh, bad, run_id)
            if change is not None:
                staged.append(wh.stage(change))
        if audit:
            from stedi.audit import audit as audit_tables

            found = audit_tables(wh, keys, pending=pending, consent_scope=params["consent_scope"])
            if found:
                raise AuditError(f"the audit of the run's output found {len(found)} privacy violation(s); nothing was committed", found)
        wh.commit_staged(staged)
    except StediError:
        engine.discard()
        raise
    except Exception as err:
        engine.discard()
        raise JobError(f"run failed; every table is as it was before: {type(err).__name__}: {engine.explain(err)}") from err
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
) -> dict[str, str]:
    """The properties stamped on the snapshot a run writes for ``job``: who wrote it, from what,
    with which settings, what it kept out and how its rules fared."""
    from stedi import incremental

    kept_out = dropped.get(job.output, {})
    return {
        "stedi.run-id": run_id,
        "stedi.job": job.name,
        "stedi.fingerprint": prints[job.output],
        "stedi.inputs": json.dumps({n: prints[n] for n in job.inputs}, sort_keys=True),
        "stedi.consent-scope": params["consent_scope"],
        "stedi.out-of-scope": str(kept_out.get(privacy.IN_SCOPE, 0)),
        "stedi.unattributable": str(kept_out.get(privacy.ATTRIBUTABLE, 0)),
        "stedi.uncertain": str(kept_out.get(privacy.CERTAIN, 0)),
        "stedi.rules": json.dumps(rules, sort_keys=True),
        incremental.READ: reads[job.output],
        incremental.CODE: incremental.code_print(job, params, keys),
    }


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


def _arrow(data: pl.DataFrame | pl.LazyFrame) -> Any:
    return (data.collect() if hasattr(data, "collect") else data).to_arrow()


def _quarantine(wh: Warehouse, bad: pl.DataFrame, run_id: str) -> Change | None:
    """Rows a run set aside (``target_table``, ``reason``, ``raw``) as an append to ``quarantine``,
    each kept once: a row the quarantine already holds (an earlier run that computed the same
    table set it aside) is not added again."""
    import polars as pl

    key = ["target_table", "reason", "raw"]
    held = wh.scan("quarantine").filter(pl.col("target_table").is_in(bad["target_table"].unique().to_list())).select(key)
    bad = bad.unique(subset=key, keep="first", maintain_order=True).join(held.collect(), on=key, how="anti", nulls_equal=True)
    if bad.height == 0:
        return None
    rows = bad.select(
        "target_table",
        "reason",
        "raw",
        source_file=pl.lit(None, pl.String),
        line_number=pl.lit(None, pl.Int64),
        owner=pl.lit(None, pl.String),
        record_time=pl.lit(None, pl.Int64),
        batch_id=pl.lit(run_id),
        quarantined_at=pl.lit(datetime.now(UTC)),
    )
    return Change("quarantine", rows.to_arrow(), "append", {"stedi.run-id": run_id})
