"""The Iceberg catalog a warehouse's tables are registered in, as ``--catalog-uri`` names it:

* a SQLAlchemy URI -- ``sqlite:////path/catalog.db`` (the default, a file in a local warehouse) or
  ``postgresql+psycopg://user:password@host/db`` to share it -- through pyiceberg's SQL catalog;
* ``glue://DATABASE``: the AWS Glue Data Catalog, through pyiceberg's Glue catalog, so that Athena
  and every Glue-aware engine read the very tables stedi writes. Region, endpoint
  (``AWS_ENDPOINT_URL``, or ``AWS_ENDPOINT_URL_GLUE`` for Glue alone) and credentials are the
  standard AWS ones, as botocore finds them. The database is created if it does not exist; each
  table is registered in it as an Iceberg table (``table_type`` ICEBERG, its ``metadata_location``).

The catalog's namespace (the Glue database; ``stedi`` in a SQL catalog) records which warehouse it
holds (:data:`OWNER`): a catalog named for another warehouse is refused before any table is read.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

from stedi.errors import ConfigError, StediError, first_line

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from stedi.storage import Storage

GLUE = "glue://"

#: The namespace of stedi's tables in a SQL catalog (in Glue: the database the URI names).
SQL_NAMESPACE = "stedi"

#: The namespace property naming the warehouse whose tables a catalog holds.
OWNER = "stedi.warehouse"

#: Attempts of one Glue call (pyiceberg's default, 10, holds a command for minutes on a dead endpoint).
GLUE_ATTEMPTS = 4


def is_glue(uri: str) -> bool:
    return uri.startswith(GLUE)


def is_postgresql(uri: str) -> bool:
    return uri.startswith("postgresql")


def glue_database(uri: str) -> str:
    """The Glue database of a ``glue://DATABASE`` URI."""
    name = uri.removeprefix(GLUE).strip("/")
    if not re.fullmatch(r"[a-z0-9_]{1,255}", name):
        raise ConfigError(
            f"{uri}: name the Glue database in lowercase letters, digits and underscores, as Athena requires "
            "(e.g. glue://stedi)"
        )
    return name


def namespace(uri: str) -> str:
    """The namespace stedi's tables are in: the Glue database, or ``stedi``."""
    return glue_database(uri) if is_glue(uri) else SQL_NAMESPACE


def describe(uri: str) -> str:
    """The catalog's URI for messages, any password hidden."""
    if is_glue(uri):
        return uri
    from sqlalchemy.engine import make_url

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: say so without echoing it
        return "the configured catalog URI"


def catalog_errors() -> tuple[type[BaseException], ...]:
    """What a catalog's client raises when its database or service fails or refuses."""
    errors: list[type[BaseException]] = [ImportError]
    with contextlib.suppress(ImportError):
        from sqlalchemy.exc import SQLAlchemyError

        errors.append(SQLAlchemyError)
    with contextlib.suppress(ImportError):
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    return tuple(errors)


def catalog_error(err: BaseException, uri: str) -> StediError:
    """One line for a catalog that failed in the middle of a command."""
    return StediError(f"the Iceberg catalog at {describe(uri)} failed: {first_line(getattr(err, 'orig', None) or err)}")


def open_catalog(uri: str, files: Storage, location: str) -> Catalog:
    """The catalog ``uri`` names, its namespace made, checked to hold the warehouse at ``location``
    (``files``) and no other."""
    ns = namespace(uri)
    try:
        if is_glue(uri):
            from pyiceberg.catalog.glue import GlueCatalog

            props = dict(files.iceberg_properties)  # the S3 FileIO's endpoint, region and credentials
            if "s3.region" in props:
                props["glue.region"] = props["s3.region"]
            catalog: Catalog = GlueCatalog(ns, **props, **{"glue.max-retries": GLUE_ATTEMPTS})
        else:
            from pyiceberg.catalog.sql import SqlCatalog

            catalog = SqlCatalog(ns, uri=uri, warehouse=files.url("iceberg"), **files.iceberg_properties)
        catalog.create_namespace_if_not_exists(ns)
        owner = catalog.load_namespace_properties(ns).get(OWNER)
        if owner is None:  # a new catalog (or one made before stedi recorded this): it is ours now
            with contextlib.suppress(*catalog_errors()):  # unless another process just recorded its own
                catalog.update_namespace_properties(ns, updates={OWNER: location})
            owner = catalog.load_namespace_properties(ns).get(OWNER)
    except catalog_errors() as err:
        reason = first_line(getattr(err, "orig", None) or err)
        raise ConfigError(f"cannot open the Iceberg catalog at {describe(uri)}: {reason}") from err
    if owner is not None and owner != location:
        # a catalog shared by mistake between two warehouses: never read or write the other one's tables
        raise ConfigError(
            f"the catalog {describe(uri)} holds the tables of another warehouse ({owner}), not of "
            f"{location}: give each warehouse its own catalog database"
        )
    return catalog
