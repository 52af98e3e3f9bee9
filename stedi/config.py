"""Settings: one frozen object, resolved once in layers: defaults < ``<warehouse>/stedi.toml`` <
``STEDI_*`` environment < CLI flags.

Nothing here reads the environment or a file at import time; :func:`resolve` does, when asked.
The warehouse's own ``stedi.toml`` holds what belongs to the warehouse rather than to a user, e.g.::

    consent_scope = "since-consent"
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from stedi.errors import ConfigError, first_line
from stedi.storage import Storage, is_remote, normalise, storage_error

DEFAULT_WAREHOUSE = "lakehouse"
SETTINGS_FILE = "stedi.toml"

#: Which readings of a consenting customer may enter trusted and curated tables.
#: ``all-history``: all of them (the original project's definition); ``since-consent``: only those
#: taken at or after the customer's ``shareWithResearchAsOfDate``.
CONSENT_SCOPES = ("all-history", "since-consent")

#: Environment variables read by :func:`resolve`, by setting name.
ENV_VARS = {
    "warehouse": "STEDI_WAREHOUSE",
    "catalog_uri": "STEDI_CATALOG_URI",
    "pseudonym_key": "STEDI_PSEUDONYM_KEY",
    "new_pseudonym_key": "STEDI_NEW_PSEUDONYM_KEY",
    "suppression_key": "STEDI_SUPPRESSION_KEY",
    "consent_scope": "STEDI_CONSENT_SCOPE",
    "group": "STEDI_GROUP",
    "retention_days": "STEDI_RETENTION_DAYS",
    "zone": "STEDI_ZONE",
    "tables": "STEDI_TABLES",
    "memory_limit": "STEDI_MEMORY_LIMIT",
}

#: Settings a warehouse's ``stedi.toml`` may hold (the warehouse's location and key may not).
FILE_SETTINGS = ("catalog_uri", "consent_scope", "group", "retention_days", "zone", "tables", "memory_limit")

#: How many days of ordinary snapshots a run keeps for time travel, by default.
DEFAULT_RETENTION_DAYS = 7


@dataclass(frozen=True)
class Settings:
    """Everything stedi needs to know about where it runs.

    Parameters
    ----------
    warehouse
        Folder holding the landing copies, the Iceberg data and metadata and, by default, the
        SQLite catalog (created on first use); or ``s3://bucket/prefix`` in object storage.
    catalog_uri
        SQLAlchemy URI of the Iceberg SQL catalog, or ``glue://DATABASE`` for the AWS Glue Data
        Catalog (see :mod:`stedi.catalogs`); ``None`` means ``<warehouse>/catalog.db``, which only a
        local warehouse can have.
    pseudonym_key
        Secret for the keyed hash of emails; ``None`` means the warehouse's own key file.
        Never shown by ``repr`` (nor are the two below).
    new_pseudonym_key
        The key ``rotate-key`` changes to; ``None`` means a generated one (into the key file).
    suppression_key
        Secret of the keyed hashes of erased people; ``None`` means the warehouse's own
        (``.stedi/suppression.key`` once the key was rotated, else the pseudonym key). See :mod:`stedi.keys`.
    consent_scope
        ``all-history`` (default) or ``since-consent``; see :data:`CONSENT_SCOPES`.
    group
        A group of this machine to share a local warehouse with: its files are then created 0640
        and its folders 2750 in that group (it reads, only the owner writes). ``None`` (default): readable by their owner only
        (0600 / 0700). See :mod:`stedi.at_rest`.
    retention_days
        Days of ordinary snapshots each run keeps for time travel (default 7; 0 keeps only the
        current one). A withdrawn customer's snapshots go at once, whatever this says. See
        :mod:`stedi.retention`.
    zone
        What a reader sees (:mod:`stedi.zones`): ``all`` (default), or ``landing``, ``trusted``,
        ``curated``: that zone and those after it, no system table.
    tables
        Tables a reader limited to a zone sees besides (e.g. ``step_trainer_trusted``).
    memory_limit
        How much memory the engines of one process may use, e.g. ``"4GB"`` (decimal or binary units,
        at least 64 MB), given to DuckDB and to Polars' streaming engine, which spill to a private
        temporary folder past it (:mod:`stedi.resources`). ``None`` (default): their own defaults.
    """

    warehouse: Path | str = Path(DEFAULT_WAREHOUSE)
    catalog_uri: str | None = None
    pseudonym_key: str | None = field(default=None, repr=False)
    new_pseudonym_key: str | None = field(default=None, repr=False)
    suppression_key: str | None = field(default=None, repr=False)
    consent_scope: str = CONSENT_SCOPES[0]
    group: str | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    zone: str = "all"
    tables: tuple[str, ...] = ()
    memory_limit: str | None = None

    def __post_init__(self) -> None:
        if self.memory_limit is not None and not str(self.memory_limit).strip():
            object.__setattr__(self, "memory_limit", None)
        if self.memory_limit is not None:
            object.__setattr__(self, "memory_limit", str(self.memory_limit).strip())
            memory_bytes(self.memory_limit)  # one line now if it is no size
        if self.zone not in ("all", "landing", "trusted", "curated"):  # stedi.zones.ZONE_CHOICES
            raise ConfigError(f"zone must be one of all, landing, trusted, curated, not {self.zone!r}")
        if isinstance(self.tables, str):  # from the environment: comma-separated
            object.__setattr__(self, "tables", tuple(t.strip() for t in self.tables.split(",") if t.strip()))
        elif not isinstance(self.tables, tuple):
            object.__setattr__(self, "tables", tuple(self.tables))
        if self.consent_scope not in CONSENT_SCOPES:
            raise ConfigError(f"consent scope must be one of {', '.join(CONSENT_SCOPES)}, not {self.consent_scope!r}")
        days = self.retention_days
        try:
            valid = not isinstance(days, bool | float) and int(str(days).strip()) >= 0
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(f"retention_days must be a whole number of days, 0 or more, not {days!r}")
        object.__setattr__(self, "retention_days", int(str(days).strip()))
        if self.group is not None and not str(self.group).strip():
            object.__setattr__(self, "group", None)

    @property
    def memory_bytes(self) -> int | None:
        """:attr:`memory_limit` in bytes."""
        return memory_bytes(self.memory_limit) if self.memory_limit is not None else None

    @property
    def location(self) -> str:
        """The warehouse as an absolute path or ``s3://bucket/prefix``."""
        return normalise(self.warehouse)

    @property
    def catalog_url(self) -> str:
        if self.catalog_uri and self.catalog_uri.startswith("glue://") and not is_remote(self.warehouse):
            raise ConfigError(
                f"a Glue catalog ({self.catalog_uri}) needs an s3:// warehouse: Athena and the other engines that "
                f"read Glue's tables read their files in S3, not in {self.location}"
            )
        if self.catalog_uri:
            return self.catalog_uri
        if is_remote(self.warehouse):
            raise ConfigError(
                f"the warehouse {self.location} is in object storage, so its catalog cannot be a file in it: give "
                "--catalog-uri (or STEDI_CATALOG_URI) postgresql+psycopg://... to share it, or sqlite:////path/catalog.db"
            )
        return f"sqlite:///{Path(self.location) / 'catalog.db'}"


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
#: The least memory_limit: below it DuckDB and Polars fail on the smallest tables.
MIN_MEMORY = 64 * 10**6


def memory_bytes(text: str) -> int:
    """A size such as ``4GB``, ``512 MiB`` or ``1.5gb`` in bytes (a bare number is bytes).

    >>> memory_bytes("4GB"), memory_bytes("512 MiB")
    (4000000000, 536870912)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match and _UNITS.get(match[2].lower())
    if not unit:
        raise ConfigError(f"memory_limit must be a size such as 4GB or 512MiB, not {text!r}")
    size = int(float(match[1]) * unit)
    if size < MIN_MEMORY:
        raise ConfigError(f"memory_limit {text!r} is too small: stedi needs at least 64MB")
    return size


def resolve(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build :class:`Settings` from defaults, the warehouse's ``stedi.toml``, ``STEDI_*`` variables,
    then explicit overrides.

    Overrides that are ``None`` are ignored, so CLI options left unset fall through to the
    environment.

    >>> resolve({"STEDI_WAREHOUSE": "/data/wh"}).warehouse
    PosixPath('/data/wh')
    >>> resolve({"STEDI_WAREHOUSE": "/data/wh"}, warehouse="other").warehouse
    PosixPath('other')
    """
    env = os.environ if env is None else env
    layered: dict[str, object] = {}
    for name, var in ENV_VARS.items():
        if env.get(var):
            layered[name] = env[var]
    layered.update({k: v for k, v in overrides.items() if v is not None})
    given = str(layered.get("warehouse", DEFAULT_WAREHOUSE))
    warehouse: Path | str = normalise(given) if is_remote(given) else Path(given).expanduser()
    in_file = read_settings_file(warehouse)
    values = in_file | layered
    values["warehouse"] = warehouse
    settings = replace(Settings(), **values)
    if ("zone" in in_file or "tables" in in_file) and ("zone" in layered or "tables" in layered):
        from stedi.zones import check_ceiling

        check_ceiling(in_file, settings.zone, settings.tables, f"{settings.location}/{SETTINGS_FILE}")
    return settings


def read_settings_file(warehouse: Path | str) -> dict[str, object]:
    """The settings in ``<warehouse>/stedi.toml`` (none if the file does not exist)."""
    remote = is_remote(warehouse)
    files = Storage(warehouse) if remote else None  # a local file is read without fsspec (a read command stays quick)
    path = f"{files.location if files else normalise(warehouse)}/{SETTINGS_FILE}"
    try:
        text = (files.read_bytes(SETTINGS_FILE) if files else Path(path).read_bytes()).decode("utf-8")
    except FileNotFoundError:
        return {}
    except Exception as err:  # a file that is no text, a folder's rights, an endpoint down, ...
        if remote:
            raise storage_error(err, files.location) from err
        raise ConfigError(f"cannot read {path}: {getattr(err, 'strerror', None) or first_line(err)}") from err
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    known = {f.name for f in fields(Settings)}
    for name, value in values.items():
        if name not in FILE_SETTINGS:
            hint = "; set it in the environment or on the command line" if name in known else ""
            raise ConfigError(f"{path}: unknown setting {name!r} (allowed: {', '.join(FILE_SETTINGS)}){hint}")
        kind = _FILE_TYPES.get(name, str)
        ok = (isinstance(value, list) and all(isinstance(v, str) for v in value)) if kind is list else (
            isinstance(value, kind) and not isinstance(value, bool)
        )
        if not ok:
            wanted = {str: "a string", int: "a whole number", list: "a list of table names"}[kind]
            raise ConfigError(f"{path}: {name} must be {wanted}, not {value!r}")
    return values


#: The type of each setting in ``stedi.toml`` (the others are strings).
_FILE_TYPES = {"retention_days": int, "tables": list}
