"""Private at rest: what a run writes is readable by its owner only (or a named group), and no
Parquet footer holds a personal column's min/max."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from stedi import at_rest
from stedi.cli import cli
from stedi.config import Settings
from stedi.contracts import load_contracts
from stedi.warehouse import Warehouse
from tests.conftest import SAMPLE
from tests.factories import KEY


def _etl(root: Path, *args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(cli, ["--warehouse", str(root), *args], env={"STEDI_PSEUDONYM_KEY": KEY.decode(), **(env or {})})
    return result


def _modes(root: Path) -> dict[Path, tuple[int, int, bool]]:
    """Everything under root (root included): path -> (permission bits, group id, is a folder)."""
    found = {root: (stat.S_IMODE(root.stat().st_mode), root.stat().st_gid, True)}
    for path in root.rglob("*"):
        info = path.lstat()
        if not stat.S_ISLNK(info.st_mode):
            found[path] = (stat.S_IMODE(info.st_mode), info.st_gid, path.is_dir())
    return found


def _a_group() -> grp.struct_group:
    """A group of this machine that is not the current process's."""
    mine = os.getgid()
    for g in grp.getgrall():
        if g.gr_gid != mine:
            return g
    pytest.skip("this machine has a single group")


def test_everything_a_run_writes_is_private(tmp_path):
    root = tmp_path / "wh"
    assert _etl(root, "ingest", "--run", str(SAMPLE)).exit_code == 0
    found = _modes(root)
    assert {p.name for p in found} >= {"catalog.db", "landing", "iceberg", ".stedi"}
    assert any(p.suffix == ".parquet" for p in found) and any(p.name.endswith(".metadata.json") for p in found)
    assert any(p.suffix == ".avro" for p in found) and any("landing" in p.parts and not d for p, (_, _, d) in found.items())
    wrong = {str(p.relative_to(tmp_path)): oct(mode) for p, (mode, _, is_dir) in found.items() if mode != (0o700 if is_dir else 0o600)}
    assert wrong == {}


def test_the_process_umask_is_given_back(tmp_path):
    before = os.umask(0o022)
    try:
        assert _etl(tmp_path / "wh", "ingest", str(SAMPLE)).exit_code == 0
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)


def test_a_named_group_shares_the_tables_but_not_the_keys(tmp_path):
    group = _a_group()
    root = tmp_path / "wh"
    root.mkdir()
    (root / "stedi.toml").write_text(f'group = "{group.gr_name}"\n')
    assert _etl(root, "ingest", "--run", str(SAMPLE)).exit_code == 0
    for path, (mode, gid, is_dir) in _modes(root).items():
        rel = path.relative_to(root)
        if rel.parts[:1] == (".stedi",):
            assert mode == (0o700 if is_dir else 0o600), (rel, oct(mode))  # the keys stay the owner's
        else:
            assert (mode, gid) == ((0o2750 if is_dir else 0o640), group.gr_gid), (rel, oct(mode), gid)


def test_an_older_warehouse_is_brought_to_private_on_the_next_write(tmp_path):
    root = tmp_path / "wh"
    assert _etl(root, "ingest", str(SAMPLE)).exit_code == 0
    for path in [root, *root.rglob("*")]:  # as an older stedi (umask 022) left it
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert _etl(root, "run").exit_code == 0
    loose = [p for p, (mode, _, is_dir) in _modes(root).items() if mode != (0o700 if is_dir else 0o600)]
    assert loose == []


def test_a_file_loosened_in_a_private_warehouse_is_put_back_by_the_next_writer(tmp_path):
    root = tmp_path / "wh"
    assert _etl(root, "ingest", "--run", str(SAMPLE)).exit_code == 0
    loosened = [next(root.rglob("*.parquet")), root / "catalog.db", next((root / "landing").rglob("*.json"))]
    for path in loosened:
        path.chmod(0o644)
    next((root / "iceberg").iterdir()).chmod(0o755)  # the root itself stays 0700
    assert _etl(root, "ingest", str(SAMPLE)).exit_code == 0  # nothing new, but a writer all the same
    loose = [p for p, (mode, _, is_dir) in _modes(root).items() if mode != (0o700 if is_dir else 0o600)]
    assert loose == []


def test_an_unknown_group_is_one_line(tmp_path):
    result = _etl(tmp_path / "wh", "ingest", str(SAMPLE), env={"STEDI_GROUP": "no-such-group-here"})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: group 'no-such-group-here' (the warehouse's `group` setting) does not exist on this machine"
    ]


def test_no_parquet_footer_holds_a_personal_columns_bounds(tmp_path):
    root = tmp_path / "wh"
    assert _etl(root, "ingest", "--run", str(SAMPLE)).exit_code == 0
    wh = Warehouse.open(Settings(warehouse=root))
    checked = with_bounds = 0
    for name in load_contracts():
        for path in (root / "iceberg" / "stedi" / name / "data").rglob("*.parquet"):
            meta = pq.ParquetFile(path).metadata
            for g in range(meta.num_row_groups):
                for i in range(meta.num_columns):
                    column = meta.row_group(g).column(i)
                    has_bounds = column.is_stats_set and column.statistics.has_min_max
                    if column.path_in_schema in load_contracts()[name].personal:
                        assert not has_bounds, (name, column.path_in_schema)
                        checked += 1
                    else:
                        with_bounds += has_bounds
    assert checked > 0 and with_bounds > 0  # the other columns keep theirs: readers still skip files by time
    assert wh.info("customer_trusted").rows > 0


def test_statistics_columns_follow_the_metrics_mode():
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField, StringType

    schema = Schema(NestedField(1, "email", StringType()), NestedField(2, "n", LongType()), NestedField(3, "s", StringType()))
    props = {"write.metadata.metrics.column.email": "counts", "write.metadata.metrics.column.s": "None"}
    assert at_rest.statistics_columns(schema, props) == ["n"]
    assert at_rest.statistics_columns(schema, {"write.metadata.metrics.default": "counts", "write.metadata.metrics.column.n": "full"}) == ["n"]
