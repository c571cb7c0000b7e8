"""Interrupted runs lose nothing: SIGKILL mid-epoch, then ``--resume``, gives the same metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("sklearn")

from simplexity_lab.engine import read_json, run
from simplexity_lab.engine.lightning import checkpoint_step, load_checkpoint

# digits: 1,297 training images in batches of 50 = 25 steps per epoch; checkpoints every 7 steps
# fall mid-epoch; validation every 40 steps
SETTINGS = ["dataset=digits", "steps=400", "batch_size=50", "checkpoint_every=7", "val_every=40",
            "num_variables=4", "net=linear", "eval_samples=10", "eval_size=100"]  # fmt: skip


def _cli(out, name, *extra):
    sets = [a for s in SETTINGS for a in ("--set", s)]
    return [sys.executable, "-m", "simplexity_lab.cli", "run", "vae", "--budget", "smoke", "--out",
            str(out), "--name", name, "--no-progress", *sets, *extra]  # fmt: skip


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    reference = run("vae", budget="smoke", overrides=SETTINGS, out=tmp_path, name="whole",
                    progress_bar=False, plots=False)  # fmt: skip

    ckpt = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(_cli(tmp_path, "cut"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not ckpt.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()
    step = checkpoint_step(ckpt)
    assert 0 < step < 400 and step % 25 != 0  # killed mid-run, mid-epoch
    assert not (tmp_path / "cut" / "metrics.json").exists()

    resumed = subprocess.run(_cli(tmp_path, "cut", "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = read_json(tmp_path / "cut" / "metrics.json")
    assert record["resumed"] is True and record["steps"] == 400
    assert record["metrics"] == pytest.approx(reference.metrics, rel=1e-6, abs=1e-6)
    # the history of evaluations has each step once, in order
    steps = [
        h["step"]
        for h in map(eval_json, (tmp_path / "cut" / "history.jsonl").read_text().splitlines())
    ]
    assert steps == list(range(40, 401, 40))
    # checkpoints load with weights_only=True and hold the RNG state
    checkpoint = load_checkpoint(ckpt)
    assert isinstance(checkpoint["simplexity_rng_state"], torch.Tensor)
    assert (tmp_path / "cut" / "checkpoints" / "best.ckpt").exists()


def eval_json(line):
    import json

    return json.loads(line)
