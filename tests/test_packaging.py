"""The files that ship the project: docker-compose.yml, the Dockerfile, the Makefile, the README."""

from __future__ import annotations

import re

import yaml

from stedi.config import ENV_VARS
from tests.conftest import ROOT


def test_compose_file_uses_only_settings_the_app_reads():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    stedi = compose["services"]["stedi"]
    assert set(stedi["environment"]) <= set(ENV_VARS.values())
    volume, target = stedi["volumes"][0].split(":")
    assert volume in compose["volumes"]
    assert stedi["environment"]["STEDI_WAREHOUSE"] == target
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"STEDI_WAREHOUSE={target}" in dockerfile
    for folder in re.findall(r"^COPY (\S+) ", dockerfile, flags=re.M):
        assert (ROOT / folder).exists(), folder


def test_readme_shows_the_two_commands_and_ci_runs_the_tests():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
