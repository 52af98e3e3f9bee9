"""The ``stedi-etl`` group and its context: the settings resolved once, the warehouse opened on
first use, and every :class:`~stedi.errors.StediError` mapped to one line on stderr and exit code 1.
"""

from __future__ import annotations

import functools

import click

from stedi.errors import StediError, first_line
from stedi.storage import storage_error

EPILOG_WAREHOUSE = (
    "The warehouse defaults to ./lakehouse (or STEDI_WAREHOUSE); only ingest and init create one, a read "
    "command on a warehouse that does not exist says so. --warehouse and --catalog-uri go before or after the "
    "command's name. "
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
        except KeyboardInterrupt:
            click.echo("interrupted: nothing more was done", err=True)
            raise SystemExit(130) from None
        except OSError as err:
            ctx = click.get_current_context(silent=True)
            wh = getattr(ctx.obj, "_wh", None) if ctx else None
            if wh is not None and wh.files.remote:  # an endpoint down, a refused request, ...
                raise click.ClickException(str(storage_error(err, wh.location))) from None
            raise click.ClickException(f"{err.strerror or first_line(err)}: {err.filename or ''}".rstrip(": ")) from None
        except Exception as err:
            # pyiceberg reading a damaged metadata file raises its own or pydantic's errors
            if type(err).__module__.split(".")[0] in ("pydantic", "pydantic_core", "pyiceberg"):
                raise click.ClickException(f"the warehouse's Iceberg metadata cannot be read: {first_line(err)}") from None
            raise

    return wrapper


class _Context:
    def __init__(self, warehouse: str | None, catalog_uri: str | None = None):
        self._given: dict[str, object] = {"warehouse": warehouse, "catalog_uri": catalog_uri}
        self._wh = None

    def given(self, **values: object) -> None:
        """Options given after the command's name (they win over those before it)."""
        self._given.update({k: v for k, v in values.items() if v is not None})

    @functools.cached_property
    def settings(self):
        """Resolved when a command needs them (inside its error handling; `--help` reads nothing)."""
        from stedi.config import resolve

        return resolve(**self._given)

    @property
    def warehouse(self):
        """The warehouse for a writer (created on first use)."""
        if self._wh is None:
            from stedi.warehouse import Warehouse

            self._wh = Warehouse.open(self.settings)
            where = self._wh.location
            self._wh.on_wait = lambda holder: click.echo(f"waiting for the writers' lock of {where}: held by {holder}", err=True)
        return self._wh

    @property
    def reader(self):
        """The warehouse for a reader: it must exist; nothing is created."""
        if self._wh is None:
            from stedi.warehouse import Warehouse

            self._wh = Warehouse.open(self.settings, read_only=True)
        return self._wh

    def lake(self):
        """The warehouse as a reader sees it (:mod:`stedi.lakeview`): opens nothing, writes nothing."""
        from stedi.lakeview import Lake

        return Lake(self.settings)

    def keys(self, *, create: bool):
        """The warehouse's keys, checked (a writer may make those of a new warehouse)."""
        return self.warehouse.keys(create=create)



def _store(name: str):
    def callback(ctx: click.Context, _param, value):
        if value is not None and value != () and isinstance(ctx.obj, _Context):
            ctx.obj.given(**{name: tuple(value) if isinstance(value, tuple) else value})
        return value

    return callback


def warehouse_options(fn):
    """``--warehouse`` and ``--catalog-uri`` after the command's name too."""
    fn = click.option("--catalog-uri", default=None, metavar="URI", expose_value=False, callback=_store("catalog_uri"),
                      help="As before the command's name: the Iceberg catalog.")(fn)
    return click.option("--warehouse", default=None, expose_value=False, callback=_store("warehouse"),
                        help="As before the command's name: the warehouse folder or s3://bucket/prefix.")(fn)


def zone_options(fn):
    """``--zone`` and ``--table``: which tables the reader sees (:mod:`stedi.zones`)."""
    fn = click.option("--table", "tables", multiple=True, expose_value=False, callback=_store("tables"), metavar="TABLE",
                      help="Show this table too (a reader limited to a zone; repeatable). [default: $STEDI_TABLES, stedi.toml's tables]")(fn)
    return click.option(
        "--zone", type=click.Choice(["all", "landing", "trusted", "curated"]), default=None, expose_value=False,
        callback=_store("zone"),
        help="Only this zone's tables and those after it (curated: curated only); no system table unless all. "
        "[default: $STEDI_ZONE, the warehouse's stedi.toml, or all]",
    )(fn)


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



def add_warehouse_options(group: click.Group) -> None:
    """Give every command of ``group`` ``--warehouse`` and ``--catalog-uri`` after its name (those
    that declare them already keep theirs)."""
    for name, command in group.commands.items():
        names = {p.name for p in command.params}
        if "warehouse" not in names and name != "generate":  # generate writes files, not a warehouse
            command.params += warehouse_options(lambda: None).__click_params__
