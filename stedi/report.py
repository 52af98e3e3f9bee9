"""The report: one static HTML page showing what the warehouse holds (``stedi-etl report --out DIR``),
the lakehouse's answer to the original project's screenshots of Athena queries.

Per zone and table the rows, columns with their contract comments, grain and rules; the consent
funnel; the jobs' lineage; the data quality rules' last results and the quarantine by reason; the
sensor data over time and its distributions; the last runs. Only aggregates and contracts are shown:
no row of a person, no quarantined line (a quarantine reason is shown without the value that broke
it, as ``ingest`` counts them). Every value is HTML-escaped by the template (Jinja2 autoescape); the
charts are SVG drawn here (:mod:`stedi.charts`), the page runs no script and its
Content-Security-Policy forbids any.

It reads only, as ``sql`` and ``tables`` do (:mod:`stedi.lakeview`, :mod:`stedi.sandbox`): a
warehouse that does not exist is one line, nothing is created, and a reader limited to a zone
(:mod:`stedi.zones`) sees that zone's tables only: the sections that need another zone's say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from stedi import charts
from stedi.contracts import ZONES, Contract, load_contracts
from stedi.errors import ConfigError, StediError

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from stedi.config import Settings
    from stedi.lakeview import Lake, TableState

#: The page written into the output folder.
PAGE = "index.html"


@dataclass(frozen=True)
class TableView:
    contract: Contract
    rows: int
    updated_at: datetime | None
    snapshot_id: int | None
    exists: bool

    @classmethod
    def of(cls, state: TableState) -> TableView:
        snap = state.snapshot
        when = datetime.fromtimestamp(snap.timestamp_ms / 1000, tz=UTC) if snap else None
        return cls(state.contract, snap.rows if snap else 0, when, snap.id if snap else None, state.metadata_location is not None)


@dataclass(frozen=True)
class Report:
    location: str
    zone: str  # the reader's: all, or the zone they are limited to
    generated_at: datetime
    version: str
    tables: list[TableView]
    customers: list[dict]  # the funnel: step, stage, customers (the stages the reader may see)
    readings: list[dict]  # sensor, zone, readings
    jobs: list[dict]  # name, inputs, output
    rules: list[dict] | None  # table, rule, predicate, action, passed, failed, run_id, mode; None: not visible
    quarantine: list[dict] | None  # table, reason, rows
    runs: list[dict] | None
    charts: dict[str, charts.Chart]

    @property
    def zones(self) -> dict[str, list[TableView]]:
        return {z: [t for t in self.tables if t.contract.zone == z] for z in ZONES}


def write(settings: Settings, out: Path, runs: int = 10) -> Path:
    """Gather the report of the warehouse ``settings`` name and write it as ``out/index.html``."""
    from stedi.storage import is_remote

    out = Path(out).resolve()
    if not is_remote(settings.location) and out.is_relative_to(Path(settings.location).resolve()):
        raise ConfigError(
            f"--out {out} is inside the warehouse {settings.location}: give a folder outside it (the report writes nothing into a warehouse)"
        )
    report = gather(settings, runs=runs)
    try:
        out.mkdir(parents=True, exist_ok=True)
        page = out / PAGE
        tmp = page.with_name(f".{PAGE}.tmp")
        tmp.write_text(render(report), encoding="utf-8")
        tmp.replace(page)
    except OSError as err:
        raise StediError(f"cannot write the report into {out}: {err.strerror or err}") from err
    return page


def connect(settings: Settings) -> tuple[Lake, duckdb.DuckDBPyConnection, list[str]]:
    """The warehouse as the reader sees it, a read-only DuckDB connection over those tables, and
    their names; one line if one of them cannot be read."""
    from stedi.query import open_views
    from stedi.sandbox import connect as sandbox

    lake, views, directories = open_views(settings)
    bad = [v for v in views if v.problem]
    if bad:
        raise StediError(f"{len(bad)} table(s) cannot be read: " + "; ".join(v.problem for v in bad))
    return lake, sandbox(lake, views, directories), [v.name for v in views]


def gather(settings: Settings, runs: int = 10) -> Report:
    """Everything the report shows, read from the current snapshot of each table the reader sees."""
    import stedi

    lake, con, names = connect(settings)
    contracts = load_contracts()
    seen = set(names)
    try:
        tables = [TableView.of(lake.state(n)) for n in sorted(names, key=lambda n: (ZONES.index(contracts[n].zone), n))]
        customers, readings = _funnel(con, seen)
        jobs, nodes, edges = _lineage()
        system = {"run_log", "quarantine"} <= seen  # only a reader of every zone sees them
        rules = _rules(con, contracts) if system else None
        quarantine = _quarantine(con) if system else None
        recent = _runs(con, runs) if system else None
        over_time, bucket, width = _readings_over_time(con, {n: contracts[n] for n in names})
        ml = contracts["machine_learning_curated"]
        histograms = _histograms(con, ml) if ml.name in seen else None
    finally:
        con.close()

    import polars as pl

    drawn = {
        "tables": charts.table_rows(pl.DataFrame([{"table": t.contract.name, "zone": t.contract.zone, "rows": t.rows} for t in tables])),
        "funnel": charts.funnel(pl.DataFrame(customers), pl.DataFrame(readings)),
        "lineage": charts.lineage(nodes, edges),
    }
    if rules:
        outcomes = [
            {"table": r["table"], "rule": r["rule"], "outcome": outcome, "rows": r[outcome]}
            for r in rules
            for outcome in ("passed", "failed")
        ]
        drawn["rules"] = charts.rules(pl.DataFrame(outcomes))
    if quarantine:
        drawn["quarantine"] = charts.quarantine(pl.DataFrame(quarantine))
    if over_time.height:
        drawn["over_time"] = charts.readings_over_time(over_time, bucket, width)
    if histograms is not None and histograms.height:
        drawn["distributions"] = charts.distributions(histograms)
    return Report(
        location=lake.location,
        zone=settings.zone,
        generated_at=datetime.now(UTC),
        version=stedi.__version__,
        tables=tables,
        customers=customers,
        readings=readings,
        jobs=jobs,
        rules=rules,
        quarantine=quarantine,
        runs=recent,
        charts=drawn,
    )


def render(report: Report) -> str:
    """The report as one HTML page (every value escaped; the charts' SVG checked by stedi.charts)."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("stedi", "templates"),
        autoescape=True,  # the data is hostile: every value is escaped, however it got there
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda t: f"{t:%Y-%m-%d %H:%M:%S} UTC" if t else "never"
    env.filters["count"] = lambda n: "" if n is None else f"{n:,}"
    svg = {key: Markup(charts.safe_svg(chart.svg)) for key, chart in report.charts.items()}
    return env.get_template("report.html.j2").render(
        r=report, svg=svg, zones=report.zones, zone_colours=charts.ZONE_COLOURS
    )


# -- what the report reads ---------------------------------------------------------------------------


def _rows(con: duckdb.DuckDBPyConnection, query: str) -> list[dict]:
    return con.sql(query).to_arrow_table().to_pylist()


def _quarantine(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Rows set aside by table and kind of reason (:func:`stedi.privacy.reason_kind`: no value, no
    field name that is not a contract's column)."""
    from collections import Counter

    from stedi.privacy import reason_kind

    counts: Counter = Counter()
    for r in _rows(con, "SELECT target_table, reason, count(*) AS n FROM quarantine GROUP BY ALL"):
        counts[(r["target_table"], reason_kind(r["reason"]))] += r["n"]
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))
    return [{"table": table, "reason": reason, "rows": n} for (table, reason), n in ordered]


#: The consent funnel: each stage's customers, and each sensor's readings per zone, by the table
#: they are counted in. People are counted once each in the consent history, which holds every
#: customer by a pseudonym of its own; curated step trainer readings are those a pair holds.
_STAGES = [
    ("customer records landed", "customer_landing", "count(*)"),
    ("distinct customers", "customer_consent_history", "count(DISTINCT subject_key)"),
    ("consenting (trusted)", "customer_trusted", "count(*)"),
    ("with phone readings (curated)", "customers_curated", "count(*)"),
    ("in the training set", "machine_learning_curated", "count(DISTINCT customer_key)"),
]
_READINGS = [
    ("accelerometer", "landing", "accelerometer_landing", "count(*)"),
    ("accelerometer", "trusted", "accelerometer_trusted", "count(*)"),
    ("accelerometer", "curated", "machine_learning_curated", "count(*)"),
    ("step trainer", "landing", "step_trainer_landing", "count(*)"),
    ("step trainer", "trusted", "step_trainer_trusted", "count(*)"),
    ("step trainer", "curated", "machine_learning_curated", "count(DISTINCT (customer_key, timestamp))"),
]


def _funnel(con: duckdb.DuckDBPyConnection, seen: set[str]) -> tuple[list[dict], list[dict]]:
    """The funnel's stages and readings the reader may see (their tables visible)."""
    customers = [
        {"step": i, "stage": stage, "customers": con.sql(f'SELECT {count} FROM "{table}"').fetchall()[0][0]}
        for i, (stage, table, count) in enumerate(_STAGES, start=1)
        if table in seen
    ]
    readings = [
        {"sensor": sensor, "zone": zone, "readings": con.sql(f'SELECT {count} FROM "{table}"').fetchall()[0][0]}
        for sensor, zone, table, count in _READINGS
        if table in seen
    ]
    return customers, readings


def _lineage() -> tuple[list[dict], pl.DataFrame, pl.DataFrame]:
    """The jobs of pipelines/ (and the runner's derived inputs) as a graph laid out in layers: each
    table one layer below the deepest of its inputs."""
    import polars as pl

    from stedi.evaluation import DERIVED
    from stedi.jobs import load_jobs

    contracts = load_contracts()
    jobs = load_jobs()
    feeds: dict[str, list[str]] = {name: [source] for name, source in DERIVED.items()}
    for job in jobs:
        feeds[job.output] = list(job.inputs)
    names = sorted(set(feeds) | {i for ins in feeds.values() for i in ins})
    depth: dict[str, int] = {}

    def layer(name: str, seen: tuple[str, ...] = ()) -> int:
        if name not in depth:
            depth[name] = 1 + max((layer(i, (*seen, name)) for i in feeds.get(name, ()) if i not in seen), default=-1)
        return depth[name]

    for name in names:
        layer(name)
    x: dict[str, float] = {}
    for d in range(max(depth.values()) + 1):
        here = [n for n in names if depth[n] == d]
        # under the middle of their inputs, to keep the lines short
        here.sort(key=lambda n: (sum(x[i] for i in feeds.get(n, ())) / len(feeds[n]) if feeds.get(n) else 0.0, n))
        for i, n in enumerate(here):
            x[n] = i - (len(here) - 1) / 2
    nodes = pl.DataFrame(
        [{"name": n, "zone": contracts[n].zone if n in contracts else "in memory", "x": x[n], "y": depth[n]} for n in names]
    )
    edges = pl.DataFrame(
        [{"x": x[i], "y": depth[i], "x2": x[out], "y2": depth[out]} for out, ins in feeds.items() for i in ins],
        schema={"x": pl.Float64, "y": pl.Int64, "x2": pl.Float64, "y2": pl.Int64},
    )
    listed = [{"name": j.name, "inputs": list(j.inputs), "output": j.output} for j in jobs]
    listed += [{"name": f"(runner) {name}", "inputs": [source], "output": name} for name, source in DERIVED.items()]
    return listed, nodes, edges


def _rules(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract]) -> list[dict]:
    """Each rule of each table at the last run that evaluated it (the job's latest update)."""
    last = _rows(con, """
        SELECT output_table, run_id, mode, rule_results FROM run_log
        WHERE status = 'updated' AND rule_results IS NOT NULL AND rule_results <> '{}'
        QUALIFY row_number() OVER (PARTITION BY output_table ORDER BY started_at DESC, run_id DESC) = 1
        ORDER BY output_table
    """)
    found = []
    for row in last:
        declared = {r.name: r for r in contracts[row["output_table"]].rules} if row["output_table"] in contracts else {}
        for rule, result in sorted(json.loads(row["rule_results"]).items()):
            found.append(
                {
                    "table": row["output_table"],
                    "rule": rule,
                    "predicate": declared[rule].predicate if rule in declared else "",
                    "action": result.get("action"),
                    "passed": int(result.get("passed") or 0),
                    "failed": int(result.get("failed") or 0),
                    "run_id": row["run_id"],
                    "mode": row["mode"],
                }
            )
    return found


def _runs(con: duckdb.DuckDBPyConnection, limit: int) -> list[dict]:
    return _rows(con, f"""
        SELECT run_id, min(started_at) AS started_at, any_value(consent_scope) AS consent_scope,
               count(*) FILTER (WHERE status = 'failed') > 0 AS failed, any_value(error) AS error,
               count(*) FILTER (WHERE status = 'updated') AS updated, count(*) AS jobs,
               sum(rows_out)::BIGINT AS rows_out, sum(rows_quarantined)::BIGINT AS quarantined,
               string_agg(DISTINCT mode, ', ') AS mode, round(sum(seconds), 2) AS seconds
        FROM run_log GROUP BY run_id ORDER BY started_at DESC, run_id DESC LIMIT {int(limit)}
    """)


#: Widths of the time buckets of the readings over time, from the smallest.
_BUCKETS = [
    (1_000, "second"),
    (10_000, "10 seconds"),
    (60_000, "minute"),
    (600_000, "10 minutes"),
    (3_600_000, "hour"),
    (86_400_000, "day"),
    (7 * 86_400_000, "week"),
]


def _readings_over_time(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract]) -> tuple[pl.DataFrame, str, int]:
    """Readings per time bucket of each trusted table of readings (``stedi.taken_at``) among
    ``contracts`` (those the reader sees), about 60 buckets over the span they cover."""
    import polars as pl

    readings = {n: c.taken_at for n, c in contracts.items() if c.zone == "trusted" and c.taken_at}
    schema = {"time": pl.Int64, "sensor": pl.String, "readings": pl.Int64}
    if not readings:
        return pl.DataFrame(schema=schema), _BUCKETS[0][1], _BUCKETS[0][0]
    union = " UNION ALL ".join(f"SELECT '{n}' AS sensor, \"{col}\" AS t FROM \"{n}\"" for n, col in sorted(readings.items()))
    lo, hi = con.sql(f"SELECT min(t), max(t) FROM ({union})").fetchall()[0]
    if lo is None:
        return pl.DataFrame(schema=schema), _BUCKETS[0][1], _BUCKETS[0][0]
    width, label = next(((w, n) for w, n in _BUCKETS if (hi - lo) / w <= 60), _BUCKETS[-1])
    frame = con.sql(f"""
        SELECT (t // {width}) * {width} AS time, sensor, count(*) AS readings
        FROM ({union}) GROUP BY ALL ORDER BY time, sensor
    """).pl()
    return frame.cast(schema), label, width


def _histograms(con: duckdb.DuckDBPyConnection, c: Contract, bins: int = 30) -> pl.DataFrame:
    """Equal-width histograms of the numeric columns of ``c``'s table, but its owner and time."""
    import polars as pl

    columns = [col.name for col in c.columns if col.sql_type in ("DOUBLE", "BIGINT", "INT") and col.name not in (c.owner, c.taken_at)]
    frames = []
    for name in columns:
        q = f'"{name}"'
        lo, hi, distinct = con.sql(f'SELECT min({q}), max({q}), count(DISTINCT {q}) FROM "{c.name}"').fetchall()[0]
        if lo is None:
            continue
        k = max(1, min(bins, distinct))
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        width = (hi - lo) / k
        frame = con.sql(f"""
            SELECT least(floor(({q} - {lo}) / {width}), {k - 1})::BIGINT AS b, count(*) AS rows
            FROM "{c.name}" WHERE {q} IS NOT NULL GROUP BY b ORDER BY b
        """).pl()
        frames.append(
            frame.select(
                pl.lit(name).alias("column"),
                (lo + pl.col("b") * width).alias("low"),
                (lo + (pl.col("b") + 1) * width).alias("high"),
                pl.col("rows").cast(pl.Int64),
            )
        )
    schema = {"column": pl.String, "low": pl.Float64, "high": pl.Float64, "rows": pl.Int64}
    return pl.concat([f.cast(schema) for f in frames]) if frames else pl.DataFrame(schema=schema)
