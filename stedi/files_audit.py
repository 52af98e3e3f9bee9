"""The audit of the raw files: every stored copy in the landing area is recorded in the manifest,
is there, and holds the very bytes recorded (its SHA-256, not only its size).

Hashing every copy at every audit would cost a full read of the landing area; a cache in the
user's cache folder (``$XDG_CACHE_HOME/stedi/landing-hashes/``, outside the warehouse: an audit
writes nothing there) keeps each file's hash beside what identifies its version on disk -- size,
modification and change times and inode locally (the change time cannot be set back by a user),
size and ETag in S3 -- and a file whose version changed is hashed again. Ingest seeds the cache
with the hashes of the copies it wrote (:func:`remember`), so the first audit reads none back.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from stedi.errors import Violation

if TYPE_CHECKING:
    from stedi.warehouse import Warehouse


def _cache_file(wh: Warehouse) -> Path:
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home / "stedi" / "landing-hashes" / f"{hashlib.sha256(wh.location.encode()).hexdigest()[:32]}.json"


def audit_files(wh: Warehouse) -> list[Violation]:
    """Raw files of the landing area against the manifest: none unrecorded, none missing, none
    holding other bytes than recorded."""
    found: list[Violation] = []
    manifest = wh.scan("ingest_manifest").select("stored_path", "sha256", "stored_sha256").collect()
    expected = {p: (stored if stored is not None else sha) for p, sha, stored in manifest.iter_rows()}
    on_disk = versions(wh)
    for rel in sorted(set(on_disk) - set(expected)):
        found.append(Violation("raw file not in the manifest", "ingest_manifest", rel))
    hashes = hashes_of(wh, {rel: v for rel, v in on_disk.items() if rel in expected})
    for rel, sha in sorted(expected.items()):
        if rel not in on_disk:
            found.append(Violation("raw file missing", "ingest_manifest", rel))
        elif hashes[rel] != sha:
            found.append(Violation("raw file changed since it was recorded", "ingest_manifest", rel))
    return found


def versions(wh: Warehouse) -> dict[str, str]:
    """Every file of the landing area -> what identifies its version (see the module docstring)."""
    files = wh.files
    found = files.fs.find(files.path("landing"), detail=True)
    out = {}
    for name, info in found.items():
        if info.get("type") == "directory":
            continue
        rel = files.relative(name)
        if files.remote:
            out[rel] = f"{info.get('size')}:{info.get('ETag') or info.get('etag') or info.get('LastModified')}"
        else:
            st = os.stat(name)
            out[rel] = _local_version(st)
    return out


def version_of(wh: Warehouse, rel: str) -> str | None:
    """What identifies the version of a local copy now (as :func:`versions` says it); None in S3
    or when it cannot be read."""
    if wh.files.remote:
        return None
    try:
        return _local_version(os.stat(wh.files.path(rel)))
    except OSError:
        return None


def _local_version(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def remember(wh: Warehouse, written: dict[str, tuple[str, str | None]]) -> None:
    """Seed the cache with the hashes of copies ingest just wrote (``rel -> (sha256, version)``:
    the hash of the bytes it wrote, the version the file had right after), so that the first audit
    after an ingest need not read them back. A copy whose version is no longer the one it had when
    written (changed since, even during the ingest) is not seeded: the audit hashes it. Locally
    only: in S3 a version costs a request per object. Best effort: a cache that cannot be read or
    written costs only the hashing."""
    path = _cache_file(wh)
    try:
        cache = json.loads(path.read_bytes())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    seeded = False
    for rel, (sha, version) in written.items():
        if version is not None and version_of(wh, rel) == version:
            cache[rel] = [version, sha]
            seeded = True
    if seeded:
        _save(path, cache)


def hashes_of(wh: Warehouse, wanted: dict[str, str]) -> dict[str, str]:
    """The SHA-256 of each file (rel -> version), from the cache where its version is unchanged."""
    path = _cache_file(wh)
    try:
        cache = json.loads(path.read_bytes())
    except (OSError, ValueError):
        cache = {}
    out, changed = {}, False
    for rel, version in wanted.items():
        hit = cache.get(rel)
        if hit and hit[0] == version:
            out[rel] = hit[1]
            continue
        digest = hashlib.sha256()
        with wh.files.fs.open(wh.files.path(rel), "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
        out[rel] = digest.hexdigest()
        cache[rel] = [version, out[rel]]
        changed = True
    if changed:
        _save(path, {rel: cache[rel] for rel in wanted})
    return out


def _save(path: Path, cache: dict) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)
    except OSError:
        pass  # a home that cannot be written: the audit hashes again next time
