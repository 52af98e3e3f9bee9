"""Rebuilding a warehouse's catalog from its own files: ``repair`` registers each table's newest
metadata file in a catalog that lost it (a deleted ``catalog.db``), and ``relocate`` points the
tables of a warehouse folder that was moved or copied at its new place.

Iceberg names every file by its absolute URI (metadata -> manifest lists -> manifests -> data
files), so a moved folder's tables still point at the old place. ``relocate`` writes, in the new
folder, each table's manifests and manifest lists with the new URIs (Avro, rewritten record by
record), then a new metadata file, and points the catalog at it; the old folder, if it is still
there, is never touched. It is idempotent: run again after an interruption, it finishes the job.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from stedi.config import Settings
from stedi.errors import ConfigError, StediError, first_line

_VERSION = re.compile(r"^(\d+)-.*\.metadata\.json$")


def newest_metadata(folder: Path) -> Path | None:
    """The newest readable metadata file of a table's ``metadata/`` folder (by version, then time)."""
    found = []
    for path in folder.glob("*.metadata.json"):
        m = _VERSION.match(path.name)
        try:
            updated = json.loads(path.read_bytes())["last-updated-ms"]
        except (OSError, ValueError, KeyError):
            continue  # a corrupt or partial file: an older one serves
        found.append((int(m.group(1)) if m else -1, updated, path))
    return max(found)[2] if found else None


@contextlib.contextmanager
def _held(settings: Settings, root: Path, what: str) -> Iterator[None]:
    """The writers' lock of the folder, with what is written private at rest (:mod:`stedi.at_rest`)."""
    from stedi import at_rest, locks
    from stedi.storage import PRIVATE
    from stedi.warehouse import LOCK_TIMEOUT_S

    private = root / PRIVATE
    private.mkdir(mode=0o700, exist_ok=True)
    busy = f"the warehouse {root} is busy ({{holder}}); try again when it is done"
    with locks.file_lock(private / "lock", what, time.monotonic() + LOCK_TIMEOUT_S, busy), at_rest.private(root, settings.group):
        yield


def repair(settings: Settings) -> list[str]:
    """Register in the catalog every table of the warehouse folder it does not hold, from its newest
    metadata file (the catalog is created if it is missing). Returns the tables registered."""
    root = _local_root(settings, "repair")
    with _held(settings, root, "stedi-etl repair"):
        done = _register(settings, root)
    if done:
        relocate(settings)  # metadata written at another place (a folder moved, then its catalog lost)
    return done


def _register(settings: Settings, root: Path) -> list[str]:
    from pyiceberg.exceptions import NoSuchTableError

    from stedi.warehouse import NAMESPACE, Warehouse

    tables = sorted(p for p in (root / "iceberg" / NAMESPACE).glob("*/metadata") if p.is_dir())
    if not tables:
        raise StediError(f"no Iceberg table under {root / 'iceberg' / NAMESPACE}: nothing to repair")
    wh = Warehouse(settings)
    done = []
    for folder in tables:
        name = folder.parent.name
        ident = f"{wh.namespace}.{name}"
        try:
            wh.catalog.load_table(ident)
            continue
        except NoSuchTableError:
            pass
        newest = newest_metadata(folder)
        if newest is None:
            raise StediError(f"table {name}: no readable metadata file in {folder}")
        wh.catalog.register_table(ident, f"file://{newest}")
        done.append(name)
    return done


def relocate(settings: Settings) -> list[str]:
    """Point the tables of the warehouse at ``settings.location`` at this place, where its folder
    was moved or copied. Returns the tables rewritten."""
    root = _local_root(settings, "relocate")
    with _held(settings, root, "stedi-etl relocate"):
        return _relocate(settings, root)


def _relocate(settings: Settings, root: Path) -> list[str]:
    from sqlalchemy import create_engine, text

    from stedi.catalogs import OWNER, SQL_NAMESPACE, is_glue

    uri = settings.catalog_url
    if is_glue(uri):
        raise ConfigError("relocate works on a SQL catalog; with Glue, register the tables again from their metadata")
    if not (root / "catalog.db").exists() and uri.startswith("sqlite:///") and str(root) in uri:
        raise StediError(f"no catalog.db in {root}: `stedi-etl repair` first")
    engine = create_engine(uri)
    new = f"file://{root}"
    done = []
    try:
        with engine.begin() as conn:
            rows = conn.execute(
                text("SELECT table_name, metadata_location FROM iceberg_tables WHERE catalog_name = :c AND table_namespace = :n"),
                {"c": SQL_NAMESPACE, "n": SQL_NAMESPACE},
            ).fetchall()
            for name, location in rows:
                if not location:
                    continue
                here = _here(root, location, name)
                try:
                    table_root = json.loads(here.read_bytes())["location"]
                except (OSError, ValueError, KeyError) as err:
                    raise StediError(f"table {name}: cannot read {here} ({first_line(err)})") from err
                old = _old_root(table_root, name)
                if old == new and location == f"file://{here}":
                    continue
                moved = _rewrite_table(here, old, new) if old != new else f"file://{here}"
                conn.execute(
                    text(
                        "UPDATE iceberg_tables SET metadata_location = :m, previous_metadata_location = NULL "
                        "WHERE catalog_name = :c AND table_namespace = :n AND table_name = :t"
                    ),
                    {"m": moved, "c": SQL_NAMESPACE, "n": SQL_NAMESPACE, "t": name},
                )
                done.append(name)
            conn.execute(
                text(
                    "UPDATE iceberg_namespace_properties SET property_value = :v "
                    "WHERE catalog_name = :c AND namespace = :n AND property_key = :k"
                ),
                {"v": str(root), "c": SQL_NAMESPACE, "n": SQL_NAMESPACE, "k": OWNER},
            )
    finally:
        engine.dispose()
    return done


def _local_root(settings: Settings, what: str) -> Path:
    from stedi.storage import is_remote

    if is_remote(settings.location):
        raise ConfigError(f"{what} works on a local warehouse folder, not {settings.location}")
    root = Path(settings.location)
    if not root.is_dir():
        raise StediError(f"no warehouse folder at {root}")
    return root


def _old_root(table_location: str, name: str) -> str:
    """The warehouse root a table's location names (``<root>/iceberg/<ns>/<table>``)."""
    m = re.match(rf"^(.*)/iceberg/[^/]+/{re.escape(name)}/?$", table_location)
    if m is None:
        raise StediError(f"cannot tell the warehouse of table {name} at {table_location}")
    return m.group(1)


def _here(root: Path, metadata_location: str, name: str) -> Path:
    """The metadata file a catalog row names, found in this folder (where the warehouse is now)."""
    path = metadata_location.removeprefix("file://")
    tail = re.search(rf"/iceberg/[^/]+/{re.escape(name)}/metadata/[^/]+$", path)
    if tail is None:
        raise StediError(f"cannot tell where table {name}'s metadata {metadata_location} is in {root}")
    here = Path(f"{root}{tail.group(0)}")
    if not here.exists():
        raise StediError(f"table {name}: {here} is missing: copy the whole warehouse folder, then relocate")
    return here


def _swap(value, old: str, new: str):
    """``value`` with every string under ``old`` moved under ``new`` (dicts and lists walked)."""
    if isinstance(value, str):
        return new + value[len(old) :] if value == old or value.startswith(old + "/") else value
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    return value


def _rewrite_avro(path: Path, old: str, new: str) -> None:
    """Rewrite one manifest or manifest list in place with its URIs moved (schema and metadata kept)."""
    import fastavro

    raw = path.read_bytes()
    reader = fastavro.reader(io.BytesIO(raw))
    records = [_swap(r, old, new) for r in reader]
    meta = {k: v for k, v in reader.metadata.items() if not k.startswith("avro.")}
    schema = fastavro.parse_schema(json.loads(reader.metadata["avro.schema"]))
    out = io.BytesIO()
    fastavro.writer(out, schema, records, codec=reader.codec, metadata=meta)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(out.getvalue())
    tmp.replace(path)


def _rewrite_table(metadata_file: Path, old: str, new: str) -> str:
    """Move one table's URIs from ``old`` to ``new``; returns its new metadata file's URI."""
    try:
        meta = json.loads(metadata_file.read_bytes())
    except ValueError as err:
        raise StediError(f"{metadata_file} is corrupt ({first_line(err)}): `stedi-etl repair` registers an older one") from err
    for snap in meta.get("snapshots") or []:
        mlist = Path(_swap(snap["manifest-list"], old, new).removeprefix("file://"))
        import fastavro

        for entry in fastavro.reader(io.BytesIO(mlist.read_bytes())):
            _rewrite_avro(Path(_swap(entry["manifest_path"], old, new).removeprefix("file://")), old, new)
        _rewrite_avro(mlist, old, new)
    moved = _swap(meta, old, new)
    m = _VERSION.match(metadata_file.name)
    version = int(m.group(1)) + 1 if m else 0
    target = metadata_file.with_name(f"{version:05d}-{uuid.uuid4()}.metadata.json")
    target.write_text(json.dumps(moved))
    return f"file://{target}"
