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

__all__ = ["NO_NET", "is_selection", "selection_table", "selections"]

NO_NET = "—"
"""The ``net`` of a selection key for an experiment without one (``sop``)."""


def is_selection(experiment: str | None, run: str | Path) -> bool:
    """Whether the run in folder ``run`` is a temperature-selection run of ``experiment``: its parent
    folder is ``<experiment>-select-...`` (as ``simplexity select-temperature`` names it)."""
    return Path(run).parent.name.startswith(f"{experiment}-select-")


def selections(
    records: list[dict[str, Any]], experiment: str = "igr-vae"
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The temperature each kept selection picks, per (data set, net, relaxation).

    Recomputed from the kept selection runs of ``experiment`` with the rule of ``simplexity
    select-temperature`` (:func:`~simplexity_lab.experiments.temperature_selection.choose_temperature`:
    the best value of the experiment's criterion, e.g. the highest ``valid/iw_bound``, and whether
    it lies strictly inside the temperatures run). ``net`` is :data:`NO_NET` for an experiment without one.
    """
    criterion, direction = CRITERIA[experiment]
    scores: dict[tuple[str, str, str], dict[float, float]] = {}
    for r in records:
        c = r["config"]
        key = (c["dataset"], c.get("net", NO_NET), c["relaxation"])
        tau = float(c["temperature"])
        scores.setdefault(key, {})[tau] = r["metrics"].get(criterion, math.nan)
    out = {}
    for key, values in sorted(scores.items()):
        tau, inside = choose_temperature(values, direction=direction)
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
