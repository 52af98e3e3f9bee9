"""Read Iceberg tables with a reader that shares no code with stedi, for tests/test_readers.py.

Runs in the isolated readers' environment (``make .venv-readers``: DuckDB 1.5 with its own Iceberg
extension, iceberg-rust through pyiceberg-core and DataFusion, Daft), never imports stedi::

    python read_tables.py READER OUT_DIR < tables.json

``tables.json`` maps each table name to its metadata file's location; S3 settings come from
``READER_S3`` (a JSON object of pyiceberg FileIO properties). Each table's rows are written to
``OUT_DIR/<table>.arrow`` (Arrow IPC); a table the reader fails on gets ``<table>.error`` instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc


def duckdb_reader(s3: dict):
    import duckdb
    from duckdb_extensions import import_extension

    for name in ("avro", "iceberg", "httpfs"):
        import_extension(name)
    con = duckdb.connect()
    con.execute("LOAD iceberg")
    if s3:
        con.execute("LOAD httpfs")
        endpoint = s3["s3.endpoint"]
        con.execute(
            "CREATE SECRET (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
            [s3["s3.access-key-id"], s3["s3.secret-access-key"], s3["s3.region"], endpoint.split("://", 1)[1], endpoint.startswith("https")],
        )

    def read(name: str, metadata: str) -> pa.Table:
        return con.sql(f"SELECT * FROM iceberg_scan('{metadata}')").to_arrow_table()

    return read


def iceberg_rust_reader(s3: dict):
    from datafusion import SessionContext
    from pyiceberg_core.datafusion import IcebergDataFusionTable

    # a local endpoint (moto, MinIO) answers at its own address, not at bucket.address
    props = s3 | ({"s3.path-style-access": "true"} if "s3.endpoint" in s3 else {})

    def read(name: str, metadata: str) -> pa.Table:
        ctx = SessionContext()
        provider = IcebergDataFusionTable(identifier=["stedi", name], metadata_location=metadata, file_io_properties=props)
        ctx.register_table("t", provider)
        return ctx.sql("SELECT * FROM t").to_arrow_table()

    return read


def daft_reader(s3: dict):
    import daft
    from pyiceberg.table import StaticTable  # only to find the table's snapshot; Daft reads the files

    def read(name: str, metadata: str) -> pa.Table:
        return daft.read_iceberg(StaticTable.from_metadata(metadata, properties=s3)).to_arrow()

    return read


READERS = {"duckdb": duckdb_reader, "iceberg-rust": iceberg_rust_reader, "daft": daft_reader}


def main() -> None:
    reader, out = sys.argv[1], Path(sys.argv[2])
    tables = json.load(sys.stdin)
    read = READERS[reader](json.loads(os.environ.get("READER_S3") or "{}"))
    out.mkdir(parents=True, exist_ok=True)
    for name, metadata in tables.items():
        print(f"{reader}: reading {name}", file=sys.stderr, flush=True)
        try:
            table = read(name, metadata)
        except Exception as err:  # noqa: BLE001 — the test reports what the reader said
            (out / f"{name}.error").write_text(f"{type(err).__name__}: {err}")
            continue
        with pa.OSFile(str(out / f"{name}.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    print(f"{reader}: done", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
