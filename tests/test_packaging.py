"""The files that ship the project: docker-compose.yml, the Dockerfile, the Makefile, the README."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from stedi.config import ENV_VARS
from tests.conftest import ROOT

_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _expand(value: object, given: dict[str, str]) -> str:
    """Compose's ``${VAR:-default}``, with the variables ``given`` set in the user's environment."""
    return _DEFAULT.sub(lambda m: given.get(m.group(1)) or m.group(2), str(value))


def _container_ports(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in service.get("ports", [])}


def test_compose_file_parses_and_its_services_hang_together():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"minio", "createbucket", "postgres", "stedi"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for other, how in service.get("depends_on", {}).items():
            assert other in services, (name, other)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[other], other  # else compose would wait forever
    assert services["stedi"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    # every ${VAR} has a default: `docker compose up` works with no .env file
    text = (ROOT / "docker-compose.yml").read_text()
    assert re.findall(r"\$\{\w+\}", text) == []
    # ports: published once each; volumes: every named one declared and used, MinIO's where it serves from
    published = [str(p).split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published))
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert used == set(compose["volumes"])
    minio = services["minio"]
    data_dir = re.search(r"server (\S+)", minio["command"]).group(1)
    assert f"minio-data:{data_dir}" in minio["volumes"]
    assert int(re.search(r"--address :(\d+)", minio["command"]).group(1)) in _container_ports(minio)
    assert "postgresql/data" in services["postgres"]["volumes"][0]


@pytest.mark.parametrize("given", [{}, {"MINIO_ROOT_PASSWORD": "m1n10", "POSTGRES_PASSWORD": "pg-pw"}])
def test_the_stedi_service_reads_its_settings_and_reaches_the_other_services_with_them(given, monkeypatch, tmp_path):
    from sqlalchemy.engine import make_url

    from stedi.config import Settings
    from stedi.storage import aws_settings, normalise

    services = _compose()["services"]
    env = {k: _expand(v, given) for k, v in services["stedi"]["environment"].items()}
    # only variables stedi or botocore reads
    assert {k for k in env if k.startswith("STEDI_")} <= set(ENV_VARS.values())
    assert {k for k in env if not k.startswith("STEDI_")} <= {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}

    # the S3 side, as stedi resolves it from those variables (and no file of this machine)
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for var, value in env.items():
        if var.startswith("AWS_"):
            monkeypatch.setenv(var, value)
    s3 = aws_settings()
    minio = services["minio"]
    minio_env = {k: _expand(v, given) for k, v in minio["environment"].items()}
    host, port = s3["s3.endpoint"].removeprefix("http://").split(":")
    assert host == "minio" and int(port) in _container_ports(minio)
    assert (s3["s3.access-key-id"], s3["s3.secret-access-key"]) == (minio_env["MINIO_ROOT_USER"], minio_env["MINIO_ROOT_PASSWORD"])
    assert s3["s3.region"] == "us-east-1"
    # the warehouse is in the bucket that createbucket makes, through the same endpoint and user
    create = services["createbucket"]
    create_env = {k: _expand(v, given) for k, v in create["environment"].items()}
    assert create_env == minio_env
    alias = re.search(r"mc alias set (\S+) (\S+) ", create["entrypoint"])
    assert alias.group(2) == s3["s3.endpoint"]
    bucket = re.search(rf"mc mb --ignore-existing {alias.group(1)}/(\S+?)\"?$", create["entrypoint"].strip()).group(1)
    location = normalise(env["STEDI_WAREHOUSE"])
    assert location.startswith(f"s3://{bucket}/")

    # the catalog is the postgres service's database, with its user and password
    url = make_url(Settings(warehouse=location, catalog_uri=env["STEDI_CATALOG_URI"]).catalog_url)
    postgres = services["postgres"]
    pg_env = {k: _expand(v, given) for k, v in postgres["environment"].items()}
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port) == ("postgres", 5432) and url.port in _container_ports(postgres)
    assert (url.username, url.password, url.database) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"])


def test_the_image_runs_the_demo_with_files_that_exist():
    from stedi.cli import cli

    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M):
        for name in folder.split():
            assert (ROOT / name).exists(), name
    assert "STEDI_WAREHOUSE=/lakehouse" in dockerfile  # alone, the embedded default in its volume
    cmd = re.search(r"^CMD (.+)$", dockerfile, flags=re.M).group(1)
    for command in re.findall(r"stedi-etl (\w+)", cmd):
        assert command in cli.commands, command


def test_readme_shows_the_two_commands_and_ci_runs_the_tests():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
