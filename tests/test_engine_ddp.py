"""Two processes with Lightning's DDP (gloo on the CPU) give the metrics of one process."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("lightning")

import simplexity_lab.experiments  # noqa: F401  (registers flow2d in the engine's registry)
from simplexity_lab.engine import read_json, run

# a flow's loss has no sampling noise: the averaged gradient of two half batches is the gradient
# of the whole batch, so the two runs agree up to float rounding
SETTINGS = ["steps=30", "batch_size=64", "val_every=15", "checkpoint_every=15", "eval_size=2000"]


def test_ddp_two_processes_match_one_process(tmp_path):
    single = run("flow2d", budget="smoke", overrides=SETTINGS, out=tmp_path, name="one",
                 progress_bar=False, plots=False)  # fmt: skip
    sets = [a for s in SETTINGS for a in ("--set", s)]
    command = [sys.executable, "-m", "simplexity_lab.cli", "run", "flow2d", "--out", str(tmp_path),
               "--name", "two", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu",
               "--no-progress", *sets]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = read_json(tmp_path / "two" / "metrics.json")
    assert record["world_size"] == 2
    assert record["metrics"] == pytest.approx(single.metrics, rel=1e-4)
    assert single.record["world_size"] == 1
