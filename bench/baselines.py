"""Baselines for bench/run.py: the five derived tables of bench/pipeline.sql from the raw JSON,
written to Parquet, by plain DuckDB or by PySpark local mode. Prints the row counts as JSON.

    python bench/baselines.py duckdb SOURCE OUT
    python bench/baselines.py spark  SOURCE OUT
"""

import json
import sys
from pathlib import Path

TABLES = ("customer_trusted", "accelerometer_trusted", "customers_curated", "step_trainer_trusted", "machine_learning_curated")
SOURCES = {"customer_landing": "customer", "accelerometer_landing": "accelerometer", "step_trainer_landing": "step_trainer"}
STATEMENTS = [s for s in (Path(__file__).with_name("pipeline.sql").read_text().split(";")) if s.strip()]


def duckdb_pipeline(source: Path, out: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    for view, folder in SOURCES.items():
        con.execute(f"CREATE TABLE {view} AS SELECT * FROM read_json('{source}/{folder}/landing/*.json', format='newline_delimited')")
    for statement in STATEMENTS:  # materialised, each table computed once
        con.execute(statement.replace("sha2(c.customer, 256)", "sha256(c.customer)").replace("TEMP VIEW", "TABLE"))
    counts = {}
    for table in TABLES:
        con.execute(f"COPY (SELECT * FROM {table}) TO '{out}/{table}.parquet' (FORMAT parquet)")
        counts[table] = con.sql(f"SELECT count(*) FROM read_parquet('{out}/{table}.parquet')").fetchall()[0][0]
    return counts


def spark_pipeline(source: Path, out: Path) -> dict:
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[*]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    for view, folder in SOURCES.items():
        spark.read.json(f"{source}/{folder}/landing").cache().createOrReplaceTempView(view)
    for statement in STATEMENTS:
        spark.sql(statement)
    counts = {}
    for table in TABLES:
        spark.table(table).write.mode("overwrite").parquet(f"{out}/{table}")
        counts[table] = spark.read.parquet(f"{out}/{table}").count()
    spark.stop()
    return counts


if __name__ == "__main__":
    engine, source, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    counts = (duckdb_pipeline if engine == "duckdb" else spark_pipeline)(source, out)
    print(json.dumps(counts))
