"""The command's text as a terminal shows it: `explain` wraps to the terminal's width (and keeps whole lines for a
pipe); `--help` lists each command's help as whole sentences, broken only where the column is full."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli, commands

ROOT = Path(__file__).resolve().parents[2]
cli._register_commands()  # the command groups, to list each one's --help
COMMAND = re.compile(r"^\s*(?:kubectl|istioctl|helm|curl|meshstep)\s")


def _env(columns: int | None) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": str(columns)} if columns else {})


def _meshstep(*args: str, columns: int | None = None) -> str:
    """What `meshstep ARGS` writes to a pipe (for --help, Typer's width is $COLUMNS)."""
    done = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=_env(columns),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _on_a_terminal(*args: str, columns: int) -> str:
    """What `meshstep ARGS` writes to a terminal `columns` wide (a pseudo-terminal, its window size set)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=_env(None), stdout=slave,
                            stderr=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the command ended and closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0
    return out.decode().replace("\r\n", "\n")


@pytest.mark.parametrize("subject", ["istiod", "sidecar", None])
def test_explain_wraps_to_the_terminal_s_width(subject):
    args = ("explain", *([subject] if subject else []), "--source", "demo")
    whole, wrapped = _meshstep(*args), _on_a_terminal(*args, columns=100)
    assert max(map(len, whole.splitlines())) > 100  # piped: lines whole, for grep (the golden file's)
    for line in wrapped.splitlines():
        assert len(line) <= 100 or COMMAND.match(line) or len(line.split()) == 1, line
    # the same words in the same order (a comment's continuation starts with its own #): only the lines differ
    assert [w for w in wrapped.split() if w != "#"] == [w for w in whole.split() if w != "#"]


def _help_rows(text: str) -> list[list[str]]:
    """The rows of the Commands panel of a --help, each as its lines' help column (and the column's width)."""
    panel = text[text.index("─ Commands ─"):].splitlines()[1:]
    lines = [line for line in panel if line.startswith("│")]
    start = re.match(r"│ \S+\s+", lines[0]).end()
    rows: list[list[str]] = []
    for line in lines:
        if line[2] != " ":  # a command's name: a new row
            rows.append([])
        rows[-1].append(line[start:-1].rstrip())
    return [[str(len(lines[0]) - start - 2), *row] for row in rows]


@pytest.mark.parametrize("group", [None, *(g.name for g in commands.cli.registered_groups if g.name)])
def test_help_lists_whole_sentences(group):
    text = _meshstep(*([group] if group else []), "--help", columns=80)
    for width, *row in _help_rows(text):
        for line, after in zip(row, row[1:]):
            # broken where the column is full: the next word would not have fitted on the line
            assert len(line) + 1 + len(after.split()[0]) > int(width), (line, after)
