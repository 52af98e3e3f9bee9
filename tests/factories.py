"""Small factories for landing records, landing files and in-memory runs of the jobs."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from stedi.contracts import contract
from stedi.engines import PolarsEngine
from stedi.evaluation import evaluate
from stedi.jobs import DEFAULT_PARAMS, load_jobs

#: A pseudonym key as strong as a generated one (tests pass it where a user's comes from the environment).
KEY = b"07bf21686b500dfd11d93bc28e4af83ef92fd23cbc70c648141084c279de24e5"
T0 = 1_655_564_000_000
_serials = (str(uuid.UUID(int=i)) for i in itertools.count(1))


def customer(name: str = "Ada Lovelace", **overrides: Any) -> dict[str, Any]:
    """A customer record as the website sends it; consenting unless told otherwise."""
    first, _, last = name.partition(" ")
    record = {
        "customerName": name,
        "email": f"{first}.{last}@test.com",
        "phone": "8015551212",
        "birthDay": "1990-01-01",
        "serialNumber": next(_serials),
        "registrationDate": T0,
        "lastUpdateDate": T0,
        "shareWithResearchAsOfDate": T0,
        "shareWithPublicAsOfDate": None,
        "shareWithFriendsAsOfDate": None,
    }
    return record | overrides


def reading(user: str, timestamp: int = T0, **overrides: Any) -> dict[str, Any]:
    """An accelerometer reading as the phone app sends it."""
    return {"user": user, "timestamp": timestamp, "x": 1.0, "y": 0.0, "z": -1.0} | overrides


def step(serial: str, timestamp: int = T0, **overrides: Any) -> dict[str, Any]:
    """A step trainer reading as the device sends it."""
    return {"sensorReadingTime": timestamp, "serialNumber": serial, "distanceFromObject": 250} | overrides


def write_landing(
    root: Path,
    customers: Iterable[Mapping] = (),
    readings: Iterable[Mapping] = (),
    steps: Iterable[Mapping] = (),
    *,
    name: str = "batch",
) -> Path:
    """Write records as newline-delimited JSON in the starter layout under ``root``."""
    for source, rows in (("customer", customers), ("accelerometer", readings), ("step_trainer", steps)):
        rows = list(rows)
        if rows:
            folder = root / source / "landing"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{source}-{name}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def landing_frame(table: str, rows: Iterable[Mapping]) -> pl.LazyFrame:
    """Rows as they would sit in a landing table, lineage included (or in the quarantine: customer
    records set aside at ingest, each given its ``owner`` and ``record_time``)."""
    c = contract(table)
    at = datetime(2024, 1, 1, tzinfo=UTC)
    if c.zone == "system":
        rows = [{"target_table": "customer_landing", "reason": "set aside", "batch_id": "b", "quarantined_at": at} | dict(r) for r in rows]
    else:
        rows = [dict(r) | {"_source_file": f"landing/{table}.json", "_line_number": i, "_ingested_at": at} for i, r in enumerate(rows, start=1)]
    if "birthDay" in c.column_names:
        rows = [r | {"birthDay": datetime.fromisoformat(r["birthDay"]).date() if r.get("birthDay") else None} for r in rows]
    schema = pa.schema([f.with_nullable(True) for f in c.arrow_schema()])
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=schema)).lazy()


def run_jobs(
    customers: Iterable[Mapping] = (),
    readings: Iterable[Mapping] = (),
    steps: Iterable[Mapping] = (),
    key: bytes = KEY,
    params: Mapping[str, str] = DEFAULT_PARAMS,
    set_aside: Iterable[Mapping] = (),
) -> dict[str, pl.DataFrame]:
    """Every job of pipelines/ on Polars over in-memory landing rows (and quarantine rows
    ``set_aside``); each output table, collected."""
    landing = {
        "customer_landing": landing_frame("customer_landing", customers),
        "accelerometer_landing": landing_frame("accelerometer_landing", readings),
        "step_trainer_landing": landing_frame("step_trainer_landing", steps),
        "quarantine": landing_frame("quarantine", set_aside),
    }
    outputs = evaluate(load_jobs(), landing.__getitem__, key, PolarsEngine(), params=params)
    return {name: frame.collect() for name, frame in outputs.items()}


def loaded_warehouse(root: Path, source: Path, key: bytes = KEY):
    """A warehouse under ``root`` holding ``source`` ingested and every job run."""
    from stedi.config import Settings
    from stedi.ingest import ingest
    from stedi.runner import run
    from stedi.warehouse import Warehouse

    wh = Warehouse.open(Settings(warehouse=root))
    ingest(wh, source)
    run(wh, key)
    return wh


def warehouse_mentions(wh, needles: Iterable[str]) -> list[str]:
    """Every place in the warehouse that holds one of ``needles`` (any case): raw bytes of every file,
    the decoded values of every Parquet file, the decoded entries of every Iceberg manifest (column
    bounds included), and the rows of every table at every snapshot still reachable."""
    import pyarrow.parquet as pq

    lowered = [n.lower().encode() for n in needles]
    found: list[str] = []

    def check(where: str, data: bytes) -> None:
        data = data.lower()
        found.extend(f"{where}: {n.decode()}" for n in lowered if n in data)

    reachable_avro: set[str] = set()
    for name in contract_names():
        table = wh.table(name)
        for snap in table.metadata.snapshots:
            reachable_avro.add(snap.manifest_list.removeprefix("file://"))
            for manifest in snap.manifests(table.io):
                reachable_avro.add(manifest.manifest_path.removeprefix("file://"))
                for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                    f = entry.data_file
                    check(f"{name} manifest entry", f.file_path.encode())
                    for bound in [*(f.lower_bounds or {}).values(), *(f.upper_bounds or {}).values()]:
                        # a string bound is truncated (16 characters by default): a prefix gives them away
                        if len(bound) >= 8 and any(n.startswith(bound.lower()) or n in bound.lower() for n in lowered):
                            found.append(f"{name} manifest bound: {bound!r}")
            rows = table.scan(snapshot_id=snap.snapshot_id).to_arrow()
            check(f"{name} at snapshot {snap.snapshot_id}", json.dumps(rows.to_pylist(), default=str).encode())
    for path in wh.root.rglob("*"):
        if not path.is_file():
            continue
        check(str(path), path.read_bytes())
        if path.suffix == ".parquet":
            check(f"{path} decoded", json.dumps(pq.read_table(path).to_pylist(), default=str).encode())
        if path.suffix == ".avro":
            assert str(path) in reachable_avro, f"{path} is a manifest no snapshot uses: its content was not decoded"
    return found


def contract_names() -> list[str]:
    from stedi.contracts import load_contracts

    return list(load_contracts())
