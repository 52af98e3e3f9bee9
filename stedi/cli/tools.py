"""The commands that stand apart from a warehouse's data: ddl, generate."""

from __future__ import annotations

from pathlib import Path

import click

from stedi.cli.app import _Context, _fail_cleanly, cli
from stedi.errors import StediError


@cli.command()
@click.option("--dialect", type=click.Choice(["athena", "duckdb", "spark"]), required=True, help="Engine to write the DDL for.")
@click.option(
    "--location",
    default=None,
    help="Root the tables live under, e.g. s3://bucket/stedi [default: the warehouse folder].",
)
@click.pass_obj
@_fail_cleanly
def ddl(obj: _Context, dialect: str, location: str | None) -> None:
    """Print the DDL of every table for another engine, generated from catalog/.

    Landing tables are the raw JSON files of the landing area (for Athena: CREATE EXTERNAL TABLE
    with the JSON SerDe); trusted, curated and system tables are Iceberg tables. For Athena these
    are new, empty tables: Athena reads only Iceberg tables registered in the Glue Data Catalog, so
    to query the tables stedi writes, run stedi with --catalog-uri glue://DATABASE instead.

    \b
    Examples:
      stedi-etl ddl --dialect athena --location s3://my-bucket/stedi > athena.sql
      stedi-etl ddl --dialect duckdb | duckdb lakehouse.duckdb
    """
    from stedi.ddl import ddl as make_ddl

    click.echo(make_ddl(dialect, location or obj.settings.location), nl=False)


@cli.command()
@click.option("--customers", type=click.IntRange(min=1), required=True, help="Number of customers.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed (0 or more): same seed, same bytes.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write.")
@_fail_cleanly
def generate(customers: int, seed: int, out: Path) -> None:
    """Write a deterministic synthetic data set in the starter layout.

    About half the customers consent to research; each device sends 30 step trainer readings; a
    phone sends 3 accelerometer readings per step trainer reading time; many timestamps are shared
    by several customers; some customers have a later, updated record.

    \b
    Example:
      stedi-etl generate --customers 956 --seed 1 --out /tmp/stedi-1x
    """
    from stedi.generate import generate as gen

    if out.exists() and any(out.iterdir()):
        raise StediError(f"{out} is not empty; choose a new folder")
    g = gen(customers, seed, out)
    click.echo(
        f"wrote {g.files} file(s) to {out}: {g.customer_records} customer records ({g.customers} customers), "
        f"{g.accelerometer_readings} accelerometer and {g.step_trainer_readings} step trainer readings"
    )


