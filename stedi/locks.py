"""The writers' lock of a warehouse (:func:`hold`, behind :meth:`stedi.warehouse.Warehouse.lock`):
this machine's, a file the kernel locks (:func:`file_lock`), and the one writers on other machines see:

* with a PostgreSQL catalog, a PostgreSQL advisory lock named after the warehouse, on a session of
  its own: if the process dies, the server ends the session and releases it;
* with the AWS Glue catalog, which has no lock, :class:`BucketLock`: one object in the warehouse's
  bucket (``.stedi/writer.lock``), taken and kept by conditional PUTs, with a lease.

Either keeps stedi's writers one at a time, so a multi-table commit and its journal, or ``forget``'s
deletion of unused files, never meet another stedi writer. Other engines writing the same tables
are caught by the catalogs' own optimistic checks (Glue's ``VersionId``, the SQL catalog's
compare-and-swap), which make our commit fail and be retried over theirs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stedi import at_rest, catalogs, journal
from stedi.errors import StediError, first_line

if TYPE_CHECKING:
    from stedi.warehouse import Warehouse

#: A holder of a bucket lock that stops renewing it for this long (killed, cut off) loses it.
LEASE_S = 60.0

#: The bucket lock's object, relative to the warehouse root.
LOCK_OBJECT = ".stedi/writer.lock"


@contextlib.contextmanager
def file_lock(
    path: os.PathLike | str, what: str, deadline: float, busy: str, waiting: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the kernel's lock (``flock``) on ``path``, which names its holder (``what``) meanwhile:
    a killed process releases it. Waits until ``deadline`` (``time.monotonic``), telling
    ``waiting(holder)`` once that it waits; past it, raise ``busy`` with ``{holder}`` filled in."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another stedi-etl command"
                if time.monotonic() >= deadline:
                    raise StediError(busy.replace("{holder}", holder)) from None
                if waiting is not None and not told:
                    waiting(holder)
                    told = True
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what}, pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def advisory_lock(engine: Any, lock_id: int, deadline: float, busy: str) -> Iterator[None]:
    """Hold PostgreSQL advisory lock ``lock_id`` on a connection of its own from ``engine``,
    waiting until ``deadline`` (``time.monotonic``); past it, raise ``busy``."""
    from sqlalchemy import text

    with engine.connect() as conn:
        while not conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock_id}).scalar():
            conn.rollback()
            if time.monotonic() >= deadline:
                raise StediError(busy)
            time.sleep(0.2)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
            conn.commit()


class BucketLock:
    """A lock held as one S3 object, for writers on any machine that reach the bucket.

    * **take**: create the object only if there is none (``If-None-Match: *``); replace a released
      one, or one whose holder stopped renewing it, only if it is still the version read
      (``If-Match: <ETag>``). Of two takers S3 lets one win: the other's PUT fails (412 or 409).
    * **keep**: the holder rewrites it every quarter lease, if it is still its own version, from a
      thread. A waiter that sees the same version for a whole lease, on its own clock (no two
      machines' clocks are compared), takes it over: a killed holder, or one cut off from the
      bucket, keeps the others out for at most one lease.
    * **lost**: a holder that could not renew for a lease, or found another's version, has lost it:
      :meth:`check` raises, and the warehouse commits and deletes nothing more.
    * **release**: rewrite it as released, if it is still its own version.

    Needs S3's conditional writes (AWS S3 since 2024, MinIO, moto); a store that ignores them is
    refused. Like any lease, it cannot fence off a holder that stalls for a whole lease between its
    last check and a commit; Glue's ``VersionId`` still makes each table's commit all or nothing.
    """

    def __init__(self, client: Any, bucket: str, key: str, lease: float = LEASE_S):
        self.client, self.bucket, self.key, self.lease = client, bucket, key, lease
        self.where = f"s3://{bucket}/{key}"
        self._etag: str | None = None
        self._renewed = 0.0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._record: dict[str, Any] = {}

    @classmethod
    def of(cls, location: str, lease: float = LEASE_S) -> BucketLock:
        """The lock of the warehouse at ``location`` (``s3://bucket/prefix``)."""
        import botocore.session

        from stedi.storage import aws_settings

        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        client = botocore.session.Session().create_client("s3", region_name=aws_settings().get("s3.region"))
        return cls(client, bucket, f"{prefix}/{LOCK_OBJECT}".lstrip("/"), lease)

    # -- the object ---------------------------------------------------------------------------------
    def _put(self, record: dict[str, Any], **condition: str) -> str | None:
        """Write ``record`` if ``condition`` holds; its new ETag, or None if another write won.

        Every version written is unique (a fresh ``nonce``): S3's ETag is the digest of the bytes, so
        a process taking the lock again with the same record (``watch``, a batch after another)
        would otherwise write the very version a waiter saw before, which would then see it
        unchanged for a lease and take the lock over from a live holder."""
        from botocore.exceptions import ClientError

        body = json.dumps(record | {"nonce": uuid.uuid4().hex}).encode()
        try:
            done = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, **condition)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404"):
                return None
            raise
        return done["ETag"]

    def _read(self) -> tuple[str, dict[str, Any]] | None:
        from botocore.exceptions import ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        try:
            record = json.loads(got["Body"].read())
        except ValueError:
            record = {}
        return got["ETag"], record if isinstance(record, dict) else {}

    # -- taking, keeping, giving back ---------------------------------------------------------------------
    def acquire(self, what: str, deadline: float) -> None:
        """Take the lock, waiting until ``deadline`` (``time.monotonic``); past it, raise naming the
        holder. Starts renewing it."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._record = {"holder": what, "host": socket.gethostname(), "pid": os.getpid(), "renewal": 0, "released": False}
        seen: tuple[str, float] | None = None  # a holder's version, since when this process sees it
        while True:
            try:
                etag = self._put(self._record, IfNoneMatch="*")
                current = None if etag else self._read()
                if current is not None:
                    version, record = current
                    if record.get("released") or not record.get("holder"):
                        etag = self._put(self._record, IfMatch=version)
                    elif seen is None or seen[0] != version:
                        seen = (version, time.monotonic())
                    elif time.monotonic() - seen[1] >= self.lease:  # its holder stopped renewing it
                        etag = self._put(self._record, IfMatch=version)
            except (BotoCoreError, ClientError) as err:
                raise StediError(f"the warehouse's lock ({self.where}) cannot be taken: {first_line(err)}") from err
            if etag:
                self._refuse_unconditional(etag)
                break
            if time.monotonic() >= deadline:
                holder = current[1] if current else {}
                raise StediError(
                    f"the warehouse is busy: {holder.get('holder', 'another stedi-etl command')} on "
                    f"{holder.get('host', 'another machine')} holds its lock ({self.where}); try again when it is done"
                )
            time.sleep(min(1.0, self.lease / 10))
        self._etag, self._renewed, self._lost = etag, time.monotonic(), None
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep, name="stedi-lock-lease", daemon=True)
        self._thread.start()

    def _refuse_unconditional(self, etag: str) -> None:
        """Fail if the storage ignores conditions (some S3-compatible stores do), which would let two
        writers hold the lock: a write on a condition that cannot hold must be refused."""
        if self._put(self._record, IfMatch='"00000000000000000000000000000000"') is None:
            return
        raise StediError(
            f"the storage of {self.where} ignores conditional writes (If-Match), so it cannot keep writers on other "
            "machines out of a warehouse whose catalog is Glue: use AWS S3 or a store that honours them (MinIO does)"
        )

    def _keep(self) -> None:
        while not self._stop.wait(self.lease / 4):
            self._record["renewal"] += 1
            try:
                etag = self._put(self._record, IfMatch=self._etag)
            except Exception:  # noqa: BLE001 — the bucket unreachable for now: try again, within the lease
                continue
            if etag is None:
                self._lost = "another writer took it over"
                return
            self._etag, self._renewed = etag, time.monotonic()

    def check(self) -> None:
        """Raise if the lock is no longer ours (taken over, or not renewed for a lease)."""
        if self._lost is None and time.monotonic() - self._renewed >= self.lease:
            self._lost = f"it could not be renewed for {self.lease:.0f}s"
        if self._lost:
            raise StediError(f"this command lost the warehouse's lock ({self.where}): {self._lost}; nothing more was changed, run it again")

    def release(self) -> None:
        """Stop renewing; mark the object released if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._etag and not self._lost:
            with contextlib.suppress(Exception):  # left held, it is taken over after one lease
                self._put(self._record | {"released": True}, IfMatch=self._etag)
        self._etag = None

    @contextlib.contextmanager
    def held(self, what: str, deadline: float) -> Iterator[BucketLock]:
        self.acquire(what, deadline)
        try:
            yield self
        finally:
            self.release()


# -- holding the lock of a warehouse ------------------------------------------------------------
@contextlib.contextmanager
def hold(wh: Warehouse, what: str, timeout: float) -> Iterator[None]:
    """Hold the warehouse's writers' lock: one command that writes (ingest, run, forget) at a time.

    Waits up to ``timeout`` seconds for another holder, then fails with who holds it. The lock
    is the kernel's (``flock``): a killed process releases it. Its file is in the warehouse's
    private folder, or for an S3 warehouse in this user's cache folder; writers on other machines
    are kept out by the shared catalog's lock (:func:`catalog_lock`).

    Re-entrant: a command holding the lock (``ingest --run``) runs its next step under the same
    hold. On taking it, the tables read before are forgotten: everything read under the lock is
    as every earlier writer committed it.
    """
    if wh._holding is not None:  # this process already holds it
        yield
        return
    deadline = time.monotonic() + timeout
    busy = f"the warehouse {wh.location} is busy ({{holder}}); waited {timeout:.0f}s, try again when it is done"
    with (
        file_lock(lock_file(wh), what, deadline, busy, wh.on_wait),
        catalog_lock(wh, what, deadline),
        contextlib.nullcontext() if wh.files.remote else at_rest.private(wh.root, wh.settings.group, walk=not wh.tightened),
    ):
        wh.tightened = True
        wh._holding = what
        try:
            # Tables loaded before the lock was ours may predate another writer's commit.
            wh._tables.clear()
            journal.recover(wh)
            yield
        finally:
            wh._holding = None


def lock_file(wh: Warehouse) -> Path:
    if not wh.files.remote:
        return wh.private_dir / "lock"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stedi" / "locks"
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    return cache / hashlib.sha256(wh.location.encode()).hexdigest()[:32]


def lock_id(wh: Warehouse) -> int:
    """The key of the warehouse's PostgreSQL advisory lock (with a PostgreSQL catalog)."""
    return int.from_bytes(hashlib.sha256(f"stedi:{wh.location}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def catalog_lock(wh: Warehouse, what: str, deadline: float) -> Iterator[None]:
    """With a shared catalog, writers on other machines are kept out too: by a PostgreSQL
    advisory lock named after the warehouse, or with Glue by the bucket's lock (see
    :mod:`stedi.locks`)."""
    uri = wh.settings.catalog_url
    if catalogs.is_postgresql(uri):
        busy = f"the warehouse {wh.location} is busy (a writer on another machine holds its lock in {wh.catalog_name}); try again when it is done"
        with advisory_lock(wh.catalog.engine, lock_id(wh), deadline, busy):
            yield
    elif catalogs.is_glue(uri):
        with BucketLock.of(wh.location).held(what, deadline) as wh._lease:
            try:
                yield
            finally:
                wh._lease = None
    else:
        yield


def still_locked(wh: Warehouse) -> None:
    """Raise if this process held the bucket's lock and lost it (see :class:`BucketLock`):
    called before every commit and deletion."""
    if wh._lease is not None:
        wh._lease.check()
