"""How much memory the engines of one process may use: one setting (``memory_limit``), given to
DuckDB and to Polars alike, each spilling past it to a private temporary folder.

:func:`apply` is called with the settings of every warehouse opened (:class:`stedi.warehouse.Warehouse`).
DuckDB is told through every connection stedi opens (:func:`connect`: ``memory_limit``;
connections already open are told again); Polars through its out-of-core
budget (``POLARS_OOC_MEMORY_BUDGET_MB`` and ``POLARS_OOC_SPILL_DIR``, reloaded if Polars is
already imported), which its streaming engine keeps to. The two engines take turns within a run
(Polars computes a job's output, DuckDB then checks its rules), so each is given the whole limit.
What spills holds personal data: with or without a limit, both spill into one folder of the
user's own (0700), removed at exit (DuckDB's default is ``.tmp`` in the working directory). The
Spark engine is sized by Spark's own settings (``spark.driver.memory``, ``spark.executor.memory``).

A long-lived process (``stedi-etl watch``) calls :func:`long_lived` before the engines load and
:func:`release` after each burst of work: the allocators give back what they keep between bursts
(Polars' jemalloc decays freed pages at once, DuckDB flushes its allocator after a task past 16 MiB,
Arrow's pool and glibc's free lists are returned), so that what the process holds does not ratchet
up to the largest burst it has seen.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import sys
import tempfile
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from stedi.config import Settings

#: The environment variables of Polars' out-of-core engine that :func:`apply` sets.
POLARS_BUDGET, POLARS_SPILL = "POLARS_OOC_MEMORY_BUDGET_MB", "POLARS_OOC_SPILL_DIR"

_limit: int | None = None  # bytes, as last applied
_applied = False
_spill: str | None = None
_connections: weakref.WeakSet = weakref.WeakSet()
_set_by_us: dict[str, str] = {}  # the Polars variables this process set (a user's own are left alone)
_long_lived = False
#: jemalloc's settings in Polars (its symbols prefixed _rjem_): freed pages returned at once, by a thread of its own.
POLARS_JEMALLOC = "_RJEM_MALLOC_CONF"
_JEMALLOC_RETURNS = "background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0"
#: DuckDB's allocator flushed after any task whose peak passed this (its default: 128 MiB).
_DUCKDB_FLUSH = "16MiB"


def apply(settings: Settings) -> None:
    """Make ``settings.memory_limit`` the limit of this process's engines (or lift the one stedi set)."""
    global _limit, _applied
    limit = settings.memory_bytes
    if _applied and limit == _limit:
        return
    _limit, _applied = limit, True
    wanted = {POLARS_SPILL: spill_folder()} | ({POLARS_BUDGET: str(max(limit // 2**20, 1))} if limit else {})
    for name in (POLARS_BUDGET, POLARS_SPILL):
        if name in wanted and (name not in os.environ or _set_by_us.get(name) == os.environ[name]):
            os.environ[name] = _set_by_us[name] = wanted[name]
        elif name not in wanted and name in _set_by_us and os.environ.get(name) == _set_by_us.pop(name):
            del os.environ[name]
    if "polars" in sys.modules:  # the budget is read when Polars is imported: told again
        from polars import _plr

        _plr.config_reload_env_var(POLARS_BUDGET)
    for con in list(_connections):
        _configure(con)


def limit() -> int | None:
    """The memory limit applied, in bytes (``None``: the engines' own defaults)."""
    return _limit


def connect(database: str = ":memory:", **kwargs) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (as :func:`duckdb.connect`) kept to the memory limit."""
    import duckdb

    config = dict(kwargs.pop("config", None) or {}) | {"temp_directory": spill_folder()}
    if _limit:
        config["memory_limit"] = f"{_limit // 2**20}MiB"
    if _long_lived:
        config |= {"allocator_flush_threshold": _DUCKDB_FLUSH, "allocator_background_threads": True}
    con = duckdb.connect(database, config=config, **kwargs)
    _connections.add(con)
    return con


def _configure(con: duckdb.DuckDBPyConnection) -> None:
    """A connection opened before the limit changed, told the new one."""
    import duckdb

    try:
        if _limit:
            con.execute(f"SET memory_limit = '{_limit // 2**20}MiB'")
        else:
            con.execute("RESET memory_limit")
    except duckdb.Error:  # closed since, or its configuration locked (the SQL sandbox's): as it was opened
        _connections.discard(con)


def long_lived() -> None:
    """This process lives long and works in bursts: the engines' allocators are told to give back
    what they free (Polars: only if it is not imported yet, and unless the user set jemalloc's own)."""
    global _long_lived
    _long_lived = True
    if "polars" not in sys.modules:
        os.environ.setdefault(POLARS_JEMALLOC, _JEMALLOC_RETURNS)


def release() -> None:
    """Return to the system the memory kept after a burst of work: pyiceberg's cache of manifest
    entries (its ``clear_manifest_cache``, meant for this), Arrow's pool (unused pages) and glibc's
    free lists (``malloc_trim``, where the C library has it)."""
    if "pyiceberg.manifest" in sys.modules:
        sys.modules["pyiceberg.manifest"].clear_manifest_cache()
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _libc():
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def spill_folder() -> str:
    """This process's private folder for what the engines spill (created once, removed at exit)."""
    global _spill
    if _spill is None:
        _spill = tempfile.mkdtemp(prefix="stedi-spill-")  # 0700
        atexit.register(shutil.rmtree, _spill, ignore_errors=True)
    return _spill
