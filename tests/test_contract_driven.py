"""Whose row is whose comes from the contracts: a new table with an owner column in catalog/ is
covered by `forget` and by the audit with no other change."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from stedi import contracts
from stedi.audit import audit
from stedi.config import Settings
from stedi.contracts import contract, contracts_dir, load_contracts
from stedi.erasure import forget
from stedi.ingest import ingest
from stedi.runner import run
from stedi.warehouse import Change, Warehouse
from tests.factories import KEY, customer, reading, write_landing

NOTES = """-- device_notes: what support wrote about a customer's device.
-- Grain: one row per note.
CREATE TABLE device_notes (
    email STRING NOT NULL COMMENT 'Email of the customer, in its normal form (direct identifier)',
    note  STRING COMMENT 'What was said'
)
COMMENT 'Support notes about consenting customers'
TBLPROPERTIES ('stedi.owner' = 'email', 'stedi.owner_kind' = 'email', 'stedi.zone' = 'trusted', 'stedi.grain' = 'one row per note',
             'stedi.personal' = 'email,note', 'stedi.free_text' = 'note');
"""


@pytest.fixture
def with_notes(tmp_path, monkeypatch):
    """The contracts of catalog/ and one more: device_notes, owned by an email."""
    folder = tmp_path / "catalog"
    shutil.copytree(contracts_dir(), folder)
    (folder / "device_notes.sql").write_text(NOTES)
    monkeypatch.setattr(contracts, "contracts_dir", lambda: folder)
    load_contracts.cache_clear()
    yield
    monkeypatch.undo()
    load_contracts.cache_clear()


def test_a_new_table_with_an_owner_is_covered_by_forget_and_the_audit(tmp_path, with_notes):
    assert contract("device_notes").owner == "email"
    ann, bob = customer("Ann Note"), customer("Bob Note", shareWithResearchAsOfDate=None)
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, write_landing(tmp_path / "src", [ann, bob], [reading(ann["email"])]), KEY)
    run(wh, KEY)
    a, b = ann["email"].lower(), bob["email"].lower()
    notes = pa.table({"email": [a, a, b], "note": ["calibrated", "replaced strap", "asked about it"]})
    wh.commit_staged([wh.stage(Change("device_notes", notes, "append"))])

    found = audit(wh, KEY)  # Bob did not consent: his note may not be in a trusted table
    assert [(v.table, v.check) for v in found if v.table == "device_notes"], found
    assert all(b not in str(v) for v in found)  # violations name counts, never an email

    import pyarrow.parquet as pq

    files = list((tmp_path / "wh" / "iceberg" / "stedi" / "device_notes" / "data").rglob("*.parquet"))
    footers = [pq.ParquetFile(p).metadata.row_group(0).column(0) for p in files]
    assert footers and not any(col.is_stats_set and col.statistics.has_min_max for col in footers)  # its personal columns too

    forget(wh, KEY, [ann["email"].upper()])
    left = wh.scan("device_notes").collect()
    assert sorted(left["email"]) == [b]  # Ann's notes erased with the rest of her
