"""Incremental runs equal full refreshes.

A property test draws sequences of batches from a deliberately small world -- a few people whose
emails arrive in several spellings, a few serial numbers (so devices move between customers and
end up shared), a few timestamps (so readings repeat within and across batches), consent given,
moved and withdrawn, readings of people with no customer record yet -- and ingests and runs each
batch in turn. After every run, which must have been incremental, every job output must equal
the jobs computed from scratch over the same landing tables; at the end, ``run --full-refresh``
must change nothing.
"""

from __future__ import annotations

import itertools
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stedi import incremental, quality
from stedi.config import CONSENT_SCOPES, Settings
from stedi.engines import PolarsEngine
from stedi.evaluation import evaluate
from stedi.ingest import ingest
from stedi.jobs import load_jobs
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests import tables
from tests.factories import KEY, T0, customer, reading, step, write_landing
from tests.profiles import examples
from tests.tables import assert_same_table

OUTPUTS = [job.output for job in load_jobs()]
LINEAGE = ("recorded_at", "source_file", "line_number")
PEOPLE = [f"p{i}" for i in range(3)]
SERIALS = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(3)]
TIMES = st.integers(0, 3).map(lambda i: T0 + 1000 * i)

spellings = st.sampled_from(PEOPLE).flatmap(
    lambda p: st.sampled_from([f"{p}.x@test.com", f"{p.upper()}.X@TEST.COM", f" {p}.x@test.com "])
)
customers = st.builds(
    lambda email, serial, updated, consent: customer(
        "P X", email=email, serialNumber=serial, lastUpdateDate=T0 + updated, shareWithResearchAsOfDate=consent
    ),
    spellings,
    st.sampled_from(SERIALS),
    st.integers(0, 3),  # ties on lastUpdateDate happen, and are broken the same way
    st.one_of(st.none(), TIMES),
)
# now and then a reading a rule drops (a time in seconds, a negative distance): the run sets it aside
readings = st.builds(lambda user, t, x: reading(user, t, x=float(x)), spellings, st.one_of(TIMES, st.just(T0 // 1000)), st.integers(0, 1))
steps = st.builds(lambda serial, t, d: step(serial, t, distanceFromObject=d), st.sampled_from(SERIALS), TIMES, st.integers(-1, 1))
batches = st.lists(
    st.tuples(st.lists(customers, max_size=3), st.lists(readings, max_size=5), st.lists(steps, max_size=5)).filter(any),
    min_size=2,
    max_size=5,
)


@pytest.fixture
def always_incremental(monkeypatch):
    """Small worlds: a batch touches most customers, which would make a run rebuild instead."""
    monkeypatch.setattr(incremental, "REBUILD_SHARE", 1.0)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batches=batches, scope=st.sampled_from(CONSENT_SCOPES))
def test_incremental_runs_equal_a_full_refresh(always_incremental, batches, scope):
    with tempfile.TemporaryDirectory(prefix="stedi-incremental-") as tmp:
        root = Path(tmp)
        wh = Warehouse.open(Settings(warehouse=root / "wh", consent_scope=scope))
        names = itertools.count()
        for i, (people, phone, device) in enumerate(batches):
            n = next(names)
            landed = ingest(wh, write_landing(root / f"b{n}", people, phone, device, name=f"b{n}"), KEY).ingested
            result = run(wh, KEY)
            if i and landed:  # (a file already ingested under another name lands nothing: nothing to run)
                assert result.mode == "incremental"
            assert_equal_to_scratch(wh, scope)
        assert_a_rebuild_changes_nothing(wh)


def assert_a_rebuild_changes_nothing(wh: Warehouse) -> None:
    before = {name: canonical(wh.scan(name).collect()) for name in OUTPUTS}
    set_aside = wh.info("quarantine").rows
    run(wh, KEY, full_refresh=True)
    for name in OUTPUTS:
        assert_same(name, canonical(wh.scan(name).collect()), before[name])
    assert wh.info("quarantine").rows == set_aside  # a rebuild sets aside the same rows: kept once


def _kept(job, frame):
    """A job's output as a run keeps it: rows breaking the contract or a rule (action drop) set aside."""
    good, _ = quality.split_invalid(frame.collect(), job.contract)
    return quality.apply_rules(good, job.contract)[0].lazy()


def assert_equal_to_scratch(wh: Warehouse, scope: str) -> None:
    scratch = evaluate(load_jobs(), wh.scan, KEY, PolarsEngine(), params={"consent_scope": scope}, after=_kept)
    for name in OUTPUTS:
        assert_same(name, canonical(wh.scan(name).collect()), canonical(scratch[name].collect()))


def assert_same(name: str, got: pl.DataFrame, expected: pl.DataFrame) -> None:
    assert_same_table(name, got, expected)


def canonical(frame: pl.DataFrame) -> pl.DataFrame:
    return tables.canonical(frame, LINEAGE)


def test_a_plain_run_after_new_rows_is_incremental_and_says_so(tmp_path, always_incremental):
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ann, bob = customer("Ann A"), customer("Bob B")
    ingest(wh, write_landing(tmp_path / "a", [ann, bob], [reading(ann["email"])], [step(ann["serialNumber"])], name="a"), KEY)
    first = run(wh, KEY)
    assert first.mode == "full"
    # Bob's first reading (he enters customers_curated) and one more of Ann's
    ingest(wh, write_landing(tmp_path / "b", readings=[reading(bob["email"]), reading(ann["email"], T0 + 1)], name="b"), KEY)
    second = run(wh, KEY)
    assert (second.mode, second.changed_customers, second.reading_customers) == ("incremental", 1, 1)
    by_table = {r.output: r for r in second.results}
    assert by_table["accelerometer_trusted"].rows_out == 2  # the two new readings, nothing rewritten
    assert by_table["accelerometer_trusted"].rows_removed == 0
    assert by_table["customer_trusted"].status == "unchanged"
    assert wh.info("accelerometer_trusted").rows == 3
    # the same files again under other names: nothing new lands twice
    ingest(wh, write_landing(tmp_path / "c", readings=[reading(ann["email"], T0 + 1)], name="c"), KEY)
    third = run(wh, KEY)
    assert third.mode == "incremental" and wh.info("accelerometer_trusted").rows == 3


def test_new_readings_of_a_curated_customer_fold_into_their_row(tmp_path, always_incremental):
    """A customer with new readings only: their customers_curated row takes them in (count, first
    and last reading) without their other readings read again, and their committed readings are read
    only in the new readings' time span -- which must hold every reading a new one repeats or pairs with."""
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ann, bob = customer("Ann A"), customer("Bob B")
    day = 86_400_000  # customers_curated keeps days: readings a day or more apart tell first and last apart
    phone = [reading(ann["email"], T0 + 2 * day), reading(ann["email"], T0 + 3 * day), reading(bob["email"], T0 + 9 * day)]
    # her device's readings of days 1, 5 and 8 have no reading of hers to pair with yet
    device = [step(ann["serialNumber"], T0 + t * day) for t in (1, 3, 5, 8)]
    ingest(wh, write_landing(tmp_path / "a", [ann, bob], phone, device, name="a"), KEY)
    assert run(wh, KEY).mode == "full"
    # earlier and later than all of hers, each pairing with her device's, and one she had already
    later = [reading(ann["email"], T0 + t * day) for t in (1, 5, 2, 8)]
    ingest(wh, write_landing(tmp_path / "b", readings=later, name="b"), KEY)
    second = run(wh, KEY)
    assert (second.mode, second.changed_customers, second.reading_customers) == ("incremental", 0, 1)
    assert_equal_to_scratch(wh, "all-history")
    rows = wh.scan("customers_curated").sort("first_reading_day").collect()
    first = datetime.fromtimestamp(T0 / 1000, UTC).date()
    assert rows.select("accelerometer_readings", "first_reading_day", "last_reading_day").rows() == [
        (5, first + timedelta(days=1), first + timedelta(days=8)),
        (1, first + timedelta(days=9), first + timedelta(days=9)),
    ]
    assert sorted(wh.scan("machine_learning_curated").collect()["timestamp"]) == [T0 + t * day for t in (1, 3, 5, 8)]


@pytest.mark.parametrize("how", ["full_refresh", "forget", "most customers touched"])
def test_what_makes_a_run_rebuild(tmp_path, how, monkeypatch):
    from stedi.erasure import forget

    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ann, bob = customer("Ann A"), customer("Bob B")
    ingest(wh, write_landing(tmp_path / "a", [ann, bob], [reading(ann["email"]), reading(bob["email"])], name="a"), KEY)
    run(wh, KEY)
    ingest(wh, write_landing(tmp_path / "b", readings=[reading(ann["email"], T0 + 1)], name="b"), KEY)
    if how == "forget":  # forget rewrites landing tables: the next run cannot trust what it read before
        monkeypatch.setattr(incremental, "REBUILD_SHARE", 1.0)  # (so that nothing else makes it rebuild)
        forget(wh, KEY, [bob["email"]])
        assert run(wh, KEY).mode == "full"
    elif how == "full_refresh":
        assert run(wh, KEY, full_refresh=True).mode == "full"
    else:  # Ann is one of two customers: above the share where a rebuild is cheaper
        monkeypatch.setattr(incremental, "REBUILD_SHARE", 0.4)
        assert run(wh, KEY).mode == "full"


def test_an_incremental_run_without_a_passed_audit_audits_everything(tmp_path, always_incremental, monkeypatch):
    from stedi import audit

    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ann, bob = customer("Ann A"), customer("Bob B", shareWithResearchAsOfDate=None)
    ingest(wh, write_landing(tmp_path / "a", [ann, bob], [reading(ann["email"])], [step(ann["serialNumber"])], name="a"), KEY)
    run(wh, KEY)
    (wh.root / audit.PASSED).unlink()  # say, the audit's own code changed since
    ingest(wh, write_landing(tmp_path / "b", readings=[reading(ann["email"], T0 + 1), reading(bob["email"])], name="b"), KEY)
    focus = []
    real = audit.audit
    monkeypatch.setattr(audit, "audit", lambda *a, **k: focus.append(k.get("focus")) or real(*a, **k))
    assert run(wh, KEY).mode == "incremental"
    assert focus == [None]  # the whole warehouse, with the run's pending tables
    assert wh.info("accelerometer_trusted").rows == 2  # Bob never consented
    assert audit.outputs_passed(wh, KEY)


def test_runs_after_a_run_set_readings_aside_stay_incremental(tmp_path, always_incremental):
    """Readings a rule drops go to quarantine in the run's own snapshot: they are not customer
    records, so the records set aside are as they were and the next runs stay incremental (they
    rebuilt every time once a run had set rows aside) -- with the quarantine compacted between, and
    a customer record set aside by an ingest after. At the end a rebuild changes nothing."""
    from stedi.compaction import maintain

    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ann, bob = customer("Ann A"), customer("Bob B")
    ingest(wh, write_landing(tmp_path / "a", [ann, bob], [reading(ann["email"]), reading(bob["email"])], [step(ann["serialNumber"])], name="a"), KEY)
    assert run(wh, KEY).mode == "full"
    seconds = T0 // 1000  # a phone that sends seconds: timestamp_in_ms drops the reading
    for i in range(1, 5):
        phone = [reading(ann["email"], T0 + i), reading(bob["email"], seconds + i)]
        device = [step(ann["serialNumber"], T0 + i), step(ann["serialNumber"], T0 + 100 + i, distanceFromObject=-1)]
        ingest(wh, write_landing(tmp_path / f"b{i}", readings=phone, steps=device, name=f"b{i}"), KEY)
        result = run(wh, KEY)
        assert result.mode == "incremental", f"run {i}"
        assert {r.output: r.rows_quarantined for r in result.results if r.rows_quarantined} == {"accelerometer_trusted": 1, "step_trainer_trusted": 1}
        if i == 2:
            maintain(wh, KEY, tables=["quarantine"], small_bytes=1 << 30)
            assert len(wh.table("quarantine").inspect.files()) == 1
    # a record of Ann's the ingest sets aside (a date that is no date): she is changed, the run still incremental
    ingest(wh, write_landing(tmp_path / "c", [dict(ann, lastUpdateDate="soon")], [reading(ann["email"], T0 + 9)], name="c"), KEY)
    result = run(wh, KEY)
    assert (result.mode, result.changed_customers) == ("incremental", 1)
    assert_a_rebuild_changes_nothing(wh)
