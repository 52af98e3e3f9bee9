"""stedi-etl report: the figures it shows are the warehouse's, it writes nothing into the warehouse,
hostile values stay text, and a real headless Chromium draws its charts without a console error."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from markupsafe import escape

from stedi.cli import cli
from stedi.contracts import load_contracts
from stedi.privacy import reason_kind
from tests.conftest import SAMPLE

#: A payload that would leave a mark if it ever ran.
PAYLOAD = "<script>window.__pwned = 1; document.title = 'pwned'</script>"

_HOSTILE_LINES = [
    # consents and lands in customer_trusted: a name the report must never show, nor run
    {"customerName": PAYLOAD, "email": "mallory.one@example.com", "phone": "8015550000", "birthDay": "1990-01-01",
     "serialNumber": "aaaaaaaa-5563-4144-ab66-03f7b2725de1", "registrationDate": 1655560029112,
     "lastUpdateDate": 1655560029112, "shareWithResearchAsOfDate": 1655560029112},
    # set aside by a rule (drop), its serial number hostile
    {"customerName": "Bad Serial", "email": "mallory.two@example.com", "birthDay": "1990-01-01",
     "serialNumber": "<img src=x onerror=\"window.__pwned=2\">", "registrationDate": 1655560029112,
     "lastUpdateDate": 1655560029112, "shareWithResearchAsOfDate": 1655560029112},
    # set aside at ingest, the value that broke it hostile (the report leaves such values out)
    {"customerName": "Bad Birthday", "email": "mallory.three@example.com", "birthDay": "<b onmouseover=x>1990</b>",
     "serialNumber": "bbbbbbbb-5563-4144-ab66-03f7b2725de1", "registrationDate": 1655560029112,
     "lastUpdateDate": 1655560029112, "shareWithResearchAsOfDate": 1655560029112},
]
# set aside at ingest with a reason that names a field it was sent: hostile, and shown (escaped)
_DUPLICATE = (
    '{"customerName":"Dup","email":"mallory.four@example.com","serialNumber":"cccccccc-5563-4144-ab66-03f7b2725de1",'
    '"registrationDate":1655560029112,"lastUpdateDate":1655560029112,"shareWithResearchAsOfDate":1655560029112,'
    f'{json.dumps(PAYLOAD)}:1,{json.dumps(PAYLOAD)}:2}}'
)


def _etl(*args: str, warehouse: Path):
    return CliRunner().invoke(cli, ["--warehouse", str(warehouse), *args])


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """sample_data/ and a file of hostile customer records, ingested and run by the CLI."""
    source = tmp_path_factory.mktemp("source") / "data"
    shutil.copytree(SAMPLE, source)
    lines = [json.dumps(r) for r in _HOSTILE_LINES] + [_DUPLICATE, "<script>window.__pwned = 3</script>"]
    (source / "customer" / "landing" / "customer-hostile.json").write_text("\n".join(lines) + "\n")
    root = tmp_path_factory.mktemp("wh") / "lakehouse"
    for args in (["ingest", str(source)], ["run"]):
        result = _etl(*args, warehouse=root)
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def report(warehouse, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "out"
    result = _etl("report", "--out", str(out), warehouse=warehouse)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {out.resolve() / 'index.html'}"
    return out / "index.html"


def _escaped(text: str) -> str:
    return str(escape(text))


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _query(warehouse: Path, sql: str) -> list[dict]:
    result = _etl("sql", "--format", "json", sql, warehouse=warehouse)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_report_writes_nothing_into_the_warehouse(warehouse, tmp_path):
    before = _tree(warehouse)
    result = _etl("report", "--out", str(tmp_path / "r"), warehouse=warehouse)
    assert result.exit_code == 0, result.output
    assert _tree(warehouse) == before  # not a file made, moved or touched: no table created (erasure_log has none yet)


def test_the_report_shows_the_warehouse_figures(warehouse, report):
    from stedi.config import Settings
    from stedi.report import gather

    r = gather(Settings(warehouse=warehouse))
    rows = {t["table"]: t["rows"] for t in json.loads(_etl("tables", "--format", "json", warehouse=warehouse).output)}
    assert {t.contract.name: t.rows for t in r.tables} == {n: rows.get(n, 0) for n in load_contracts()}
    assert [s["customers"] for s in r.customers][0] == rows["customer_landing"]
    assert [s["customers"] for s in r.customers][2:4] == [rows["customer_trusted"], rows["customers_curated"]]
    assert {(s["sensor"], s["zone"]): s["readings"] for s in r.readings if s["zone"] != "curated"} == {
        ("accelerometer", "landing"): rows["accelerometer_landing"],
        ("accelerometer", "trusted"): rows["accelerometer_trusted"],
        ("step trainer", "landing"): rows["step_trainer_landing"],
        ("step trainer", "trusted"): rows["step_trainer_trusted"],
    }
    # the quarantine by reason, without the values: every row counted once
    set_aside = _query(warehouse, "SELECT target_table, reason FROM quarantine")
    assert sum(q["rows"] for q in r.quarantine) == len(set_aside) >= 4
    assert {(q["table"], q["reason"]) for q in r.quarantine} == {(s["target_table"], reason_kind(s["reason"])) for s in set_aside}
    assert any(q["reason"] == 'field "birthDay" does not fit date' for q in r.quarantine)  # a contract's field is named
    assert not any("script" in q["reason"] for q in r.quarantine)  # a received field's name is not: it may name a person
    # the rules: as run_log recorded them, the hostile serial number failing serial_is_uuid
    logged = {
        row["output_table"]: json.loads(row["rule_results"])
        for row in _query(warehouse, "SELECT output_table, rule_results FROM run_log WHERE rule_results <> '{}'")
    }
    assert {(q["table"], q["rule"]): (q["passed"], q["failed"]) for q in r.rules} == {
        (t, rule): (v["passed"], v["failed"]) for t, rules in logged.items() for rule, v in rules.items()
    }
    assert next(q for q in r.rules if q["rule"] == "serial_is_uuid")["failed"] == 1
    # the lineage: every job of pipelines/ with its inputs
    from stedi.jobs import load_jobs

    assert {j.name: (list(j.inputs), j.output) for j in load_jobs()}.items() <= {j["name"]: (j["inputs"], j["output"]) for j in r.jobs}.items()
    assert set(r.charts) == {"tables", "funnel", "lineage", "rules", "quarantine", "over_time", "distributions"}
    run_ids = {row["run_id"] for row in _query(warehouse, "SELECT DISTINCT run_id FROM run_log")}
    assert {run["run_id"] for run in r.runs} == run_ids

    page = report.read_text()
    for c in load_contracts().values():  # every table, its grain, every column's comment and every rule
        assert f'id="table-{c.name}"' in page and _escaped(c.grain) in page
        for col in c.columns:
            assert _escaped(col.comment) in page, (c.name, col.name)
        for rule in c.rules:
            assert _escaped(rule.predicate) in page
    assert f"{rows['accelerometer_landing']:,}" in page


def test_hostile_values_stay_text_and_people_stay_out(report):
    page = report.read_text()
    assert "<script" not in page.lower()  # the page has no script of its own, and none got in
    assert not re.search(r"<[^>]+\son\w+\s*=", page)  # nor an event handler
    assert _escaped('field "…" is given twice') in page  # a received field's name is not shown: it may name a person
    assert _escaped(PAYLOAD) not in page
    assert "mallory" not in page.lower() and "@example.com" not in page  # nobody's email, name or other record
    assert "1990" not in page and "aaaaaaaa" not in page


def test_errors_are_one_line_and_create_nothing(warehouse, tmp_path):
    missing = tmp_path / "no-such-warehouse"
    result = _etl("report", "--out", str(tmp_path / "out"), warehouse=missing)
    assert result.exit_code == 1 and result.output.startswith(f"Error: no warehouse at {missing}") and len(result.output.splitlines()) == 1
    assert not missing.exists() and not (tmp_path / "out").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    result = _etl("report", "--out", str(tmp_path / "out"), warehouse=empty)
    assert result.exit_code == 1 and f"no warehouse at {empty}" in result.output and list(empty.iterdir()) == []

    before = _tree(warehouse)
    result = _etl("report", "--out", str(warehouse / "report"), warehouse=warehouse)
    assert result.exit_code == 1 and "inside the warehouse" in result.output and len(result.output.splitlines()) == 1
    assert _tree(warehouse) == before


def test_a_reader_limited_to_a_zone_sees_only_its_tables(warehouse, tmp_path):
    result = _etl("report", "--zone", "curated", "--out", str(tmp_path / "out"), warehouse=warehouse)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "index.html").read_text()
    shown = set(re.findall(r'id="table-(\w+)"', page))
    assert shown == {n for n, c in load_contracts().items() if c.zone == "curated"}
    assert "a reader of the curated zone" in page and "Only a reader of every zone" in page
    assert "given twice" not in page and "run-" not in page  # neither the quarantine nor the run log
    assert "customer records landed" not in page and "in the training set" in page


def test_a_chart_with_active_content_is_refused():
    from stedi.charts import safe_svg

    ok = '<svg xmlns="http://www.w3.org/2000/svg"><text>&lt;script&gt;</text></svg>'
    assert safe_svg(ok) == ok
    for bad in (
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><rect onclick="alert(1)"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink"><a x:href=" javascript:alert(1)"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div/></foreignObject></svg>',
        "<html/>",
    ):
        with pytest.raises(ValueError):
            safe_svg(bad)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium binary here (.ci/run installs Debian's chromium package)")


def test_a_headless_browser_draws_every_chart_without_a_console_error(report):
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (a dev extra) is not installed")
    messages: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: messages.append(f"requestfailed: {r.url}"))
            page.goto(report.resolve().as_uri(), wait_until="load")
            drawn = page.evaluate(
                """() => [...document.querySelectorAll('figure > svg')].map(svg => {
                    const box = svg.getBoundingClientRect();
                    return {width: box.width, height: box.height,
                            marks: svg.querySelectorAll('path, rect, line, circle').length,
                            text: svg.querySelectorAll('text').length};
                })"""
            )
            pwned = page.evaluate("() => [window.__pwned, document.title]")
        finally:
            browser.close()
    assert messages == []
    assert len(drawn) == 7
    for chart in drawn:
        assert chart["width"] > 100 and chart["height"] > 50 and chart["marks"] > 5 and chart["text"] > 3, chart
    assert pwned[0] is None and pwned[1].startswith("stedi report")


def test_the_lineage_puts_each_table_below_its_inputs():
    from stedi.evaluation import DERIVED
    from stedi.jobs import load_jobs
    from stedi.report import _lineage

    _, nodes, edges = _lineage()
    depth = dict(zip(nodes["name"], nodes["y"], strict=True))
    feeds = {j.output: j.inputs for j in load_jobs()} | {name: (source,) for name, source in DERIVED.items()}
    assert set(depth) == set(feeds) | {i for ins in feeds.values() for i in ins}
    for name, y in depth.items():
        assert y == (1 + max(depth[i] for i in feeds[name]) if name in feeds else 0), name
    assert edges.height == sum(len(ins) for ins in feeds.values()) and (edges["y2"] > edges["y"]).all()
    assert nodes.unique(["x", "y"]).height == nodes.height  # no two nodes drawn on one another


def test_the_sensor_charts_count_every_row(warehouse):
    from stedi.config import Settings
    from stedi.report import _histograms, _readings_over_time, connect

    _, con, _ = connect(Settings(warehouse=warehouse))
    ml = con.sql("SELECT * FROM machine_learning_curated").pl()
    trusted = {n: con.sql(f"SELECT count(*) FROM {n}").fetchall()[0][0] for n in ("accelerometer_trusted", "step_trainer_trusted")}
    hist = _histograms(con, load_contracts()["machine_learning_curated"])
    over_time, _, width = _readings_over_time(con, load_contracts())
    con.close()
    assert dict(over_time.group_by("sensor").agg(pl.col("readings").sum()).iter_rows()) == trusted
    assert (over_time["time"] % width == 0).all() and over_time.height <= 2 * 61
    assert sorted(hist["column"].unique()) == ["distanceFromObject", "x", "y", "z"]
    for name, group in hist.group_by("column"):
        assert group["rows"].sum() == ml.height
        values = ml[name[0]]
        assert group["low"].min() == pytest.approx(values.min()) and group["high"].max() == pytest.approx(values.max())
        # each bin holds the rows whose value falls in it
        first = group.sort("low").row(0, named=True)
        assert first["rows"] == ml.filter((pl.col(name[0]) >= first["low"]) & (pl.col(name[0]) < first["high"])).height


def test_the_report_of_a_warehouse_in_object_storage(monkeypatch, tmp_path):
    """Through moto's S3 server on 127.0.0.1: the same page, and not an object written to the bucket."""
    pytest.importorskip("moto")
    import s3fs

    from tests.s3 import moto_server

    with moto_server() as port:
        for var in [v for v in os.environ if v.startswith("AWS_")]:
            monkeypatch.delenv(var)
        for var, value in {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        }.items():
            monkeypatch.setenv(var, value)
        bucket = f"stedi-{uuid.uuid4().hex[:12]}"
        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
        fs.mkdir(bucket)
        where = ["--warehouse", f"s3://{bucket}/wh", "--catalog-uri", f"sqlite:///{tmp_path}/catalog.db"]
        result = CliRunner().invoke(cli, [*where, "ingest", "--run", str(SAMPLE)])
        assert result.exit_code == 0, result.output
        objects = {p: fs.info(p)["ETag"] for p in fs.find(bucket)}
        catalog = (tmp_path / "catalog.db").stat().st_mtime_ns
        result = CliRunner().invoke(cli, [*where, "report", "--out", str(tmp_path / "out")])
        assert result.exit_code == 0, result.output
        fs.invalidate_cache()
        assert {p: fs.info(p)["ETag"] for p in fs.find(bucket)} == objects
        assert (tmp_path / "catalog.db").stat().st_mtime_ns == catalog
    page = (tmp_path / "out" / "index.html").read_text()
    assert f"s3://{bucket}/wh" in page and "1,474" in page and page.count("<svg") >= 6


def test_the_report_of_a_warehouse_never_run(tmp_path):
    root = tmp_path / "wh"
    assert _etl("ingest", str(SAMPLE), warehouse=root).exit_code == 0
    before = _tree(root)
    result = _etl("report", "--out", str(tmp_path / "out"), warehouse=root)
    assert result.exit_code == 0, result.output
    assert _tree(root) == before
    page = (tmp_path / "out" / "index.html").read_text()
    assert "No run yet" in page and "No run has evaluated a rule yet" in page and "No readings yet" in page
    assert "(not created yet)" in page and page.count("<svg") == 3  # the tables, the funnel, the lineage
