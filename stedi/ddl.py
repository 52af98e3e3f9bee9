"""DDL for other engines, generated from the contracts in catalog/ (never hand-copied).

* landing tables: the raw JSON files in the warehouse landing area, as received -- for Athena a
  ``CREATE EXTERNAL TABLE`` with the OpenX JSON SerDe (what the original project's
  customer_landing.sql and accelerometer_landing.sql did), for Spark a JSON table, for DuckDB a
  view over ``read_json``. Lineage columns are stedi's own and are not in the raw files.
* trusted, curated and system tables: Iceberg tables (Athena ``table_type = ICEBERG``, Spark
  ``USING iceberg``); DuckDB, which cannot write Iceberg here, gets plain tables.

For Athena these are **new, empty** Iceberg tables, in ``<location>/athena/<table>`` (never in the
folder of a table stedi writes, whose unused files stedi deletes): Athena reads only Iceberg tables
registered in the Glue Data Catalog, and stedi's own tables are registered there only when its
catalog is Glue (``--catalog-uri glue://DATABASE``, :mod:`stedi.catalogs`). The output says so.
Athena creates Iceberg ``timestamp`` columns only (microseconds, no time zone), so a ``TIMESTAMP``
of a contract is one, holding UTC.
"""

from __future__ import annotations

from stedi.contracts import ZONES, Column, Contract, load_contracts

DIALECTS = ("athena", "duckdb", "spark")


def _sql_type(col: Column, dialect: str) -> str:
    from sqlglot import exp

    # Athena runs DDL on its Hive engine: STRING, not the Trino VARCHAR of its queries.
    return exp.DataType.build(col.sql_type, dialect="spark").sql(dialect="hive" if dialect == "athena" else dialect)


def _string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote(name: str, dialect: str) -> str:
    return f'"{name}"' if dialect == "duckdb" else f"`{name}`"


def _columns(cols: list[Column], dialect: str, *, not_null: bool) -> str:
    lines = []
    for col in cols:
        parts = [_quote(col.name, dialect), _sql_type(col, dialect)]
        if not_null and col.required:
            parts.append("NOT NULL")
        if dialect != "duckdb" and col.comment:
            parts.append(f"COMMENT {_string(col.comment)}")
        lines.append("  " + " ".join(parts))
    return ",\n".join(lines)


def table_ddl(c: Contract, dialect: str, location: str) -> str:
    """The DDL of one table in ``dialect``; ``location`` is the warehouse root (a path or URI)."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}")
    root = location.rstrip("/")
    if c.zone == "landing":
        source = dict(c.properties)["stedi.source"]
        raw = c.raw_columns
        where = f"{root}/landing/{source}/"
        if dialect == "athena":
            return (
                f"CREATE EXTERNAL TABLE IF NOT EXISTS {_quote(c.name, dialect)} (\n{_columns(raw, dialect, not_null=False)}\n)\n"
                f"COMMENT {_string(c.description)}\n"
                "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\n"
                "WITH SERDEPROPERTIES ('ignore.malformed.json' = 'FALSE', 'dots.in.keys' = 'FALSE', "
                "'case.insensitive' = 'TRUE', 'mapping' = 'TRUE')\n"
                "STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'\n"
                "OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n"
                f"LOCATION {_string(where)}\n"
                "TBLPROPERTIES ('classification' = 'json');"
            )
        if dialect == "spark":
            return (
                f"CREATE TABLE IF NOT EXISTS {_quote(c.name, dialect)} (\n{_columns(raw, dialect, not_null=False)}\n)\n"
                f"USING json\nCOMMENT {_string(c.description)}\nLOCATION {_string(where)};"
            )
        columns = ", ".join(f"{_quote(col.name, dialect)}: '{_sql_type(col, dialect)}'" for col in raw)
        return (
            f"CREATE OR REPLACE VIEW {_quote(c.name, dialect)} AS\n"
            f"SELECT * FROM read_json('{where}*.json', format = 'newline_delimited', columns = {{{columns}}});"
        )
    if dialect == "athena":
        return (
            f"CREATE TABLE IF NOT EXISTS {_quote(c.name, dialect)} (\n{_columns(list(c.columns), dialect, not_null=False)}\n)\n"
            f"LOCATION {_string(f'{root}/athena/{c.name}')}\n"
            "TBLPROPERTIES ('table_type' = 'ICEBERG', 'format' = 'parquet', 'write_compression' = 'zstd');"
        )
    if dialect == "spark":
        props = ", ".join(f"{_string(k)} = {_string(v)}" for k, v in c.properties)
        return (
            f"CREATE TABLE IF NOT EXISTS {_quote(c.name, dialect)} (\n{_columns(list(c.columns), dialect, not_null=True)}\n)\n"
            f"USING iceberg\nCOMMENT {_string(c.description)}\nTBLPROPERTIES ({props});"
        )
    return f"CREATE TABLE IF NOT EXISTS {_quote(c.name, dialect)} (\n{_columns(list(c.columns), dialect, not_null=True)}\n);"


ATHENA_NOTE = """\
-- Athena DDL from stedi's contracts (catalog/). What it creates:
--   * landing tables: external JSON tables over the raw files in {root}/landing/, as stedi copied them;
--   * every other table: a NEW, EMPTY Iceberg table in {root}/athena/<table>. Athena reads only Iceberg
--     tables registered in the Glue Data Catalog; these statements do not register the tables stedi writes.
-- To query stedi's own tables in Athena, keep its catalog in Glue, which registers each table as it is
-- written: stedi-etl --warehouse s3://BUCKET/PREFIX --catalog-uri glue://DATABASE ... (README: AWS Glue).
-- TIMESTAMP columns are Iceberg timestamps (microseconds, no time zone, as Athena creates them), in UTC."""


def ddl(dialect: str, location: str) -> str:
    """The DDL of every table, landing first, each statement preceded by its grain; for Athena, a
    note first saying what the statements create."""
    contracts = sorted(load_contracts().values(), key=lambda c: (ZONES.index(c.zone), c.name))
    blocks = [f"-- {c.name} ({c.zone}): {c.grain}\n{table_ddl(c, dialect, location)}" for c in contracts]
    if dialect == "athena":
        blocks.insert(0, ATHENA_NOTE.format(root=location.rstrip("/")))
    return "\n\n".join(blocks) + "\n"
