"""The command line: help everywhere, registries listed, runs and tables, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from simplexity_lab.cli import main


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "simplexity_lab.cli", *args], capture_output=True,
                          text=True, **kw)  # fmt: skip


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("vae", "cvae", "flow2d", "ev_softmax", "sparsemax", "igr_sb", "gumbel_softmax",
                 "mnist", "digits", "toy2d:8gaussians", "results pages: ", "igr", "evsoftmax"):  # fmt: skip
        assert name in out
    assert main(["list", "--keys", "cvae"]) == 0
    assert "normalizer = 'ev_softmax'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command", [[], ["run"], ["demo"], ["list"], ["table"], ["report"], ["select-temperature"]]
)
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: simplexity" in capsys.readouterr().out


def test_console_entry_point_and_unknown_command():
    result = _cli("--help", check=True)
    assert "demo" in result.stdout and "run" in result.stdout and "table" in result.stdout
    bad = _cli("nope")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "nope"], "unknown experiment 'nope'"),
        (["run", "vae", "--set", "relaxation=nope"], "unknown relaxation 'nope'"),
        (["run", "vae", "--set", "steps=many"], "steps must be an int"),
        (["run", "vae", "--set", "bogus=1"], "unknown config key 'bogus'"),
        (["run", "vae", "--set", "steps"], "expected key=value"),
        (["run", "vae", "--budget", "huge"], "unknown budget 'huge'"),
        (["run", "cvae", "--set", "normalizer=nope"], "unknown normalizer 'nope'"),
        (["table", "/nonexistent/run"], "neither a run directory"),
        (
            ["report", "nope"],
            "unknown results page 'nope'; expected one of: benchmarks, estimators, evsoftmax, flows, igr",
        ),
        (["select-temperature", "--relaxations", "softmax"], "relaxation must be one of"),
        (["select-temperature", "--grid", "0.1,x"], "--grid must be comma-separated numbers"),
        (
            ["select-temperature", "--experiment", "sop", "--relaxations", "igr_sb"],
            "relaxation must be one of gumbel_softmax, igr_i, igr_planar, got 'igr_sb'",
        ),
        (
            ["select-temperature", "--experiment", "sop", "--net", "linear"],
            "net applies to igr-vae only, got net='linear' for sop",
        ),
    ],
)
def test_user_mistakes_are_one_line(args, words, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path)] if args[0] == "run" else args) == 2
    err = capsys.readouterr().err
    assert err.startswith("simplexity: error: ") and words in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_data_is_one_line(tmp_path, capsys):
    args = ["run", "vae", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("simplexity: error: ") and err.count("\n") == 1
    assert "empty" in err


@pytest.mark.skipif(
    not __import__("importlib").util.find_spec("lightning"), reason="needs lightning"
)
def test_run_writes_the_run_directory_and_table_aggregates_seeds(tmp_path, capsys):
    pytest.importorskip("sklearn")
    base = ["run", "cvae", "--out", str(tmp_path), "--no-progress", "--set", "dataset=digits",
            "--set", "steps=6", "--set", "val_every=3", "--set", "classifier_steps=5"]  # fmt: skip
    for seed in (0, 1):
        assert main([*base, "--set", f"seed={seed}"]) == 0
    run = tmp_path / "cvae-smoke-classifier_steps=5-dataset=digits-steps=6-val_every=3-seed0"
    for name in ("config.json", "config.yaml", "run.json", "metrics.json", "history.jsonl",
                 "checkpoints/last.ckpt", "checkpoints/best.ckpt", "plots/priors.png"):  # fmt: skip
        assert (run / name).exists(), name
    assert list((run / "logs" / "csv").glob("*/metrics.csv"))
    assert main([*base, "--set", "seed=0"]) == 2  # exists: needs --resume or --overwrite
    assert "--resume" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["table", str(tmp_path), "--metrics", "test/tv,test/prior_support"]) == 0
    out = capsys.readouterr().out
    assert "| experiment | seeds | test/tv | test/prior_support |" in out
    assert "| cvae | 2 | " in out and " ± " in out
