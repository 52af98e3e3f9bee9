"""The five jobs on small tables of cases, built with the factories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stedi.privacy import customer_key
from tests.factories import KEY, T0, customer, reading, run_jobs, step


def emails(frame, column="email"):
    return sorted(frame[column].to_list())


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        pytest.param([customer("Ann A")], ["ann.a@test.com"], id="consenting"),
        pytest.param([customer("Ann A", shareWithResearchAsOfDate=None)], [], id="null consent is no consent"),
        pytest.param(
            [customer("Ann A", lastUpdateDate=T0), customer("Ann A", lastUpdateDate=T0 + 1, shareWithResearchAsOfDate=None)],
            [],
            id="latest record withdrew consent",
        ),
        pytest.param(
            [customer("Ann A", shareWithResearchAsOfDate=None), customer("Ann A", lastUpdateDate=T0 + 5)],
            ["ann.a@test.com"],
            id="latest record gave consent",
        ),
        pytest.param(
            [customer("Ann A", email="  Ann.A@Test.com "), customer("Bob B")],
            ["ann.a@test.com", "bob.b@test.com"],
            id="emails normalised",
        ),
    ],
)
def test_customer_trusted_keeps_latest_consenting_record(records, expected):
    out = run_jobs(customers=records)
    assert emails(out["customer_trusted"]) == expected


def test_customer_trusted_has_one_row_per_customer_whatever_the_casing():
    records = [
        customer("Ann A", email="ann.a@test.com", lastUpdateDate=T0, phone="1"),
        customer("Ann A", email=" ANN.A@test.com", lastUpdateDate=T0 + 2, phone="2"),
        customer("Ann A", email="Ann.A@test.com ", lastUpdateDate=T0 + 1, phone="3"),
    ]
    trusted = run_jobs(customers=records)["customer_trusted"]
    assert trusted.height == 1
    assert trusted["phone"].to_list() == ["2"]


def test_accelerometer_trusted_keeps_only_consenting_users():
    ann, bob = customer("Ann A"), customer("Bob B", shareWithResearchAsOfDate=None)
    out = run_jobs(
        customers=[ann, bob],
        readings=[reading(ann["email"]), reading(" ANN.A@test.com", T0 + 1), reading(bob["email"]), reading("nobody@test.com")],
    )
    assert emails(out["accelerometer_trusted"], "user") == ["ann.a@test.com", "ann.a@test.com"]


def test_a_reading_landed_twice_is_kept_once_everywhere():
    ann = customer("Ann A")
    out = run_jobs(
        customers=[ann],
        # the same reading twice (the second with the email as the phone spelled it), and a different one
        readings=[reading(ann["email"]), reading(" ANN.A@test.com"), reading(ann["email"], x=2.0)],
        steps=[step(ann["serialNumber"]), step(ann["serialNumber"]), step(ann["serialNumber"], distanceFromObject=9)],
    )
    assert out["accelerometer_trusted"].height == 2
    assert out["step_trainer_trusted"].height == 2
    assert out["machine_learning_curated"].height == 4  # 2 device readings x 2 phone readings at T0
    assert out["customers_curated"]["accelerometer_readings"].to_list() == [2]


def test_customers_curated_is_one_row_per_customer_without_identifiers():
    ann, bob = customer("Ann A"), customer("Bob B")
    day = 86_400_000
    readings = [reading(ann["email"], T0 + i) for i in range(4)] + [reading(ann["email"], T0 + 3 * day)]  # Bob has no phone readings
    curated = run_jobs(customers=[ann, bob], readings=readings)["customers_curated"]
    assert curated.height == 1
    row = curated.row(0, named=True)
    assert row["customer_key"] == customer_key("ann.a@test.com", KEY)
    assert row["accelerometer_readings"] == 5
    first = datetime.fromtimestamp(T0 / 1000, UTC).date()
    assert (row["first_reading_day"], row["last_reading_day"]) == (first, first + timedelta(days=3))  # days, no instant
    # an allowlist: the pseudonym, a count and two days; no identifier, serial number or instant to the millisecond
    assert curated.columns == ["customer_key", "accelerometer_readings", "first_reading_day", "last_reading_day"]


def test_step_trainer_trusted_keeps_devices_of_curated_customers():
    ann, bob, cy = customer("Ann A"), customer("Bob B"), customer("Cy C", shareWithResearchAsOfDate=None)
    out = run_jobs(
        customers=[ann, bob, cy],
        readings=[reading(ann["email"]), reading(cy["email"])],  # Bob has no phone data: not curated
        steps=[step(ann["serialNumber"]), step(bob["serialNumber"]), step(cy["serialNumber"])],
    )
    assert out["step_trainer_trusted"]["serialNumber"].to_list() == [ann["serialNumber"]]


def test_machine_learning_curated_never_pairs_two_customers_sharing_a_timestamp():
    ann, bob = customer("Ann A"), customer("Bob B")
    t = T0 + 100
    out = run_jobs(
        customers=[ann, bob],
        readings=[reading(ann["email"], t, x=1.0), reading(ann["email"], t, x=2.0), reading(bob["email"], t, x=-1.0)],
        steps=[step(ann["serialNumber"], t, distanceFromObject=210), step(bob["serialNumber"], t, distanceFromObject=290)],
    )
    ml = out["machine_learning_curated"].sort("x")
    # a join on the timestamp alone would give 3 x 2 = 6 rows, 3 of them mixed
    assert ml.height == 3
    by_customer = {customer_key(ann["email"], KEY): 210, customer_key(bob["email"], KEY): 290}
    for row in ml.iter_rows(named=True):
        assert by_customer[row["customer_key"]] == row["distanceFromObject"]
    assert ml.columns == ["customer_key", "timestamp", "distanceFromObject", "x", "y", "z"]


def test_machine_learning_curated_skips_readings_without_a_partner():
    ann = customer("Ann A")
    out = run_jobs(
        customers=[ann],
        readings=[reading(ann["email"], T0), reading(ann["email"], T0 + 7)],
        steps=[step(ann["serialNumber"], T0), step(ann["serialNumber"], T0 + 9)],
    )
    assert out["machine_learning_curated"]["timestamp"].to_list() == [T0]


def test_outputs_are_empty_not_broken_on_empty_landing():
    out = run_jobs()
    assert all(frame.height == 0 for frame in out.values())
