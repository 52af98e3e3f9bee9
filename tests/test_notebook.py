"""notebooks/explore.ipynb: committed without outputs, and run whole (nbclient) over a warehouse built
from sample_data/ by the CLI, its numbers checked against the warehouse's own."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

from stedi.cli import cli
from tests.conftest import ROOT, SAMPLE

NOTEBOOK = ROOT / "notebooks" / "explore.ipynb"

# Appended to the notebook before it runs: what its variables hold, for the test to check.
_REPORT_CELL = """
import json
print("REPORT " + json.dumps({
    "customers": customers.to_dicts(),
    "readings": readings.to_dicts(),
    "customer_key": customer_key,
    "one_rows": one.height,
    "features": FEATURES,
    "label": LABEL,
    "train": [list(X_train.shape), list(y_train.shape), sorted(train["customer_key"].unique())],
    "test": [list(X_test.shape), list(y_test.shape), sorted(test["customer_key"].unique())],
}))
"""


def test_the_committed_notebook_holds_no_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    dirty = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert dirty == [], f"code cells {dirty} of {NOTEBOOK.name} hold outputs: clear them before committing"
    assert "widgets" not in nb.metadata


@pytest.fixture(scope="module")
def sample_warehouse(tmp_path_factory):
    """sample_data/ ingested and run by the CLI, as a user would (its own key file)."""
    root = tmp_path_factory.mktemp("notebook") / "lakehouse"
    runner = CliRunner()
    for args in (["ingest", str(SAMPLE)], ["run"]):
        result = runner.invoke(cli, ["--warehouse", str(root), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    rows = json.loads(runner.invoke(cli, ["--warehouse", str(root), "tables", "--format", "json"]).output)
    return root, {r["table"]: r["rows"] for r in rows}


@pytest.mark.parametrize("zone", ["all", "curated"])
def test_the_notebook_runs_over_the_sample_warehouse(sample_warehouse, zone, monkeypatch, tmp_path):
    """As an engineer who sees every zone, and as an analyst who sees the curated zone only."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    root, rows = sample_warehouse
    monkeypatch.setenv("STEDI_WAREHOUSE", str(root))  # the kernel inherits the environment
    monkeypatch.setenv("STEDI_ZONE", zone)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_REPORT_CELL))
    nbclient.NotebookClient(nb, timeout=180, resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    charts = [o["data"]["image/svg+xml"] for o in outputs if "image/svg+xml" in o.get("data", {})]
    assert len(charts) == 2, "the funnel and the one customer's readings, drawn as SVG"
    assert all(svg.lstrip().startswith("<svg") for svg in charts)
    assert "Consent funnel" in charts[0]
    assert all(f"{axis} acceleration" in charts[1] for axis in "xyz") and "distance from object" in charts[1]
    report = json.loads(next(o.text for o in outputs if o.get("name") == "stdout" and o.text.startswith("REPORT ")).removeprefix("REPORT "))

    # the funnel: the tables' own row counts (their snapshots' summaries), and people counted once
    history = pl.read_parquet(_data_files(root, "customer_consent_history"))
    ml = pl.read_parquet(_data_files(root, "machine_learning_curated"))
    funnel = [r["customers"] for r in report["customers"]]
    everyone = [
        rows["customer_landing"],
        history["subject_key"].n_unique(),
        rows["customer_trusted"],
        rows["customers_curated"],
        ml["customer_key"].n_unique(),
    ]
    assert funnel == (everyone if zone == "all" else everyone[3:])  # the curated zone's steps only
    assert funnel == sorted(funnel, reverse=True) and funnel[-1] > 0
    by_sensor = {r["sensor"]: (r["landing"], r["trusted"], r["curated"]) for r in report["readings"]}
    expected = {
        "accelerometer": (rows["accelerometer_landing"], rows["accelerometer_trusted"], rows["machine_learning_curated"]),
        "step trainer": (rows["step_trainer_landing"], rows["step_trainer_trusted"], ml.unique(["customer_key", "timestamp"]).height),
    }
    if zone == "curated":
        expected = {sensor: (None, None, curated) for sensor, (_, _, curated) in expected.items()}
    assert by_sensor == expected

    # one customer: the one with the most pairs, all of their pairs
    per_customer = ml.group_by("customer_key").len()
    assert report["one_rows"] == per_customer["len"].max()
    assert per_customer.filter(pl.col("customer_key") == report["customer_key"])["len"].item() == report["one_rows"]

    # the training set: every row once, split by customer
    assert (report["features"], report["label"]) == (["x", "y", "z"], "distanceFromObject")
    (x_train, y_train, train_keys), (x_test, y_test, test_keys) = report["train"], report["test"]
    assert x_train[1] == x_test[1] == 3 and y_train == [x_train[0]] and y_test == [x_test[0]]
    assert x_train[0] + x_test[0] == rows["machine_learning_curated"]
    assert not set(train_keys) & set(test_keys) and train_keys and test_keys
    assert sorted(train_keys + test_keys) == sorted(ml["customer_key"].unique())


def _data_files(root, name: str) -> list[str]:
    from stedi.config import Settings
    from stedi.lakeview import Lake

    lake = Lake(Settings(warehouse=root))
    return lake.data_files(lake.state(name))
