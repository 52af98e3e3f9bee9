"""The generator has the starter data's traits."""

from __future__ import annotations

import duckdb
import pytest

from stedi.generate import generate


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    g = generate(400, seed=11, out=out)
    con = duckdb.connect()
    for source in ("customer", "accelerometer", "step_trainer"):
        con.execute(f"CREATE TABLE {source} AS SELECT * FROM read_json('{out}/{source}/landing/*.json')")
    return g, con


def one(con, sql):
    return con.sql(sql).fetchall()[0]


def test_same_seed_same_bytes(tmp_path):
    generate(20, seed=1, out=tmp_path / "a")
    generate(20, seed=1, out=tmp_path / "b")
    generate(20, seed=2, out=tmp_path / "c")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.json"))
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files)


def test_about_half_consent(data):
    _, con = data
    (share,) = one(con, """
        SELECT avg((shareWithResearchAsOfDate IS NOT NULL)::INT) FROM
        (SELECT * FROM customer QUALIFY row_number() OVER (PARTITION BY email ORDER BY lastUpdateDate DESC) = 1)""")
    assert 0.4 < share < 0.6


def test_thirty_readings_per_device_and_three_per_phone_reading(data):
    _, con = data
    assert one(con, "SELECT min(n), max(n) FROM (SELECT count(*) n FROM step_trainer GROUP BY serialNumber)") == (30, 30)
    assert one(con, "SELECT min(n), max(n) FROM (SELECT count(*) n FROM accelerometer GROUP BY user, timestamp)") == (3, 3)


def test_timestamps_are_shared_by_several_customers(data):
    _, con = data
    (shared,) = one(con, "SELECT count(*) FROM (SELECT sensorReadingTime FROM step_trainer GROUP BY 1 HAVING count(*) > 1)")
    assert shared > 100


def test_some_customers_have_a_later_record(data):
    g, con = data
    (updated,) = one(con, "SELECT count(*) FROM (SELECT email FROM customer GROUP BY 1 HAVING count(*) > 1)")
    assert updated == g.customer_records - g.customers > 10


def test_made_a_block_at_a_time_the_same_bytes_and_the_same_traits(tmp_path, monkeypatch):
    """Past one block of customers, the set is made and written block by block (bounded memory):
    still the same bytes for the same seed, every customer once, files of at most ROWS_PER_FILE rows."""
    import stedi.generate as gen

    monkeypatch.setattr(gen, "BLOCK", 50)
    monkeypatch.setattr(gen, "ROWS_PER_FILE", 1_000)
    a, b = (gen.generate(170, seed=5, out=tmp_path / d) for d in ("a", "b"))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.json"))
    assert a == b and files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.json"))
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    lines = {f: (tmp_path / "a" / f).read_bytes().count(b"\n") for f in files}
    assert max(lines.values()) == 1_000 and a.files == len(files)
    assert sum(lines.values()) == a.customer_records + a.accelerometer_readings + a.step_trainer_readings
    con = duckdb.connect()
    root = tmp_path / "a"
    assert one(con, f"SELECT count(DISTINCT email), count(DISTINCT serialNumber) FROM read_json('{root}/customer/landing/*.json')") == (170, 170)
    assert one(con, f"SELECT min(n), max(n), count(*) FROM (SELECT count(*) n FROM read_json('{root}/step_trainer/landing/*.json') GROUP BY serialNumber)") == (30, 30, 170)
    (owners,) = one(con, f"SELECT count(DISTINCT user) FROM read_json('{root}/accelerometer/landing/*.json')")
    assert 150 <= owners <= 170  # 95 % have the phone app
