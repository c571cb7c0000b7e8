"""Speed of the relaxed categorical distributions relative to torch's RelaxedOneHotCategorical.

One step = build the distribution from parameters that require gradients, ``rsample``,
``log_prob`` of that sample, and ``backward`` of ``log_prob.sum() + (z * weights).sum()``. Batch
(2000, 20) of categorical variables with K = 10, float32, 2 threads by default. All methods are timed
in the same run, interleaved round by round; the table reports the median time per step and its
ratio to torch's ``RelaxedOneHotCategorical``.

Run::

    PYTHONPATH=src python benchmarks/relaxations.py --threads 2 --rounds 30
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, RelaxedOneHotCategorical

from simplexity.distributions import (
    IGR,
    GumbelSoftmax,
    IGRPlanar,
    IGRStickBreaking,
    PlanarFlows,
)

TARGETS = {
    "GumbelSoftmax": 1.3,
    "GumbelSoftmax (straight-through)": 1.3,
    "IGR-I": 1.3,
    "IGR-SB": 1.5,
    "IGR-Planar (1 flow)": 1.6,
    "IGR-Planar (2 flows)": 1.6,
}


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
        "torch RelaxedOneHotCategorical": lambda: run(
            RelaxedOneHotCategorical(tau, logits=logits, validate_args=validate)
        ),
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


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark and return the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, nargs="+", default=[2000, 20])
    parser.add_argument("--categories", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument(
        "--validate",
        choices=["default", "on", "off"],
        default="default",
        help="validate_args for every distribution (default: torch's default, which is on)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    validate = {"default": None, "on": True, "off": False}[args.validate]
    steps = make_steps(tuple(args.batch), args.categories, args.temperature, validate)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        for _ in range(3):
            step()
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    ref = statistics.median(times["torch RelaxedOneHotCategorical"])
    lines = [
        f"batch {tuple(args.batch)}, K = {args.categories}, float32, {args.threads} threads, "
        f"tau = {args.temperature}, validate_args = {args.validate}, {args.rounds} rounds "
        f"(median ms per rsample + log_prob + backward step)",
        "",
        "| method | ms / step | ratio to torch | target |",
        "|---|---:|---:|---:|",
    ]
    for name, ts in times.items():
        med = statistics.median(ts)
        target = TARGETS.get(name)
        target_s = f"≤ {target}×" if target else "—"
        lines.append(f"| {name} | {1e3 * med:.2f} | {med / ref:.2f}× | {target_s} |")
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()
