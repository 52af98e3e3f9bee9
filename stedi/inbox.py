"""What is complete in a watched source: a folder or ``s3://bucket/prefix`` (laid out as for
``ingest``) looked at again and again, each look giving the files complete and not yet taken.

A local file is *complete* when two looks find the same size and modification time and it was not
modified for ``settle`` seconds; an S3 object is complete once listed (a PUT is atomic), and a
folder is listed from the last key seen (a whole listing every :data:`RELIST_EVERY` looks catches
keys that sort before it). Files under a hidden name or another suffix are not taken (a writer
may write ``.name.json`` and rename it when done). What a look remembers of a file goes when the
file leaves the source.
"""

from __future__ import annotations

import os
import posixpath
import time
from dataclasses import dataclass, field

from stedi.errors import SourceError, StediError
from stedi.ingest import _FOLDERS, RawFile, _taken
from stedi.storage import filesystem, normalise, storage_error

#: An S3 source is listed whole every this many looks (keys sorting before the last one seen).
RELIST_EVERY = 30
#: A batch that failed is tried again after this many seconds (sooner when one of its files changes).
RETRY_AFTER_S = 10.0


@dataclass
class _Seen:
    stamp: tuple  # (size, modified) as listed
    at: float  # monotonic time of the look that first saw this stamp
    wall: float = 0.0  # the same, as epoch seconds


def _arrival(modified: float | None, first_seen: float, now: float) -> float:
    """When a file became complete, as well as a watch can tell: its modification time, unless that
    is before the watch first saw it (a copy keeping an old time: ``cp -p``, ``tar x``) or after now
    (a skewed clock); then the first look that saw it, or now."""
    if not modified:
        return first_seen
    return min(max(modified, first_seen - 1.0), now)


@dataclass
class Inbox:
    """The complete, not yet taken files of a source, found by looking at it again and again."""

    source: str
    settle: float = 0.5
    fs: object = None
    base: str = ""
    seen: dict[str, _Seen] = field(default_factory=dict)
    done: dict[str, tuple] = field(default_factory=dict)  # path -> stamp taken (or found taken)
    failed: dict[str, tuple[tuple, float]] = field(default_factory=dict)  # path -> (stamp, retry at)
    last_key: dict[str, str] = field(default_factory=dict)  # S3: folder -> last key listed
    listed: dict[str, dict] = field(default_factory=dict)  # S3: path -> entry, kept across looks
    looks: int = 0

    def __post_init__(self) -> None:
        try:
            self.fs, self.base = filesystem(normalise(self.source))
            kind = self.fs.info(self.base)["type"] if self.fs.exists(self.base) else None
        except StediError:
            raise
        except Exception as err:  # noqa: BLE001 — an endpoint down, refused credentials, ...
            raise storage_error(err, self.source) from err
        if kind is None and self.local:
            raise SourceError(f"source {self.source} does not exist")
        if kind not in (None, "directory"):
            raise SourceError(f"source {self.source} is not a folder (expected customer/landing/*.json, ...)")

    @property
    def local(self) -> bool:
        return "file" in self.fs.protocol

    def look(self) -> tuple[list[tuple[str, RawFile, float]], int]:
        """(complete files not taken yet: source name, file, when it was complete (epoch s)), and
        how many files are still being written."""
        self.looks += 1
        now, wall = time.monotonic(), time.time()
        complete, writing = [], 0
        listing = self._listing()
        self._forget_gone({path for _, path, _ in listing})
        for name, path, stamp in listing:
            if self.done.get(path) == stamp:
                continue
            failed = self.failed.get(path)
            if failed and failed[0] == stamp and now < failed[1]:
                continue
            seen = self.seen.get(path)
            if seen is None or seen.stamp != stamp:
                self.seen[path] = seen = _Seen(stamp, now, wall)
                if not self.local:  # an object is whole once listed
                    complete.append((name, RawFile(self.fs, path), _arrival(stamp[1], seen.wall, wall)))
                else:
                    writing += 1
                continue
            # unchanged since the last look, and for `settle` seconds: by its modification time, or
            # by this watch's own clock (a time in the future, from a skewed clock or rsync -t,
            # would otherwise never settle)
            if self.local and wall - stamp[1] < self.settle and now - seen.at < self.settle:
                writing += 1
                continue
            complete.append((name, RawFile(self.fs, path), _arrival(stamp[1], seen.wall, wall)))
        complete.sort(key=lambda item: (item[2], item[1].path))  # oldest first
        return complete, writing

    def _forget_gone(self, present: set[str]) -> None:
        """What the look remembers of files no longer in the source is dropped: a watch over an
        inbox that is emptied as it goes holds nothing per file it took (a file put back is found
        taken by its content)."""
        for kept in (self.seen, self.done, self.failed):
            for path in [p for p in kept if p not in present]:
                del kept[path]

    def taken(self, files: list[RawFile]) -> None:
        for f in files:
            self.done[f.path] = self.seen[f.path].stamp
            self.failed.pop(f.path, None)

    def not_taken(self, files: list[RawFile]) -> None:
        retry = time.monotonic() + RETRY_AFTER_S
        for f in files:
            self.failed[f.path] = (self.seen[f.path].stamp, retry)

    def _listing(self) -> list[tuple[str, str, tuple]]:
        """(source name, path, (size, modified epoch s)) of every file a layout folder holds now."""
        found = []
        for name, folders in _FOLDERS.items():
            for folder in folders:
                entries = self._entries(posixpath.join(self.base, folder))
                taken = [e for e in entries if e[0] and _taken(posixpath.basename(e[1])) is None]
                if taken:  # the first folder of a source holding files is its folder, as for ingest
                    found.extend((name, path, stamp) for _, path, stamp in taken)
                    break
        return found

    def _entries(self, folder: str) -> list[tuple[bool, str, tuple]]:
        if self.local:
            try:
                with os.scandir(folder) as it:
                    out = []
                    for e in it:
                        if e.is_file(follow_symlinks=False):
                            st = e.stat(follow_symlinks=False)
                            out.append((True, e.path, (st.st_size, st.st_mtime_ns / 1e9)))
                    return out
            except (FileNotFoundError, NotADirectoryError):
                return []
            except OSError as err:
                raise SourceError(f"cannot list {folder}: {err.strerror or err}") from err
        return self._s3_entries(folder)

    def _s3_entries(self, folder: str) -> list[tuple[bool, str, tuple]]:
        """The objects of an S3 folder: those listed before, and those after the last key seen (all
        of them every RELIST_EVERY looks)."""
        bucket, _, prefix = folder.partition("/")
        prefix = prefix.rstrip("/") + "/"
        whole = self.looks % RELIST_EVERY == 1 or folder not in self.last_key
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        if not whole:
            kwargs["StartAfter"] = self.last_key[folder]
        try:
            fresh = {}
            while True:
                page = self.fs.call_s3("list_objects_v2", **kwargs)
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if "/" in key[len(prefix):]:  # in a sub-folder: not searched, as for ingest
                        continue
                    fresh[f"{bucket}/{key}"] = (obj["Size"], obj["LastModified"].timestamp())
                    self.last_key[folder] = max(self.last_key.get(folder, ""), key)
                if not page.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        except Exception as err:  # noqa: BLE001
            raise storage_error(err, f"s3://{folder}") from err
        mine = {p: s for p, s in self.listed.items() if p.startswith(f"{bucket}/{prefix}")}
        if whole:
            mine = fresh
        else:
            mine.update(fresh)
        for p in [p for p in self.listed if p.startswith(f"{bucket}/{prefix}")]:
            del self.listed[p]
        self.listed.update(mine)
        return [(True, p, s) for p, s in sorted(mine.items())]
