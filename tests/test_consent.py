"""Consent over time: the consent scope, consent given, moved and withdrawn, and its history."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from stedi.cli import cli
from stedi.config import Settings, resolve
from stedi.errors import ConfigError
from stedi.ingest import ingest
from stedi.privacy import customer_key, subject_key
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY, T0, customer, reading, run_jobs, step, write_landing

DAY = 86_400_000
OUTPUTS = (
    "customer_trusted",
    "accelerometer_trusted",
    "step_trainer_trusted",
    "customers_curated",
    "machine_learning_curated",
    "customer_consent_history",
)


# -- the consent scope ---------------------------------------------------------------------------


def _before_and_after_consent():
    ann = customer("Ann A", shareWithResearchAsOfDate=T0 + 10)
    times = (T0, T0 + 9, T0 + 10, T0 + 11)
    return ann, [reading(ann["email"], t) for t in times], [step(ann["serialNumber"], t) for t in times]


@pytest.mark.parametrize(
    ("scope", "kept"),
    [("all-history", [T0, T0 + 9, T0 + 10, T0 + 11]), ("since-consent", [T0 + 10, T0 + 11])],
)
def test_consent_scope_decides_which_readings_are_kept(scope, kept):
    ann, readings, steps = _before_and_after_consent()
    out = run_jobs(customers=[ann], readings=readings, steps=steps, params={"consent_scope": scope})
    assert sorted(out["accelerometer_trusted"]["timestamp"]) == kept
    assert sorted(out["step_trainer_trusted"]["sensorReadingTime"]) == kept
    assert sorted(out["machine_learning_curated"]["timestamp"]) == kept
    (row,) = out["customers_curated"].iter_rows(named=True)
    assert (row["accelerometer_readings"], row["first_reading_day"]) == (len(kept), datetime.fromtimestamp(kept[0] / 1000, UTC).date())


def test_the_run_summary_counts_what_the_scope_kept_out(tmp_path):
    ann, readings, steps = _before_and_after_consent()
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, write_landing(tmp_path / "src", [ann], readings, steps))
    assert run(wh, KEY).out_of_scope == 0
    summary = run(wh, KEY, consent_scope="since-consent")
    by_table = {r.output: r.rows_out_of_scope for r in summary.results}
    assert (by_table["accelerometer_trusted"], by_table["step_trainer_trusted"]) == (2, 2)
    assert summary.out_of_scope == 4
    assert wh.info("accelerometer_trusted").rows == 2
    # unchanged on the next run, and still reported
    again = run(wh, KEY, consent_scope="since-consent")
    assert not again.changed and again.out_of_scope == 4


def test_the_consent_scope_is_a_warehouse_setting(tmp_path):
    root = tmp_path / "wh"
    root.mkdir()
    assert resolve({}, warehouse=root).consent_scope == "all-history"
    (root / "stedi.toml").write_text('consent_scope = "since-consent"\n')
    assert resolve({}, warehouse=root).consent_scope == "since-consent"
    assert resolve({"STEDI_CONSENT_SCOPE": "all-history"}, warehouse=root).consent_scope == "all-history"
    assert resolve({}, warehouse=root, consent_scope="all-history").consent_scope == "all-history"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('consent_scope = "sometimes"', "consent scope must be one of all-history, since-consent"),
        ('pseudonym_key = "x"', "unknown setting 'pseudonym_key'"),
        ("consent_scope = ", "not valid TOML"),
    ],
)
def test_a_bad_settings_file_is_a_clear_error(tmp_path, toml, message):
    (tmp_path / "stedi.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        resolve({}, warehouse=tmp_path)


def test_a_settings_file_that_is_not_text_is_a_clear_error(tmp_path):
    (tmp_path / "stedi.toml").write_bytes(b"consent_scope = \"\xff\"\n")
    with pytest.raises(ConfigError, match=r"cannot read .*stedi\.toml: .*utf-8"):
        resolve({}, warehouse=tmp_path)


def test_run_consent_scope_option(tmp_path):
    ann, readings, steps = _before_and_after_consent()
    src = write_landing(tmp_path / "src", [ann], readings, steps)
    runner = CliRunner()
    wh = str(tmp_path / "wh")
    assert runner.invoke(cli, ["--warehouse", wh, "ingest", str(src)]).exit_code == 0
    result = runner.invoke(cli, ["--warehouse", wh, "run", "--consent-scope", "since-consent"])
    assert result.exit_code == 0, result.output
    assert "consent scope since-consent kept 4 reading(s) out" in result.output
    bad = runner.invoke(cli, ["--warehouse", wh, "run", "--consent-scope", "never"])
    assert bad.exit_code == 2 and "never" in bad.output


# -- consent history -----------------------------------------------------------------------------


def _history(records):
    out = run_jobs(customers=records)["customer_consent_history"]
    return [
        (r["version"], r["change"], r["shareWithResearchAsOfDate"], r["valid_from"], r["valid_to"], r["is_current"])
        for r in out.sort("subject_key", "version").iter_rows(named=True)
    ]


@pytest.mark.parametrize(
    ("consents", "expected"),
    [
        pytest.param([T0], [(1, "given", T0, 0, None, True)], id="given"),
        pytest.param([None], [(1, "not given", None, 0, None, True)], id="never given"),
        pytest.param(
            [T0, None],
            [(1, "given", T0, 0, 1, False), (2, "withdrawn", None, 1, None, True)],
            id="withdrawn",
        ),
        pytest.param(
            [None, T0 + 5, T0 + 5, T0 + 8],
            [(1, "not given", None, 0, 1, False), (2, "given", T0 + 5, 1, 3, False), (3, "moved", T0 + 8, 3, None, True)],
            id="given then moved; a repeated state adds no version",
        ),
        pytest.param(
            [T0, None, T0 + 3],
            [(1, "given", T0, 0, 1, False), (2, "withdrawn", None, 1, 2, False), (3, "given", T0 + 3, 2, None, True)],
            id="withdrawn then given again",
        ),
    ],
)
def test_consent_history_has_one_version_per_change(consents, expected):
    records = [customer("Ann A", lastUpdateDate=T0 + i, shareWithResearchAsOfDate=c) for i, c in enumerate(consents)]
    got = _history(records[::-1])  # the order of arrival does not matter, lastUpdateDate does
    assert got == [(v, ch, c, T0 + f, None if t is None else T0 + t, cur) for v, ch, c, f, t, cur in expected]


def test_consent_history_is_pseudonymous_and_covers_every_customer():
    ann, bob = customer("Ann A"), customer("Bob B", shareWithResearchAsOfDate=None)
    out = run_jobs(customers=[ann, bob])["customer_consent_history"]
    assert sorted(out["subject_key"]) == sorted(subject_key(c["email"], KEY) for c in (ann, bob))
    # keyed apart from the curated pseudonym: no curated row joins to a row of the history
    assert not set(out["subject_key"]) & {customer_key(c["email"], KEY) for c in (ann, bob)}
    assert not {"email", "customerName", "phone", "birthDay", "serialNumber", "customer_key"} & set(out.columns)


# -- consent changes reach every table on the next run -------------------------------------------


def _tables(wh):
    return {name: wh.scan(name).collect().sort(wh.scan(name).collect_schema().names()) for name in OUTPUTS}


def _rebuilt(tmp_path, *sources, scope="all-history"):
    fresh = Warehouse.open(Settings(warehouse=tmp_path / f"rebuild-{len(list(tmp_path.iterdir()))}", consent_scope=scope))
    for src in sources:
        ingest(fresh, src)
    run(fresh, KEY)
    return _tables(fresh)


def _assert_same_tables(got, expected):
    from polars.testing import assert_frame_equal

    for name in OUTPUTS:
        drop = ["recorded_at"] if name == "customer_consent_history" else []  # when it was ingested
        assert_frame_equal(got[name].drop(drop), expected[name].drop(drop), check_row_order=False)


@pytest.mark.parametrize("scope", ["all-history", "since-consent"])
def test_withdrawing_then_giving_consent_again_reaches_every_table(tmp_path, scope):
    ann, bob = customer("Ann A", shareWithResearchAsOfDate=T0), customer("Bob B")
    readings = [reading(c["email"], T0 + DAY * d) for c in (ann, bob) for d in range(4)]
    steps = [step(c["serialNumber"], T0 + DAY * d) for c in (ann, bob) for d in range(4)]
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh", consent_scope=scope))
    first = write_landing(tmp_path / "b1", [ann, bob], readings, steps, name="b1")
    ingest(wh, first)
    run(wh, KEY)
    ann_key = customer_key(ann["email"], KEY)
    assert ann_key in wh.scan("customers_curated").collect()["customer_key"].to_list()

    withdraw = write_landing(tmp_path / "b2", [ann | {"lastUpdateDate": T0 + DAY, "shareWithResearchAsOfDate": None}], name="b2")
    ingest(wh, withdraw)
    run(wh, KEY)
    tables = _tables(wh)
    assert ann["email"].lower() not in tables["customer_trusted"]["email"].to_list()
    assert ann["email"].lower() not in tables["accelerometer_trusted"]["user"].to_list()
    assert ann["serialNumber"] not in tables["step_trainer_trusted"]["serialNumber"].to_list()
    for name in ("customers_curated", "machine_learning_curated"):
        assert ann_key not in tables[name]["customer_key"].to_list(), name
    history = tables["customer_consent_history"].filter(subject_key=subject_key(ann["email"], KEY)).sort("version")
    assert history["change"].to_list() == ["given", "withdrawn"]
    _assert_same_tables(tables, _rebuilt(tmp_path, first, withdraw, scope=scope))

    # consent given again, two days in: under since-consent only the later readings come back
    again = write_landing(
        tmp_path / "b3", [ann | {"lastUpdateDate": T0 + 2 * DAY, "shareWithResearchAsOfDate": T0 + 2 * DAY}], name="b3"
    )
    ingest(wh, again)
    run(wh, KEY)
    tables = _tables(wh)
    kept = tables["accelerometer_trusted"].filter(user=ann["email"].lower())["timestamp"].sort().to_list()
    assert kept == [T0 + DAY * d for d in (range(4) if scope == "all-history" else (2, 3))]
    _assert_same_tables(tables, _rebuilt(tmp_path, first, withdraw, again, scope=scope))


def test_each_run_stamps_its_id_so_the_consent_state_it_used_can_be_found(tmp_path):
    ann = customer("Ann A")
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, write_landing(tmp_path / "b1", [ann], name="b1"))
    first = run(wh, KEY)
    ingest(wh, write_landing(tmp_path / "b2", [ann | {"lastUpdateDate": T0 + 1, "shareWithResearchAsOfDate": None}], name="b2"))
    second = run(wh, KEY)
    history = wh.table("customer_consent_history")
    by_run = {s.summary.additional_properties.get("stedi.run-id"): s.snapshot_id for s in history.metadata.snapshots}
    used_by_first = history.scan(snapshot_id=by_run[first.run_id]).to_arrow().to_pylist()
    used_by_second = history.scan(snapshot_id=by_run[second.run_id]).to_arrow().to_pylist()
    assert [(r["change"], r["is_current"]) for r in used_by_first] == [("given", True)]
    assert sorted((r["change"], r["is_current"]) for r in used_by_second) == [("given", False), ("withdrawn", True)]
    trusted = wh.table("customer_trusted").current_snapshot().summary.additional_properties
    assert trusted["stedi.run-id"] == second.run_id and trusted["stedi.consent-scope"] == "all-history"
