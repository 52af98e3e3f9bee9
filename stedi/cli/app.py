"""The ``stedi-etl`` group and its context: the settings resolved once, the warehouse opened on
first use, and every :class:`~stedi.errors.StediError` mapped to one line on stderr and exit code 1.
"""

from __future__ import annotations

import functools

import click

from stedi.errors import StediError, first_line
from stedi.storage import storage_error

EPILOG_WAREHOUSE = (
    "The warehouse defaults to ./lakehouse (or STEDI_WAREHOUSE) and is created on first use. "
    "--warehouse s3://bucket/prefix keeps it in object storage (endpoint, region and credentials from the "
    "standard AWS variables and files) with the catalog named by --catalog-uri."
)

def _fail_cleanly(fn):
    """Turn expected errors into one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StediError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:
            ctx = click.get_current_context(silent=True)
            wh = getattr(ctx.obj, "_wh", None) if ctx else None
            if wh is not None and wh.files.remote:  # an endpoint down, a refused request, ...
                raise click.ClickException(str(storage_error(err, wh.location))) from None
            raise click.ClickException(f"{err.strerror or first_line(err)}: {err.filename or ''}".rstrip(": ")) from None

    return wrapper


class _Context:
    def __init__(self, warehouse: str | None, catalog_uri: str | None = None):
        self._given = {"warehouse": warehouse, "catalog_uri": catalog_uri}
        self._wh = None

    @functools.cached_property
    def settings(self):
        """Resolved when a command needs them (inside its error handling; `--help` reads nothing)."""
        from stedi.config import resolve

        return resolve(**self._given)

    @property
    def warehouse(self):
        if self._wh is None:
            from stedi.warehouse import Warehouse

            self._wh = Warehouse.open(self.settings)
        return self._wh

    def keys(self, *, create: bool):
        """The warehouse's keys, checked (a writer may make those of a new warehouse)."""
        return self.warehouse.keys(create=create)



@click.group(epilog=EPILOG_WAREHOUSE)
@click.option(
    "--warehouse",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Warehouse folder, or s3://bucket/prefix. [default: $STEDI_WAREHOUSE or ./lakehouse]",
)
@click.option(
    "--catalog-uri",
    default=None,
    metavar="URI",
    help="SQLAlchemy URI of the Iceberg catalog, e.g. postgresql+psycopg://user:password@host/db to share "
    "it, or glue://DATABASE for the AWS Glue Data Catalog (Athena reads the tables there). "
    "[default: $STEDI_CATALOG_URI, the warehouse's stedi.toml, or a SQLite file in the warehouse]",
)
@click.version_option(package_name="stedi")
@click.pass_context
def cli(ctx: click.Context, warehouse: str | None, catalog_uri: str | None) -> None:
    """stedi: a privacy-first lakehouse for STEDI Step Trainer data.

    \b
    Typical session:
      stedi-etl ingest sample_data
      stedi-etl run
      stedi-etl sql "SELECT count(*) FROM machine_learning_curated"
    """
    ctx.obj = _Context(warehouse, catalog_uri)

