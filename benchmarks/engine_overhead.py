"""Engine overhead: step time of ``simplexity run vae`` (Lightning) vs a minimal PyTorch loop.

Both train the same discrete VAE (IGR-I, 20×10 latents, nonlinear networks, batch 100, Adam) on
the same data with one torch thread. The engine's step time is measured inside Lightning from the
start of step ``WARMUP`` to the end of training (data fetching, logging every 50 steps, the LR
scheduler and the progress counters included; checkpoints and validation are set out of the timed
window, since they are per-run or per-interval costs, not per-step ones). The hand-written loop indexes a tensor with
a random permutation and calls the same ``model.loss``. Rounds alternate between the two; the ratio
reported is the median over rounds.

    SIMPLEXITY_DATA_DIR=../shared/data python benchmarks/engine_overhead.py [--steps 600] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from simplexity_lab import experiments
from simplexity_lab.engine.lightning import fit
from simplexity_lab.engine.runs import RunDir

WARMUP = 50


def engine_step_time(config, data_dir: str | None) -> float:
    import lightning.pytorch as pl

    times: dict[str, float] = {}

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == WARMUP:
                times["start"] = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == config.steps:  # before the end-of-training validation
                times["end"] = time.perf_counter()

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
    return (times["end"] - times["start"]) / (config.steps - WARMUP)


def plain_step_time(config, data_dir: str | None) -> float:
    exp = experiments.get("vae")
    torch.manual_seed(config.seed)
    task = exp.build(config, data_dir=data_dir)
    model, data = task.model, task.train_split.data
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    perm = torch.randperm(len(data))
    start = 0.0
    for step in range(config.steps):
        if step == WARMUP:
            start = time.perf_counter()
        i = (step * config.batch_size) % (len(data) - config.batch_size)
        x = data[perm[i : i + config.batch_size]]
        loss, _ = model.loss(x, 0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / (config.steps - WARMUP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dataset", default="binarized_mnist")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = experiments.get("vae").make_config(
        "paper",
        {"steps": args.steps, "dataset": args.dataset, "val_every": 10**6,
         "checkpoint_every": 10**6, "relaxation": "igr_i", "net": "nonlinear"},
    )  # fmt: skip
    engine, plain = [], []
    for _ in range(args.rounds):
        plain.append(plain_step_time(config, args.data_dir))
        engine.append(engine_step_time(config, args.data_dir))
    ratios = [e / p for e, p in zip(engine, plain)]
    print(f"dataset {args.dataset}, {args.steps} steps x {args.rounds} rounds, 1 thread")
    print(f"hand-written loop: {1e3 * statistics.median(plain):.2f} ms/step")
    print(f"engine (Lightning): {1e3 * statistics.median(engine):.2f} ms/step")
    print(f"ratio engine / hand-written: median {statistics.median(ratios):.3f} "
          f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)})")  # fmt: skip


if __name__ == "__main__":
    main()
