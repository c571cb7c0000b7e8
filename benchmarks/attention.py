"""Speed and memory of ev-softmax, entmax-1.5 and sparsemax attention against torch's SDPA (softmax).

Usage:
    nice -n 0 python benchmarks/attention.py [--lengths 512 1024 4096 16384] [--threads 1]
        [--repeats 5] [--out docs/benchmarks/attention.json]

Batch 1, 8 heads, head dimension 64, float32, queries, keys and values drawn from N(0, 1), no mask.
For each sequence length L and each mode (``forward`` under ``torch.no_grad``; ``forward+backward``:
the output's backward against a fixed cotangent, gradients of q, k and v), every method runs in
interleaved rounds: each round times SDPA once and then every method once (a call shorter than half a
second is repeated to fill it), and a method's ratio is the median over rounds of its time over that
round's SDPA time, so that the machine's load hits both alike.

- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (softmax), the baseline.
- ``ev_softmax``: ``simplexity.nn.attention(..., normalizer="ev_softmax")``, the exact map (eval form);
  ``ev_softmax_eps``: its training form (``eps = 1e-6``). Both take the blocked path
  (:mod:`simplexity.nn.ev_attention`).
- ``ev_softmax_dense``: ``ev_softmax`` on the explicit (L, L) scores, times the values (L <= 4096).
- ``entmax15``, ``sparsemax``: ``simplexity.nn.attention`` with that normalizer: dense below 2^24
  scores, checkpointed query blocks above (:mod:`simplexity.nn.blocked_attention`). At L >= 16384
  they run forward only, once (about 7 minutes a call on one thread).

Peak memory is the peak of tensor memory allocated during one call (``torch.profiler`` with
``profile_memory``, allocations minus frees in time order), inputs excluded. The fraction of zero
weights is counted over the first 256 queries of every head (each query's weights depend only on it
and the keys). The raw results (every round's time, the machine, versions, the command) go to
``--out`` as JSON; a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import entmax
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from simplexity import ev_softmax
from simplexity.nn import attention, attention_weights

BATCH, HEADS, DIM = 1, 8, 64
SAMPLE_QUERIES = 256
LONG = 16384  # from this length on, the sparse maps run forward only, once
MIN_SECONDS = 0.5  # a timing repeats a short call to last about this long

Method = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def dense_ev_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return ev_softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])) @ v


METHODS: dict[str, Method] = {
    "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
    "ev_softmax": lambda q, k, v: attention(q, k, v, normalizer="ev_softmax"),
    "ev_softmax_eps": lambda q, k, v: attention(
        q, k, v, normalizer="ev_softmax", normalizer_options={"eps": 1e-6}, training=True
    ),
    "ev_softmax_dense": dense_ev_softmax,
    "entmax15": lambda q, k, v: attention(q, k, v, normalizer="entmax15"),
    "sparsemax": lambda q, k, v: attention(q, k, v, normalizer="sparsemax"),
}
WEIGHTS = {
    "sdpa": lambda q, k: torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1),
    "ev_softmax": lambda q, k: attention_weights(q, k, normalizer="ev_softmax"),
    "ev_softmax_eps": lambda q, k: attention_weights(
        q, k, normalizer="ev_softmax", normalizer_options={"eps": 1e-6}, training=True
    ),
    "ev_softmax_dense": lambda q, k: attention_weights(q, k, normalizer="ev_softmax"),
    "entmax15": lambda q, k: attention_weights(q, k, normalizer="entmax15"),
    "sparsemax": lambda q, k: attention_weights(q, k, normalizer="sparsemax"),
}


def methods_for(length: int, mode: str) -> list[str]:
    names = ["ev_softmax", "ev_softmax_eps", "entmax15", "sparsemax"]
    if length <= 4096:
        names.insert(2, "ev_softmax_dense")
    if length >= LONG and mode != "forward":
        names = [n for n in names if n.startswith("ev_softmax")]
    return names


def make_call(
    method: Method, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: str
) -> Callable[[], None]:
    if mode == "forward":

        def forward() -> None:
            with torch.no_grad():
                method(q, k, v)

        return forward
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    cotangent = torch.randn(q.shape[:-1] + v.shape[-1:], generator=torch.Generator().manual_seed(1))

    def forward_backward() -> None:
        for t in leaves:
            t.grad = None
        method(*leaves).backward(cotangent)

    return forward_backward


def peak_memory(call: Callable[[], None]) -> tuple[int, float]:
    """(peak bytes of tensor memory allocated during ``call``, seconds the call took)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak, seconds


def zero_fraction(name: str, q: torch.Tensor, k: torch.Tensor) -> float:
    with torch.no_grad():
        weights = WEIGHTS[name](q[..., :SAMPLE_QUERIES, :], k)
    return float((weights == 0).float().mean())


def timed(call: Callable[[], None], number: int) -> float:
    """Seconds per call over ``number`` calls."""
    start = time.perf_counter()
    for _ in range(number):
        call()
    return (time.perf_counter() - start) / number


def run_length(length: int, repeats: int, log: Callable[[str], None]) -> dict:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(BATCH, HEADS, length, DIM, generator=g) for _ in range(3))
    result: dict = {"length": length, "modes": {}}
    result["zero_fraction"] = {
        name: zero_fraction(name, q, k)
        for name in ["sdpa", "ev_softmax", "ev_softmax_eps", "entmax15", "sparsemax"]
    }
    for mode in ("forward", "forward+backward"):
        names = ["sdpa", *methods_for(length, mode)]
        calls = {name: make_call(METHODS[name], q, k, v, mode) for name in names}
        entry: dict = {"methods": {}}
        once = length >= LONG
        for name in names:  # warm-up and memory (the single timed call for long sequences)
            peak, seconds = peak_memory(calls[name])
            entry["methods"][name] = {
                "peak_bytes": peak,
                "profiled_seconds": seconds,
                "seconds": [],
            }
            log(
                f"L={length} {mode} {name}: {seconds:.3f} s (profiled), peak {peak / 2**20:.1f} MiB"
            )
        rounds = 1 if once else repeats
        for name in names:  # short calls are repeated to last about MIN_SECONDS per timing
            m = entry["methods"][name]
            m["calls_per_timing"] = max(1, int(MIN_SECONDS / max(m["profiled_seconds"], 1e-6)))
        for _ in range(0 if once else rounds):
            for name in names:
                m = entry["methods"][name]
                m["seconds"].append(timed(calls[name], m["calls_per_timing"]))
        base = entry["methods"]["sdpa"]
        for name in names:
            m = entry["methods"][name]
            if once:
                m["seconds"] = [m["profiled_seconds"]]
            ratios = [
                t / b for t, b in zip(m["seconds"], base["seconds"] or [base["profiled_seconds"]])
            ]
            m["time_ratio_median"] = statistics.median(ratios)
            m["time_ratio_rounds"] = ratios
            m["memory_ratio"] = m["peak_bytes"] / max(base["peak_bytes"], 1)
            log(
                f"L={length} {mode} {name}: median {statistics.median(m['seconds']):.3f} s, "
                f"ratio {m['time_ratio_median']:.2f}, memory ratio {m['memory_ratio']:.2f}"
            )
        entry["timing"] = "profiled single call" if once else f"{rounds} interleaved rounds"
        result["modes"][mode] = entry
    return result


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "entmax": getattr(entmax, "__version__", "unknown"),
        "blas": "MKL" if torch.backends.mkl.is_available() else "other",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "niceness": os.nice(0),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else "unknown"
    except OSError:
        pass
    return info


def git_state() -> dict:
    """The commit measured, and whether the library or this script differed from it (at the start)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=root
        ).stdout.strip()

    try:
        changed = git("status", "--porcelain", "--", "src/simplexity", "benchmarks/attention.py")
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed)}
    except (OSError, subprocess.CalledProcessError):
        return {}


def table(results: list[dict]) -> str:
    lines = [
        "| L | mode | method | time (s) | time / SDPA | peak memory (MiB) | memory / SDPA | zero weights |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for mode, entry in res["modes"].items():
            for name, m in entry["methods"].items():
                zero = res["zero_fraction"].get(name.replace("_dense", ""), float("nan"))
                lines.append(
                    f"| {res['length']} | {mode} | {name} | {statistics.median(m['seconds']):.3f} | "
                    f"{m['time_ratio_median']:.2f} | {m['peak_bytes'] / 2**20:.1f} | "
                    f"{m['memory_ratio']:.2f} | {zero:.1%} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 4096, 16384])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/attention.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.time()
    load_before = os.getloadavg()
    state = git_state()  # before the run: the commit whose code is measured

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results = [run_length(length, args.repeats, log) for length in args.lengths]
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": dict(
            batch=BATCH,
            heads=HEADS,
            head_dim=DIM,
            dtype="float32",
            threads=args.threads,
            repeats=args.repeats,
            sample_queries=SAMPLE_QUERIES,
        ),
        "machine": machine(),
        "git": state,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_seconds": time.time() - started,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
