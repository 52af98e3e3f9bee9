"""Evaluating the jobs on an engine: each transform over its inputs in dependency order, the
derived inputs built when asked (the pseudonym map, the records set aside at ingest), and the rows a
job marks as not to keep dropped and counted (:data:`stedi.privacy.MARKERS`). No I/O of its own:
``load`` gives the inputs, the caller writes the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import narwhals as nw

from stedi import privacy
from stedi.engines import Engine
from stedi.jobs import DEFAULT_PARAMS, PSEUDONYMS, Job

if TYPE_CHECKING:
    import polars as pl

    from stedi.warehouse import Warehouse


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


def input_state(wh: Warehouse, name: str) -> int | None:
    """The snapshot standing for what the jobs read of landing table ``name``, in a run's
    fingerprints and its ``stedi.read``: its rows (``content_id``); of the quarantine, where they read
    only the records set aside, the last snapshot no run wrote (a run's own rule rows are no input)."""
    return wh.last_snapshot_not_by_a_run(name) if name == DERIVED[privacy.SET_ASIDE] else wh.content_id(name)


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
