from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def spark():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("PySpark needs Java")
    from pyspark.sql import SparkSession

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
