"""Writers never trip each other: many `ingest --run` started together on one warehouse all succeed
and lose nothing, with the warehouse's SQLite catalog and with a PostgreSQL one; a failed ingest
takes every copy it made back out, even when one removal fails."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stedi import maintenance
from stedi.config import Settings
from stedi.ingest import ingest
from stedi.warehouse import Warehouse
from tests.factories import KEY, customer, reading, step, write_landing

PAIRS = 10


def _start(root, catalog_uri, src):
    env = os.environ | {"STEDI_PSEUDONYM_KEY": KEY.decode()}
    args = [sys.executable, "-m", "stedi.cli", "--warehouse", str(root)]
    if catalog_uri:
        args += ["--catalog-uri", catalog_uri]
    return subprocess.Popen([*args, "ingest", "--run", str(src)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _pairs(tmp_path, catalog_uri):
    root = tmp_path / "wh"
    people = []
    for i in range(PAIRS):
        batch = []
        for side in "ab":
            p = customer(f"P{i}{side} Writer")
            people.append(p)
            src = write_landing(tmp_path / f"src-{i}{side}", [p], [reading(p["email"])], [step(p["serialNumber"])], name=f"{i}{side}")
            batch.append(_start(root, catalog_uri, src))
        for proc in batch:  # both of a pair started before either ends
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
    wh = Warehouse.open(Settings(warehouse=root, catalog_uri=catalog_uri))
    emails = sorted(p["email"].lower() for p in people)
    assert wh.info("ingest_manifest").rows == 3 * len(people)  # three files each, none lost, none twice
    assert sorted(wh.scan("customer_landing").collect()["email"].str.to_lowercase()) == emails
    assert sorted(wh.scan("customer_trusted").collect()["email"]) == emails
    assert sorted(wh.scan("accelerometer_trusted").collect()["user"]) == emails
    assert wh.info("step_trainer_trusted").rows == len(people)
    assert wh.info("machine_learning_curated").rows == len(people)


@pytest.mark.slow
def test_many_pairs_of_writers_on_the_warehouses_own_catalog(tmp_path):
    _pairs(tmp_path, None)


@pytest.mark.slow
def test_many_pairs_of_writers_on_a_postgresql_catalog(tmp_path, catalog_uri):
    _pairs(tmp_path, catalog_uri)


def test_a_failed_ingest_takes_every_copy_back_even_when_a_removal_fails(tmp_path, monkeypatch):
    wh = Warehouse.open(Settings(warehouse=tmp_path / "wh"))
    people = [customer(f"F{i} Fail") for i in range(3)]
    src = write_landing(tmp_path / "src", people, [reading(p["email"]) for p in people], [step(p["serialNumber"]) for p in people])

    def refuse(staged):
        raise OSError("the disk is full")

    deleted, real_delete = [], wh.files.delete

    def flaky_delete(rel):
        deleted.append(rel)
        if len(deleted) == 1:
            raise OSError("permission denied")
        real_delete(rel)

    monkeypatch.setattr(wh, "commit_staged", refuse)
    monkeypatch.setattr(wh.files, "delete", flaky_delete)
    with pytest.raises(OSError, match="the disk is full"):
        ingest(wh, src, KEY)
    assert len(deleted) == 3  # every copy was tried, the failing one did not stop the others
    left = wh.files.sizes("landing")
    assert list(left) == [deleted[0]]
    monkeypatch.undo()
    with wh.lock("test"):
        assert maintenance.remove_orphan_copies(wh) == 1  # and the next writer removes what is left
    assert wh.files.sizes("landing") == {} and wh.info("ingest_manifest").rows == 0
