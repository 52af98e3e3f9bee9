"""Settings: one frozen object, resolved once in layers (defaults < ``STEDI_*`` environment < CLI flags).

Nothing here reads the environment at import time; :func:`resolve` does, when asked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_WAREHOUSE = "lakehouse"

#: Environment variables read by :func:`resolve`, by setting name.
ENV_VARS = {
    "warehouse": "STEDI_WAREHOUSE",
    "catalog_uri": "STEDI_CATALOG_URI",
    "pseudonym_key": "STEDI_PSEUDONYM_KEY",
}


@dataclass(frozen=True)
class Settings:
    """Everything stedi needs to know about where it runs.

    Parameters
    ----------
    warehouse
        Folder holding the landing copies, the Iceberg data and metadata and, by default, the
        SQLite catalog. Created on first use.
    catalog_uri
        SQLAlchemy URI of the Iceberg SQL catalog; ``None`` means ``<warehouse>/catalog.db``.
    pseudonym_key
        Secret for the keyed hash of emails; ``None`` means the warehouse's own key file.
        Never shown by ``repr``.
    """

    warehouse: Path = Path(DEFAULT_WAREHOUSE)
    catalog_uri: str | None = None
    pseudonym_key: str | None = field(default=None, repr=False)

    @property
    def catalog_url(self) -> str:
        return self.catalog_uri or f"sqlite:///{self.warehouse.resolve() / 'catalog.db'}"


def resolve(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build :class:`Settings` from defaults, then ``STEDI_*`` variables, then explicit overrides.

    Overrides that are ``None`` are ignored, so CLI options left unset fall through to the
    environment.

    >>> resolve({"STEDI_WAREHOUSE": "/data/wh"}).warehouse
    PosixPath('/data/wh')
    >>> resolve({"STEDI_WAREHOUSE": "/data/wh"}, warehouse="other").warehouse
    PosixPath('other')
    """
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, var in ENV_VARS.items():
        if env.get(var):
            values[name] = env[var]
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "warehouse" in values:
        values["warehouse"] = Path(str(values["warehouse"])).expanduser()
    return replace(Settings(), **values)
