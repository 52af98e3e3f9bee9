"""The audit finds every kind of privacy violation it names, and a run fails on them."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest
from click.testing import CliRunner
from pyiceberg.types import StringType

from stedi.audit import audit
from stedi.cli import cli
from stedi.config import Settings, resolve
from stedi.contracts import contract
from stedi.erasure import forget
from stedi.errors import AuditError
from stedi.ingest import ingest
from stedi.privacy import customer_key
from stedi.runner import run
from stedi.warehouse import Change, Warehouse
from tests.factories import KEY, T0, customer, reading, step, write_landing

ANN = customer("Ann A", shareWithResearchAsOfDate=T0 + 10)
BOB = customer("Bob B")
CY = customer("Cy C", shareWithResearchAsOfDate=None)


@pytest.fixture
def wh(tmp_path):
    people = (ANN, BOB, CY)
    readings = [reading(c["email"], T0 + i, x=float(n)) for n, c in enumerate(people) for i in (0, 20)]
    steps = [step(c["serialNumber"], T0 + i, distanceFromObject=100 * n) for n, c in enumerate(people) for i in (0, 20)]
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, write_landing(tmp_path / "src", people, readings, steps), KEY)
    run(wh, KEY)  # raises if its audit finds anything
    return wh


def _append(wh, table, rows, **props):
    wh.commit_staged([wh.stage(Change(table, pa.Table.from_pylist(rows, schema=contract(table).arrow_schema()), "append", props))])


def _ml_row(who, **overrides):
    return {"customer_key": customer_key(who["email"], KEY), "timestamp": T0, "distanceFromObject": 0, "x": 0.0, "y": 0.0, "z": -1.0} | overrides


def _add_column(wh, table, name):
    with wh.table(table).update_schema() as update:
        update.add_column(name, StringType())


def _stray_file(wh):
    (wh.root / "landing" / "customer" / "dropped-in.json").write_text("{}\n")


def _shrink_a_raw_file(wh):
    path = next((wh.root / "landing" / "accelerometer").iterdir())
    path.write_bytes(path.read_bytes()[:-5])


def _erase_then_restore(wh):
    row = wh.scan("customer_trusted").collect().filter(email=BOB["email"].lower()).to_arrow()
    forget(wh, KEY, [BOB["email"]])
    _append(wh, "customer_trusted", row.to_pylist())


def _since_consent(wh, then):
    """The warehouse configured since-consent (its stedi.toml), then ``then``; the warehouse as the
    next command opens it."""
    (wh.root / "stedi.toml").write_text('consent_scope = "since-consent"\n')
    then()
    return Warehouse.open(resolve(warehouse=wh.root))


CASES = [
    pytest.param(
        lambda wh: _append(wh, "customer_trusted", [CY | {"email": CY["email"].lower(), "birthDay": None, "shareWithResearchAsOfDate": T0}]),
        "customer_trusted: customer without research consent",
        id="non-consenting customer in customer_trusted",
    ),
    pytest.param(
        lambda wh: _append(wh, "accelerometer_trusted", [reading(CY["email"].lower())]),
        "accelerometer_trusted: customer without research consent",
        id="non-consenting readings in accelerometer_trusted",
    ),
    pytest.param(
        lambda wh: _append(wh, "step_trainer_trusted", [step(CY["serialNumber"])]),
        "step_trainer_trusted: customer without research consent",
        id="a non-consenting customer's device in step_trainer_trusted",
    ),
    pytest.param(
        lambda wh: _append(wh, "machine_learning_curated", [_ml_row(CY)]),
        "machine_learning_curated: customer without research consent",
        id="non-consenting customer in machine_learning_curated",
    ),
    pytest.param(
        lambda wh: _append(wh, "machine_learning_curated", [_ml_row(BOB, x=0.0, distanceFromObject=100)]),
        "machine_learning_curated: row pairing two customers",
        id="a training row pairing Bob's device with Ann's phone",
    ),
    pytest.param(
        lambda wh: _add_column(wh, "customers_curated", "email"),
        "customers_curated: column not in its contract",
        id="an email column in customers_curated",
    ),
    pytest.param(
        lambda wh: _append(wh, "customers_curated", [{"customer_key": "ann@test.com", "accelerometer_readings": 1,
                                                       "first_reading_day": date(2022, 6, 18), "last_reading_day": date(2022, 6, 18)}]),
        "customers_curated: identifying value",
        id="an email-shaped value in customers_curated",
    ),
    pytest.param(
        lambda wh: _since_consent(wh, lambda: _append(wh, "accelerometer_trusted", [reading(ANN["email"].lower(), T0 + 1)],
                                                      **{"stedi.consent-scope": "all-history"})),
        "accelerometer_trusted: reading before consent",
        id="a reading before consent under the configured since-consent, whatever the stamp says",
    ),
    pytest.param(_stray_file, "ingest_manifest: raw file not in the manifest", id="a raw file not in the manifest"),
    pytest.param(_shrink_a_raw_file, "ingest_manifest: raw file changed since it was recorded", id="a raw file changed"),
    pytest.param(_erase_then_restore, "customer_trusted: erased customer", id="an erased customer back in customer_trusted"),
]


@pytest.mark.parametrize(("tamper", "expected"), CASES)
def test_the_audit_finds_each_violation(wh, tamper, expected):
    wh = tamper(wh) or wh
    found = [str(v) for v in audit(wh, KEY)]
    assert any(v.startswith(expected) for v in found), found
    assert not any(ANN["email"].lower() in v or BOB["email"].lower() in v for v in found)  # never an email


def test_a_reading_before_consent_is_fine_under_all_history(wh):
    _append(wh, "accelerometer_trusted", [reading(ANN["email"].lower(), T0 + 1)], **{"stedi.consent-scope": "all-history"})
    assert audit(wh, KEY) == []


def test_the_audit_command_and_the_run_fail_on_a_violation(wh):
    runner = CliRunner()
    args = ["--warehouse", str(wh.root)]
    ok = runner.invoke(cli, [*args, "audit"], env={"STEDI_PSEUDONYM_KEY": KEY.decode()})
    assert ok.exit_code == 0 and "audit passed" in ok.output
    _stray_file(wh)
    bad = runner.invoke(cli, [*args, "audit"], env={"STEDI_PSEUDONYM_KEY": KEY.decode()})
    assert bad.exit_code == 1
    assert "raw file not in the manifest: landing/customer/dropped-in.json" in bad.output
    assert "the audit found 1 privacy violation(s)" in bad.output
    ran = runner.invoke(cli, [*args, "run"], env={"STEDI_PSEUDONYM_KEY": KEY.decode()})
    assert ran.exit_code == 1
    assert "the audit found 1 privacy violation(s); the run changed no table; listed above" in ran.output


def test_a_run_whose_output_breaks_a_rule_commits_nothing(wh, monkeypatch):
    import narwhals as nw

    import pipelines.accelerometer_landing_to_trusted as job

    def everyone(frame, customer_trusted, *, email_column):  # the consent filter, forgotten
        return frame.with_columns(shareWithResearchAsOfDate=nw.lit(0))

    monkeypatch.setattr(job, "only_consenting", everyone)
    before = {name: wh.info(name).snapshot_id for name in ("customer_trusted", "accelerometer_trusted", "customers_curated")}
    with pytest.raises(AuditError, match="nothing was committed") as err:
        run(wh, KEY, full_refresh=True)
    assert any(str(v).startswith("accelerometer_trusted: customer without research consent") for v in err.value.violations)
    assert {name: wh.info(name).snapshot_id for name in before} == before


def test_a_run_audits_its_own_consent_scope_before_committing(tmp_path, monkeypatch):
    """The scope checked is the one the run uses, not the one stamped on the tables before it."""
    import pipelines.accelerometer_landing_to_trusted as job
    from stedi import privacy

    def all_of_them(frame, *, taken_at, consent_scope):  # the scope, forgotten
        return privacy.mark_consent_scope(frame, taken_at=taken_at, consent_scope="all-history")

    monkeypatch.setattr(job, "mark_consent_scope", all_of_them)
    fresh = Warehouse.open(Settings(warehouse=tmp_path / "fresh", consent_scope="since-consent"))
    ingest(fresh, write_landing(tmp_path / "src", [ANN], [reading(ANN["email"], T0), reading(ANN["email"], T0 + 20)]), KEY)
    with pytest.raises(AuditError, match="nothing was committed") as err:
        run(fresh, KEY)
    assert any(str(v).startswith("accelerometer_trusted: reading before consent") for v in err.value.violations)
    assert fresh.info("accelerometer_trusted").snapshot_id is None


def test_ingest_seeds_the_audits_hash_cache_and_a_copy_changed_at_once_is_still_caught(tmp_path, monkeypatch):
    """Ingest records the hash of each copy it wrote, so the first audit reads none back; a copy
    changed right after (same size, its modification time set back) is hashed again and caught."""
    import os

    from stedi import files_audit

    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, write_landing(tmp_path / "src", [ANN], [reading(ANN["email"], T0, x=1.0)], []), KEY)
    read_back = []
    real = files_audit.hashes_of

    def counting(wh, wanted):
        cache = files_audit._cache_file(wh)
        hits = {k for k, v in __import__("json").loads(cache.read_text()).items()} if cache.exists() else set()
        read_back.extend(rel for rel in wanted if rel not in hits)
        return real(wh, wanted)

    monkeypatch.setattr(files_audit, "hashes_of", counting)
    assert files_audit.audit_files(wh) == []
    assert read_back == []  # every copy's hash came from what ingest recorded

    path = next((wh.root / "landing" / "accelerometer").iterdir())
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[data.index(b'"x": 1.0') + 6] = ord("7")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [v.check for v in files_audit.audit_files(wh)] == ["raw file changed since it was recorded"]


def test_a_copy_changed_while_the_ingest_runs_is_not_vouched_for(tmp_path, monkeypatch):
    """A copy changed after ingest wrote it but before the ingest ended keeps no seeded hash: the
    audit reads it and finds the change."""
    from stedi import files_audit

    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    real = files_audit.remember

    def tamper_first(wh, written):
        path = next((wh.root / "landing" / "accelerometer").iterdir())
        data = bytearray(path.read_bytes())
        data[data.index(b'"x": 1.0') + 6] = ord("7")
        path.write_bytes(bytes(data))  # the same size, a new version
        real(wh, written)

    monkeypatch.setattr(files_audit, "remember", tamper_first)
    ingest(wh, write_landing(tmp_path / "src", [ANN], [reading(ANN["email"], T0, x=1.0)], []), KEY)
    assert [v.check for v in files_audit.audit_files(wh)] == ["raw file changed since it was recorded"]
