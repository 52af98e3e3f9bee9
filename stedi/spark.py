"""The Spark engine: ``stedi-etl run --engine spark [--spark-master local[*]|spark://HOST:PORT]``.

The same ``pipelines/`` transforms run on PySpark. The executors read each input table's current
data files (Iceberg deletes are copy-on-write: the current files are the table) and write each
output's Parquet files into the table's location, with pyarrow inside ``mapInArrow``
(:mod:`stedi.spark_files`): in a local or shared folder, or in S3 through Arrow's own S3 client, so
no Iceberg or Hadoop S3 jars are needed. The driver commits the files through pyiceberg
(``add_files``), by full URI. Every column carries its Iceberg field id and personal columns have no
statistics, so the tables are ordinary Iceberg tables for Polars, DuckDB, iceberg-rust, Daft, Spark
with Iceberg or Athena. A contract's required columns and data quality rules are checked in Spark;
the few rows set aside are brought to the driver for the quarantine. The privacy audit then reads
the written files before anything is committed.

For an S3 warehouse the executors get the endpoint, region and credentials that the driver
resolved (the standard AWS chain, :func:`stedi.storage.aws_settings`), inside the tasks Spark sends
them: on a shared cluster, turn on Spark's RPC encryption (``spark.network.crypto.enabled``).

Every table is rebuilt (incremental runs are the Polars engine's); one run is all or nothing as
with Polars. The files of a run that fails before its commit are deleted.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stedi.contracts import Contract, contract
from stedi.engines import SparkEngine

if TYPE_CHECKING:
    import polars as pl
    from pyspark.sql import DataFrame, SparkSession

    from stedi.warehouse import Warehouse

DEFAULT_MASTER = "local[*]"

# pyspark wants pandas installed for mapInArrow and warns about pandas 3; no pandas is used.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)




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
    """A Spark session for stedi: UTC, Parquet timestamps as Iceberg reads them (microseconds). In
    local mode the executors run this Python unless ``PYSPARK_PYTHON`` names another; on a cluster,
    ``PYSPARK_PYTHON`` names the workers' (with pyarrow and pandas, as every ``mapInArrow`` needs)."""
    from pyspark.sql import SparkSession

    reachable(master)

    if master.startswith("local"):  # pyspark starts the executors' Python from this variable
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


@dataclass(frozen=True)
class Written:
    """The files one output was written to (full URIs) and how many rows they hold."""

    uris: list[str]
    rows: int


class SparkTables(SparkEngine):
    """Spark over the warehouse: the executors read tables from their files and write outputs."""

    def outputs(self, wh: Warehouse) -> Any:
        """A run's outputs checked in Spark and written by the executors (:class:`stedi.outputs.SparkOutputs`)."""
        from stedi.outputs import SparkOutputs

        return SparkOutputs(wh, self)

    def __init__(self, spark: SparkSession, wh: Warehouse):
        from pyspark import cloudpickle

        from stedi import spark_files

        super().__init__(spark)
        cloudpickle.register_pickle_by_value(spark_files)  # so the executors need pyarrow, not stedi
        self.wh = wh
        self.props = dict(wh.files.iceberg_properties)  # an S3 warehouse's endpoint, region, credentials
        self.written: list[str] = []  # folders of this run's files (URIs), deleted if it fails
        self._cached: list[DataFrame] = []

    def load(self, name: str) -> DataFrame:
        """Table ``name`` as of its current snapshot."""
        table = self.wh.table(name)
        uris = [task.file.file_path for task in table.scan().plan_files()] if table.current_snapshot() else []
        return self.read(uris, name)

    def read(self, uris: list[str], name: str) -> DataFrame:
        """The data files ``uris`` of table ``name``, in its contract's columns: one task per file."""
        from stedi import spark_files

        c = contract(name)
        schema = spark_schema(c)
        if not uris:
            return self.spark.createDataFrame([], schema)
        ids = self.spark.range(0, len(uris), 1, numPartitions=len(uris))
        return ids.mapInArrow(spark_files.reader(uris, c.arrow_schema(), self.props), schema)

    def scan(self, written: Written, name: str) -> pl.LazyFrame:
        """What ``written`` holds, as a Polars lazy frame on the driver (for the audit)."""
        import polars as pl

        if not written.uris:
            return pl.from_arrow(contract(name).arrow_schema().empty_table()).lazy()
        if not self.wh.files.remote:
            return pl.scan_parquet([u.removeprefix("file://") for u in written.uris])
        return pl.scan_parquet(written.uris, storage_options=_object_store_options(self.props))

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

    def write(self, frame: DataFrame, c: Contract, run_id: str) -> Written:
        """Write ``frame`` into table ``c``'s data folder from the executors, in the contract's
        column order and types, each column with its Iceberg field id, no statistics for personal
        columns (the contract's ``stedi.personal``): the files, as full URIs."""
        from pyiceberg.io.pyarrow import schema_to_pyarrow
        from pyspark.sql import functions as F

        from stedi import spark_files
        table = self.wh.table(c.name)
        folder = f"{table.location().rstrip('/')}/data/spark-{run_id}-{uuid.uuid4().hex[:8]}"
        self.written.append(folder)
        write = spark_files.writer(
            folder,
            schema_to_pyarrow(table.schema(), include_field_ids=True),
            self.props,
            statistics=[n for n in c.column_names if n not in c.personal],
            compression=table.properties.get("write.parquet.compression-codec", "zstd"),
            target_bytes=int(table.properties.get("write.target-file-size-bytes", 128 * 1024 * 1024)),
        )
        columns = [F.col(field.name).cast(field.dataType).alias(field.name) for field in spark_schema(c).fields]
        files = frame.select(*columns).mapInArrow(write, _spark_type(spark_files.WRITTEN)).collect()
        for cached in self._cached:  # the checked rows are in the files now
            cached.unpersist()
        self._cached.clear()
        uris = sorted(f["uri"] for f in files)
        self._remove_others(folder, uris)
        return Written(uris, sum(f["rows"] for f in files))

    def _remove_others(self, folder: str, uris: list[str]) -> None:
        """Delete the files in ``folder`` that are not ``uris``: those of task attempts that failed
        or lost to another attempt (Spark retries a task, and may run it twice at once)."""
        files = self.wh.files
        keep = {files.strip(u) for u in uris}
        with contextlib.suppress(Exception):  # what stays is only unused files: forget deletes those too
            files.delete_paths([name for name in files.files_under(folder) if name not in keep])

    def explain(self, err: BaseException) -> str:
        return explain(err)

    def discard(self) -> None:
        """Delete the files this run wrote (it failed before its commit), as far as the storage lets:
        the run's own error is what the user must see, and files no snapshot uses harm no reader
        (``forget`` deletes them)."""
        files = self.wh.files
        for folder in self.written:
            with contextlib.suppress(Exception):
                files.fs.rm(files.strip(folder), recursive=True)


def explain(err: BaseException) -> str:
    """One line for a failure inside Spark: for an error raised in an executor's Python (Spark's
    ``PythonException`` holds the whole traceback), the error itself, its traceback's last line."""
    import re

    from stedi.errors import first_line

    raised = [line.strip() for line in str(err).splitlines() if re.match(r"\s*[\w.]+(Error|Exception): ", line)]
    return raised[-1] if type(err).__name__ == "PythonException" and raised else first_line(err)


def _spark_type(schema: Any) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _object_store_options(props: dict[str, str]) -> dict[str, str]:
    """pyiceberg's S3 FileIO properties as Polars' (object_store's) storage options."""
    names = {
        "s3.endpoint": "aws_endpoint_url",
        "s3.region": "aws_region",
        "s3.access-key-id": "aws_access_key_id",
        "s3.secret-access-key": "aws_secret_access_key",
        "s3.session-token": "aws_session_token",
    }
    options = {names[k]: v for k, v in props.items() if k in names}
    if options.get("aws_endpoint_url", "").startswith("http://"):
        options["aws_allow_http"] = "true"
    return options


def _in_spark_sql(predicate: str) -> str:
    """A rule's predicate (kept in DuckDB's SQL) in Spark's."""
    import sqlglot

    return sqlglot.transpile(predicate, read="duckdb", write="spark")[0]
