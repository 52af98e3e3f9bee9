"""Privacy invariants over generated populations (hypothesis), on the Polars engine."""

from __future__ import annotations

import uuid
from collections import Counter

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stedi.contracts import contract
from stedi.privacy import customer_key, direct_identifiers
from tests.factories import KEY, T0, customer, reading, run_jobs, step
from tests.profiles import examples

CURATED = ("customers_curated", "machine_learning_curated")
TRUSTED = ("customer_trusted", "accelerometer_trusted", "step_trainer_trusted")
TIMES = st.integers(0, 5).map(lambda i: T0 + i)  # few distinct times: customers share them often


def _variant(email: str) -> st.SearchStrategy[str]:
    return st.sampled_from([email, email.upper(), f"  {email}", f"{email.title()} "])


@st.composite
def populations(draw):
    """People with 1-3 customer records each (consent given, withdrawn or never), phone readings
    and device readings, all on a handful of shared timestamps."""
    people = []
    records = []
    for i in range(draw(st.integers(1, 6))):
        email, serial = f"person{i}@test.com", str(uuid.UUID(int=i + 1))
        mine = []
        for _ in range(draw(st.integers(1, 3))):
            updated = T0 + draw(st.integers(0, 3))
            consent = draw(st.one_of(st.none(), st.just(updated)))
            mine.append(
                customer(f"Person {i}", email=draw(_variant(email)), serialNumber=serial, lastUpdateDate=updated,
                         shareWithResearchAsOfDate=consent)
            )
        people.append({"email": email, "serial": serial, "records": mine})
        records.extend(mine)
    order = draw(st.permutations(range(len(records))))
    records = [records[i] for i in order]
    phones = draw(st.lists(st.tuples(st.integers(0, len(people)), TIMES, st.sampled_from([-1.0, 0.0, 1.0])), max_size=25))
    devices = draw(st.lists(st.tuples(st.integers(0, len(people) - 1), TIMES, st.integers(200, 300)), max_size=25))
    readings = [
        reading(people[p]["email"] if p < len(people) else "stranger@test.com", t, x=x) for p, t, x in phones
    ]
    steps = [step(people[p]["serial"], t, distanceFromObject=d) for p, t, d in devices]
    # who consents: the latest record decides; equal lastUpdateDate -> the one landed last
    latest = {}
    for line, rec in enumerate(records):
        who = rec["email"].strip().lower()
        if who not in latest or (rec["lastUpdateDate"], line) >= latest[who][0]:
            latest[who] = ((rec["lastUpdateDate"], line), rec)
    consenting = {who for who, (_, rec) in latest.items() if rec["shareWithResearchAsOfDate"] is not None}
    return people, records, readings, steps, consenting


common = settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@common
@given(populations())
def test_only_consenting_customers_reach_trusted_and_curated(population):
    people, records, readings, steps, consenting = population
    out = run_jobs(records, readings, steps)

    assert set(out["customer_trusted"]["email"]) == consenting
    for person in people:
        if person["email"] in consenting:
            continue
        assert person["email"] not in set(out["accelerometer_trusted"]["user"])
        assert person["serial"] not in set(out["step_trainer_trusted"]["serialNumber"])
        key = customer_key(person["email"], KEY)
        for name in CURATED:
            assert key not in set(out[name]["customer_key"])


@common
@given(populations())
def test_curated_tables_carry_no_identifier(population):
    people, records, readings, steps, _ = population
    out = run_jobs(records, readings, steps)
    variants = {r["email"] for r in records} | {p["email"] for p in people}
    names = {r["customerName"] for r in records}
    for name in CURATED:
        frame = out[name]
        assert not direct_identifiers() & set(frame.columns)
        assert not direct_identifiers() & set(contract(name).column_names)
        for column in frame.select(pl.col(pl.String)).columns:
            assert not (variants | names) & set(frame[column])


@common
@given(populations())
def test_customers_curated_has_one_row_per_customer_key(population):
    _, records, readings, steps, consenting = population
    curated = run_jobs(records, readings, steps)["customers_curated"]
    assert curated["customer_key"].is_unique().all()
    with_readings = {r["user"].strip().lower() for r in readings} & consenting
    assert set(curated["customer_key"]) == {customer_key(e, KEY) for e in with_readings}


@common
@given(populations())
def test_every_training_row_pairs_readings_of_one_customer(population):
    people, records, readings, steps, consenting = population
    ml = run_jobs(records, readings, steps)["machine_learning_curated"]
    owner = {customer_key(p["email"], KEY): p for p in people}
    phone = {(r["user"].strip().lower(), r["timestamp"], r["x"]) for r in readings}
    device = {(s["serialNumber"], s["sensorReadingTime"], s["distanceFromObject"]) for s in steps}

    expected = Counter()  # a reading landed twice is one reading: each distinct pair is one row
    for email, t, x in phone:
        person = next((p for p in people if p["email"] == email), None)
        if person is None or email not in consenting:
            continue
        for serial, t2, d in device:
            if serial == person["serial"] and t2 == t:
                expected[(customer_key(email, KEY), t, d, x)] = 1
    got = Counter((r["customer_key"], r["timestamp"], r["distanceFromObject"], r["x"]) for r in ml.iter_rows(named=True))
    assert got == expected
    for key, t, d, _x in got:
        assert (owner[key]["serial"], t, d) in device  # the device reading belongs to the same customer
