"""Speed of ev-softmax and the baselines, as ratios to ``torch.softmax`` measured in the same run.

Usage: python benchmarks/normalizers.py [--threads 2] [--repeats 7] [--out docs/benchmarks_normalizers.md]

"ev_softmax" is the library's default: the compiled (fused) forward for inputs of at least 2^20
elements where torch.compile works, the eager path otherwise; "(eager)" forces the eager path.
Forward and forward+backward (``torch.autograd.grad`` of the output against a fixed cotangent) for
(batch, K) in {(4096, 10), (4096, 1000), (128, 32000)}, float32. "reference" is the reference
implementation's algorithm (softmax times the indicator, renormalized), re-implemented here.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import entmax
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import compare
from simplexity import ev_softmax

SHAPES = [(4096, 10), (4096, 1000), (128, 32000)]


def reference(x: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(x, -1) * (x >= x.mean(-1, keepdim=True))
    return p / p.sum(-1, keepdim=True)


def eager_ev_softmax(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """ev_softmax with the compiled kernel switched off (SIMPLEXITY_COMPILE=0)."""
    os.environ["SIMPLEXITY_COMPILE"] = "0"
    try:
        return ev_softmax(x, eps=eps)
    finally:
        del os.environ["SIMPLEXITY_COMPILE"]


MAPS = {
    "softmax": lambda x: torch.softmax(x, -1),
    "ev_softmax": lambda x: ev_softmax(x),
    "ev_softmax (eager)": eager_ev_softmax,
    "ev_softmax (eps=1e-6)": lambda x: ev_softmax(x, eps=1e-6),
    "reference ev-softmax": reference,
    "sparsemax (entmax)": lambda x: entmax.sparsemax(x, -1),
    "entmax15 (entmax)": lambda x: entmax.entmax15(x, -1),
}


def run(threads: int, repeats: int) -> str:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lines = [
        f"torch {torch.__version__}, {threads} threads, float32, {platform.processor() or platform.machine()}; "
        "time of softmax in ms, others as a ratio to softmax in the same run (best of "
        f"{repeats} interleaved rounds).",
        "",
        "| (batch, K) | pass | " + " | ".join(MAPS) + " |",
        "|---|---|" + "---|" * len(MAPS),
    ]
    for batch, k in SHAPES:
        x = torch.randn(batch, k)
        xg = x.clone().requires_grad_()
        cot = torch.randn(batch, k)
        fwd = {name: (lambda f=f, x=x: f(x)) for name, f in MAPS.items()}
        both = {
            name: (lambda f=f, xg=xg, cot=cot: torch.autograd.grad(f(xg), xg, cot))
            for name, f in MAPS.items()
        }
        for label, cands in (("forward", fwd), ("forward+backward", both)):
            res = compare(cands, baseline="softmax", repeats=repeats, min_time=0.2)
            cells = [f"{res['softmax'][0] * 1e3:.3f} ms"] + [
                f"{res[n][1]:.2f}×" for n in list(MAPS)[1:]
            ]
            lines.append(f"| ({batch}, {k}) | {label} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    args = parser.parse_args()
    table = run(args.threads, args.repeats)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
