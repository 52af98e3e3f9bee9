"""The memory limit: one setting (stedi.toml, STEDI_MEMORY_LIMIT) given to DuckDB and Polars, which
spill past it into a private folder; tables the same whatever the limit."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import duckdb
import pytest

from stedi import quality, resources
from stedi.config import Settings, memory_bytes, resolve
from stedi.contracts import load_contracts
from stedi.errors import ConfigError
from stedi.generate import generate
from stedi.ingest import ingest
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY
from tests.tables import assert_same, tables


@pytest.fixture(autouse=True)
def no_limit_after():
    yield
    resources.apply(Settings())  # the other tests' engines as they were


def duckdb_limit(con) -> str:
    return con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


@pytest.mark.parametrize(("text", "size"), [("4GB", 4 * 10**9), ("512 MiB", 512 * 2**20), ("1.5gb", 1_500_000_000), ("64000000", 64 * 10**6)])
def test_sizes_in_decimal_or_binary_units(text, size):
    assert memory_bytes(text) == size


@pytest.mark.parametrize(("text", "says"), [("lots", "must be a size"), ("-1GB", "must be a size"), ("2 GBs", "must be a size"), ("10MB", "too small")])
def test_a_bad_size_is_one_line(text, says):
    with pytest.raises(ConfigError, match=says):
        resolve({"STEDI_MEMORY_LIMIT": text})


def test_the_limit_comes_from_stedi_toml_or_the_environment(tmp_path):
    (tmp_path / "stedi.toml").write_text('memory_limit = "3GB"\n')
    assert resolve({"STEDI_WAREHOUSE": str(tmp_path)}).memory_bytes == 3 * 10**9
    assert resolve({"STEDI_WAREHOUSE": str(tmp_path), "STEDI_MEMORY_LIMIT": "1GiB"}).memory_bytes == 2**30
    assert resolve({"STEDI_WAREHOUSE": str(tmp_path / "other")}).memory_limit is None


def test_duckdb_and_polars_are_given_the_limit_and_it_is_lifted_again(tmp_path):
    before = quality._database()  # opened before the limit: told too
    Warehouse.open(Settings(warehouse=tmp_path / "wh", memory_limit="256MiB"))
    assert duckdb_limit(resources.connect()) == duckdb_limit(before) == "256.0 MiB"
    assert os.environ[resources.POLARS_BUDGET] == "256"
    folder = resources.connect().execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    assert folder == os.environ[resources.POLARS_SPILL] == resources.spill_folder()
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700  # what spills is personal data
    Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    assert resources.POLARS_BUDGET not in os.environ
    assert duckdb_limit(before) == duckdb_limit(duckdb.connect())  # DuckDB's own default again


def test_duckdb_keeps_to_the_limit(tmp_path):
    Warehouse.open(Settings(warehouse=tmp_path / "wh", memory_limit="64MB"))
    con = resources.connect()
    with pytest.raises(duckdb.OutOfMemoryException):  # a value larger than the limit cannot spill
        con.execute("SELECT list(range) FROM range(30000000)").fetchall()
    # what can spill does: a sort of about twice the limit, into the private folder
    Warehouse.open(Settings(warehouse=tmp_path / "wh", memory_limit="256MB"))
    assert con.execute("SELECT count(*) FROM (SELECT range, random() r FROM range(30000000) ORDER BY r)").fetchall() == [(30_000_000,)]


def test_a_user_s_own_polars_budget_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv(resources.POLARS_BUDGET, "999")
    Warehouse.open(Settings(warehouse=tmp_path / "wh", memory_limit="256MiB"))
    assert os.environ[resources.POLARS_BUDGET] == "999"


def test_tables_are_the_same_under_a_tight_limit(tmp_path):
    source = tmp_path / "source"
    generate(60, seed=5, out=source)
    built = {}
    for limit in (None, "100MB"):
        wh = Warehouse.open(Settings(warehouse=tmp_path / f"wh-{limit}", memory_limit=limit))
        ingest(wh, source)
        run(wh, KEY)
        built[limit] = tables(wh, [n for n in load_contracts() if n != "run_log"])  # (when each job ran)
    assert_same(built["100MB"], built[None])


def test_the_spill_folder_goes_with_the_process(tmp_path):
    code = "from stedi import resources; print(resources.spill_folder())"
    folder = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert folder and not os.path.exists(folder)


# -- a long-lived process (watch) -------------------------------------------------------------------

GIVES_BACK = """
import os, sys
from stedi import resources
resources.long_lived()
import polars, duckdb  # (jemalloc reads its settings when Polars loads: after long_lived)
con = resources.connect()
flush = con.execute("SELECT current_setting('allocator_flush_threshold')").fetchall()[0][0]
print(os.environ.get("_RJEM_MALLOC_CONF"), flush, duckdb.connect().execute("SELECT current_setting('allocator_flush_threshold')").fetchall()[0][0])
"""


def flush_bytes(text: str) -> int:
    """DuckDB's spelling of a size in bytes: "134217728B", "16MiB"."""
    number, unit = (text[:-3], 2**20) if text.endswith("MiB") else (text[:-1], 1)
    return int(float(number) * unit)


@pytest.mark.parametrize("own", [None, "dirty_decay_ms:5000"])
def test_a_long_lived_process_tells_the_allocators_to_give_memory_back(own):
    env = {k: v for k, v in os.environ.items() if k != resources.POLARS_JEMALLOC} | ({resources.POLARS_JEMALLOC: own} if own else {})
    out = subprocess.run([sys.executable, "-c", GIVES_BACK], capture_output=True, text=True, env=env, check=True).stdout.split()
    jemalloc, ours, plain = out
    # (Polars puts its own defaults first: jemalloc takes the last word for each)
    assert jemalloc.endswith(own or "background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0")
    assert own is None or "background_thread" not in jemalloc  # a user's own left alone
    assert (flush_bytes(ours), flush_bytes(plain)) == (16 * 2**20, 128 * 2**20)  # DuckDB's flush threshold: ours, its default


def test_a_process_that_is_not_long_lived_keeps_the_defaults(monkeypatch):
    monkeypatch.setattr(resources, "_long_lived", False)  # (a watch run in this process by another test sets it for good)
    con = resources.connect()
    assert flush_bytes(con.execute("SELECT current_setting('allocator_flush_threshold')").fetchall()[0][0]) == 128 * 2**20


def test_release_returns_pyiceberg_s_cache_arrow_s_pool_and_glibc_s_free_lists(monkeypatch):
    import pyarrow as pa
    import pyiceberg.manifest

    calls = []
    monkeypatch.setattr(pyiceberg.manifest, "clear_manifest_cache", lambda: calls.append("manifests"))

    class Libc:
        def malloc_trim(self, pad):
            calls.append(("trim", pad))

    class Pool:
        def release_unused(self):
            calls.append("arrow")

    monkeypatch.setattr(resources, "_libc", Libc)
    monkeypatch.setattr(pa, "default_memory_pool", Pool)
    resources.release()
    assert calls == ["manifests", "arrow", ("trim", 0)]
    monkeypatch.setattr(resources, "_libc", lambda: None)  # no glibc (musl, macOS): Arrow's pool only
    resources.release()
    assert calls[-1] == "arrow"


def test_release_empties_the_manifest_cache_pyiceberg_keeps_across_reads(tmp_path):
    from pyiceberg.manifest import _manifest_cache

    source = tmp_path / "in"
    generate(20, seed=3, out=source)
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, source)
    assert wh.data_files("accelerometer_landing")  # (pyiceberg's plan of the files)
    assert len(_manifest_cache) > 0  # kept by pyiceberg, process-wide, after the read
    resources.release()
    assert len(_manifest_cache) == 0
