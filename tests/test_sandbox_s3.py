"""The SQL sandbox over an S3 warehouse (moto): DuckDB reads the tables through the warehouse's
fsspec filesystem, and only the tables' data files: not the bucket's other objects."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLE
from tests.test_object_storage import etl, ok, relay, s3, s3_port  # noqa: F401  (fixtures)


@pytest.fixture
def loaded(s3):  # noqa: F811  (the fixture of that name)
    ok(etl(s3.warehouse, s3.catalog, "ingest", str(SAMPLE), "--run"))
    return s3


def test_s3_tables_read_and_the_rest_of_the_bucket_refused(loaded):
    bucket = loaded
    result = etl(bucket.warehouse, bucket.catalog, "sql", "--format", "csv", "SELECT count(*) AS n FROM customers_curated")
    assert int(ok(result).splitlines()[1]) > 0
    landing = next(p for p in bucket.fs.find(f"{bucket.bucket}/wh/landing"))
    private = next(p for p in bucket.fs.find(f"{bucket.bucket}/wh/.stedi"))
    trusted = next(p for p in bucket.fs.find(f"{bucket.bucket}/wh/iceberg/stedi/customer_trusted/data"))
    for attempt in (
        f"SELECT * FROM read_text('s3://{private}')",
        f"SELECT * FROM read_text('s3://{landing}')",
        f"SELECT * FROM glob('s3://{bucket.bucket}/wh/*')",
        f"COPY (SELECT 1) TO 's3://{bucket.bucket}/leak.csv'",
    ):
        result = etl(bucket.warehouse, bucket.catalog, "sql", attempt)
        assert result.exit_code == 1 and result.stderr.startswith("Error: refused"), (attempt, result.output)
    result = etl(bucket.warehouse, bucket.catalog, "sql", "--zone", "curated", f"SELECT * FROM read_parquet('s3://{trusted}')")
    assert result.exit_code == 1 and "refused" in result.stderr
    assert not bucket.fs.exists(f"{bucket.bucket}/leak.csv")
    result = etl(bucket.warehouse, bucket.catalog, "shell")
    assert result.exit_code == 1 and "local warehouses only" in result.stderr
