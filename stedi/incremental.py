"""Incremental runs: recompute only the rows of the customers that new landing rows touch.

Every job is *local to a customer*: the rows it outputs for a customer depend only on that
customer's input rows (the table contracts say whose row a row is, ``stedi.owner``). So a run after
new rows landed can leave every other customer's rows alone. The customers touched fall in two
groups, found from the rows landed since the last run (an Iceberg incremental append scan):

* **changed** -- customers whose state may differ: a new customer record (consent given, moved,
  withdrawn; a new device), a first trusted reading (they enter ``customers_curated``, which makes
  their device's readings eligible), and everyone sharing a device, old or new, with one of them
  (whether a device is shared is decided across its owners). All their rows in every table are
  deleted and recomputed from all their landing rows.
* **readers** -- customers with new readings only. Their state is unchanged, so the reading-level
  tables only gain the output of the transforms over the *new* rows (a job declares with
  ``APPENDS`` which inputs it maps row by row): new landing rows, less those equal to a reading
  already kept (the same reading landed twice); new pairs of ``machine_learning_curated`` from a new
  reading on either side. Customer-level tables recompute their rows -- from their rows before and
  the new readings alone when the job can ``fold`` them in (``customers_curated``: counts add up).
  Their committed readings are read only in the time span of the new ones (``stedi.taken_at``):
  only those can equal a new reading or pair with one.

A run is incremental only when the last run left every job output consistent: each output's
snapshot records the landing snapshots it was computed from (``stedi.read``) and the code, settings
and key it used (``stedi.code``); all agree, the landing tables have only gained appends since, and
nothing else (``forget`` rewrites landing tables, a code change alters ``stedi.code``) -- and when the
new rows touch at most :data:`REBUILD_SHARE` of the customers. Otherwise the run rebuilds
everything, as ``run --full-refresh`` does. Both give the same tables (tested).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import narwhals as nw

from stedi import privacy, properties
from stedi.contracts import contract
from stedi.evaluation import DERIVED, derived_input, input_state
from stedi.jobs import PSEUDONYMS
from stedi.people import NOBODY, People

if TYPE_CHECKING:
    import polars as pl

    from stedi.jobs import Job
    from stedi.keys import Keys
    from stedi.warehouse import Warehouse

#: Snapshot properties an incremental run relies on.

#: Above this share of all customers touched, a run rebuilds everything instead: measured at 100x,
#: recomputing every customer's rows by person costs more than the rebuild (BENCHMARKS.md).
REBUILD_SHARE = 0.25


@dataclass
class Plan:
    """What an incremental run reads: the landing rows new since the last run, and who they touch."""

    new: dict[str, pl.LazyFrame]  # landing table -> rows landed since base
    changed: People
    readers: People
    key: bytes
    #: customer_landing as committed, read whole once: the plan, the jobs and the audit each need it
    customers: pl.DataFrame
    #: the first and last time (epoch ms) a new reading was taken, or None if no reading is new
    window: tuple[int, int] | None = None

    def pseudonyms(self, people: People) -> pl.DataFrame:
        import polars as pl

        return privacy.pseudonyms(pl.Series("email", sorted(people.emails), pl.String), self.key)


def code_print(job: Job, params: Mapping[str, str], keys: Keys) -> str:
    """What must not change between two runs for the second to be incremental."""
    return "|".join([job.code_hash, f"key {keys.key_id}", *(f"{p}={params[p]}" for p in job.parameters)])


def landing_inputs(jobs: list[Job]) -> dict[str, tuple[str, ...]]:
    """Each job output's landing tables, directly or through other jobs."""
    outputs = {j.output for j in jobs}
    found: dict[str, tuple[str, ...]] = {}
    for job in jobs:  # in dependency order
        names: set[str] = set()
        for name in job.inputs:
            if name in outputs:
                names.update(found[name])
            else:
                names.add(DERIVED.get(name, name))
        found[job.output] = tuple(sorted(names))
    return found


def read_properties(wh: Warehouse, jobs: list[Job]) -> dict[str, str]:
    """The ``stedi.read`` snapshot property a run stamps on each output: the landing snapshots read,
    as the run's fingerprints see them (:func:`~stedi.evaluation.input_state`), so that an output not
    run again agrees with the others."""
    return {
        job.output: json.dumps({n: input_state(wh, n) for n in names}, sort_keys=True)
        for job, names in zip(jobs, landing_inputs(jobs).values(), strict=True)
    }


def plan(wh: Warehouse, jobs: list[Job], keys: Keys, params: Mapping[str, str]) -> Plan | None:
    """The plan of an incremental run, or None when the run must rebuild everything."""
    import polars as pl

    key = keys.pseudonym
    base: dict[str, int | None] = {}
    for job in jobs:
        if wh.snapshot_property(job.output, properties.CODE) != code_print(job, params, keys):
            return None
        read = wh.snapshot_property(job.output, properties.READ)
        if read is None:
            return None
        for name, snapshot_id in json.loads(read).items():
            if base.setdefault(name, snapshot_id) != snapshot_id:
                return None  # outputs computed from different landing states
    new: dict[str, pl.LazyFrame] = {}
    for name, since in base.items():
        rows = _appended(wh, name, since)
        if rows is None:
            return None
        new[name] = rows

    def column(name: str, col: str, rows: pl.LazyFrame | None = None) -> set[str]:
        rows = new[name] if rows is None else rows
        values = rows.select(privacy.polars_normal(pl.col(col))).unique().collect().to_series()
        return set(values.drop_nulls().to_list())

    customers = column("customer_landing", "email")
    if "quarantine" in new:  # a record set aside may be a customer's latest word: they are changed
        set_aside = new["quarantine"].filter(pl.col("target_table") == "customer_landing").select("owner", "raw").collect()
        for owner, raw in set_aside.iter_rows():  # (an owner not read for sure: everyone the record names)
            customers |= {owner} if owner is not None else privacy.identifiers_in(raw, ("email",))
    users = column("accelerometer_landing", "user")
    devices = column("step_trainer_landing", "serialNumber")

    landing = wh.table("customer_landing")
    records_now = wh.scan("customer_landing").collect()
    records = [_records(records_now.lazy())]  # customer records now, and before if others
    if customers and base["customer_landing"] is not None:
        before = wh.snapshot_holding("customer_landing", base["customer_landing"])  # compacted since, maybe
        records.append(_records(pl.scan_iceberg(landing, snapshot_id=before)))

    def latest(emails: set[str]) -> pl.DataFrame:
        """The latest record (email, serialNumber, consents), now and before, of these customers."""
        return pl.concat([_latest(r.filter(pl.col("email").is_in(list(emails)))) for r in records])

    def serials_of(emails: set[str]) -> set[str]:
        return _values(latest(emails), "serialNumber") if emails else set()

    def owners_of(serials: set[str]) -> set[str]:
        if not serials:
            return set()
        # a customer whose latest record names a serial has some record naming it
        candidates = set().union(*(_values(r.filter(pl.col("serialNumber").is_in(list(serials))), "email") for r in records))
        return _values(latest(candidates).filter(pl.col("serialNumber").is_in(list(serials))), "email")

    # customers who enter customers_curated with their first reading
    consenting = _values(latest(users).filter("consents"), "email")
    entering: set[str] = set()
    if consenting:
        keys = {privacy.customer_key(u, key): u for u in consenting}
        curated = wh.scan("customers_curated").select("customer_key").filter(pl.col("customer_key").is_in(list(keys)))
        entering = set(consenting) - {keys[k] for k in curated.collect().to_series().to_list()}

    changed = customers | entering
    changed_serials = serials_of(changed)
    changed |= owners_of(changed_serials)

    readers = (users | owners_of(devices)) - changed
    reader_serials = (serials_of(readers) | devices) - changed_serials
    readers = (readers | owners_of(reader_serials)) - changed

    def people(emails: set[str], serials: set[str]) -> People:
        keys = frozenset(privacy.customer_key(e, key) for e in emails)
        subjects = frozenset(privacy.subject_key(e, key) for e in emails)
        spellings = set().union(*(_values(r.filter(pl.col("email").is_in(list(emails))), "sent") for r in records if emails))
        return People(frozenset(emails), keys, frozenset(serials), frozenset(spellings), subjects)

    touched = changed | readers
    # (readings may name people with no record yet)
    everyone = pl.concat([records[0]["email"], pl.Series("email", sorted(touched), pl.String)]).drop_nulls().n_unique()
    if len(touched) > REBUILD_SHARE * everyone:
        return None  # most customers touched: recomputing them one by one costs more than a rebuild
    # read once for the jobs, now that the run is known to be incremental (all new rows may be many)
    new = {name: rows.collect().lazy() for name, rows in new.items()}
    return Plan(new, people(changed, changed_serials), people(readers, reader_serials), key, records_now, _window(new))


def _window(new: Mapping[str, pl.LazyFrame]) -> tuple[int, int] | None:
    """The first and last time a new reading was taken (``stedi.taken_at``), over every table of readings."""
    import polars as pl

    spans = [
        frame.select(pl.col(c.taken_at).min().alias("first"), pl.col(c.taken_at).max().alias("last")).collect().row(0)
        for name, frame in new.items()
        if (c := contract(name)).taken_at is not None
    ]
    firsts = [f for f, _ in spans if f is not None]
    lasts = [last for _, last in spans if last is not None]
    return (min(firsts), max(lasts)) if firsts else None


def _appended(wh: Warehouse, name: str, since: int | None) -> pl.LazyFrame | None:
    """The rows of landing table ``name`` added after snapshot ``since``: None unless every snapshot
    since then only appended (``forget`` rewrites files; a rebuild is needed then)."""
    import polars as pl

    from stedi.warehouse import compacted_from

    table = wh.table(name)
    snapshot = table.current_snapshot()
    start = since  # the snapshot after which the new rows were added
    while snapshot is not None and snapshot.snapshot_id != since:
        stamped = (snapshot.summary.additional_properties if snapshot.summary else {}).get(properties.NOT_BY_A_RUN)
        if stamped is not None and (int(stamped or 0) or None) == since:  # only a run wrote since (its rule rows)
            start = snapshot.snapshot_id
            break
        if compacted_from(snapshot):  # files rewritten, rows kept: new rows are those added after it
            if since not in compacted_from(snapshot):
                return None
            start = snapshot.snapshot_id
            break
        if snapshot.summary is None or snapshot.summary.operation.value != "append":
            return None
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    if snapshot is None and since is not None:
        return None  # ``since`` is not an ancestor: the table was rolled back or rewritten
    current = table.current_snapshot()
    if current is None or current.snapshot_id == start:
        return pl.from_arrow(contract(name).arrow_schema().empty_table()).lazy()
    if start is None:
        return wh.scan(name)
    return pl.scan_iceberg(table, from_snapshot_id_exclusive=start)


def _records(landing: pl.LazyFrame) -> pl.DataFrame:
    """The customer records' columns that decide a customer's latest record, email and serial
    number in their normal form (``sent``: the email as it was sent)."""
    import polars as pl

    needed = ["email", "serialNumber", "shareWithResearchAsOfDate", *privacy.RECORD_ORDER]
    frame = landing.select(needed).with_columns(
        sent="email", email=privacy.polars_normal(pl.col("email")), serialNumber=privacy.polars_normal(pl.col("serialNumber"))
    )
    return frame.collect()


def _latest(records: pl.DataFrame) -> pl.DataFrame:
    """Each customer's latest record: email, serialNumber, consents (to research)."""
    latest = privacy.latest_records(nw.from_native(records.lazy())).select(
        "email", "serialNumber", privacy.has_research_consent().alias("consents")
    )
    return latest.to_native().collect()


def _values(frame: pl.DataFrame, column: str) -> set[str]:
    return set(frame[column].drop_nulls().unique().to_list())


# -- evaluation ----------------------------------------------------------------------------------


def evaluate(
    jobs: list[Job],
    plan: Plan,
    load: Callable[[str], Any],
    engine: Any,
    *,
    params: Mapping[str, str],
    finish: Callable[[Job, Any], Any],
    after: Callable[[Job, Any, People], Any],
) -> dict[str, Any]:
    """Run ``jobs`` for the people ``plan`` touches. ``load(name)`` reads a committed table;
    ``finish(job, frame)`` drops the rows a job marks as not to keep (a native frame);
    ``after(job, rows, remove)`` checks and stages an output -- ``rows`` to add, ``remove`` whose
    rows to delete -- and returns the rows kept (a native frame) for the jobs downstream.
    Returns, by table, what the audit of the run checks (a native frame, see below), and
    customer_landing as the plan read it."""
    changed, readers = plan.changed, plan.readers
    by_output = {j.output: j for j in jobs}
    added: dict[tuple[str, str], Any] = {}  # (part, table) -> the part's rows this run adds
    pseudonyms = {"C": engine.from_polars(plan.pseudonyms(changed)), "R": engine.from_polars(plan.pseudonyms(readers))}
    views: dict[str, Any] = {"customer_landing": plan.customers.lazy()}  # (read once: the audit reads it too)
    committed: dict[tuple[str, str, bool], Any] = {}

    def load_committed(name: str) -> Any:
        if name == "customer_landing":
            return engine.from_polars(plan.customers)
        if name in DERIVED:
            return derived_input(name, load_committed, plan.key, engine)
        return load(name)

    def rows_of(part: str, name: str, windowed: bool = False) -> nw.LazyFrame:
        """The part's people's committed rows of ``name``, read once. ``windowed``: of a table of
        readings, only those taken in the plan's window (the readers' new readings can only repeat
        or pair with those): the files and row groups of other times are skipped by their statistics.
        Otherwise all their readings, left lazy: a customer-level job that cannot ``fold`` new
        readings in reads them once, and few of their columns."""
        taken_at = None if name in DERIVED else contract(name).taken_at
        windowed = windowed and taken_at is not None and plan.window is not None
        if (part, name, windowed) not in committed:
            people = changed if part == "C" else readers
            frame = nw.from_native(load_committed(name))
            if windowed:
                frame = frame.filter(nw.col(taken_at).is_between(*plan.window))
            frame = nw.from_native(people.restrict(frame, name))
            lazy = taken_at is not None and not windowed and part == "R"
            committed[(part, name, windowed)] = frame.to_native() if lazy else engine.materialize(frame)
        return nw.from_native(committed[(part, name, windowed)])

    def state(name: str, part: str, which: str = "all", windowed: bool = False) -> nw.LazyFrame:
        """Table ``name`` as a job sees it, restricted to the part's people ("C": changed, "R":
        readers): "all" its rows now, "new" the rows added this run (or landed since the last run),
        "old" the rows it had (``windowed``: see ``rows_of``)."""
        people = changed if part == "C" else readers
        if name == PSEUDONYMS:
            return nw.from_native(pseudonyms[part])
        if (part, name) in added:  # recomputed this run
            new = nw.from_native(added[(part, name)])
            if which == "new" or part == "C" or not by_output[name].appends:
                return new  # the changed people's rows, and customer-level rows, are recomputed whole
            old = rows_of(part, name, windowed)
            return old if which == "old" else nw.concat([old, new])
        if which == "new":
            return nw.from_native(people.restrict(plan.new[name], name))
        return rows_of(part, name, windowed)

    def has_new(name: str) -> bool:
        """Whether the readers have new rows in ``name`` (never in customer_landing: a new customer
        record makes its customer changed)."""
        return ("R", name) in added or (name in plan.new and name != "customer_landing")

    for job in jobs:
        settings = {p: params[p] for p in job.parameters}
        parts = []
        if changed:
            parts.append(finish(job, job.transform(*(state(n, "C") for n in job.inputs), **settings)))
        remove = changed
        recompute_readers = bool(readers) and any(has_new(n) for n in job.inputs)
        if recompute_readers and job.appends:
            for i, name in enumerate(job.appends):
                if not has_new(name):
                    continue
                later = job.appends[i + 1 :]
                which = {n: "new" if n == name else "old" if n in later else "all" for n in job.inputs}
                ins = [state(n, "R", which[n], windowed=True) for n in job.inputs]
                rows = nw.from_native(finish(job, job.transform(*ins, **settings)))
                if name in plan.new:  # a landed row may repeat a reading already kept: keep it once
                    kept = rows_of("R", job.output, windowed=True)
                    rows = rows.join(kept, on=kept.columns, how="anti")
                parts.append(rows.to_native())
        elif recompute_readers:
            if job.fold is not None and not any(has_new(n) for n in job.inputs if n != job.folds):
                # their rows before, with the new rows of the one input that has some taken in
                ins = [state(n, "R", "new" if n == job.folds else "all") for n in job.inputs]
                parts.append(finish(job, job.fold(rows_of("R", job.output), *ins, **settings)))
            else:
                parts.append(finish(job, job.transform(*(state(n, "R") for n in job.inputs), **settings)))
            remove = changed | readers
        if not parts:  # nobody's rows change: the table still records what it was computed from
            import polars as pl

            parts.append(engine.from_polars(pl.from_arrow(job.contract.arrow_schema().empty_table())))
            remove = NOBODY
        result = nw.concat([nw.from_native(p) for p in parts]) if len(parts) > 1 else nw.from_native(parts[0])
        kept = nw.from_native(after(job, engine.materialize(result), remove))
        owner = job.contract.owner
        of_changed = nw.col(owner).is_in(changed.values(job.contract.owner_kind))
        if changed:
            added[("C", job.output)] = kept.filter(of_changed).to_native()
        if recompute_readers:
            added[("R", job.output)] = kept.filter(~of_changed).to_native()
        # What the audit of this run checks: the rows it adds (every row of a changed customer is
        # one), beside the readers' rows it read (a new training row may pair a new reading with
        # one of theirs: both are in the window). Their other rows passed the last audit, and their
        # state has not changed.
        read = [k for k in (("R", job.output, True), ("R", job.output, False)) if k in committed]
        keeps_readers = readers and not (recompute_readers and not job.appends) and read
        views[job.output] = (nw.concat([nw.from_native(committed[read[0]]), kept]) if keeps_readers else kept).to_native()
    return views
