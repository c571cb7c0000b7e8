"""The command line: the demo prints its tables, errors are one clear line."""

from __future__ import annotations

import subprocess
import sys

from simplexity.cli import main


def test_demo_prints_the_tour(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "| ev_softmax |" in out and "Padding" in out


def test_list(capsys):
    assert main(["list"]) == 0
    assert "ev_softmax" in capsys.readouterr().out


def test_console_entry_point_and_help():
    result = subprocess.run(
        [sys.executable, "-m", "simplexity.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "demo" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "simplexity.cli", "nope"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
