"""Private at rest: everything stedi writes into a local warehouse is readable by its owner only.

Landing copies, Parquet data files, Iceberg metadata and manifests, the SQLite catalog and the
quarantine can each hold a person's data. Locally they are created with files 0600 and folders
0700, or, when the warehouse's settings name a ``group`` (``stedi.toml``: ``group = "research"``,
or ``STEDI_GROUP``), 0640 and 2750 in that group (it reads, only the owner writes); the set-group-id bit makes every
new file and folder inherit the group. The private folder ``.stedi/`` (the keys, the lock) stays the
owner's alone in either case. A writer applies this for as long as it holds the writers' lock (the
process's umask), and on taking the lock brings what is already there to it (a warehouse made by
an older stedi, or with another group). In S3 the bucket's policy decides who reads what; see
README's "Who sees what".

Parquet footers of personal columns carry no min/max statistics either: pyiceberg's Parquet
writer is replaced by one that writes statistics only for columns whose Iceberg metrics mode is
not ``counts`` or ``none`` (the mode stedi gives personal columns, :func:`stedi.warehouse.table_properties`),
so that neither the manifests nor the files' footers hold an email or a serial number as a bound.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from stedi.errors import ConfigError
from stedi.storage import PRIVATE

#: Permission bits of files and folders, private and shared with a group.
FILE_MODE, DIR_MODE = 0o600, 0o700
GROUP_FILE_MODE, GROUP_DIR_MODE = 0o640, 0o2750

_umask = threading.Lock()


def group_id(group: str | None) -> int | None:
    """The id of the group named (by name or number), None for no group; one line if unknown."""
    if group is None:
        return None
    name = str(group).strip()
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name.isdigit():
            with contextlib.suppress(KeyError):
                return grp.getgrgid(int(name)).gr_gid
        raise ConfigError(f"group {name!r} (the warehouse's `group` setting) does not exist on this machine") from None


def modes(gid: int | None) -> tuple[int, int]:
    """(file mode, folder mode) with or without a group to share with."""
    return (FILE_MODE, DIR_MODE) if gid is None else (GROUP_FILE_MODE, GROUP_DIR_MODE)


def create_private_file(path: Path, gid: int | None) -> None:
    """Create ``path`` empty with the warehouse's file mode if it does not exist (e.g. the SQLite
    catalog, before SQLAlchemy creates it with the process's umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, modes(gid)[0]))
        if gid is not None:
            os.chown(path, -1, gid)


def tighten(root: Path, gid: int | None) -> int:
    """Bring every file and folder under ``root`` to the warehouse's modes (and group): what
    someone loosened is put back. Returns how many were changed."""
    file_mode, dir_mode = modes(gid)
    if not root.is_dir():
        return 0
    changed = 0
    secrets = root / PRIVATE
    for folder, dirs, files in os.walk(root):
        inside = Path(folder) == secrets or secrets in Path(folder).parents
        fmode, dmode = (FILE_MODE, DIR_MODE) if inside else (file_mode, dir_mode)
        for name, mode in [(folder, dmode), *((os.path.join(folder, f), fmode) for f in files)]:
            with contextlib.suppress(FileNotFoundError):  # a temporary file gone meanwhile
                info = os.lstat(name)
                if stat.S_ISLNK(info.st_mode):
                    continue
                if gid is not None and not inside and info.st_gid != gid:
                    os.chown(name, -1, gid)
                    changed += 1
                if stat.S_IMODE(info.st_mode) != mode:
                    os.chmod(name, mode)
                    changed += 1
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    return changed


@contextlib.contextmanager
def private(root: Path, group: str | None, *, walk: bool = True) -> Iterator[None]:
    """Within: files and folders this process creates are private to the owner (and the group);
    on entry (``walk``), those under ``root`` are brought to it: a command's first hold of the lock
    does, its later ones (a watch takes the lock every micro-batch) need not."""
    gid = group_id(group)
    mask = 0o077 if gid is None else 0o027
    with _umask:
        previous = os.umask(mask)
    try:
        if walk:
            tighten(root, gid)
        yield
    finally:
        with _umask:
            os.umask(previous)


# -- Parquet footers without the personal columns' statistics ----------------------------------------
_HIDDEN_MODES = ("counts", "none")


def statistics_columns(file_schema, properties) -> list[str]:
    """The columns whose footer statistics may be written: not those whose metrics mode is
    ``counts`` or ``none`` (``write.metadata.metrics.column.<name>``, else the default mode)."""
    default = properties.get("write.metadata.metrics.default", "truncate(16)")
    return [
        f.name
        for f in file_schema.fields
        if properties.get(f"write.metadata.metrics.column.{f.name}", default).lower() not in _HIDDEN_MODES
    ]


class NoStatisticsIsMeant(logging.Filter):
    """pyiceberg warns of each column it finds without footer statistics: the personal ones, on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("PyArrow statistics missing")


def install_private_parquet() -> None:
    """Make pyiceberg's Parquet writer write footer statistics only for :func:`statistics_columns`.
    Idempotent; called when :mod:`stedi.warehouse` is imported."""
    log = logging.getLogger("pyiceberg.io.pyarrow")
    if not any(isinstance(f, NoStatisticsIsMeant) for f in log.filters):
        log.addFilter(NoStatisticsIsMeant())
    from pyiceberg.io import fileformat
    from pyiceberg.io.pyarrow import ParquetFormatModel, ParquetFormatWriter
    from pyiceberg.manifest import FileFormat

    class PrivateParquetWriter(ParquetFormatWriter):
        def __init__(self, output_file, file_schema, properties) -> None:
            super().__init__(output_file, file_schema, properties)
            self._parquet_writer_kwargs["write_statistics"] = statistics_columns(file_schema, properties)

    class PrivateParquetModel(ParquetFormatModel):
        private = True

        def create_writer(self, output_file, file_schema, properties) -> ParquetFormatWriter:
            return PrivateParquetWriter(output_file, file_schema, properties)

    registry = fileformat.FileFormatFactory._registry
    if not getattr(registry.get(FileFormat.PARQUET), "private", False):
        registry[FileFormat.PARQUET] = PrivateParquetModel()
