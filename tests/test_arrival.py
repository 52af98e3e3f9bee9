"""Two records of one customer with the same lastUpdateDate are ordered by arrival -- ingest batch,
then the name the file was delivered under, then the line -- never by anything derived from their
content; and the bytes ingest hashes, parses and stores are the same bytes, read once."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

import stedi.ingest
from stedi.config import Settings
from stedi.errors import SourceError
from stedi.ingest import ingest
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY, T0, customer

ANN = customer("Ann A")
GIVES = ANN | {"shareWithResearchAsOfDate": T0}
WITHDRAWS = ANN | {"shareWithResearchAsOfDate": None, "phone": "withdrawn"}


def _files(root, named: dict[str, list[dict]]):
    folder = root / "customer" / "landing"
    folder.mkdir(parents=True)
    for name, records in named.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def _consents(wh) -> bool:
    run(wh, KEY)
    return wh.info("customer_trusted").rows == 1


@pytest.mark.parametrize("first", [GIVES, WITHDRAWS], ids=["gives first", "withdraws first"])
def test_in_one_file_the_later_line_wins(tmp_path, first):
    last = WITHDRAWS if first is GIVES else GIVES
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, _files(tmp_path / "src", {"c.json": [first, last]}), KEY)
    assert _consents(wh) == (last is GIVES)


@pytest.mark.parametrize("order", [("a.json", "b.json"), ("b.json", "a.json")])
@pytest.mark.parametrize("later", [GIVES, WITHDRAWS], ids=["later name gives", "later name withdraws"])
def test_in_one_batch_the_file_delivered_under_the_later_name_wins(tmp_path, order, later):
    """Both contents under both names: whichever copy's hash sorts first, the later name decides."""
    earlier = WITHDRAWS if later is GIVES else GIVES
    first_name, last_name = sorted(order)
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, _files(tmp_path / "src", {first_name: [earlier], last_name: [later]}), KEY)
    assert _consents(wh) == (later is GIVES)


@pytest.mark.parametrize("later", [GIVES, WITHDRAWS], ids=["later batch gives", "later batch withdraws"])
def test_a_later_batch_wins_whatever_its_file_is_called(tmp_path, later):
    earlier = WITHDRAWS if later is GIVES else GIVES
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, _files(tmp_path / "one", {"z-first.json": [earlier]}), KEY)
    ingest(wh, _files(tmp_path / "two", {"a-second.json": [later]}), KEY)
    assert _consents(wh) == (later is GIVES)


def test_stored_copies_are_named_by_batch_and_file_never_by_the_name_received(tmp_path):
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    ingest(wh, _files(tmp_path / "one", {"ann.a@test.com export.json": [GIVES], "b.json": [WITHDRAWS]}), KEY)
    ingest(wh, _files(tmp_path / "two", {"c.JSON": [GIVES | {"phone": "2"}]}), KEY)
    stored = sorted(p.relative_to(wh.root).as_posix() for p in (wh.root / "landing").rglob("*") if p.is_file())
    assert stored == ["landing/customer/00000001-000001.json", "landing/customer/00000001-000002.json", "landing/customer/00000002-000001.json"]
    lineage = set(wh.scan("customer_landing").collect()["_source_file"])
    assert lineage == set(stored)


def test_the_bytes_stored_are_the_bytes_hashed_and_parsed(tmp_path, monkeypatch):
    """A file replaced while ingest reads it: what is stored, hashed and landed is one version, or
    the file is refused -- never the hash of one and the rows of another."""
    src = _files(tmp_path / "src", {"c.json": [GIVES]})
    path = src / "customer" / "landing" / "c.json"
    real_open = open

    def swapping(name, *args, **kwargs):  # the sender rewrites the file as it is read
        fh = real_open(name, *args, **kwargs)
        if os.fspath(name) == os.fspath(path):
            with real_open(path, "w") as w:
                w.write(json.dumps(WITHDRAWS) + "\n" + json.dumps(WITHDRAWS) + "\n")
        return fh

    monkeypatch.setattr(stedi.ingest, "open", swapping, raising=False)
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    with pytest.raises(SourceError, match="changed while it was being ingested"):
        ingest(wh, src, KEY)
    assert wh.info("customer_landing").rows == 0 and not list((wh.root / "landing").rglob("*.json"))
    monkeypatch.undo()
    ingest(wh, src, KEY)  # once complete, one version: stored, hashed and landed alike
    (row,) = wh.scan("ingest_manifest").collect().iter_rows(named=True)
    stored = (wh.root / row["stored_path"]).read_bytes()
    assert stored == path.read_bytes() and hashlib.sha256(stored).hexdigest() == row["sha256"]
    assert wh.info("customer_landing").rows == 2
