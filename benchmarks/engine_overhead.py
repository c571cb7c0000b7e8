"""Engine overhead: step time of ``simplexity run vae`` (Lightning) vs a minimal PyTorch loop.

Both train the same discrete VAE (IGR-I, 20×10 latents, nonlinear networks, batch 100, Adam) on
the same data with one torch thread. The engine's steps are timed inside Lightning from the start of
step ``WARMUP`` to the end of training (data fetching, logging every 50 steps, the LR scheduler and
the progress counters included; checkpoints and validation are set out of the timed window, since
they are per-run or per-interval costs, not per-step ones). The hand-written loop indexes a tensor
with a random permutation and calls the same ``model.loss``. Rounds alternate between the two. The
JSON record keeps every timed step's duration; the summary is each round's mean step time, the
ratio engine / hand-written per round, and the median over rounds.

    SIMPLEXITY_DATA_DIR=../shared/data python benchmarks/engine_overhead.py [--steps 600] [--rounds 3]
        [--out docs/benchmarks/engine_overhead.json]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import RECORDS, start_record, write_record
from simplexity_lab import experiments
from simplexity_lab.engine.lightning import fit
from simplexity_lab.engine.runs import RunDir

WARMUP = 50

TARGET = 1.15
"""The design target, written into the record: the engine's step at most so many times the loop's."""


def _durations(stamps: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(stamps)]


def engine_step_times(config, data_dir: str | None) -> list[float]:
    """The duration of each of the engine's steps from step ``WARMUP`` on."""
    import lightning.pytorch as pl

    stamps: list[float] = []

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step >= WARMUP:
                stamps.append(time.perf_counter())

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == config.steps:  # before the end-of-training validation
                stamps.append(time.perf_counter())

    exp = experiments.get("vae")
    torch.manual_seed(config.seed)
    task = exp.build(config, data_dir=data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = RunDir(tmp)
        run_dir.prepare({}, resume=False)
        original = pl.Trainer.__init__

        def with_timer(self, *args, **kwargs):
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), Timer()]
            original(self, *args, **kwargs)

        pl.Trainer.__init__ = with_timer
        try:
            fit(task, run_dir, progress_bar=False, loggers=("csv",))
        finally:
            pl.Trainer.__init__ = original
    durations = _durations(stamps)
    assert len(durations) == config.steps - WARMUP, len(durations)
    return durations


def plain_step_times(config, data_dir: str | None) -> list[float]:
    """The duration of each of the hand-written loop's steps from step ``WARMUP`` on."""
    exp = experiments.get("vae")
    torch.manual_seed(config.seed)
    task = exp.build(config, data_dir=data_dir)
    model, data = task.model, task.train_split.data
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    perm = torch.randperm(len(data))
    stamps: list[float] = []
    for step in range(config.steps):
        if step >= WARMUP:
            stamps.append(time.perf_counter())
        i = (step * config.batch_size) % (len(data) - config.batch_size)
        x = data[perm[i : i + config.batch_size]]
        loss, _ = model.loss(x, 0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    stamps.append(time.perf_counter())
    return _durations(stamps)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dataset", default="binarized_mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=RECORDS / "engine_overhead.json",
                        help="the JSON record (default docs/benchmarks/engine_overhead.json)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.steps <= WARMUP:
        parser.error(f"--steps must be more than the {WARMUP} warm-up steps, got {args.steps}")
    torch.set_num_threads(1)
    overrides = {"steps": args.steps, "dataset": args.dataset, "val_every": 10**6,
                 "checkpoint_every": 10**6, "relaxation": "igr_i", "net": "nonlinear"}  # fmt: skip
    record = start_record("engine_overhead", {**vars(args), "budget": "paper",
                                              "overrides": overrides, "warmup": WARMUP,
                                              "target": TARGET})  # fmt: skip
    config = experiments.get("vae").make_config("paper", overrides)
    rounds = []
    for _ in range(args.rounds):
        plain = plain_step_times(config, args.data_dir)
        engine = engine_step_times(config, args.data_dir)
        rounds.append({"hand_written_step_seconds": plain, "engine_step_seconds": engine})
        ratio = statistics.fmean(engine) / statistics.fmean(plain)
        print(f"round {len(rounds)}: hand-written {1e3 * statistics.fmean(plain):.2f} ms/step, "
              f"engine {1e3 * statistics.fmean(engine):.2f} ms/step, ratio {ratio:.3f}", flush=True)  # fmt: skip
    return write_record(record, {"rounds": rounds}, args.out)


if __name__ == "__main__":
    main()
