"""Zones by role: a reader limited to a zone sees that zone's tables (and chosen ones), nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import stedi
from stedi.cli import cli
from stedi.contracts import load_contracts
from stedi.errors import ConfigError, StediError
from stedi.zones import visible
from tests.conftest import SAMPLE
from tests.factories import loaded_warehouse

CURATED = ["customers_curated", "machine_learning_curated"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return loaded_warehouse(tmp_path_factory.mktemp("zones") / "wh", SAMPLE).root


def etl(root: Path, *args: str, env: dict | None = None):
    return CliRunner().invoke(cli, ["--warehouse", str(root), *args], env=env)


def shown(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return sorted(line.strip('"') for line in result.stdout.split()[1:])


@pytest.mark.parametrize(
    ("zone", "zones_seen"),
    [
        ("curated", {"curated"}),
        ("trusted", {"trusted", "curated"}),
        ("landing", {"landing", "trusted", "curated"}),
        ("all", {"landing", "trusted", "curated", "system"}),
    ],
)
def test_a_zone_is_itself_and_the_zones_after_it(zone, zones_seen):
    contracts = load_contracts()
    assert {contracts[n].zone for n in visible(zone)} == zones_seen
    assert set(visible(zone)) == {n for n, c in contracts.items() if c.zone in zones_seen}


def test_curated_reader_sees_only_curated_tables(root):
    assert shown(etl(root, "sql", "--zone", "curated", "--format", "csv", "SHOW TABLES")) == CURATED
    result = etl(root, "sql", "--zone", "curated", "SELECT count(*) FROM customer_trusted")
    assert result.exit_code == 1 and "customer_trusted does not exist" in result.stderr
    for system in ("run_log", "quarantine", "ingest_manifest", "suppression_list"):
        assert etl(root, "sql", "--zone", "curated", f"SELECT * FROM {system}").exit_code == 1


def test_curated_reader_cannot_reach_other_files_by_path(root):
    trusted = next((root / "iceberg/stedi/customer_trusted/data").rglob("*.parquet"))
    result = etl(root, "sql", "--zone", "curated", f"SELECT * FROM read_parquet('{trusted}')")
    assert result.exit_code == 1 and "refused" in result.stderr


def test_chosen_trusted_tables_join_the_zone(root):
    result = etl(root, "sql", "--zone", "curated", "--table", "step_trainer_trusted", "--format", "csv", "SHOW TABLES")
    assert shown(result) == sorted([*CURATED, "step_trainer_trusted"])
    result = etl(root, "sql", "--zone", "curated", "--table", "run_log", "SELECT 1")
    assert result.exit_code == 1 and "system table" in result.stderr


def test_zone_from_the_environment(root):
    result = etl(root, "tables", "--format", "json", env={"STEDI_ZONE": "curated", "STEDI_TABLES": "customer_trusted"})
    assert result.exit_code == 0, result.output
    assert sorted(r["table"] for r in json.loads(result.stdout)) == sorted([*CURATED, "customer_trusted"])
    result = etl(root, "runs", env={"STEDI_ZONE": "curated"})
    assert result.exit_code == 1 and "run_log is a system table" in result.stderr


def test_the_warehouse_settings_are_a_ceiling(root):
    settings = root / "stedi.toml"
    settings.write_text('zone = "curated"\ntables = ["step_trainer_trusted"]\n')
    try:
        assert shown(etl(root, "sql", "--format", "csv", "SHOW TABLES")) == sorted([*CURATED, "step_trainer_trusted"])
        for wider in (["--zone", "all"], ["--zone", "trusted"], ["--table", "customer_trusted"]):
            result = etl(root, "sql", *wider, "SELECT 1")
            assert result.exit_code == 1 and "limits its readers to the curated zone" in result.stderr, result.output
        # narrowing is fine
        assert shown(etl(root, "sql", "--zone", "curated", "--format", "csv", "SHOW TABLES")) == sorted([*CURATED, "step_trainer_trusted"])
        con = stedi.connect(root)
        assert sorted(r[0] for r in con.sql("SHOW TABLES").fetchall()) == sorted([*CURATED, "step_trainer_trusted"])
        with pytest.raises(ConfigError):
            stedi.connect(root, zone="all")
    finally:
        settings.unlink()


def test_api_zones(root):
    con = stedi.connect(root, zone="curated")
    assert sorted(r[0] for r in con.sql("SHOW TABLES").fetchall()) == CURATED
    assert stedi.table("customers_curated", root, zone="curated").collect().height > 0
    with pytest.raises(StediError, match="not in the curated zone"):
        stedi.table("customer_trusted", root, zone="curated")


def test_raw_landing_copies_only_for_a_reader_who_asked_for_the_landing_zone(root):
    raw = next((root / "landing").rglob("*.json"))
    query = f"SELECT count(*) AS n FROM read_json_auto('{raw}')"
    assert int(etl(root, "sql", "--zone", "landing", "--format", "csv", query).stdout.split()[1]) > 0
    for zone in ("all", "trusted", "curated"):
        result = etl(root, "sql", "--zone", zone, query)
        assert result.exit_code == 1 and "refused" in result.stderr
    for escape in (f"{root}/landing/../.stedi/pseudonym.key", f"{raw.parent}/../../.stedi/key.json"):
        result = etl(root, "sql", "--zone", "landing", f"SELECT * FROM read_text('{escape}')")
        assert result.exit_code == 1 and "refused" in result.stderr, escape


@pytest.mark.parametrize("command", [["forget", "--dry-run", "--email", "ann@example.com"], ["rotate-key", "--yes"]])
def test_a_zoned_reader_cannot_look_people_up(root, command):
    """forget --dry-run would tell a curated-zone reader an email's customer_key (and whether they consented)."""
    result = etl(root, *command, env={"STEDI_ZONE": "curated"})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {command[0]} needs the whole warehouse: a reader limited to the curated zone may not look people up "
        "(it would link an email to its customer_key)"
    ]
