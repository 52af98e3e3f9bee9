"""What the Spark engine's executors run inside ``mapInArrow``: read a table's Parquet files and
write an output's, with pyarrow, in a local (or shared) folder or in S3. No Hadoop S3 jars: Arrow's
own S3 client does the I/O, with the endpoint, region and credentials the driver resolved.

The files written are what any Iceberg reader expects: each column carries its Iceberg field id
(``PARQUET:field_id``), and personal columns have no min/max statistics in the footers.

This module is shipped to the executors by value (``cloudpickle.register_pickle_by_value``): they
need Python with pyarrow (as every ``mapInArrow`` does), not stedi. So it imports nothing of stedi.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

Batches = Iterator[pa.RecordBatch]

#: The schema of what a writer task returns: one row per file written.
WRITTEN = pa.schema([pa.field("uri", pa.string()), pa.field("rows", pa.int64())])


def filesystem(uri: str, props: Mapping[str, str]) -> tuple[Any, str]:
    """The pyarrow filesystem of ``uri`` (``s3://bucket/key`` or ``file:///path``) and the path in it.
    ``props`` are pyiceberg's FileIO properties (``s3.endpoint``, ``s3.region``, ...)."""
    from pyarrow import fs

    if uri.startswith("s3://"):
        s3 = fs.S3FileSystem(
            endpoint_override=props.get("s3.endpoint"),
            region=props.get("s3.region"),
            access_key=props.get("s3.access-key-id"),
            secret_key=props.get("s3.secret-access-key"),
            session_token=props.get("s3.session-token"),
        )
        return s3, uri.removeprefix("s3://")
    return fs.LocalFileSystem(), uri.removeprefix("file://")


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with exactly ``schema``'s columns, types and field metadata; a column the batch
    lacks (a file written before the contract gained it) is all nulls."""
    columns = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        column = batch.column(index) if index >= 0 else pa.nulls(batch.num_rows, field.type)
        columns.append(column if column.type == field.type else column.cast(field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def reader(uris: Sequence[str], schema: pa.Schema, props: Mapping[str, str]) -> Callable[[Batches], Batches]:
    """A ``mapInArrow`` function over ``spark.range(len(uris))``: each id read as the file it
    indexes, in ``schema``."""
    import pyarrow.parquet as pq

    uris = list(uris)

    def read(ids: Batches) -> Batches:
        for batch in ids:
            for i in batch.column(0).to_pylist():
                fs, path = filesystem(uris[i], props)
                with fs.open_input_file(path) as f:
                    parquet = pq.ParquetFile(f)
                    present = [n for n in schema.names if n in parquet.schema_arrow.names]
                    for part in parquet.iter_batches(columns=present, batch_size=64 * 1024):
                        yield conform(part, schema)

    return read


def writer(
    folder: str,
    schema: pa.Schema,
    props: Mapping[str, str],
    *,
    statistics: Sequence[str],
    compression: str = "zstd",
    target_bytes: int = 128 * 1024 * 1024,
) -> Callable[[Batches], Batches]:
    """A ``mapInArrow`` function writing each task's rows as Parquet files under ``folder`` (a URI),
    in ``schema`` (which carries the Iceberg field ids), a new file past ``target_bytes``; min/max
    statistics only for the ``statistics`` columns. Yields one :data:`WRITTEN` row per file."""
    import pyarrow.parquet as pq

    def write(batches: Batches) -> Batches:
        from pyspark import TaskContext

        task = TaskContext.get()
        prefix = f"part-{task.partitionId():05d}-{task.attemptNumber()}-{uuid.uuid4().hex[:12]}" if task else uuid.uuid4().hex
        fs, base = filesystem(folder, props)
        fs.create_dir(base, recursive=True)
        count, out, sink, name, rows = 0, None, None, "", 0

        def close() -> pa.RecordBatch:
            out.close()
            sink.close()
            return pa.RecordBatch.from_pylist([{"uri": f"{folder}/{name}", "rows": rows}], schema=WRITTEN)

        for batch in batches:
            if not batch.num_rows:
                continue
            if out is None:
                name, rows = f"{prefix}-{count:03d}.parquet", 0
                sink = fs.open_output_stream(f"{base}/{name}")
                out = pq.ParquetWriter(sink, schema, compression=compression, write_statistics=list(statistics))
                count += 1
            out.write_batch(conform(batch, schema))
            rows += batch.num_rows
            if sink.tell() >= target_bytes:
                yield close()
                out = None
        if out is not None:
            yield close()

    return write
