"""What the Spark engine's executors run (stedi.spark_files), without a Spark session: it reaches
them by value, so an executor without stedi installed reads and writes the files; the files carry
the Iceberg field ids and no statistics of the columns named personal."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stedi import spark_files
from stedi.contracts import contract

pytest.importorskip("pyspark")

UNPICKLE_WITHOUT_STEDI = """
import json, sys
sys.modules["stedi"] = None  # an executor without stedi installed: any import of it fails
from pyspark import cloudpickle
reader, write = cloudpickle.loads(sys.stdin.buffer.read())
import pyarrow as pa
batch = pa.RecordBatch.from_pylist([{"email": "a@b.c", "n": 1}, {"email": "d@e.f", "n": None}])
[written] = [r for b in write(iter([batch])) for r in b.to_pylist()]
wanted = pa.schema([("n", pa.int64()), ("email", pa.large_string()), ("added_later", pa.int32())])
read = reader([written["uri"]], wanted, {})
rows = [r for b in read(iter([pa.RecordBatch.from_pydict({"id": [0]})])) for r in b.to_pylist()]
print(json.dumps({"written": written, "rows": rows}))
"""


def test_an_executor_without_stedi_writes_and_reads_the_files(tmp_path):
    import json

    from pyiceberg.io.pyarrow import schema_to_pyarrow
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField, StringType
    from pyspark import cloudpickle

    schema = Schema(NestedField(7, "email", StringType(), required=True), NestedField(9, "n", LongType(), required=False))
    folder = f"file://{tmp_path}/a table"
    cloudpickle.register_pickle_by_value(spark_files)
    write = spark_files.writer(folder, schema_to_pyarrow(schema), {}, statistics=["n"])
    done = subprocess.run(
        [sys.executable, "-c", UNPICKLE_WITHOUT_STEDI], input=cloudpickle.dumps((spark_files.reader, write)), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = json.loads(done.stdout)
    assert out["written"]["rows"] == 2 and out["written"]["uri"].startswith(folder + "/")
    assert out["rows"] == [{"n": 1, "email": "a@b.c", "added_later": None}, {"n": None, "email": "d@e.f", "added_later": None}]
    meta = pq.ParquetFile(out["written"]["uri"].removeprefix("file://")).metadata
    arrow = meta.schema.to_arrow_schema()
    assert arrow.field("email").metadata[b"PARQUET:field_id"] == b"7"
    assert arrow.field("n").metadata[b"PARQUET:field_id"] == b"9"
    assert not meta.row_group(0).column(0).is_stats_set  # email: not named for statistics
    assert meta.row_group(0).column(1).statistics.has_min_max


def test_a_batch_is_conformed_to_the_contract():
    c = contract("customers_curated")
    batch = pa.RecordBatch.from_pylist([{"accelerometer_readings": 2, "customer_key": "k"}])
    got = spark_files.conform(batch, c.arrow_schema())
    assert got.schema.names == c.column_names
    assert got.column(c.column_names.index("accelerometer_readings")).to_pylist() == [2]
    assert got.schema.field("accelerometer_readings").type == pa.int64()
    assert got.column(c.column_names.index("first_reading_day")).null_count == 1
