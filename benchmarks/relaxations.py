"""Speed of the relaxed categorical distributions relative to torch's RelaxedOneHotCategorical.

One step = build the distribution from parameters that require gradients, ``rsample``,
``log_prob`` of that sample, and ``backward`` of ``log_prob.sum() + (z * weights).sum()``. Batch
(2000, 20) of categorical variables with K = 10, float32, 2 threads by default. Every method, under
every ``validate_args`` setting asked for, is timed in the same run, one step each per round, round
after round; the JSON record keeps every step's time. The printed summary (and the tables of
``docs/benchmarks.md``) is each method's median step and its ratio to the median step of torch's
``RelaxedOneHotCategorical`` under the same setting.

Under validation, torch's float32 simplex check (``|sum - 1| < 1e-6``) rejects an occasional sample
of torch's own ``RelaxedOneHotCategorical``; such a step is drawn again (the failed attempt is not
timed) and the record counts the rejections.

Run::

    python benchmarks/relaxations.py [--threads 2] [--rounds 30] [--validate default off]
        [--out docs/benchmarks/relaxations.json]

References:
    Jang, Gu and Poole, *Categorical Reparameterization with Gumbel-Softmax*, ICLR 2017.
    Potapczynski, Loaiza-Ganem and Cunningham, *Invertible Gaussian Reparameterization: Revisiting
    the Gumbel-Softmax*, NeurIPS 2020.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, RelaxedOneHotCategorical

sys.path.insert(0, str(Path(__file__).parent))
from _timing import RECORDS, start_record, write_record
from simplexity.distributions import (
    IGR,
    GumbelSoftmax,
    IGRPlanar,
    IGRStickBreaking,
    PlanarFlows,
)

BASELINE = "torch RelaxedOneHotCategorical"

TARGETS = {
    "GumbelSoftmax": 1.3,
    "GumbelSoftmax (straight-through)": 1.3,
    "IGR-I": 1.3,
    "IGR-SB": 1.5,
    "IGR-Planar (1 flow)": 1.6,
    "IGR-Planar (2 flows)": 1.6,
}
"""The design targets, written into the record: at most so many times torch's step."""

VALIDATE = {"default": None, "on": True, "off": False}

MAX_REJECTED = 10
"""Draws of one step whose samples fail validation, in a row, before the benchmark gives up."""


def make_steps(
    batch: tuple[int, ...], k: int, temperature: float, validate: bool | None
) -> dict[str, Callable[[], None]]:
    """Return one closure per method that runs a full forward/backward step."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(*batch, k, generator=g).requires_grad_()
    loc = torch.randn(*batch, k - 1, generator=g).requires_grad_()
    pre_scale = torch.randn(*batch, k - 1, generator=g).requires_grad_()
    weights = torch.randn(k, generator=g)
    tau = torch.tensor(temperature)
    flows1 = PlanarFlows(k - 1, 1)
    flows2 = PlanarFlows(k - 1, 2)

    def run(d: Distribution) -> None:
        z = d.rsample()
        loss = d.log_prob(z).sum() + (z * weights).sum()
        loss.backward()

    def scale() -> torch.Tensor:
        return F.softplus(pre_scale)

    return {
        BASELINE: lambda: run(RelaxedOneHotCategorical(tau, logits=logits, validate_args=validate)),
        "GumbelSoftmax": lambda: run(GumbelSoftmax(tau, logits=logits, validate_args=validate)),
        "GumbelSoftmax (straight-through)": lambda: run(
            GumbelSoftmax(tau, logits=logits, straight_through=True, validate_args=validate)
        ),
        "IGR-I": lambda: run(IGR(loc, scale(), tau, validate_args=validate)),
        "IGR-SB": lambda: run(IGRStickBreaking(loc, scale(), tau, validate_args=validate)),
        "IGR-Planar (1 flow)": lambda: run(
            IGRPlanar(loc, scale(), tau, flows=flows1(), validate_args=validate)
        ),
        "IGR-Planar (2 flows)": lambda: run(
            IGRPlanar(loc, scale(), tau, flows=flows2(), validate_args=validate)
        ),
    }


def main(argv: list[str] | None = None) -> Path:
    """Run the benchmark, print the summary and write the JSON record; return its path."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, nargs="+", default=[2000, 20])
    parser.add_argument("--categories", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument(
        "--validate",
        choices=list(VALIDATE),
        nargs="+",
        default=["default", "off"],
        help="validate_args for every distribution, one or more settings timed in the same rounds "
        "(default: torch's default, which is on, and off)",
    )
    parser.add_argument("--out", type=Path, default=RECORDS / "relaxations.json",
                        help="the JSON record (default docs/benchmarks/relaxations.json)")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    record = start_record("relaxations", {**vars(args), "dtype": "float32", "baseline": BASELINE,
                                          "targets": TARGETS})  # fmt: skip
    torch.manual_seed(0)
    steps = {
        (setting, name): step
        for setting in args.validate
        for name, step in make_steps(
            tuple(args.batch), args.categories, args.temperature, VALIDATE[setting]
        ).items()
    }
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
    rejected = dict.fromkeys(steps, 0)

    def timed(key: tuple[str, str]) -> float:
        """Seconds of one step; a step whose sample fails its own support check (torch's float32
        simplex check, |sum - 1| < 1e-6, rejects an occasional sample of its own) is counted and
        drawn again."""
        for _ in range(MAX_REJECTED):
            start = time.perf_counter()
            try:
                steps[key]()
            except ValueError:
                rejected[key] += 1
                continue
            return time.perf_counter() - start
        raise RuntimeError(f"{key}: {MAX_REJECTED} samples in a row failed validation")

    for key in steps:  # warm-up
        for _ in range(3):
            timed(key)
    rejected = dict.fromkeys(steps, 0)
    for _ in range(args.rounds):
        for key in steps:
            times[key].append(timed(key))
    results = []
    for setting in args.validate:
        seconds = {name: ts for (s, name), ts in times.items() if s == setting}
        results.append({"validate": setting, "baseline": BASELINE, "seconds_per_step": seconds,
                        "rejected_samples": {name: n for (s, name), n in rejected.items()
                                             if s == setting}})  # fmt: skip
        ref = statistics.median(seconds[BASELINE])
        print(f"validate_args = {setting}: median ms per step, ratio to torch, samples rejected")
        for name, ts in seconds.items():
            med = statistics.median(ts)
            print(f"  {name:<34} {1e3 * med:8.2f} {med / ref:6.2f}x {rejected[setting, name]:4d}")
    return write_record(record, results, args.out)


if __name__ == "__main__":
    main()
