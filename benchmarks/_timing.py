"""What the benchmark scripts share: interleaved timing, and the JSON record of a run.

Timing: every candidate is timed once per round, round after round, so a slow phase of a shared
machine hits all of them alike (:func:`interleaved`, :func:`compare`).

The record (:func:`start_record`, :func:`write_record`): each script writes its raw measurements to
``docs/benchmarks/<script>.json`` (or ``--out``) with what is needed to judge them: the machine (CPU
model, cores, cache, the load average when the run started and ended, the process's niceness), the
versions (python, torch, numpy, entmax, lightning when loaded), torch's thread count, the git commit
and whether the work tree had uncommitted changes, the ``SIMPLEXITY_*`` environment variables, the
exact command line and the UTC date.
``simplexity report benchmarks`` writes the tables of ``docs/benchmarks.md`` from these files.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "docs" / "benchmarks"
"""Where the scripts write their records by default (``docs/benchmarks/<script>.json``)."""


def time_call(fn: Callable[[], object], *, number: int) -> float:
    """Seconds per call of ``fn`` over ``number`` calls."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def interleaved(
    candidates: dict[str, Callable[[], object]], *, repeats: int = 7, min_time: float = 0.05
) -> tuple[dict[str, int], dict[str, list[float]]]:
    """Time every candidate in ``repeats`` interleaved rounds.

    Each candidate is called once to warm up, then given a call count ``number`` that makes one
    sample last about ``min_time`` seconds; each round takes one sample of every candidate in turn.

    Returns:
        ``(numbers, samples)``: the calls per sample, and each candidate's seconds per call in
        every round, in round order.
    """
    for fn in candidates.values():  # warm-up
        fn()
    numbers = {}
    for name, fn in candidates.items():
        once = max(time_call(fn, number=1), 1e-6)
        numbers[name] = max(1, int(min_time / once))
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            samples[name].append(time_call(fn, number=numbers[name]))
    return numbers, samples


def compare(
    candidates: dict[str, Callable[[], object]],
    *,
    baseline: str,
    repeats: int = 7,
    min_time: float = 0.05,
) -> dict[str, tuple[float, float]]:
    """Time every candidate in interleaved rounds; return ``{name: (seconds, ratio to baseline)}``.

    The reported time is the best round (interference from other work only adds time), the ratio
    that of the best times. :func:`interleaved` gives the samples themselves.
    """
    _, samples = interleaved(candidates, repeats=repeats, min_time=min_time)
    best = {name: min(times) for name, times in samples.items()}
    return {name: (t, t / best[baseline]) for name, t in best.items()}


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for module in ("torch", "numpy", "entmax", "lightning"):
        if module in sys.modules or module in ("torch", "numpy"):
            try:
                versions[module] = __import__(module).__version__
            except (ImportError, AttributeError):
                pass
    return versions


def _portable(value: Any) -> Any:
    """A path inside the repository as a relative path, any other path as a string."""
    if not isinstance(value, Path):
        return value
    try:
        return str(value.resolve().relative_to(REPO))
    except ValueError:
        return str(value)


def start_record(benchmark: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Begin the record of a run of ``benchmark`` with its ``settings`` (the parsed arguments).

    Taken before timing starts: the command line, the UTC date, the machine with its load average
    and the commit. :func:`write_record` completes it.
    """
    cpu = _cpuinfo()
    settings = {key: _portable(value) for key, value in settings.items()}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "benchmark": benchmark,
        "command": shlex.join(["python", *sys.argv]),
        "settings": settings,
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith("SIMPLEXITY_")},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": {
            "commit": _git("rev-parse", "HEAD"),
            "dirty": None if status is None else bool(status),
        },
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu.get("model name") or platform.processor() or platform.machine(),
            "cpu_cache": cpu.get("cache size"),
            "cores": os.cpu_count(),
            "niceness": os.nice(0) if hasattr(os, "nice") else None,
            "load_average_start": _load(),
        },
    }


def write_record(record: dict[str, Any], results: Any, out: str | Path) -> Path:
    """Complete ``record`` with ``results`` (the raw samples), the versions, torch's thread count and
    the load average at the end, and write it as JSON to ``out``."""
    import torch

    record = dict(record)
    record["machine"] = {**record["machine"], "load_average_end": _load()}
    record["versions"] = _versions()
    record["torch_threads"] = torch.get_num_threads()
    record["results"] = results
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
    return out
