"""Where a warehouse's files live: a local folder (the embedded default) or an S3 prefix.

Everything stedi stores outside Iceberg's own files goes through :class:`Storage`, by a path
relative to the warehouse root: landing copies, the commit journal, the audit marker, the
pseudonym key. Object storage is reached through fsspec (s3fs) for files and pyiceberg's FileIO for
tables; endpoint, region and credentials come from the standard AWS variables and files
(``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``~/.aws/...``), as
botocore resolves them.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import uuid
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from stedi.errors import ConfigError, StediError, first_line

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

#: URI schemes of object storage stedi can use.
REMOTE_SCHEMES = ("s3://",)

#: stedi's private state (pseudonym key, commit journal, audit marker), relative to the warehouse root.
PRIVATE = ".stedi"


def is_remote(location: str | Path) -> bool:
    """Whether ``location`` names object storage rather than a local folder."""
    text = str(location)
    if "://" in text and not text.startswith(REMOTE_SCHEMES + ("file://",)):
        raise ConfigError(f"unsupported location {text}: give a local folder or s3://bucket/prefix")
    return text.startswith(REMOTE_SCHEMES)


#: Characters a warehouse location cannot hold: Iceberg names files by URI, and a URI parser reads
#: them as the start of a query or a fragment.
URI_DELIMITERS = "#?"


def normalise(location: str | Path) -> str:
    """A location as stedi names it: ``s3://bucket/prefix`` (no trailing slash) or an absolute path."""
    text = str(location)
    if any(ch in text for ch in URI_DELIMITERS):
        raise ConfigError(f"{text}: a warehouse location cannot hold {' or '.join(URI_DELIMITERS)} (Iceberg names its files by URI)")
    if is_remote(text):
        bucket_and_prefix = text.split("://", 1)[1].strip("/")
        if not bucket_and_prefix:
            raise ConfigError(f"{text} names no bucket: give s3://bucket/prefix")
        return "s3://" + bucket_and_prefix
    return str(Path(text.removeprefix("file://")).expanduser().resolve())


def aws_settings() -> dict[str, str]:
    """The S3 endpoint, region and credentials botocore finds (environment, config and credential
    files, profiles), as pyiceberg FileIO properties. Empty entries are left out."""
    import botocore.session

    session = botocore.session.Session()
    # botocore reads AWS_DEFAULT_REGION; the AWS CLI v2 and SDKs also AWS_REGION: take either
    region = session.get_config_variable("region") or os.environ.get("AWS_REGION") or None
    client = session.create_client("s3", region_name=region)
    props = {"s3.endpoint": client.meta.endpoint_url, "s3.region": client.meta.region_name}
    creds = session.get_credentials()
    if creds is not None:
        frozen = creds.get_frozen_credentials()
        props |= {
            "s3.access-key-id": frozen.access_key,
            "s3.secret-access-key": frozen.secret_key,
            "s3.session-token": frozen.token,
        }
    return {k: v for k, v in props.items() if v}


def filesystem(location: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem of ``location`` and the location as that filesystem names it."""
    if is_remote(location):
        import s3fs

        # s3fs (aiobotocore) resolves the same variables and files as botocore; the default
        # retries (5, about 2 s of backoff) bound how long a dead endpoint holds a command.
        # No listings cache: pyiceberg writes through its own FileIO, which s3fs would not see.
        return s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True), location.split("://", 1)[1].rstrip("/")
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem(), str(Path(location).expanduser())


def storage_error(err: BaseException, where: str) -> StediError:
    """One line for a failure of the storage behind ``where`` (an endpoint down, a refused request)."""
    return StediError(f"storage at {where} failed: {first_line(err)}")


class Storage:
    """The files of one warehouse, addressed by paths relative to its root (``landing/...``)."""

    def __init__(self, location: str | Path):
        self.location = normalise(location)
        self.remote = is_remote(self.location)
        self.fs, self.base = filesystem(self.location)

    # -- names -------------------------------------------------------------------------------------
    def path(self, rel: str) -> str:
        """The filesystem's name of ``rel`` (no scheme)."""
        return posixpath.join(self.base, rel) if rel else self.base

    def url(self, rel: str = "") -> str:
        """The full URI of ``rel``, as pyiceberg, DuckDB and Spark name files. Not percent-encoded, as
        Iceberg's own writers name files (``file:///a b/c``): pyiceberg would write an encoded one's
        ``%20`` as is."""
        return ("s3://" if self.remote else "file://") + self.path(rel)

    def strip(self, uri: str) -> str:
        """The filesystem's name of a URI (``s3://b/k`` -> ``b/k``, ``file:///p`` -> ``/p``)."""
        return self.fs._strip_protocol(uri)

    def relative(self, name: str) -> str:
        """``name`` (the filesystem's, or a URI) relative to the root."""
        return posixpath.relpath(self.strip(name), self.base)

    @cached_property
    def iceberg_properties(self) -> dict[str, str]:
        """FileIO properties for the catalog: S3 endpoint, region and credentials when remote."""
        return aws_settings() if self.remote else {}

    # -- checks ------------------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the root (a local folder), or check that the bucket exists and answers."""
        if not self.remote:
            try:
                Path(self.base).mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as err:
                raise ConfigError(f"cannot create warehouse folder {self.base}: {err.strerror}") from err
            return
        bucket = self.base.split("/", 1)[0]
        try:
            found = self.fs.exists(bucket)
        except Exception as err:  # noqa: BLE001 — botocore and aiohttp raise many kinds
            raise storage_error(err, self.location) from err
        if not found:
            raise ConfigError(f"bucket {bucket} does not exist (or these credentials cannot see it): create it first")

    # -- files -------------------------------------------------------------------------------------
    def read_bytes(self, rel: str) -> bytes:
        """The content of ``rel``; FileNotFoundError when there is none."""
        return self.fs.cat_file(self.path(rel))

    def write(self, rel: str, content: bytes, *, durable: bool = True) -> None:
        """Replace ``rel`` with ``content`` atomically and durably. Locally: a new file beside it,
        flushed to disk, renamed over it. In S3 a PUT is atomic: readers see the old object or the
        new one, never a part. What goes into the private folder is written as :meth:`write_private`.
        ``durable=False`` skips the flush to disk, as for the tables' own data files (a landing
        copy: it counts only once the manifest that names it is committed)."""
        if rel.split("/", 1)[0] == PRIVATE:
            self.write_private(rel, content)
            return
        if self.remote:
            self.fs.pipe_file(self.path(rel), content)
            return
        path = Path(self.path(rel))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(content)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def create_private(self, rel: str, content: bytes) -> None:
        """Create ``rel`` holding a secret, failing with FileExistsError if it exists (no race: two
        processes creating it at once, one wins and the other reads the winner's). Locally the file
        is readable by its owner only; in S3 the bucket's policy decides who reads it."""
        if self.remote:
            # a conditional PUT (If-None-Match: *), which AWS S3, MinIO and moto honour
            self.fs.pipe_file(self.path(rel), content, mode="create")
            return
        path = Path(self.path(rel))
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)

    def write_private(self, rel: str, content: bytes) -> None:
        """Replace ``rel`` (a secret, or state about one) atomically, readable by its owner only
        locally; in S3 the bucket's policy decides who reads it."""
        if self.remote:
            self.fs.pipe_file(self.path(rel), content)
            return
        path = Path(self.path(rel))
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def delete(self, rel: str) -> None:
        """Remove ``rel`` if it exists."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(rel))

    def delete_paths(self, names: list[str]) -> None:
        """Remove files named as the filesystem names them (one request per 1000 objects in S3)."""
        if names:
            self.fs.rm(names)

    def sizes(self, rel: str) -> dict[str, int]:
        """Every file under ``rel``, as path relative to the root -> size in bytes."""
        found = self.fs.find(self.path(rel), detail=True)
        return {self.relative(name): int(info["size"]) for name, info in found.items() if info.get("type") != "directory"}

    def files_under(self, uri: str) -> list[str]:
        """Every file under a URI (a table's location), as the filesystem names them."""
        return list(self.fs.find(self.strip(uri)))
