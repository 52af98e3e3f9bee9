"""Table contracts: the SQL DDL files in ``catalog/`` are the single source of truth for every table.

Each file holds one ``CREATE TABLE`` in Spark SQL syntax with column comments, a table comment and
``TBLPROPERTIES`` naming the table's zone and grain. This module parses them (with sqlglot) into
:class:`Contract` objects that give the Iceberg, Arrow and Polars schemas.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stedi.errors import ContractError, first_line

if TYPE_CHECKING:  # imported where used: a CLI call that needs no schema should not pay for them
    import pyarrow as pa
    from pyiceberg.schema import Schema

# Spark SQL type name -> (Iceberg type name, Arrow type name). TIMESTAMP is an instant (timestamptz).
_TYPES = {
    "STRING": ("StringType", "large_string"),
    "BIGINT": ("LongType", "int64"),
    "INT": ("IntegerType", "int32"),
    "DOUBLE": ("DoubleType", "float64"),
    "BOOLEAN": ("BooleanType", "bool_"),
    "DATE": ("DateType", "date32"),
    "TIMESTAMP": ("TimestamptzType", "timestamp"),
}


def _arrow_type(sql_type: str) -> pa.DataType:
    import pyarrow as pa

    name = _TYPES[sql_type][1]
    return pa.timestamp("us", tz="UTC") if name == "timestamp" else getattr(pa, name)()


ZONES = ("landing", "trusted", "curated", "system")
#: What an owner column can hold (``stedi.owner_kind``).
OWNER_KINDS = ("email", "serial", "customer_key", "subject_key", "identifier")
#: The columns stedi adds to the landing tables, not in the raw files: the fields received beyond
#: the contract (kept, never lost) and the lineage of each row.
EXTRA = "_extra"
LINEAGE = (EXTRA, "_source_file", "_line_number", "_ingested_at")


def sql_literal(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _listed(value: str | None) -> tuple[str, ...]:
    """The names of a comma-separated TBLPROPERTIES value."""
    return tuple(n.strip() for n in (value or "").split(",") if n.strip())


def contracts_dir() -> Path:
    """Where the contracts are: inside the installed package, else the repository's ``catalog/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_contracts", here.parent / "catalog"):
        if candidate.is_dir():
            return candidate
    raise ContractError(f"no contracts folder found beside {here} (expected catalog/)")


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    required: bool
    comment: str

    @property
    def iceberg_type(self):
        from pyiceberg import types

        return getattr(types, _TYPES[self.sql_type][0])()

    @property
    def arrow_type(self) -> pa.DataType:
        return _arrow_type(self.sql_type)


#: What a failing data quality rule does: report it, set the row aside in quarantine, or fail the job.
RULE_ACTIONS = ("warn", "drop", "fail")


@dataclass(frozen=True)
class Rule:
    """A data quality rule: a ``CONSTRAINT name CHECK (predicate)`` of the contract, its action
    from ``TBLPROPERTIES ('stedi.rule.<name>' = 'warn' | 'drop' | 'fail')`` (default ``drop``).
    ``predicate`` is kept in DuckDB's SQL, which evaluates it; as in SQL, NULL passes."""

    name: str
    predicate: str
    action: str
    #: For a predicate that bounds a column (exactly ``x BETWEEN low AND high``, integers):
    #: ``(column, low, high)``, read when the contract is parsed, so that code using them needs no
    #: SQL parser at run time.
    between: tuple[str, int, int] | None = None


@dataclass(frozen=True)
class Contract:
    """One table's contract: its columns, zone, grain and description, as declared in catalog/."""

    name: str
    zone: str
    grain: str
    description: str
    columns: tuple[Column, ...]
    properties: tuple[tuple[str, str], ...]
    ddl: str
    rules: tuple[Rule, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def raw_columns(self) -> list[Column]:
        """The columns as received, without stedi's lineage columns."""
        return [c for c in self.columns if c.name not in LINEAGE]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def owner(self) -> str | None:
        """The column saying whose row this is (TBLPROPERTIES ``stedi.owner``): an email
        (``email``, ``user``), a ``customer_key`` or a device's ``serialNumber``. Incremental runs
        recompute a table's rows by owner."""
        return dict(self.properties).get("stedi.owner")

    @property
    def owner_kind(self) -> str | None:
        """What the owner column holds (TBLPROPERTIES ``stedi.owner_kind``, one of
        :data:`OWNER_KINDS`): an ``email`` or a ``serial`` number (as sent in the landing zone, in
        their normal form elsewhere), the curated ``customer_key``, the consent history's
        ``subject_key``, or either identifier (``identifier``: the quarantine's ``owner``)."""
        return dict(self.properties).get("stedi.owner_kind")

    @property
    def personal(self) -> tuple[str, ...]:
        """The columns that identify a person or their device, or may hold such values
        (TBLPROPERTIES ``stedi.personal``): no statistics of theirs are written, ``forget`` erases
        their values, a curated table has none."""
        return _listed(dict(self.properties).get("stedi.personal"))

    @property
    def free_text(self) -> tuple[str, ...]:
        """The personal columns of free text, which may mention a person anywhere in them
        (TBLPROPERTIES ``stedi.free_text``: a name, a raw line, fields received beyond the
        contract, a file name as received): ``forget`` erases mentions there, the audit looks."""
        return _listed(dict(self.properties).get("stedi.free_text"))

    @property
    def holds_everyone(self) -> bool:
        """Whether the table holds every customer, consenting or not (TBLPROPERTIES ``stedi.holds`` =
        ``every customer``: the consent history); any other trusted or curated table holds only
        customers who may be there."""
        return dict(self.properties).get("stedi.holds") == "every customer"

    @property
    def consents(self) -> tuple[str, ...]:
        """Columns holding a consent date (TBLPROPERTIES ``stedi.consents``, comma-separated): a
        value sent that plainly means none is read as NULL (stedi.parse)."""
        listed = dict(self.properties).get("stedi.consents", "")
        return tuple(n.strip() for n in listed.split(",") if n.strip())

    @property
    def taken_at(self) -> str | None:
        """The column of a table of readings saying when each was taken, in epoch milliseconds
        (TBLPROPERTIES ``stedi.taken_at``). Incremental runs read only the committed readings of the
        time span of the new ones: a new reading can only repeat or pair with one taken at its time."""
        return dict(self.properties).get("stedi.taken_at")

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def iceberg_schema(self) -> Schema:
        from pyiceberg.schema import Schema
        from pyiceberg.types import NestedField

        return Schema(
            *(
                NestedField(i, c.name, c.iceberg_type, required=c.required, doc=c.comment or None)
                for i, c in enumerate(self.columns, start=1)
            )
        )

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(c.name, c.arrow_type, nullable=not c.required) for c in self.columns])

    def conform(self, table: pa.Table) -> pa.Table:
        """Return ``table`` with exactly the contract's columns, order, types and nullability.

        Raises :class:`ContractError` naming what is missing or extra; a failed cast (a value that
        does not fit the declared type) raises too.
        """
        missing = [n for n in self.column_names if n not in table.column_names]
        extra = [n for n in table.column_names if n not in self.column_names]
        if missing or extra:
            raise ContractError(
                f"{self.name}: output does not match catalog/{self.name}.sql"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {extra}" if extra else "")
            )
        import pyarrow as pa

        table = table.select(self.column_names)
        try:
            return table.cast(self.arrow_schema())
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise ContractError(f"{self.name}: output does not fit catalog/{self.name}.sql: {err}") from err


def parse_contract(ddl: str, source: str = "<string>") -> Contract:
    """Parse one contract's DDL text."""
    import sqlglot
    from sqlglot import exp

    try:
        create = sqlglot.parse_one(ddl, dialect="spark")
    except sqlglot.errors.ParseError as err:
        raise ContractError(f"{source}: not a valid CREATE TABLE: {first_line(err)}") from err
    if not isinstance(create, exp.Create) or not isinstance(create.this, exp.Schema):
        raise ContractError(f"{source}: expected one CREATE TABLE statement with columns")
    name = create.this.this.name
    columns = []
    checks: list[tuple[str, str, tuple[str, int, int] | None]] = []
    for coldef in create.this.expressions:
        if isinstance(coldef, exp.Constraint):
            check = next((k for k in coldef.expressions if isinstance(k, exp.CheckColumnConstraint)), None)
            if check is None:
                raise ContractError(f"{source}: constraint {coldef.name}: only CHECK constraints are supported")
            checks.append((coldef.this.name, check.this.sql("duckdb"), _integer_bounds(check.this)))
            continue
        if not isinstance(coldef, exp.ColumnDef):
            continue
        kinds = [c.args["kind"] for c in coldef.constraints]
        comment = next((k.this.name for k in kinds if isinstance(k, exp.CommentColumnConstraint)), "")
        required = any(isinstance(k, exp.NotNullColumnConstraint) for k in kinds)
        sql_type = coldef.args["kind"].sql("spark").upper()
        if sql_type not in _TYPES:
            raise ContractError(f"{source}: column {coldef.name}: unsupported type {sql_type}")
        columns.append(Column(coldef.name, sql_type, required, comment))
    props: dict[str, str] = {}
    description = ""
    for prop in create.args.get("properties") or []:
        if isinstance(prop, exp.SchemaCommentProperty):
            description = prop.this.name
        elif isinstance(prop, exp.Property):
            props[prop.name] = prop.args["value"].name
    zone = props.get("stedi.zone", "")
    if zone not in ZONES:
        raise ContractError(f"{source}: TBLPROPERTIES 'stedi.zone' must be one of {ZONES}, got {zone!r}")
    if not columns:
        raise ContractError(f"{source}: table {name} declares no columns")
    names = {c.name for c in columns}
    for prop in ("stedi.owner", "stedi.taken_at"):
        if props.get(prop) is not None and props[prop] not in names:
            raise ContractError(f"{source}: TBLPROPERTIES {prop!r} names {props[prop]!r}, which is not a column")
    if (props.get("stedi.owner") is None) != (props.get("stedi.owner_kind") is None):
        raise ContractError(f"{source}: TBLPROPERTIES 'stedi.owner' and 'stedi.owner_kind' go together")
    if props.get("stedi.owner_kind") not in (None, *OWNER_KINDS):
        raise ContractError(f"{source}: TBLPROPERTIES 'stedi.owner_kind' must be one of {OWNER_KINDS}, got {props['stedi.owner_kind']!r}")
    for prop in ("stedi.consents", "stedi.personal", "stedi.free_text"):
        for listed in _listed(props.get(prop)):
            if listed not in names:
                raise ContractError(f"{source}: TBLPROPERTIES {prop!r} names {listed!r}, which is not a column")
    personal = set(_listed(props.get("stedi.personal")))
    if not set(_listed(props.get("stedi.free_text"))) <= personal:
        raise ContractError(f"{source}: every column of TBLPROPERTIES 'stedi.free_text' must be in 'stedi.personal' too")
    if props.get("stedi.owner_kind") in ("email", "serial", "identifier") and props["stedi.owner"] not in personal:
        raise ContractError(f"{source}: the owner column {props['stedi.owner']!r} holds an identifier: list it in TBLPROPERTIES 'stedi.personal'")
    rules = []
    for rule_name, predicate, between in checks:
        action = props.get(f"stedi.rule.{rule_name}", "drop")
        if action not in RULE_ACTIONS:
            raise ContractError(f"{source}: rule {rule_name}: action must be one of {RULE_ACTIONS}, got {action!r}")
        rules.append(Rule(rule_name, predicate, action, between))
    unknown = [k.removeprefix("stedi.rule.") for k in props if k.startswith("stedi.rule.")]
    unknown = [r for r in unknown if r not in {n for n, _, _ in checks}]
    if unknown:
        raise ContractError(f"{source}: TBLPROPERTIES name rules with no CHECK constraint: {unknown}")
    return Contract(
        name=name,
        zone=zone,
        grain=props.get("stedi.grain", ""),
        description=description,
        columns=tuple(columns),
        properties=tuple(sorted(props.items())),
        ddl=ddl,
        rules=tuple(rules),
    )


@functools.cache
def load_contracts(folder: Path | None = None) -> dict[str, Contract]:
    """Every contract in ``folder`` (default :func:`contracts_dir`), by table name.

    Parsed contracts are cached as JSON under ``$XDG_CACHE_HOME/stedi`` (default ``~/.cache``),
    keyed by a digest of the DDL files and of this module, so a CLI call does not import and run
    the SQL parser each time; the DDL files stay the only source of truth.
    """
    folder = folder or contracts_dir()
    paths = sorted(folder.glob("*.sql"))
    texts = {path: path.read_bytes() for path in paths}
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path, text in texts.items():
        digest.update(path.name.encode() + b"\0" + text + b"\0")
    cache = _cache_dir() / f"contracts-{digest.hexdigest()[:24]}.json"
    try:
        return {c["name"]: _from_json(c) for c in json.loads(cache.read_text())}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    contracts = {}
    for path, text in texts.items():
        contract = parse_contract(text.decode("utf-8"), source=str(path))
        if contract.name != path.stem:
            raise ContractError(f"{path}: declares table {contract.name}; the file must be named after it")
        contracts[contract.name] = contract
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps([dataclasses.asdict(c) for c in contracts.values()]))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs the parse
    return contracts


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stedi"


def _from_json(c: dict) -> Contract:
    return Contract(
        name=c["name"],
        zone=c["zone"],
        grain=c["grain"],
        description=c["description"],
        columns=tuple(Column(**col) for col in c["columns"]),
        properties=tuple(tuple(p) for p in c["properties"]),
        ddl=c["ddl"],
        rules=tuple(Rule(**r | {"between": tuple(r["between"]) if r.get("between") else None}) for r in c.get("rules", ())),
    )


def _integer_bounds(predicate: Any) -> tuple[str, int, int] | None:
    """``(column, low, high)`` of a CHECK predicate that is exactly ``column BETWEEN low AND high``
    with integer literals (a sqlglot expression); None for any other predicate."""
    from sqlglot import exp

    def integer(node: Any) -> int | None:
        sign = 1
        if isinstance(node, exp.Neg):
            sign, node = -1, node.this
        if not isinstance(node, exp.Literal) or node.is_string:
            return None
        try:
            return sign * int(node.this)
        except ValueError:
            return None

    if isinstance(predicate, exp.Paren):
        predicate = predicate.this
    if not isinstance(predicate, exp.Between) or not isinstance(predicate.this, exp.Column):
        return None
    low, high = integer(predicate.args["low"]), integer(predicate.args["high"])
    if low is None or high is None or low > high:
        return None
    return predicate.this.name, low, high


def contract(name: str) -> Contract:
    """The contract of table ``name``."""
    contracts = load_contracts()
    try:
        return contracts[name]
    except KeyError:
        raise ContractError(f"no contract for table {name!r} in {contracts_dir()}") from None


def contract_digest(name: str) -> str:
    """A digest of table ``name``'s contract file, without parsing it (cheap: used to spot changes)."""
    path = contracts_dir() / f"{name}.sql"
    if not path.is_file():
        raise ContractError(f"no contract for table {name!r} in {contracts_dir()}")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
