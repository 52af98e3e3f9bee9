"""Data never acts on the terminal: control characters in values, names and file names are shown
as escapes in every table stedi prints."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from stedi.cli import cli
from stedi.cli.output import visible
from tests.factories import KEY, customer, write_landing


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),  # clear the screen, set the title
        ("a\r\nb", "a\\x0d\\x0ab"),  # a row broken in two
        ("\u202eevil", "\\u202eevil"),  # text reordered
        ("\x9b31m", "\\x9b31m"),  # a C1 control sequence introducer
        ("plain é ＡＮＮ", "plain é ＡＮＮ"),
    ],
)
def test_what_acts_on_a_terminal_is_shown_as_an_escape(text, shown):
    assert visible(text) == shown


def test_sql_ingest_and_quarantine_show_control_characters_as_escapes(tmp_path):
    env = {"STEDI_PSEUDONYM_KEY": KEY.decode()}
    wh = str(tmp_path / "wh")
    src = write_landing(tmp_path / "src", [customer("Eve \x1b[31mRed")], name="\x1b[2Jodd")
    (src / "customer" / "landing" / "bad.json").write_text("\x1b]0;pwned\x07 not json\n")
    runner = CliRunner()
    outputs = [
        runner.invoke(cli, ["--warehouse", wh, "ingest", "--run", str(src)], env=env),
        runner.invoke(cli, ["--warehouse", wh, "sql", "SELECT customerName FROM customer_landing"], env=env),
        runner.invoke(cli, ["--warehouse", wh, "quarantine"], env=env),
    ]
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b[2Jodd" in outputs[0].output and "Eve \\x1b[31mRed" in outputs[1].output and "\\x1b]0;pwned" in outputs[2].output
