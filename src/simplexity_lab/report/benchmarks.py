"""The benchmarks page (``docs/benchmarks.md``): its tables from the kept JSON records of the scripts.

Each script in ``benchmarks/`` writes its raw measurements to ``docs/benchmarks/<script>.json``
(every round's time, the machine, its load average, the versions, the commit and the command); this
page's tables are computed from those records alone, so ``simplexity report benchmarks``
regenerates them byte for byte. A record that is missing gives a one-line note in place of its
table, never a stale one.

Tables: ``runs`` (the machine, versions, load and command of every record), ``normalizers``,
``normalizers-rounds``, ``normalizers-targets``, ``relaxations``, ``engine-overhead``,
``attention`` (every ``attention*.json``, written by ``benchmarks/attention.py``) and ``decoding``
(greedy decoding throughput of the translation Transformer per normalizer).

References:
    Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser and Polosukhin, *Attention Is All You
    Need*, NeurIPS 2017.
    Chen, Tao, Gordon, Chen, Wang and Lapata, *Evidential Softmax for Sparse Multimodal
    Distributions in Deep Generative Models*, NeurIPS 2021.
    Potapczynski, Loaiza-Ganem and Cunningham, *Invertible Gaussian Reparameterization: Revisiting
    the Gumbel-Softmax*, NeurIPS 2020.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simplexity_lab.report.page import PAGES, Page, PageBuild

__all__ = [
    "PAGE",
    "attention_table",
    "decoding_table",
    "engine_overhead_table",
    "normalizers_rounds_table",
    "normalizers_table",
    "normalizers_targets_table",
    "relaxations_table",
    "runs_table",
]

RECORDS = ("normalizers", "relaxations", "engine_overhead")
"""The records every build expects (``docs/benchmarks/<name>.json``), besides ``attention*.json``."""

Record = dict[str, Any]


def _ratio(x: float) -> str:
    return f"{x:.2f}×"


def _quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    """Lower quartile, median and upper quartile (the ``statistics`` module's exclusive method)."""
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4)
    return q1, q2, q3


def _missing(name: str, script: str) -> str:
    return (
        f"*No record kept: `docs/benchmarks/{name}.json` is missing; "
        f"`python benchmarks/{script}.py` writes it.*\n"
    )


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _load(values: Sequence[float] | None) -> str:
    return "—" if not values else " / ".join(f"{x:.1f}" for x in values)


def runs_table(records: dict[str, Record]) -> str:
    """One row per record: when, where and how it was measured.

    Reads both the records of ``benchmarks/_timing.py`` and those of ``benchmarks/attention.py``
    (which keeps the same facts under other keys).
    """
    lines = [
        "| record | command | date | commit | CPU | cores | torch | torch threads | niceness "
        "| load average at start (1 / 5 / 15 min) | at end |",
        "|---|---|---|---|---|---:|---|---:|---:|---|---|",
    ]
    for name, rec in records.items():
        machine = rec.get("machine", {})
        git = rec.get("git") or {}
        commit = _first(git.get("commit"), machine.get("simplexity_commit"))
        commit = "—" if commit is None else f"`{commit[:10]}`"
        if git.get("dirty"):
            commit += " (uncommitted changes)"
        cells = [
            f"`{name}.json`",
            f"`{rec.get('command', '—')}`",
            _first(rec.get("date"), rec.get("started"), "—"),
            commit,
            _first(machine.get("cpu"), machine.get("cpu_model"), machine.get("processor"), "—"),
            str(_first(machine.get("cores"), machine.get("cpu_count"), "—")),
            _first(rec.get("versions", {}).get("torch"), machine.get("torch"), "—"),
            str(_first(rec.get("torch_threads"), rec.get("settings", {}).get("threads"), "—")),
            str(_first(machine.get("niceness"), "—")),
            _load(_first(machine.get("load_average_start"), rec.get("load_average_before"))),
            _load(_first(machine.get("load_average_end"), rec.get("load_average_after"))),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _best(entry: Record) -> dict[str, float]:
    return {name: min(s) for name, s in entry["seconds_per_call"].items()}


def _round_ratios(entry: Record, name: str, baseline: str) -> list[float]:
    samples = entry["seconds_per_call"]
    return [t / b for t, b in zip(samples[name], samples[baseline], strict=True)]


def normalizers_table(rec: Record) -> str:
    """Softmax's best time per call, every other map's best time as a ratio to it."""
    maps = rec["settings"]["maps"]
    lines = [
        "| (batch, K) | pass | " + " | ".join(maps) + " |",
        "|---|---|" + "---:|" * len(maps),
    ]
    for entry in rec["results"]:
        best = _best(entry)
        base = best[entry["baseline"]]
        cells = [f"{base * 1e3:.3f} ms"] + [_ratio(best[m] / base) for m in maps[1:]]
        shape = "({}, {})".format(*entry["shape"])
        lines.append(f"| {shape} | {entry['pass']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def normalizers_rounds_table(rec: Record) -> str:
    """The spread over rounds: each round's time over softmax's time in the same round."""
    maps = rec["settings"]["maps"][1:]
    lines = [
        "| (batch, K) | pass | " + " | ".join(maps) + " |",
        "|---|---|" + "---|" * len(maps),
    ]
    for entry in rec["results"]:
        cells = []
        for m in maps:
            ratios = _round_ratios(entry, m, entry["baseline"])
            cells.append(f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})")
        shape = "({}, {})".format(*entry["shape"])
        lines.append(f"| {shape} | {entry['pass']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def normalizers_targets_table(rec: Record) -> str:
    """Each design target, the best-round ratio and the median per-round ratio, and whether met."""
    lines = [
        "| time of | over time of | (batch, K) | pass | target | best rounds | median round | met |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for target in rec["settings"]["targets"]:
        for shape in target["shapes"]:
            entry = next(
                e for e in rec["results"] if e["shape"] == shape and e["pass"] == target["pass"]
            )
            best = _best(entry)
            ratio = best[target["map"]] / best[target["baseline"]]
            median = statistics.median(_round_ratios(entry, target["map"], target["baseline"]))
            if "at_most" in target:
                bound, met = (
                    f"≤ {target['at_most']}×",
                    [r <= target["at_most"] for r in (ratio, median)],
                )
            else:
                bound, met = (
                    f"≥ {target['at_least']}×",
                    [r >= target["at_least"] for r in (ratio, median)],
                )
            verdict = {(True, True): "yes", (False, False): "no"}.get(
                (met[0], met[1]), "best rounds only" if met[0] else "median round only"
            )
            lines.append(
                f"| {target['map']} | {target['baseline']} | ({shape[0]}, {shape[1]}) | "
                f"{target['pass']} | {bound} | {_ratio(ratio)} | {_ratio(median)} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def relaxations_table(rec: Record) -> str:
    """Median ms per step and its ratio to torch's, the quartiles of the per-round ratios and the
    samples that failed their own validation (drawn again), for every ``validate_args`` setting."""
    targets = rec["settings"]["targets"]
    settings = [entry["validate"] for entry in rec["results"]]
    header = "| method | target |"
    rule = "|---|---:|"
    for s in settings:
        header += (
            f" ms / step (validate {s}) | ratio | per-round ratio quartiles | samples rejected |"
        )
        rule += "---:|---:|---|---:|"
    lines = [header, rule]
    methods = list(rec["results"][0]["seconds_per_step"])
    for method in methods:
        target = targets.get(method)
        cells = [method, "—" if target is None else f"≤ {target}×"]
        for entry in rec["results"]:
            seconds = entry["seconds_per_step"]
            base = seconds[entry["baseline"]]
            med = statistics.median(seconds[method])
            ratios = [t / b for t, b in zip(seconds[method], base, strict=True)]
            q1, _, q3 = _quartiles(ratios)
            cells += [
                f"{med * 1e3:.2f}",
                _ratio(med / statistics.median(base)),
                f"{q1:.2f}–{q3:.2f}",
                str(entry.get("rejected_samples", {}).get(method, "—")),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def engine_overhead_table(rec: Record) -> str:
    """Each round's mean and median step of the hand-written loop and the engine, their ratios,
    and the median over rounds."""
    lines = [
        "| round | hand-written (ms / step, mean) | engine (ms / step, mean) | ratio of means "
        "| hand-written (median step, ms) | engine (median step, ms) | ratio of medians |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    means, medians = [], []
    for i, rnd in enumerate(rec["results"]["rounds"], 1):
        plain, engine = rnd["hand_written_step_seconds"], rnd["engine_step_seconds"]
        pm, em = statistics.fmean(plain), statistics.fmean(engine)
        pd, ed = statistics.median(plain), statistics.median(engine)
        means.append(em / pm)
        medians.append(ed / pd)
        lines.append(
            f"| {i} | {pm * 1e3:.2f} | {em * 1e3:.2f} | {em / pm:.3f} | {pd * 1e3:.2f} | "
            f"{ed * 1e3:.2f} | {ed / pd:.3f} |"
        )
    target = rec["settings"]["target"]
    lines.append(
        f"| median over rounds (target ≤ {target}) | | | **{statistics.median(means):.3f}** | | | "
        f"**{statistics.median(medians):.3f}** |"
    )
    return "\n".join(lines) + "\n"


def attention_table(records: dict[str, Record]) -> str:
    """The attention records (``benchmarks/attention.py``): per sequence length, mode and method,
    the median time, the median per-round ratio to SDPA, peak tensor memory and its ratio to SDPA's,
    and the fraction of zero weights."""
    lines = [
        "| record | L | mode | method | timing | time (s, median) | time / SDPA (median round) "
        "| peak memory (MiB) | memory / SDPA | zero weights |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, rec in records.items():
        for res in rec["results"]:
            for mode, entry in res["modes"].items():
                base = entry["methods"]["sdpa"]
                for method, m in entry["methods"].items():
                    ratio = statistics.median(
                        t / b for t, b in zip(m["seconds"], base["seconds"], strict=True)
                    )
                    zero = res["zero_fraction"].get(method.replace("_dense", ""))
                    lines.append(
                        f"| `{name}` | {res['length']} | {mode} | {method} | {entry['timing']} | "
                        f"{statistics.median(m['seconds']):.3g} | {_ratio(ratio)} | "
                        f"{m['peak_bytes'] / 2**20:.1f} | "
                        f"{_ratio(m['peak_bytes'] / max(base['peak_bytes'], 1))} | "
                        f"{'—' if zero is None else f'{zero:.1%}'} |"
                    )
    return "\n".join(lines) + "\n"


def decoding_table(rec: Record) -> str:
    """The decoding record (``benchmarks/decoding.py``), preceded by the command that wrote it: per
    batch size and normalizer, generated tokens per second of the median round, the per-round
    throughput over the baseline's (median, smallest–largest), and the mean number of attended
    source tokens (nonzero cross-attention weights per sentence, step, layer and head)."""
    git = rec.get("git") or {}
    commit = "—" if git.get("commit") is None else f"`{git['commit'][:10]}`"
    lines = [
        f"`{rec['command']}` (commit {commit}, {rec['date']}, {rec['torch_threads']} torch "
        f"thread{'s' if rec['torch_threads'] != 1 else ''}):",
        "",
        f"| batch | steps | normalizer | tokens / s (median round) | throughput / "
        f"{rec['settings']['baseline']} (median round) | smallest–largest round "
        "| attended source tokens |",
        "|---:|---:|---|---:|---:|---|---:|",
    ]
    for entry in rec["results"]:
        samples, baseline = entry["seconds_per_call"], entry["baseline"]
        for name, seconds in samples.items():
            ratios = [b / t for t, b in zip(seconds, samples[baseline], strict=True)]
            lines.append(
                f"| {entry['batch']} | {entry['steps']} | {name} | "
                f"{entry['tokens_per_call'] / statistics.median(seconds):.0f} | "
                f"{_ratio(statistics.median(ratios))} | {min(ratios):.2f}–{max(ratios):.2f} | "
                f"{entry['attended'][name]:.1f} |"
            )
    return "\n".join(lines) + "\n"


def _read(path: Path) -> Record:
    return json.loads(path.read_text())


def build(page: PageBuild) -> None:
    """Write every table from the records in ``<results>/benchmarks/``."""
    folder = page.source / page.name
    records = {
        name: _read(folder / f"{name}.json")
        for name in RECORDS
        if (folder / f"{name}.json").is_file()
    }
    attention = {p.stem: _read(p) for p in sorted(folder.glob("attention*.json"))}
    decoding = (
        {"decoding": _read(folder / "decoding.json")}
        if (folder / "decoding.json").is_file()
        else {}
    )
    page.table("runs", runs_table({**records, **attention, **decoding}))
    if "normalizers" in records:
        page.table("normalizers", normalizers_table(records["normalizers"]))
        page.table("normalizers-rounds", normalizers_rounds_table(records["normalizers"]))
        page.table("normalizers-targets", normalizers_targets_table(records["normalizers"]))
    else:
        for key in ("normalizers", "normalizers-rounds", "normalizers-targets"):
            page.table(key, _missing("normalizers", "normalizers"))
    page.table(
        "relaxations",
        relaxations_table(records["relaxations"])
        if "relaxations" in records
        else _missing("relaxations", "relaxations"),
    )
    page.table(
        "engine-overhead",
        engine_overhead_table(records["engine_overhead"])
        if "engine_overhead" in records
        else _missing("engine_overhead", "engine_overhead"),
    )
    page.table(
        "attention", attention_table(attention) if attention else _missing("attention", "attention")
    )
    page.table(
        "decoding",
        decoding_table(decoding["decoding"]) if decoding else _missing("decoding", "decoding"),
    )


PAGE = PAGES.add(
    "benchmarks",
    Page(
        name="benchmarks",
        description="speed and memory against torch's own, from the kept benchmark records",
        build=build,
        results="docs",
    ),
)
