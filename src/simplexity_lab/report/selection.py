"""Temperature selections recomputed from kept ``igr-vae`` runs, and their markdown table.

The IGR and estimators pages both show, for each relaxation, the temperature that the kept selection
runs pick with the rule of ``simplexity select-temperature``
(:func:`~simplexity_lab.experiments.temperature_selection.choose_temperature`).
"""

from __future__ import annotations

import math
from typing import Any

from simplexity_lab.experiments.temperature_selection import choose_temperature

__all__ = ["SELECTION_PREFIX", "selection_table", "selections"]

SELECTION_PREFIX = "igr-vae-select-"
"""The folder of a temperature selection (its runs get their own table)."""


def selections(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The temperature each kept selection picks, per (data set, net, relaxation).

    Recomputed from the kept selection runs with the rule of ``simplexity select-temperature``
    (:func:`~simplexity_lab.experiments.temperature_selection.choose_temperature`: the best
    ``valid/iw_bound``, and whether it lies strictly inside the temperatures run).
    """
    scores: dict[tuple[str, str, str], dict[float, float]] = {}
    for r in records:
        c = r["config"]
        key = (c["dataset"], c["net"], c["relaxation"])
        tau = float(c["temperature"])
        scores.setdefault(key, {})[tau] = r["metrics"].get("valid/iw_bound", math.nan)
    out = {}
    for key, values in sorted(scores.items()):
        tau, inside = choose_temperature(values)
        out[key] = {"temperature": tau, "inside": inside, "score": values[tau],
                    "grid": sorted(values)}  # fmt: skip
    return out


def selection_table(chosen: dict[tuple[str, str, str], dict[str, Any]]) -> str:
    """The markdown table of :func:`selections`: the grid run, the choice and whether it is inside."""
    lines = [
        "| dataset | net | relaxation | temperatures run | selected τ | valid/iw_bound | strictly inside |",
        "|---|---|---|---|---|---|---|",
    ]
    for (dataset, net, relaxation), c in chosen.items():
        grid = ", ".join(f"{t:g}" for t in c["grid"])
        inside = "yes" if c["inside"] else "**no: on the edge**"
        lines.append(f"| {dataset} | {net} | {relaxation} | {grid} | {c['temperature']:g} | "
                     f"{c['score']:.4g} | {inside} |")  # fmt: skip
    return "\n".join(lines) + "\n"
