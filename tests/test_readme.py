"""The README's quick start keeps its promises: its commands (and `make demo`'s, from the Makefile)
run as written, each data set in its own warehouse, and give the row counts its table says."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from click.testing import CliRunner

from stedi.cli import cli
from stedi.contracts import load_contracts
from tests.conftest import ROOT, SAMPLE

README = (ROOT / "README.md").read_text()


def _quick_start() -> str:
    return README.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]


def _promised() -> dict[str, tuple[int, int]]:
    """The counts table of the quick start: table -> (sample_data, starter data)."""
    rows = re.findall(r"^\| (\w+) \| ([\d,]+) \| ([\d,]+) \|$", _quick_start(), flags=re.M)
    return {name: (int(a.replace(",", "")), int(b.replace(",", ""))) for name, a, b in rows}


def _readme_commands() -> list[list[str]]:
    """Each `.venv/bin/stedi-etl ...` line of the quick start's shell blocks, as arguments."""
    blocks = re.findall(r"```sh\n(.*?)```", _quick_start(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith(".venv/bin/stedi-etl ")]


def _demo_commands() -> list[list[str]]:
    """The stedi-etl commands of the Makefile's demo target, its variables at their defaults."""
    makefile = (ROOT / "Makefile").read_text()
    defaults = dict(re.findall(r"^(\w+)\s*\?=\s*(\S+)$", makefile, flags=re.M))
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, flags=re.M).group(1)
    commands = []
    for line in recipe.splitlines():
        line = line.strip()
        if line.startswith("$(BIN)/stedi-etl "):
            line = re.sub(r"\$\((\w+)\)", lambda m: defaults.get(m.group(1), m.group(0)), line)
            commands.append(shlex.split(line)[1:])
    return commands


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (args, result.output)
    return result.output


def _counts(warehouse: str) -> dict[str, int]:
    return {t["table"]: t["rows"] for t in json.loads(_invoke(["--warehouse", warehouse, "tables", "--format", "json"]))}


def test_the_quick_start_promises_counts_of_known_tables():
    promised = _promised()
    assert set(promised) == {n for n, c in load_contracts().items() if c.zone in ("landing", "trusted", "curated")} - {
        "customer_consent_history"
    }
    assert all(sample > 0 and starter > sample for sample, starter in promised.values())


def test_make_demo_and_the_quick_start_give_the_sample_counts(tmp_path):
    # the tests run in tmp_path: ./lakehouse and ./report are made there
    demo = _demo_commands()
    assert [c[2] for c in demo] == ["ingest", "run", "tables", "report"] and {c[1] for c in demo} == {"lakehouse"}
    for args in demo:
        _invoke([str(SAMPLE) if a == "sample_data" else a for a in args])
    for args in _readme_commands():
        if "starter-lakehouse" not in args:  # the demo warehouse's queries, as written
            _invoke(args)
    assert (tmp_path / "report" / "index.html").is_file()
    counts = _counts("lakehouse")
    assert {name: counts[name] for name in _promised()} == {name: sample for name, (sample, _) in _promised().items()}


@pytest.mark.starter
def test_the_quick_start_gives_the_starter_counts(starter, tmp_path):
    commands = [args for args in _readme_commands() if "starter-lakehouse" in args]
    assert any("ingest" in args for args in commands)
    for args in commands:
        _invoke([str(starter) if a == "../shared/stedi-starter" else a for a in args])
    assert (tmp_path / "starter-report" / "index.html").is_file()
    counts = _counts("starter-lakehouse")
    assert {name: counts[name] for name in _promised()} == {name: starter_rows for name, (_, starter_rows) in _promised().items()}
