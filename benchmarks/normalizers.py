"""Speed of ev-softmax and the baselines, as ratios to ``torch.softmax`` measured in the same run.

Usage::

    python benchmarks/normalizers.py [--threads 2] [--repeats 7] [--min-time 0.2]
        [--out docs/benchmarks/normalizers.json]

"ev_softmax" is the library's default: the compiled (fused) forward for inputs of at least 2^20
elements where torch.compile works, the eager path otherwise; "(eager)" forces the eager path.
Forward and forward+backward (``torch.autograd.grad`` of the output against a fixed cotangent) for
(batch, K) in {(4096, 10), (4096, 1000), (128, 32000)}, float32. "reference" is the reference
implementation's algorithm (softmax times the indicator, renormalized), re-implemented here.

Every map is timed in ``--repeats`` interleaved rounds (:func:`_timing.interleaved`); the JSON
record keeps every round's seconds per call. The printed summary (and the table of
``docs/benchmarks.md``) is the best round of each map and its ratio to softmax's best round.

References:
    Chen, Tao, Gordon, Chen, Wang and Lapata, *Evidential Softmax for Sparse Multimodal
    Distributions in Deep Generative Models*, NeurIPS 2021.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import entmax
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import RECORDS, interleaved, start_record, write_record
from simplexity import ev_softmax

SHAPES = [(4096, 10), (4096, 1000), (128, 32000)]

TARGETS = [
    {"map": "ev_softmax", "baseline": "softmax", "pass": "forward+backward",
     "shapes": [[4096, 1000], [128, 32000]], "at_most": 1.3},
    {"map": "sparsemax (entmax)", "baseline": "ev_softmax", "pass": "forward+backward",
     "shapes": [[128, 32000]], "at_least": 10.0},
]  # fmt: skip
"""The design targets, written into the record: ``map`` takes at most (or at least) so many times
``baseline``'s time."""


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


def run(repeats: int, min_time: float) -> list[dict]:
    """Time every map at every shape, forward and forward+backward; return the raw samples."""
    torch.manual_seed(0)
    results = []
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
            numbers, samples = interleaved(cands, repeats=repeats, min_time=min_time)
            results.append({"shape": [batch, k], "pass": label, "baseline": "softmax",
                            "calls_per_sample": numbers, "seconds_per_call": samples})  # fmt: skip
            best = {name: min(s) for name, s in samples.items()}
            cells = [f"{best['softmax'] * 1e3:.3f} ms"]
            cells += [f"{best[n] / best['softmax']:.2f}x" for n in list(MAPS)[1:]]
            print(f"| ({batch}, {k}) | {label} | " + " | ".join(cells) + " |", flush=True)
    return results


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds per sample of one map (default 0.2)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RECORDS / "normalizers.json",
                        help="the JSON record (default docs/benchmarks/normalizers.json)")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    record = start_record("normalizers", {**vars(args), "dtype": "float32",
                                          "shapes": SHAPES, "maps": list(MAPS),
                                          "targets": TARGETS})  # fmt: skip
    print("| (batch, K) | pass | " + " | ".join(MAPS) + " |")
    return write_record(record, run(args.repeats, args.min_time), args.out)


if __name__ == "__main__":
    main()
