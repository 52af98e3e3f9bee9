"""The warehouse's secrets: the pseudonym key, the suppression key, the check that the key in use is
the warehouse's own, and the deliberate change of key (``stedi-etl rotate-key``).

* The **pseudonym key** makes every ``customer_key`` (HMAC-SHA256 of the email's normal form). It
  comes from ``STEDI_PSEUDONYM_KEY``, else from ``<warehouse>/.stedi/pseudonym.key``, generated once
  (32 random bytes as hex, readable by its owner only).
* The **key check**, ``.stedi/key.json``, holds a random key id and a verifier of the key (an HMAC of
  a constant under it). A warehouse that holds data never silently gets a new key: a missing key
  file or a different ``STEDI_PSEUDONYM_KEY`` is an error saying what to restore. The key id, not
  derived from the key, is what snapshot properties name; nothing world-readable carries anything
  from which the key could be recovered (a key from the environment must be as strong as a
  generated one, so that neither the verifier nor a customer_key can be brute-forced).
* The **suppression key** makes the keyed hashes of erased people in ``suppression_list``. It is the
  warehouse's first pseudonym key: when the key is rotated, the old one is kept as
  ``.stedi/suppression.key`` (or comes from ``STEDI_SUPPRESSION_KEY``), so every past erasure still
  holds under the new key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stedi.errors import ConfigError
from stedi.storage import PRIVATE

if TYPE_CHECKING:
    from stedi.config import Settings
    from stedi.storage import Storage

KEY_FILE = f"{PRIVATE}/pseudonym.key"
CHECK_FILE = f"{PRIVATE}/key.json"
SUPPRESSION_FILE = f"{PRIVATE}/suppression.key"
#: Written before a rotation changes anything, removed once it is done: a rotation killed midway is
#: finished by the next command that opens the keys.
ROTATION_FILE = f"{PRIVATE}/key-rotation.json"

_VERIFY = b"stedi pseudonym key check"
_HEX = re.compile(r"[0-9a-fA-F]+")
MIN_KEY_BYTES = 32

GENERATE_HINT = "python3 -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class Keys:
    """The secrets of one warehouse, as loaded and checked for a command."""

    pseudonym: bytes = field(repr=False)
    key_id: str  # random, public: names the key in snapshot properties and the audit marker
    suppression: bytes = field(repr=False)
    from_environment: bool = False


def verifier(key: bytes) -> str:
    return hmac.digest(key, _VERIFY, "sha256").hex()


def check_strength(material: bytes, where: str) -> None:
    """Refuse a key weaker than a generated one: at least 32 bytes, given as hex (64 digits or more)
    or base64, that look random (not a word, a repeated character or a pattern)."""
    text = material.decode("utf-8", "replace").strip()
    decoded: bytes | None = None
    if _HEX.fullmatch(text) and len(text) % 2 == 0:
        decoded = bytes.fromhex(text)
    else:
        with contextlib.suppress(binascii.Error, ValueError):
            decoded = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if ("-" in text or "_" in text) else None, validate=True)
    if decoded is None or len(decoded) < MIN_KEY_BYTES or not _looks_random(decoded):
        raise ConfigError(
            f"{where} is not a strong key: give {MIN_KEY_BYTES} random bytes or more as hex or base64 "
            f"(e.g. {GENERATE_HINT})"
        )


def _looks_random(data: bytes) -> bool:
    """Whether bytes could be random: 32 random bytes almost never repeat a value more than 3 times or
    use fewer than 20 distinct values (odds below 1 in 10^9)."""
    if len(set(data)) < min(20, len(data)):
        return False
    counts = [data.count(b) for b in set(data)]
    return max(counts) <= max(4, len(data) // 8)


def generate() -> bytes:
    """A new pseudonym key: 32 random bytes as hex, as a key file holds it."""
    return secrets.token_hex(MIN_KEY_BYTES).encode("ascii")


def load(settings: Settings, files: Storage, *, create: bool, holds_data: bool) -> Keys:
    """The warehouse's keys, checked. ``create``: a writer may make the key of a new warehouse (one
    that ``holds_data`` not yet). A warehouse with data and no key check is adopted with the key it
    has (it predates the check); without any key, it is an error."""
    _finish_rotation(settings, files)
    check = _read_json(files, CHECK_FILE)
    configured = settings.pseudonym_key.encode("utf-8") if settings.pseudonym_key else None
    if configured is not None:
        check_strength(configured, "STEDI_PSEUDONYM_KEY")
    key = configured if configured is not None else _read_key(files)
    if check is not None:
        if key is None:
            raise ConfigError(
                f"the pseudonym key of {files.location} is missing: restore {files.url(KEY_FILE)} from a backup, "
                "or set STEDI_PSEUDONYM_KEY to the key it was made with (every customer_key and erasure depends on it)"
            )
        if not hmac.compare_digest(verifier(key), check["verifier"]):
            source = "STEDI_PSEUDONYM_KEY" if configured is not None else f"the key file {files.url(KEY_FILE)}"
            raise ConfigError(
                f"{source} is not the pseudonym key of {files.location} (key {check['key_id']}, made {check.get('created_at', '?')}): "
                "restore the key it was made with; to change it deliberately, use stedi-etl rotate-key"
            )
        return _keys(settings, files, key, check["key_id"], configured is not None)
    if key is None:
        if holds_data:
            raise ConfigError(
                f"the pseudonym key of {files.location} is missing and the warehouse holds data: restore "
                f"{files.url(KEY_FILE)} from a backup, or set STEDI_PSEUDONYM_KEY to the key it was made with"
            )
        if not create:  # nothing stored, nothing to read: a key that is never kept
            return Keys(generate(), "none", generate())
        with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
            files.create_private(KEY_FILE, generate())
        key = _read_key(files)
        assert key is not None
    elif configured is None:
        check_strength(key, f"the key file {files.url(KEY_FILE)}")
    if not create and not holds_data:
        return _keys(settings, files, key, "unchecked", configured is not None)
    record = {"key_id": secrets.token_hex(8), "verifier": verifier(key), "created_at": _now()}
    with contextlib.suppress(FileExistsError):  # two first commands at once: the first one's check stands
        files.create_private(CHECK_FILE, json.dumps(record).encode())
    return load(settings, files, create=False, holds_data=True)


def rotate(settings: Settings, files: Storage, current: Keys) -> Keys:
    """Change the pseudonym key (under the writers' lock): the new one from
    ``STEDI_NEW_PSEUDONYM_KEY``, else generated into the key file. The suppression key stays (the
    old key kept as ``suppression.key`` if it was the pseudonym key). Returns the new keys; the
    caller rebuilds every table."""
    given = settings.new_pseudonym_key.encode("utf-8") if settings.new_pseudonym_key else None
    if current.from_environment and given is None:
        raise ConfigError(
            "this warehouse's key comes from STEDI_PSEUDONYM_KEY: give the new key in STEDI_NEW_PSEUDONYM_KEY "
            "(then set STEDI_PSEUDONYM_KEY to it)"
        )
    new = given if given is not None else generate()
    check_strength(new, "STEDI_NEW_PSEUDONYM_KEY")
    if hmac.compare_digest(new, current.pseudonym):
        raise ConfigError("the new pseudonym key is the current one: give another")
    if not settings.suppression_key and not files.exists(SUPPRESSION_FILE):
        files.create_private(SUPPRESSION_FILE, current.suppression)  # every past erasure is hashed with it
    record = {"key_id": secrets.token_hex(8), "verifier": verifier(new), "created_at": _now(), "replaces": current.key_id}
    files.write_private(ROTATION_FILE, json.dumps(record).encode())
    if not current.from_environment:
        files.write_private(KEY_FILE, new)
    files.write_private(CHECK_FILE, json.dumps(record).encode())
    files.delete(ROTATION_FILE)
    return _keys(settings, files, new, record["key_id"], current.from_environment)


def _finish_rotation(settings: Settings, files: Storage) -> None:
    """A rotation killed between writing the new key and its check: finish it (the key file holds
    the new key) or drop it (the key file still holds the old one)."""
    pending = _read_json(files, ROTATION_FILE)
    if pending is None:
        return
    key = settings.pseudonym_key.encode("utf-8") if settings.pseudonym_key else _read_key(files)
    if key is not None and hmac.compare_digest(verifier(key), pending["verifier"]):
        files.write_private(CHECK_FILE, json.dumps(pending).encode())
    files.delete(ROTATION_FILE)


def _keys(settings: Settings, files: Storage, key: bytes, key_id: str, from_environment: bool) -> Keys:
    if settings.suppression_key:
        suppression = settings.suppression_key.encode("utf-8")
    else:
        try:
            suppression = files.read_bytes(SUPPRESSION_FILE).strip()
        except FileNotFoundError:
            suppression = key  # never rotated: erasures are hashed with the pseudonym key
    return Keys(key, key_id, suppression, from_environment)


def _read_key(files: Storage) -> bytes | None:
    try:
        return files.read_bytes(KEY_FILE).strip() or None
    except FileNotFoundError:
        return None


def _read_json(files: Storage, rel: str) -> dict | None:
    try:
        return json.loads(files.read_bytes(rel))
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise ConfigError(f"{files.url(rel)} is damaged ({err}): restore it from a backup") from err


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
