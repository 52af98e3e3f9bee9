from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

import tests.profiles  # noqa: F401  (the hypothesis profile: fast unless HYPOTHESIS_PROFILE=thorough)
from stedi.config import ENV_VARS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
STARTER = ROOT.parent / "shared" / "stedi-starter"


@pytest.fixture(autouse=True)
def _hide_user_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never see the user's own STEDI_* settings, nor write into ./lakehouse or ~/.cache."""
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def replace_job(monkeypatch: pytest.MonkeyPatch):
    """``replace_job(module, transform=...)``: the job a module of pipelines/ declares, changed for
    one test (the jobs are loaded once per process, so the cache is cleared around it)."""
    import dataclasses

    from stedi.jobs import load_jobs

    def change(module, **fields):
        monkeypatch.setattr(module, "JOB", dataclasses.replace(module.JOB, **fields))
        load_jobs.cache_clear()

    yield change
    monkeypatch.undo()
    load_jobs.cache_clear()


@pytest.fixture(scope="session")
def spark():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("PySpark needs Java")
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the executors need this venv's pyarrow
    session = (
        SparkSession.builder.master("local[2]")
        .appName("stedi-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture
def starter() -> Path:
    if not (STARTER / "customer").is_dir():
        pytest.skip("the STEDI starter data is not at ../shared/stedi-starter")
    return STARTER


# -- PostgreSQL, for the shared catalog ------------------------------------------------------------


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(versions[-1]) if versions else None


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server on 127.0.0.1: the one .ci/run started ($STEDI_TEST_POSTGRES_URI), else a
    throwaway cluster started here from the installed server binaries, else the tests skip."""
    import os
    import socket
    import subprocess

    given = os.environ.get("STEDI_TEST_POSTGRES_URI")
    if given:
        yield given.rstrip("/")
        return
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server here (.ci/run installs Debian's postgresql and starts it)")
    import tempfile

    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="stedi-postgres-"))  # not under pytest's root-only folder
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        if shutil.which("runuser") is None:
            pytest.skip("PostgreSQL cannot run as root and runuser is missing")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data = root / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "stedi", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://stedi@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def catalog_uri(postgres_server: str) -> str:
    """A fresh, empty PostgreSQL database for one test's Iceberg catalog."""
    import uuid

    import psycopg

    name = f"stedi_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server.replace('+psycopg', '')}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"
