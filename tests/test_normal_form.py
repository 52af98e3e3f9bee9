"""One normal form for emails and serial numbers, the same on every path: the Python function, the
Polars expression and the Spark expression agree on every input, and every place that compares
people uses it (jobs, pseudonyms, forget, suppression, the audit)."""

from __future__ import annotations

import unicodedata

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stedi import privacy
from stedi.privacy import customer_key, normal_form, polars_normal
from tests.factories import KEY, T0, customer, reading, run_jobs, step

# Text as it can sit in a table: any code point but a lone surrogate (UTF-8 cannot hold one), with
# the characters the rule treats specially drawn often.
SPECIAL = "\u00a0\u1680\u2000\u2007\u200b\u200c\u200d\u2028\u202f\u205f\u3000\ufeff\u00ad\u0085\x00\x1f\x7f \t\n\rİıΣσςßẞǅǄﬁ＠ＡａⅨ\u0301\u0307"
TEXT = st.text(st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from(SPECIAL)), max_size=12)


@settings(deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=8))
@example(["Ann@Example.com", "  ANN@EXAMPLE.COM\t", "ann@example.com\u200b", "ａｎｎ＠example.com", "ANN@EXAMPLE.COM\u00a0"])
@example(["Ǆ", "ǅ", "ǆ", "Σ", "ΑΣ", "İ", "ß", "ẞ", "ﬁ", "\u1e9e\u0301"])
@example(["\n", "ann@example.com\n", "\r\n", "a\nb"])
def test_python_and_polars_agree_on_every_input(values):
    expected = [normal_form(v) for v in values]
    frame = pl.LazyFrame({"v": values}, schema={"v": pl.String})
    assert frame.select(polars_normal(pl.col("v"))).collect(engine="streaming")["v"].to_list() == expected
    assert frame.select(polars_normal(pl.col("v"))).collect(engine="in-memory")["v"].to_list() == expected


@settings(deadline=None)
@given(st.lists(st.one_of(st.none(), TEXT), min_size=1, max_size=8), st.integers(1, 5))
def test_polars_agrees_in_a_large_frame_of_many_batches_with_nulls(values, copies):
    """Odd values scattered through a frame large enough to stream in several batches, nulls among
    them: each row gets its own normal form (the Python function sees only the odd ones)."""
    rows = [f"User{i}@Example.com " for i in range(60_000)]
    for n, v in enumerate(values * copies):
        rows[(n * 7919) % len(rows)] = v
    frame = pl.LazyFrame({"v": rows}, schema={"v": pl.String})
    expected = [normal_form(v) for v in rows]
    for engine in ("streaming", "in-memory"):
        assert frame.select(polars_normal(pl.col("v"))).collect(engine=engine)["v"].to_list() == expected


@given(st.lists(TEXT, max_size=20), st.binary(min_size=1, max_size=80))
def test_the_pseudonym_map_hashes_as_the_single_hash_does(values, key):
    assert privacy.keyed_hashes(values, key) == [privacy.keyed_hash(v, key) for v in values]


@pytest.mark.spark
@settings(max_examples=max(5, settings().max_examples // 10), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(TEXT, min_size=1, max_size=20))
@example(["Ann@Example.com", "  ANN@EXAMPLE.COM\t", "ann@example.com\u200b", "ａｎｎ＠example.com", None])
@example(["\n", "ann@example.com\n", "\r\n", "a\nb"])  # Java's $ matches before a final line break
def test_spark_agrees_with_python_on_every_input(spark, values):
    import narwhals as nw

    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i int, v string")
    got = dict(privacy.normalise(nw.from_native(df), "v").to_native().select("i", "v").collect())
    assert [got[i] for i in range(len(values))] == [normal_form(v) for v in values]


@given(st.text())
def test_the_normal_form_of_a_normal_form_is_itself(value):
    once = normal_form(value)
    assert normal_form(once) == once
    assert not any(unicodedata.category(ch) in privacy.REMOVED_CATEGORIES for ch in once)
    assert once == once.strip()


SAME = [
    ("ann@example.com", "Ann@Example.COM"),
    ("ann@example.com", "  ann@example.com \t"),
    ("ann@example.com", "\u00a0ann@example.com\u3000"),  # no-break and ideographic spaces
    ("ann@example.com", "an\u200bn@exam\u00adple.com"),  # zero-width space, soft hyphen inside
    ("ann@example.com", "\ufeffann@example.com"),  # a byte order mark
    ("ann@example.com", "ａｎｎ＠ｅｘａｍｐｌｅ．ｃｏｍ"),  # full width
    ("josé@example.com", "jose\u0301@example.com"),  # decomposed: NFD against NFC
    ("ǆ@example.com", "Ǆ@EXAMPLE.COM"),
    ("0b1f2a3c-0000-4000-8000-00000000abcd", " 0B1F2A3C-0000-4000-8000-00000000ABCD "),  # a serial number
]
DIFFERENT = [
    ("ann@example.com", "ann@example.co"),
    ("ann@example.com", "an n@example.com"),  # a space inside is kept: not an address
    ("straße@example.com", "strasse@example.com"),  # lower-cased, not case-folded
    ("i@example.com", "İ@example.com"),
    ("ann@example.com", "ann.@example.com"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_spellings_of_one_identifier_have_one_normal_form_and_one_key(a, b):
    assert normal_form(a) == normal_form(b)
    assert customer_key(a, KEY) == customer_key(b, KEY)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_identifiers_never_share_a_key(a, b):
    assert normal_form(a) != normal_form(b)
    assert customer_key(a, KEY) != customer_key(b, KEY)


def test_spellings_of_one_customer_are_one_customer_in_every_table():
    """The record, the phone and the device of one person, spelled three ways, are one customer: one
    customer_key, their device's readings paired with their phone's."""
    ann = customer("Ann A", email="Ａnn.A@Test.com\u200b", serialNumber="0B1F2A3C-0000-4000-8000-00000000ABCD")
    readings = [reading("  ann.a@test.com", T0), reading("ANN.A@TEST.COM\u00a0", T0 + 1)]
    steps = [step(" 0b1f2a3c-0000-4000-8000-00000000abcd", T0), step("0B1F2A3C-0000-4000-8000-00000000ABCD", T0 + 1)]
    out = run_jobs([ann], readings, steps)
    assert out["customer_trusted"]["email"].to_list() == ["ann.a@test.com"]
    assert out["customer_trusted"]["serialNumber"].to_list() == ["0b1f2a3c-0000-4000-8000-00000000abcd"]
    assert sorted(out["accelerometer_trusted"]["user"]) == ["ann.a@test.com"] * 2
    assert out["step_trainer_trusted"].height == 2
    assert set(out["machine_learning_curated"]["customer_key"]) == {customer_key("ann.a@test.com", KEY)}
    assert out["machine_learning_curated"].height == 2


def test_two_addresses_that_differ_are_two_customers():
    ann = customer("Ann A", email="ann@test.com")
    other = customer("Ann B", email="ann@test.co", shareWithResearchAsOfDate=None)
    readings = [reading("ann@test.com", T0), reading("ann@test.co", T0)]
    out = run_jobs([ann, other], readings, [step(ann["serialNumber"], T0), step(other["serialNumber"], T0)])
    assert out["accelerometer_trusted"]["user"].to_list() == ["ann@test.com"]
    assert out["machine_learning_curated"]["customer_key"].to_list() == [customer_key("ann@test.com", KEY)]


def test_a_device_in_two_spellings_registered_to_two_customers_is_one_shared_device():
    """Upper case to a customer who never consented, lower case to one who did: one device, shared,
    kept out."""
    serial = "0b1f2a3c-0000-4000-8000-00000000abcd"
    ann = customer("Ann A", serialNumber=serial)
    cy = customer("Cy C", serialNumber=f" {serial.upper()}", shareWithResearchAsOfDate=None)
    out = run_jobs([ann, cy], [reading(ann["email"], T0)], [step(serial, T0), step(serial.upper(), T0 + 1)])
    assert out["step_trainer_trusted"].height == 0
    assert out["machine_learning_curated"].height == 0
