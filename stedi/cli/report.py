"""The ``report`` command: the warehouse as one static HTML page (:mod:`stedi.report`)."""

from __future__ import annotations

from pathlib import Path

import click

from stedi.cli.app import _Context, _fail_cleanly, cli, warehouse_options, zone_options


@cli.command()
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write index.html into (made if missing; outside the warehouse).",
)
@click.option("--runs", type=click.IntRange(min=1), default=10, show_default=True, help="How many recent runs to list.")
@zone_options
@warehouse_options
@click.pass_obj
@_fail_cleanly
def report(obj: _Context, out: Path, runs: int) -> None:
    """Write a static HTML report of the warehouse into OUT/index.html.

    Per zone and table the rows, columns with their contract comments, grain and rules; the consent
    funnel; the jobs' lineage; data quality results and the quarantine by reason; charts of the
    sensor data; the last runs. Only counts and contracts, no row of a person. It reads only: the
    warehouse is left as it was. A reader limited to a zone (--zone) sees only its tables. The page
    needs no network and runs no script.

    \b
    Example:
      stedi-etl report --out report/ && xdg-open report/index.html
    """
    from stedi.report import write

    page = write(obj.settings, out, runs=runs)
    click.echo(f"wrote {page}")
