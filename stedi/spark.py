"""The Spark engine: ``stedi-etl run --engine spark [--spark-master local[*]|spark://HOST:PORT]``.

The same ``pipelines/`` transforms run on PySpark. Spark reads each input table's current data
files (Iceberg deletes are copy-on-write: the current files are the table), the executors write
each output's Parquet files into the table's location, and the driver commits them through
pyiceberg (``add_files``): no Iceberg jars are needed, and the tables stay ordinary Iceberg tables
for Polars, DuckDB, Spark with Iceberg or Athena. A contract's required columns and data quality
rules are checked in Spark; the few rows set aside are brought to the driver for the quarantine.
The privacy audit then reads the written files before anything is committed.

Every table is rebuilt (incremental runs are the Polars engine's); one run is all or nothing as
with Polars. The files of a run that fails before its commit are deleted.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stedi.contracts import Contract
from stedi.runner import SparkEngine

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from stedi.warehouse import Warehouse

DEFAULT_MASTER = "local[*]"


def reachable(master: str, timeout: float = 5.0) -> None:
    """Fail at once, in one line, when a standalone master does not answer (Spark itself would
    retry for a minute before giving up)."""
    import socket

    from stedi.errors import ConfigError

    if not master.startswith("spark://"):
        return
    for address in master.removeprefix("spark://").split(","):  # a list of masters: one must answer
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError):
            continue
    raise ConfigError(f"no Spark master answers at {master}")


def session(master: str = DEFAULT_MASTER, app: str = "stedi") -> SparkSession:
    """A Spark session for stedi: UTC, Parquet timestamps as Iceberg reads them (microseconds)."""
    from pyspark.sql import SparkSession

    reachable(master)
    # Python UDFs (the identifiers' normal form) run stedi's own code: by default in this Python,
    # which has stedi installed (PySpark reads the variable when the session starts)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    spark = (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "OFF")  # our own errors say what failed, in one line
        .getOrCreate()
    )
    return spark


def spark_schema(c: Contract) -> Any:
    """The contract's columns as a Spark schema."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(c.arrow_schema())


class SparkTables(SparkEngine):
    """Spark over the warehouse: reads tables from their files, writes outputs from the executors."""

    writes_tables = True  # the runner lets this engine write and check its outputs itself

    def __init__(self, spark: SparkSession, wh: Warehouse):
        super().__init__(spark)
        self.refuse_remote(wh)
        self.wh = wh
        self.written: list[Path] = []  # folders of this run's files, deleted if it fails
        self._cached: list[DataFrame] = []

    @staticmethod
    def refuse_remote(wh: Warehouse) -> None:
        """Refuse an S3 warehouse: the executors would write ``s3a://`` files, which needs hadoop-aws
        and the AWS SDK on the cluster's classpath, not something stedi can install on a cluster."""
        from stedi.errors import ConfigError

        if wh.files.remote:
            raise ConfigError(
                "--engine spark writes table files from the executors, which needs a local or shared folder as "
                f"warehouse, not {wh.location}: run the Polars engine there"
            )

    def load(self, name: str) -> DataFrame:
        from stedi.contracts import contract

        files = self.wh.data_files(name)
        schema = spark_schema(contract(name))
        if not files:
            return self.spark.createDataFrame([], schema)
        return self.spark.read.schema(schema).parquet(*files)

    def check(self, frame: DataFrame, c: Contract) -> tuple[DataFrame, list[dict], dict[str, dict]]:
        """Rows breaking a required column or a ``drop`` rule set aside (as quarantine rows, on the
        driver), a ``fail`` rule raising, each rule counted: the Spark side of ``split_invalid``
        and ``quality.apply_rules``."""
        import json

        from pyspark.sql import functions as F

        from stedi.errors import JobError

        reasons = [F.when(F.col(n).isNull(), F.lit(f"{n} is null")) for n in c.required if n in frame.columns]
        rule_flags = {r.name: F.coalesce(F.expr(f"({_in_spark_sql(r.predicate)})"), F.lit(True)) for r in c.rules}
        flagged = frame.select("*", *(flag.alias(f"_rule_{name}") for name, flag in rule_flags.items()))
        reasons += [
            F.when(~F.col(f"_rule_{r.name}"), F.lit(f"rule {r.name} failed: {r.predicate}")) for r in c.rules if r.action == "drop"
        ]
        reason = F.concat_ws("; ", *reasons) if reasons else F.lit("")
        flagged = flagged.withColumn("_reason", reason).cache()  # counted, set aside, then written
        self._cached.append(flagged)
        counts = flagged.select(
            F.count(F.lit(1)).alias("_rows"), *(F.sum((~F.col(f"_rule_{n}")).cast("long")).alias(n) for n in rule_flags)
        ).first()
        rules = {}
        for r in c.rules:
            failed = int(counts[r.name] or 0)
            rules[r.name] = {"action": r.action, "passed": int(counts["_rows"]) - failed, "failed": failed}
            if failed and r.action == "fail":
                raise JobError(f"{c.name}: rule {r.name} ({r.predicate}) failed for {failed} row(s); nothing was committed")
        bad = flagged.filter(F.col("_reason") != "")
        bad_rows = [
            {"reason": row["_reason"], "raw": json.dumps(row.asDict(), default=str, sort_keys=True)}
            for row in bad.select("_reason", *frame.columns).collect()
        ]
        good = flagged.filter(F.col("_reason") == "").select(*frame.columns)
        return good, bad_rows, rules

    def write(self, frame: DataFrame, c: Contract, run_id: str) -> list[str]:
        """Write ``frame`` as Parquet into table ``c``'s data folder from the executors, in the
        contract's column order and types (required columns non-nullable, as Iceberg has them);
        return the files written."""
        from pyspark.sql import functions as F

        schema = spark_schema(c)
        columns = []
        for field in schema.fields:
            column = F.col(field.name).cast(field.dataType)
            if not field.nullable:  # checked free of nulls above: coalesce only tells Spark so
                column = F.coalesce(column, _zero(field.dataType))
            columns.append(column.alias(field.name))
        table = self.wh.table(c.name)
        folder = Path(table.location().removeprefix("file://")) / "data" / f"spark-{run_id}-{uuid.uuid4().hex[:8]}"
        self.written.append(folder)
        frame.select(*columns).write.parquet(str(folder), compression="zstd")
        for cached in self._cached:  # the checked rows are in the files now
            cached.unpersist()
        self._cached.clear()
        return sorted(str(p) for p in folder.glob("*.parquet"))

    def discard(self) -> None:
        """Delete the files this run wrote (it failed before its commit)."""
        for folder in self.written:
            shutil.rmtree(folder, ignore_errors=True)


def _in_spark_sql(predicate: str) -> str:
    """A rule's predicate (kept in DuckDB's SQL) in Spark's."""
    import sqlglot

    return sqlglot.transpile(predicate, read="duckdb", write="spark")[0]


def _zero(data_type: Any) -> Any:
    """A literal of ``data_type`` that is never used (the column has no null) but is not null."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if isinstance(data_type, T.StringType):
        return F.lit("")
    if isinstance(data_type, T.BooleanType):
        return F.lit(False)
    if isinstance(data_type, T.DateType):
        return F.to_date(F.lit("1970-01-01"))
    if isinstance(data_type, T.TimestampType):
        return F.to_timestamp(F.lit("1970-01-01 00:00:00"))
    return F.lit(0).cast(data_type)
