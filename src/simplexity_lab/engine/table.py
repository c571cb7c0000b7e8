"""Aggregate the ``metrics.json`` of many runs into a markdown table: mean ± s.e. over seeds.

Runs are grouped by experiment and config without the seed; each row is labelled with the config
values that differ between groups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from simplexity_lab.engine.config import config_defaults
from simplexity_lab.engine.experiment import EXPERIMENTS
from simplexity_lab.engine.runs import read_json

__all__ = ["collect", "embed_table", "format_mean_se", "markdown_table", "mean_se", "seed_mean"]


def collect(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The records of ``metrics.json`` files: each path is a run directory, a file, or a parent
    searched recursively."""
    records = []
    defaults: dict[str, dict[str, Any] | None] = {}
    for path in paths:
        path = Path(path)
        if path.is_file():
            files = [path]
        elif (path / "metrics.json").is_file():
            files = [path / "metrics.json"]
        elif path.is_dir():
            files = sorted(path.rglob("metrics.json"))
        else:
            raise FileNotFoundError(f"{str(path)!r} is neither a run directory nor a metrics.json")
        for f in files:
            record = read_json(f)
            if not isinstance(record, dict) or "metrics" not in record:
                raise ValueError(f"{f} is not a simplexity metrics.json")
            record["_path"] = str(f.parent)
            _fill_defaults(record, defaults)
            records.append(record)
    if not records:
        raise FileNotFoundError(f"no metrics.json under {', '.join(map(str, paths))}")
    return records


def _fill_defaults(record: dict[str, Any], cache: dict[str, dict[str, Any] | None]) -> None:
    """Give a record written before a config key existed that key's default (experiments in
    ``EXPERIMENTS`` only), so that it groups with newer runs of the same config. ``cache`` holds
    the defaults per experiment name (``None``: not registered)."""
    name = record.get("experiment")
    if name not in cache:
        known = name in EXPERIMENTS
        cache[name] = config_defaults(EXPERIMENTS[name].config_class) if known else None
    defaults = cache[name]
    if defaults is None or "config" not in record:
        return
    record["config"] = {**{k: v for k, v in defaults.items() if k not in record["config"]},
                        **record["config"]}  # fmt: skip


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (n−1 in the variance; 0 for one value).

    Example:
        >>> mean_se([1.0, 2.0, 3.0])
        (2.0, 0.5773502691896257)
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_se needs at least one value, got none")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def format_mean_se(values: Sequence[float]) -> str:
    """``mean ± s.e.`` (standard error of the mean, n−1 in the variance); one value: ``x``.

    Example:
        >>> format_mean_se([1.0, 2.0, 3.0])
        '2 ± 0.58'
    """
    mean, se = mean_se(values)
    return f"{mean:.4g}" if len(values) == 1 else f"{mean:.4g} ± {se:.2g}"


def seed_mean(runs: Sequence[Mapping[Any, float]]) -> tuple[list[Any], list[float], list[float]]:
    """A curve over seeds: ``(steps, mean, s.e.)`` from one ``{step: value}`` mapping per run.

    Only the steps every run has are kept; ``plots.curves`` draws the result as ``y ± s.e.``.

    Example:
        >>> seed_mean([{0: 1.0, 1: 2.0}, {0: 3.0, 1: 2.0, 2: 5.0}])
        ([0, 1], [2.0, 2.0], [1.0, 0.0])
    """
    if not runs:
        raise ValueError("seed_mean needs at least one run (a {step: value} mapping), got none")
    steps = sorted(set.intersection(*(set(r) for r in runs)))
    stats = [mean_se([r[s] for r in runs]) for s in steps]
    return steps, [m for m, _ in stats], [e for _, e in stats]


def _key(record: dict[str, Any]) -> tuple:
    config = {k: v for k, v in record.get("config", {}).items() if k != "seed"}
    return (record.get("experiment"), tuple(sorted((k, repr(v)) for k, v in config.items())))


def markdown_table(records: Sequence[dict[str, Any]], metrics: Sequence[str] | None = None) -> str:
    """The markdown table of ``records`` (see the module docstring).

    Args:
        records: from :func:`collect`.
        metrics: the metric columns (default: every ``test/`` metric, else every metric).
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(_key(record), []).append(record)
    configs = [dict(key[1]) for key in groups]
    varying = sorted({k for c in configs for k in c if any(c.get(k) != d.get(k) for d in configs)})
    if metrics is None:
        names = sorted({m for r in records for m in r["metrics"]})
        metrics = [m for m in names if m.startswith("test/")] or names
    header = ["experiment", *varying, "seeds", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, members in groups.items():
        config = dict(key[1])
        cells = [str(key[0])]
        cells += [str(eval_repr(config.get(k, "—"))) for k in varying]
        cells.append(str(len(members)))
        for m in metrics:
            values = [r["metrics"][m] for r in members if m in r["metrics"]]
            cells.append(format_mean_se(values) if values else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def eval_repr(text: str) -> Any:
    """Undo ``repr`` of a plain config value for display (strings lose their quotes)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def embed_table(page: str | Path, name: str, table: str) -> bool:
    r"""Write ``table`` into the markdown file ``page`` between the lines ``<!-- begin table NAME -->``
    and ``<!-- end table NAME -->``, replacing what was there; the text around is left alone.

    Returns whether the markers were found (the page is not written otherwise).

    Example:
        >>> import tempfile
        >>> page = Path(tempfile.mkdtemp()) / "results.md"
        >>> _ = page.write_text("Intro\n<!-- begin table t -->\nold\n<!-- end table t -->\nOutro\n")
        >>> embed_table(page, "t", "| a |\n|---|\n| 1 |\n")
        True
        >>> print(page.read_text())
        Intro
        <!-- begin table t -->
        | a |
        |---|
        | 1 |
        <!-- end table t -->
        Outro
        <BLANKLINE>
    """
    page = Path(page)
    text = page.read_text()
    begin, end = f"<!-- begin table {name} -->", f"<!-- end table {name} -->"
    if begin not in text or end not in text.split(begin, 1)[1]:
        return False
    head, rest = text.split(begin, 1)
    body = table if table.endswith("\n") else table + "\n"
    page.write_text(head + begin + "\n" + body + end + rest.split(end, 1)[1])
    return True
