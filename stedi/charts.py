"""The report's charts: Altair specifications drawn as static SVG by vl-convert (no browser).

Each function takes small Polars frames of aggregates (never rows of people) and returns a
:class:`Chart`: its title and its SVG, checked by :func:`safe_svg` before it is put inline in the
report's HTML. Times are epoch milliseconds and drawn as UTC.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import altair as alt
    import polars as pl

#: Colours of the zones, the same in every chart and in the report's tables.
ZONE_COLOURS = {
    "landing": "#9ecae9",
    "trusted": "#f58518",
    "curated": "#54a24b",
    "system": "#bab0ac",
    "in memory": "#ffffff",
}

_WIDTH = 640


@dataclass(frozen=True)
class Chart:
    title: str
    svg: str


def render(title: str, chart: alt.TopLevelMixin) -> Chart:
    """``chart`` drawn as SVG, checked to hold nothing a browser would run."""
    import vl_convert as vlc

    # the data is inline: no URL may be fetched while drawing
    return Chart(title, safe_svg(vlc.vegalite_to_svg(chart.to_json(), allowed_base_urls=[])))


_SVG = "{http://www.w3.org/2000/svg}"
_ACTIVE = re.compile(r"\s*(javascript|data|vbscript):", re.I)


def safe_svg(svg: str) -> str:
    """``svg`` when it is well-formed SVG with no script, foreign HTML, event handler or script link
    (the labels come from the data: vl-convert escapes them, and this makes sure); else ValueError."""
    root = ET.fromstring(svg)
    if root.tag != f"{_SVG}svg":
        raise ValueError(f"not an SVG document: {root.tag}")
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1].lower()
        if tag in ("script", "foreignobject", "iframe", "object", "embed"):
            raise ValueError(f"the chart holds a <{tag}> element")
        for name, value in element.attrib.items():
            local = name.rsplit("}", 1)[-1].lower()
            if local.startswith("on") or (local == "href" and _ACTIVE.match(value)):
                raise ValueError(f"the chart holds an active attribute {local}")
    return svg


def table_rows(tables: pl.DataFrame) -> Chart:
    """Rows of every table (``table``, ``zone``, ``rows``), by zone."""
    import altair as alt

    ticks = [0] + [10**k for k in range(1, len(str(max(int(tables["rows"].max() or 0), 1))) + 1)]
    chart = (
        alt.Chart(tables)
        .mark_bar()
        .encode(
            x=alt.X("rows:Q", title="rows", scale=alt.Scale(type="symlog"), axis=alt.Axis(values=ticks, format=",.0f")),
            y=alt.Y("table:N", sort=None, title=None),
            color=_zone_colour(list(tables["zone"].unique(maintain_order=True))),
            tooltip=["table", "zone", "rows"],
        )
        .properties(width=_WIDTH - 160)
    )
    return render("Rows per table (symmetric log scale)", chart)


def funnel(customers: pl.DataFrame, readings: pl.DataFrame) -> Chart:
    """The consent funnel: customers at each ``stage`` (in ``step`` order), and each sensor's readings
    (``sensor``, ``zone``, ``readings``) in each zone."""
    import altair as alt

    people = (
        alt.Chart(customers, title="Customers")
        .mark_bar(color="#4c78a8")
        .encode(
            x=alt.X("customers:Q", title="customers"),
            y=alt.Y("stage:N", sort=alt.SortField("step"), title=None),
            tooltip=["stage", "customers"],
        )
        .properties(width=_WIDTH - 220)
    )
    text = people.mark_text(align="left", dx=3).encode(text="customers:Q")
    sensors = (
        alt.Chart(readings, title="Readings")
        .mark_bar()
        .encode(
            x=alt.X("readings:Q", title="readings"),
            y=alt.Y("sensor:N", title=None),
            yOffset=alt.YOffset("zone:N", sort=["landing", "trusted", "curated"]),
            color=_zone_colour(list(readings["zone"].unique()) if readings.height else None),
            tooltip=["sensor", "zone", "readings"],
        )
        .properties(width=_WIDTH - 220, height=alt.Step(14))
    )
    return render("Consent funnel", alt.vconcat(people + text, sensors).resolve_scale(color="independent"))


def lineage(nodes: pl.DataFrame, edges: pl.DataFrame) -> Chart:
    """The jobs as a graph, top to bottom: ``nodes`` (``name``, ``zone``, ``x``, ``y``) and ``edges``
    (``x``, ``y``, ``x2``, ``y2``: from an input to the output it feeds)."""
    import altair as alt

    height = 70 * (int(nodes["y"].max()) + 1)
    x = alt.X("x:Q", axis=None, scale=alt.Scale(domain=[float(nodes["x"].min()) - 0.7, float(nodes["x"].max()) + 0.7]))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[-0.5, float(nodes["y"].max()) + 0.5], reverse=True))
    links = alt.Chart(edges).mark_rule(color="#999", strokeWidth=1.2).encode(x=x, y=y, x2="x2:Q", y2="y2:Q")
    points = alt.Chart(nodes).mark_point(filled=True, size=260, shape="square", stroke="#555", strokeWidth=1).encode(
        x=x, y=y, color=_zone_colour(), tooltip=["name", "zone"]
    )
    labels = alt.Chart(nodes).mark_text(dy=-16, fontSize=11).encode(x=x, y=y, text="name:N")
    chart = (links + points + labels).properties(width=_WIDTH + 260, height=height).configure_view(strokeWidth=0)
    return render("Job lineage: each job's inputs above the table it writes", chart)


def quarantine(reasons: pl.DataFrame) -> Chart:
    """Rows set aside by ``table`` and ``reason``, with their count ``rows``."""
    import altair as alt

    chart = (
        alt.Chart(reasons)
        .mark_bar()
        .encode(
            x=alt.X("rows:Q", title="rows set aside"),
            y=alt.Y("reason:N", sort="-x", title=None, axis=alt.Axis(labelLimit=420)),
            color=alt.Color("table:N", title="meant for", legend=alt.Legend(orient="bottom", labelLimit=300)),
            tooltip=["table", "reason", "rows"],
        )
        .properties(width=_WIDTH - 380)
    )
    return render("Quarantine by reason", chart)


def rules(results: pl.DataFrame) -> Chart:
    """Each rule's ``passed`` and ``failed`` rows (``table``, ``rule``, ``outcome``, ``rows``)."""
    import altair as alt

    chart = (
        alt.Chart(results)
        .mark_bar()
        .encode(
            x=alt.X("rows:Q", title="rows", stack="normalize", axis=alt.Axis(format="%")),
            y=alt.Y("label:N", title=None, axis=alt.Axis(labelLimit=360)),
            color=alt.Color("outcome:N", scale=alt.Scale(domain=["passed", "failed"], range=["#54a24b", "#e45756"])),
            tooltip=["table", "rule", "outcome", "rows"],
        )
        .transform_calculate(label="datum.table + ': ' + datum.rule")
        .properties(width=_WIDTH - 300)
    )
    return render("Data quality rules at their last evaluation: share of rows passing", chart)


def readings_over_time(counts: pl.DataFrame, bucket: str, width_ms: int) -> Chart:
    """Trusted readings per time bucket of ``width_ms`` (``time``: epoch ms of the bucket, ``sensor``,
    ``readings``)."""
    import altair as alt
    import polars as pl

    frame = counts.with_columns(time=pl.from_epoch("time", time_unit="ms").dt.replace_time_zone("UTC"))
    chart = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("time:T", title="time (UTC)", scale=alt.Scale(type="utc"), axis=alt.Axis(format=_time_format(width_ms))),
            y=alt.Y("readings:Q", title=f"readings per {bucket}"),
            color=alt.Color("sensor:N", title="table", legend=alt.Legend(labelLimit=300)),
            tooltip=[alt.Tooltip("time:T", format="%Y-%m-%d %H:%M:%S"), "sensor", "readings"],
        )
        .properties(width=_WIDTH, height=200)
    )
    return render("Trusted readings over time", chart)


def distributions(histograms: pl.DataFrame) -> Chart:
    """Histograms of the training columns (``column``, ``low``, ``high``, ``rows``), one panel each."""
    import altair as alt

    chart = (
        alt.Chart(histograms)
        .mark_bar(color="#4c78a8", binSpacing=1)
        .encode(
            x=alt.X("low:Q", title=None, scale=alt.Scale(zero=False)),
            x2="high:Q",
            y=alt.Y("rows:Q", title="rows", scale=alt.Scale(zero=True)),
            y2=alt.datum(0),
            tooltip=["column", "low", "high", "rows"],
        )
        .properties(width=280, height=120)
        .facet(facet=alt.Facet("column:N", title=None, sort=["x", "y", "z", "distanceFromObject"]), columns=2)
        .resolve_scale(x="independent", y="independent")
    )
    return render("machine_learning_curated: distribution of each feature and of the label", chart)


def _time_format(width_ms: int) -> str:
    if width_ms < 3_600_000:
        return "%H:%M:%S"
    return "%m-%d %H:%M" if width_ms < 86_400_000 else "%Y-%m-%d"


def _zone_colour(zones: list[str] | None = None) -> alt.Color:
    """Each zone in its colour (only ``zones`` in the legend, when given)."""
    import altair as alt

    zones = [z for z in ZONE_COLOURS if zones is None or z in zones]
    return alt.Color("zone:N", title="zone", scale=alt.Scale(domain=zones, range=[ZONE_COLOURS[z] for z in zones]))
