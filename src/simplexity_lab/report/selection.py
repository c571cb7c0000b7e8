"""Temperature selections recomputed from kept selection runs, and their markdown table.

The IGR and estimators pages both show, for each relaxation, the temperature that the kept selection
runs (``igr-vae``'s, ``sop``'s) pick with the rule of ``simplexity select-temperature``
(:func:`~simplexity_lab.experiments.temperature_selection.choose_temperature` on the experiment's
criterion, :data:`~simplexity_lab.experiments.temperature_selection.CRITERIA`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from simplexity_lab.experiments.temperature_selection import CRITERIA, choose_temperature

__all__ = ["SELECTION_PREFIX", "is_selection", "selection_table", "selections"]

SELECTION_PREFIX = "igr-vae-select-"
"""The folder of an ``igr-vae`` temperature selection (its runs get their own table)."""


def is_selection(record: dict[str, Any]) -> bool:
    """Whether a kept run is a selection run: its folder is ``<experiment>-select-...``."""
    return Path(record["_path"]).parent.name.startswith(f"{record['experiment']}-select-")


def selections(
    records: list[dict[str, Any]], experiment: str = "igr-vae"
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The temperature each kept selection picks, per (data set, net, relaxation).

    Recomputed from the kept selection runs of ``experiment`` with the rule of ``simplexity
    select-temperature`` (:func:`~simplexity_lab.experiments.temperature_selection.choose_temperature`:
    the best value of the experiment's criterion, e.g. the highest ``valid/iw_bound``, and whether
    it lies strictly inside the temperatures run). ``net`` is ``"—"`` for an experiment without one.
    """
    criterion, direction = CRITERIA[experiment]
    sign = 1.0 if direction == "max" else -1.0
    scores: dict[tuple[str, str, str], dict[float, float]] = {}
    for r in records:
        c = r["config"]
        key = (c["dataset"], c.get("net", "—"), c["relaxation"])
        tau = float(c["temperature"])
        scores.setdefault(key, {})[tau] = r["metrics"].get(criterion, math.nan)
    out = {}
    for key, values in sorted(scores.items()):
        tau, inside = choose_temperature({t: sign * v for t, v in values.items()})
        out[key] = {"temperature": tau, "inside": inside, "score": values[tau],
                    "grid": sorted(values)}  # fmt: skip
    return out


def selection_table(
    chosen: dict[tuple[str, str, str], dict[str, Any]], experiment: str = "igr-vae"
) -> str:
    """The markdown table of :func:`selections`: the grid run, the choice and whether it is inside."""
    criterion = CRITERIA[experiment][0]
    lines = [
        f"| dataset | net | relaxation | temperatures run | selected τ | {criterion} | strictly inside |",
        "|---|---|---|---|---|---|---|",
    ]
    for (dataset, net, relaxation), c in chosen.items():
        grid = ", ".join(f"{t:g}" for t in c["grid"])
        inside = "yes" if c["inside"] else "**no: on the edge**"
        lines.append(f"| {dataset} | {net} | {relaxation} | {grid} | {c['temperature']:g} | "
                     f"{c['score']:.4g} | {inside} |")  # fmt: skip
    return "\n".join(lines) + "\n"
