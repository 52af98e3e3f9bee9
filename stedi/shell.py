"""``stedi-etl shell``: the real DuckDB command-line shell over the tables a reader may see.

The shell is the ``duckdb-cli`` package's binary (DuckDB 1.5), a process apart from stedi's own
DuckDB (2.0): it cannot share a connection, nor read a database file 2.0 wrote. So the 1.5 shell
itself first writes a throwaway database holding one view per table (the sandbox's views,
:func:`stedi.sandbox.view_sql`) in a private temporary folder; then the shell opens it read-only,
reads a script of the sandbox's settings (``allowed_paths`` = the tables' data files, external
access off) and enters safe mode (configuration locked; no ``.shell``, ``.system``, ``.output``,
``.read``, ``.open``). The user's ``~/.duckdbrc`` is not read. The shell's own features stay:
``.tables``, ``.mode``, ``.timer``, history; SQL piped on stdin runs as a script and exits.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from stedi.errors import StediError, first_line

if TYPE_CHECKING:
    from stedi.config import Settings


def binary() -> str:
    """The DuckDB shell: the ``duckdb-cli`` package's binary, else ``duckdb`` on the PATH."""
    spec = importlib.util.find_spec("duckdb_cli")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "duckdb"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("duckdb")
    if found is None:
        raise StediError("no DuckDB shell found: pip install duckdb-cli (stedi's dependencies include it)")
    return found


@contextlib.contextmanager
def prepared(settings: Settings, as_of: str | None = None) -> Iterator[list[str]]:
    """The shell's command line, over a database of views made for it (removed afterwards)."""
    from stedi.query import open_views
    from stedi.sandbox import lock_statements, view_sql

    lake, views, directories = open_views(settings, as_of)
    if lake.remote:
        raise StediError(
            f"the shell reads local warehouses only: for {lake.location} the DuckDB 1.5 shell would need its own httpfs "
            "extension of its exact version (PyPI's duckdb-extension-httpfs lags the shell) and the bucket's credentials; "
            "use `stedi-etl sql` or stedi.connect(), which read S3 through stedi's filesystem"
        )
    shell = binary()
    folder = tempfile.mkdtemp(prefix="stedi-shell-")  # 0700: this user's only
    try:
        db = os.path.join(folder, "tables.duckdb")
        script = ";\n".join(view_sql(v) for v in views) + ";\n"
        made = subprocess.run([shell, "-bail", "-no-init", db], input=script, capture_output=True, text=True)
        if made.returncode != 0:
            raise StediError(f"the DuckDB shell could not prepare the tables: {first_line(Exception(made.stderr or made.stdout))}")
        settings_file = os.path.join(folder, "sandbox.sql")
        Path(settings_file).write_text(";\n".join(s for s in lock_statements(views, False, directories) if "lock_configuration" not in s) + ";\n")
        # safe mode locks the configuration and the shell's escapes (.shell, .output, .read, .open)
        yield [shell, "-readonly", "-no-init", db, "-cmd", f".read {settings_file}", "-cmd", ".safe_mode"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


#: The shell's own options a user may add: how results look, and commands (which run after the
#: sandbox and safe mode are set). Not those that read a file or open another database (-f, -init,
#: a database name, -unsigned, ...): they would step out of the sandbox before it is set.
SHELL_FLAGS = frozenset(
    ["-ascii", "-box", "-column", "-csv", "-html", "-json", "-line", "-list", "-markdown", "-quote", "-table", "-header", "-noheader", "-echo", "-bail", "-batch", "-interactive"]
)
SHELL_OPTIONS = frozenset({"-c", "-s", "-cmd", "-nullvalue", "-separator", "-newline"})  # each takes a value


def checked(extra: tuple[str, ...]) -> tuple[str, ...]:
    """``extra`` if every one is an option the shell may be given (:data:`SHELL_FLAGS`, :data:`SHELL_OPTIONS`)."""
    i = 0
    while i < len(extra):
        arg = extra[i]
        if arg in SHELL_OPTIONS and i + 1 < len(extra):
            i += 2
            continue
        if arg not in SHELL_FLAGS:
            allowed = " ".join(sorted(SHELL_FLAGS | SHELL_OPTIONS))
            raise StediError(f"refused: the shell takes only these of its options ({allowed}), not {arg!r}")
        i += 1
    return extra


def run(settings: Settings, as_of: str | None = None, extra: tuple[str, ...] = ()) -> int:
    """Run the shell (interactive on a terminal, a script from a pipe); its exit code."""
    extra = checked(extra)
    with prepared(settings, as_of) as argv:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the shell's to handle
        try:
            return subprocess.run([*argv, *extra], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)).returncode
        finally:
            signal.signal(signal.SIGINT, previous)
