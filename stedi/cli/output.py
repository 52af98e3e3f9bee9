"""How the commands print: tables on stdout, progress and the audit's findings on stderr."""

from __future__ import annotations

import contextlib
import sys

import click


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # On a terminal rich fits the screen; into a pipe or file, print tables whole.
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 240)



def _fail_on(violations: list, message: str) -> None:
    """Print the audit's violations on stderr and exit 1 with ``message``, if there are any."""
    if violations:
        err = _console(stderr=True)
        for v in violations:
            err.print(f"  - {v}", soft_wrap=True)
        raise click.ClickException(f"{message}; listed above")


def _is_terminal() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def _file_progress():
    """A progress bar on stderr over the files an ingest takes, only on a terminal; yields ingest's callback."""
    if not _is_terminal():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task("ingest", total=None)

        def notify(file: str, done: int, total: int) -> None:
            bar.update(task, description=f"ingest {file}", completed=done, total=total)

        yield notify


@contextlib.contextmanager
def _progress(total: int):
    """A progress bar on stderr over the jobs, only on a terminal; yields the runner's callback."""
    if not _is_terminal():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task("run", total=total)

        def notify(job: str, state: str) -> None:
            bar.update(task, description=f"{job}: {state}", advance=1 if state in ("done", "unchanged") else 0)

        yield notify


def _print_table(title: str | None, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Rows as a table on stdout; numbers right-aligned, None as NULL. Values and names are printed
    literally (``[bold]`` or ``:x:`` in data is text, never markup). A table too wide for the screen
    is printed one record at a time, a column per line."""
    from rich.table import Table
    from rich.text import Text

    console = _console()
    numeric = [
        any(isinstance(r[i], int | float) for r in rows) and all(r[i] is None or isinstance(r[i], int | float) for r in rows)
        for i in range(len(columns))
    ]
    columns = tuple(visible(c) for c in columns)
    title = visible(title) if title else title
    cells = [["NULL" if v is None else visible(str(v)) for v in row] for row in rows]
    if _too_wide(columns, cells, console.width):
        _print_records(console, title, columns, cells)
        return
    table = Table(title=Text(title) if title else None, title_justify="left")
    for name, right in zip(columns, numeric, strict=True):
        table.add_column(Text(name), justify="right" if right else "left", overflow="fold")  # never cut a value
    for row in cells:
        table.add_row(*(Text(v) for v in row))
    console.print(table)


#: Characters that would act on a terminal rather than show (C0 and C1 controls, DEL, the bidi
#: overrides and isolates that reorder what follows), shown as escapes instead.
_ACTING = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]} | {
    c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}


def visible(text: str) -> str:
    """``text`` as a terminal should show data: its control characters as escapes (``\\x1b``), so a
    value cannot clear the screen, set the title or break a row."""
    return text.translate(_ACTING)


#: The narrowest a column may get before a table is printed record by record instead.
MIN_COLUMN = 10


def _too_wide(columns: tuple[str, ...], cells: list[list[str]], width: int) -> bool:
    natural = [max([len(c)] + [min(len(r[i]), 40) for r in cells[:200]]) for i, c in enumerate(columns)]
    needed = sum(min(n, MIN_COLUMN) for n in natural) + 3 * len(columns) + 1
    return needed > width


def _print_records(console, title: str | None, columns: tuple[str, ...], cells: list[list[str]]) -> None:
    from rich.text import Text

    if title:
        console.print(Text(title))
    pad = max(len(c) for c in columns)
    for n, row in enumerate(cells, 1):
        console.print(Text(f"-[ record {n} ]" + "-" * max(0, min(console.width, 60) - 14 - len(str(n)))))
        for name, value in zip(columns, row, strict=True):
            console.print(Text(f"{name.ljust(pad)} | {value}"), soft_wrap=False)
