"""Long steps say what they are doing: ingest file by file on a terminal, and a command waiting
for the writers' lock says who holds it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

from click.testing import CliRunner
from rich.console import Console

import stedi.cli.output as output
from stedi.cli import cli
from tests.factories import KEY, customer, write_landing


def test_ingest_shows_each_file_on_a_terminal(tmp_path, monkeypatch):
    src = write_landing(tmp_path / "src", [customer()], name="[x] [bold]odd")  # markup in a file name is shown as is
    screen = io.StringIO()
    monkeypatch.setattr(output, "_is_terminal", lambda: True)
    real = output._console
    monkeypatch.setattr(output, "_console", lambda stderr=False: Console(file=screen, force_terminal=True, width=120) if stderr else real())
    result = CliRunner().invoke(cli, ["--warehouse", str(tmp_path / "wh"), "ingest", str(src)], env={"STEDI_PSEUDONYM_KEY": KEY.decode()})
    assert result.exit_code == 0, result.output
    assert "ingest customer-[x] [bold]odd.json" in screen.getvalue() and "1/1" in screen.getvalue()


def test_a_writer_waiting_for_the_lock_says_who_holds_it(tmp_path):
    env = os.environ | {"STEDI_PSEUDONYM_KEY": KEY.decode(), "STEDI_WAREHOUSE": str(tmp_path / "wh")}
    src = write_landing(tmp_path / "src", [customer()])
    assert subprocess.run([sys.executable, "-m", "stedi.cli", "init"], env=env, capture_output=True).returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom stedi.config import resolve\nfrom stedi.warehouse import Warehouse\n"
         "wh = Warehouse.open(resolve())\nwith wh.lock('stedi-etl forget (a test)'):\n    print('held', flush=True)\n    time.sleep(4)\n"],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        waiter = subprocess.run([sys.executable, "-m", "stedi.cli", "ingest", str(src)], env=env, capture_output=True, text=True, timeout=120)
        assert waiter.returncode == 0, waiter.stderr
        assert time.monotonic() - started > 1  # it did wait
        assert "waiting for the writers' lock" in waiter.stderr and "held by stedi-etl forget (a test), pid" in waiter.stderr
    finally:
        holder.wait(timeout=30)
