"""The commands that make or mend a warehouse itself: init, repair, relocate."""

from __future__ import annotations

import click

from stedi.cli.app import _Context, _fail_cleanly, cli, warehouse_options
from stedi.cli.output import _console


@cli.command()
@warehouse_options
@click.pass_obj
@_fail_cleanly
def init(obj: _Context) -> None:
    """Create a new, empty warehouse: its folder, catalog, key and every table of catalog/.

    Only init and ingest create a warehouse; read commands on one that does not exist say so.

    \b
    Example:
      stedi-etl --warehouse lakehouse init
    """
    from stedi.contracts import load_contracts

    wh = obj.warehouse
    with wh.lock("stedi-etl init"):
        wh.keys(create=True)
        for name in load_contracts():
            wh.table(name)
    _console().print(f"warehouse ready at {wh.location} ({len(load_contracts())} tables)", markup=False)


@cli.command()
@warehouse_options
@click.pass_obj
@_fail_cleanly
def repair(obj: _Context) -> None:
    """Rebuild a lost catalog from the tables' own files: register each table's newest metadata file.

    For a warehouse whose catalog.db was deleted or lost (its Iceberg metadata is still there).

    \b
    Example:
      stedi-etl --warehouse lakehouse repair
    """
    from stedi.catalog_repair import repair as run_repair

    done = run_repair(obj.settings)
    _console().print(f"registered {len(done)} table(s){': ' + ', '.join(done) if done else ''}", markup=False)


@cli.command()
@warehouse_options
@click.pass_obj
@_fail_cleanly
def relocate(obj: _Context) -> None:
    """Point the tables of a warehouse folder that was moved or copied at its new place.

    Iceberg names files by absolute URIs: this writes each table's manifests and a new metadata
    file with the new place's URIs, and points the catalog at them. The old folder is not touched.

    \b
    Example:
      mv lakehouse /data/lakehouse && stedi-etl --warehouse /data/lakehouse relocate
    """
    from stedi.catalog_repair import relocate as run_relocate

    done = run_relocate(obj.settings)
    _console().print(f"relocated {len(done)} table(s) to {obj.settings.location}", markup=False)
