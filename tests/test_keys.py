"""The pseudonym key: never silently replaced, as strong as a generated one, changed only
deliberately (rotate-key) with every past erasure still holding, and never recoverable from what
others can read."""

from __future__ import annotations

import json
import secrets

import pytest
from click.testing import CliRunner

from stedi import keys as keyring
from stedi.cli import cli
from stedi.config import Settings
from tests.conftest import SAMPLE
from tests.factories import customer, reading, write_landing

STRONG = secrets.token_hex(32)


@pytest.fixture
def etl(tmp_path):
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(cli, ["--warehouse", str(tmp_path / "wh"), *args], env=env or {})

    return invoke


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def _one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_a_warehouse_that_lost_its_key_file_says_what_to_restore(etl, tmp_path):
    _ok(etl("ingest", "--run", str(SAMPLE)))
    (tmp_path / "wh" / ".stedi" / "pseudonym.key").unlink()
    for command in (["run"], ["run", "--full-refresh"], ["ingest", str(SAMPLE)], ["audit"], ["forget", "--email", "a@b.co"]):
        _one_line_error(etl(*command), "pseudonym key", "is missing", "restore")
    assert not (tmp_path / "wh" / ".stedi" / "pseudonym.key").exists()  # no new key was made


def test_another_key_from_the_environment_is_refused(etl, tmp_path):
    _ok(etl("ingest", "--run", str(SAMPLE), env={"STEDI_PSEUDONYM_KEY": STRONG}))
    before = (tmp_path / "wh" / ".stedi" / "key.json").read_bytes()
    _one_line_error(etl("run", "--full-refresh", env={"STEDI_PSEUDONYM_KEY": secrets.token_hex(32)}), "is not the pseudonym key", "rotate-key")
    # nor a key file that is not the one the warehouse was made with
    (tmp_path / "wh" / ".stedi" / "pseudonym.key").write_text(secrets.token_hex(32))
    _one_line_error(etl("run", "--full-refresh"), "the key file", "is not the pseudonym key")
    assert (tmp_path / "wh" / ".stedi" / "key.json").read_bytes() == before
    _ok(etl("run", env={"STEDI_PSEUDONYM_KEY": STRONG}))


@pytest.mark.parametrize(
    "weak",
    ["an environment key of 32 bytes or more", "0" * 64, "ab" * 32, "k" * 44, secrets.token_hex(16), "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"],
)
def test_a_weak_key_from_the_environment_is_refused(etl, tmp_path, weak):
    _one_line_error(etl("ingest", str(SAMPLE), env={"STEDI_PSEUDONYM_KEY": weak}), "STEDI_PSEUDONYM_KEY is not a strong key")
    assert not (tmp_path / "wh" / "landing").exists() or not any((tmp_path / "wh" / "landing").rglob("*.json"))


@pytest.mark.parametrize("strong", [secrets.token_hex(32), secrets.token_hex(48), secrets.token_urlsafe(32), __import__("base64").b64encode(secrets.token_bytes(32)).decode()])
def test_a_key_as_strong_as_a_generated_one_is_taken(strong):
    keyring.check_strength(strong.encode(), "STEDI_PSEUDONYM_KEY")


def test_nothing_others_can_read_carries_the_key_or_anything_derived_from_it(etl, tmp_path):
    _ok(etl("ingest", "--run", str(SAMPLE)))
    wh = tmp_path / "wh"
    key = (wh / ".stedi" / "pseudonym.key").read_bytes().strip()
    check = json.loads((wh / ".stedi" / "key.json").read_bytes())
    secrets_of_key = {key, check["verifier"].encode(), keyring.verifier(key)[:16].encode()}
    for path in wh.rglob("*"):
        if path.is_file() and ".stedi" not in path.parts:
            data = path.read_bytes()
            assert not any(s in data for s in secrets_of_key), path
    # what snapshots name is the key's random id, nothing computed from the key
    props = json.dumps([m.read_text() for m in (wh / "iceberg").rglob("*.metadata.json")])
    assert f"key {check['key_id']}" in props
    assert (wh / ".stedi").stat().st_mode & 0o077 == 0 and (wh / ".stedi" / "key.json").stat().st_mode & 0o077 == 0


def test_rotate_key_changes_every_pseudonym_rebuilds_every_table_and_every_erasure_holds(etl, tmp_path):
    ann, bob = customer("Ann A"), customer("Bob B")
    src = write_landing(tmp_path / "src", [ann, bob], [reading(c["email"]) for c in (ann, bob)])
    _ok(etl("ingest", "--run", str(src)))
    _ok(etl("forget", "--email", ann["email"], "--yes"))
    before = json.loads(_ok(etl("sql", "--format", "json", "SELECT customer_key FROM customers_curated")))

    out = _ok(etl("rotate-key", "--yes"))
    assert "pseudonym key changed" in out and "rebuilt" in out
    after = json.loads(_ok(etl("sql", "--format", "json", "SELECT customer_key FROM customers_curated")))
    assert len(after) == len(before) == 1 and after != before
    # no older snapshot of a pseudonymised table holds the old pseudonyms
    from stedi.config import resolve
    from stedi.warehouse import Warehouse

    wh = Warehouse.open(resolve(warehouse=tmp_path / "wh"))
    for name in ("customers_curated", "machine_learning_curated", "customer_consent_history"):
        assert len(wh.table(name).metadata.snapshots) == 1, name
    # Ann, erased before the rotation, does not come back with her old files
    summary = _ok(etl("ingest", "--run", str(write_landing(tmp_path / "again", [ann | {"phone": "1"}], name="again"))))
    assert "1 skipped as erased people" in summary
    assert json.loads(_ok(etl("sql", "--format", "json", "SELECT count(*) AS n FROM customer_landing"))) == [{"n": 1}]
    _ok(etl("audit"))


def test_rotating_a_key_from_the_environment_needs_the_new_one_there_too(etl, tmp_path):
    env = {"STEDI_PSEUDONYM_KEY": STRONG}
    _ok(etl("ingest", "--run", str(SAMPLE), env=env))
    _one_line_error(etl("rotate-key", "--yes", env=env), "STEDI_NEW_PSEUDONYM_KEY")
    new = secrets.token_hex(32)
    out = _ok(etl("rotate-key", "--yes", env=env | {"STEDI_NEW_PSEUDONYM_KEY": new}))
    assert "now set STEDI_PSEUDONYM_KEY to the new key" in out
    _one_line_error(etl("run", env=env), "is not the pseudonym key")
    _ok(etl("run", env={"STEDI_PSEUDONYM_KEY": new}))
    assert (tmp_path / "wh" / ".stedi" / "suppression.key").read_text() == STRONG  # kept for past erasures


def test_a_rotation_killed_after_the_new_key_was_written_is_finished(tmp_path):
    from stedi.storage import Storage

    files = Storage(tmp_path / "wh")
    settings = Settings(warehouse=tmp_path / "wh")
    first = keyring.load(settings, files, create=True, holds_data=False)
    new = keyring.generate()
    pending = {"key_id": "0123456789abcdef", "verifier": keyring.verifier(new), "created_at": "now", "replaces": first.key_id}
    files.write_private(keyring.ROTATION_FILE, json.dumps(pending).encode())
    files.write_private(keyring.KEY_FILE, new)  # ... and killed before the key check was written
    again = keyring.load(settings, files, create=False, holds_data=True)
    assert (again.pseudonym, again.key_id) == (new, "0123456789abcdef")
    assert not files.exists(keyring.ROTATION_FILE)
