"""Temperature selection of ``igr-vae`` on the validation split: one short run per (relaxation, τ).

The IGR paper fixes one temperature per relaxation, chosen on a validation set (Potapczynski,
Loaiza-Ganem and Cunningham, *Invertible Gaussian Reparameterization: Revisiting the
Gumbel-Softmax*, NeurIPS 2020). :func:`select_temperature` trains one run of the ``select`` budget
per point of the grid and keeps, for each relaxation, the τ with the highest ``valid/iw_bound``
(the test split is never looked at). A choice on the grid's edge is no choice: the grid is extended
beyond that edge (×1.5 above, ÷1.5 below, :func:`next_temperature`) until the best value is strictly
inside, at most ``max_extensions`` times, and the selection fails loudly if it is still on the edge.
``simplexity select-temperature`` runs it::

    simplexity select-temperature --dataset mnist --net nonlinear --out runs/igr
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simplexity._checks import check_int
from simplexity_lab.engine.runner import run
from simplexity_lab.engine.runs import write_json_atomic
from simplexity_lab.experiments.igr_vae import EXPERIMENT, RELAXATIONS

__all__ = [
    "TEMPERATURE_GRID",
    "TemperatureOnEdgeError",
    "choose_temperature",
    "next_temperature",
    "select_temperature",
]

TEMPERATURE_GRID: tuple[float, ...] = (0.03, 0.05, 0.1, 0.15, 0.25, 0.5, 0.67)
"""The validation grid for τ (the paper's range 0.03–0.67)."""


class TemperatureOnEdgeError(ValueError):
    """The best temperature is still on its grid's edge after every allowed extension."""


def next_temperature(scores: dict[float, float], factor: float = 1.5) -> float | None:
    """The next temperature to try, or ``None`` when the best finite score is strictly inside the grid.

    Non-finite scores (diverged runs) never win. The grid is extended past the edge the best value
    sits on: ``best * factor`` above, ``best / factor`` below (two significant digits).

    Example:
        >>> next_temperature({0.5: -165.3, 0.67: -164.9})
        1.0
        >>> next_temperature({0.03: -140.5, 0.05: -137.8, 0.1: -148.8}) is None
        True
        >>> next_temperature({0.03: -140.5, 0.05: -141.0})
        0.02
    """
    finite = {t: v for t, v in scores.items() if math.isfinite(v)}
    if not finite:
        raise ValueError(f"every temperature diverged: {scores}")
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    best = max(finite, key=finite.__getitem__)
    grid = sorted(scores)
    if best == grid[-1]:
        return float(f"{best * factor:.2g}")
    if best == grid[0]:
        return float(f"{best / factor:.2g}")
    return None


def choose_temperature(scores: dict[float, float]) -> tuple[float, bool]:
    """The temperature with the best finite score, and whether it lies strictly inside the grid.

    Example:
        >>> choose_temperature({0.5: -165.3, 0.67: -164.9, 1.0: -163.3, 1.5: -169.8})
        (1.0, True)
        >>> choose_temperature({0.5: -165.3, 0.67: -164.9})
        (0.67, False)
    """
    finite = {t: v for t, v in scores.items() if math.isfinite(v)}
    if not finite:
        raise ValueError(f"every temperature diverged: {scores}")
    return max(finite, key=finite.__getitem__), next_temperature(scores) is None


def select_temperature(
    *,
    dataset: str = "mnist",
    net: str = "nonlinear",
    relaxations: Sequence[str] = RELAXATIONS,
    grid: Sequence[float] = TEMPERATURE_GRID,
    budget: str = "select",
    overrides: Sequence[str] = (),
    out: str | Path = "runs",
    data_dir: str | None = None,
    resume: bool = True,
    max_extensions: int = 3,
) -> dict[str, Any]:
    """Train one ``budget`` run per (relaxation, τ) and pick τ by ``valid/iw_bound``, strictly inside.

    Each relaxation's grid is extended (:func:`next_temperature`) while its best τ is on an edge, at
    most ``max_extensions`` times; :class:`TemperatureOnEdgeError` is raised (after the record is
    written, with ``on_edge`` listing the relaxations) if a best τ is still on its grid's edge.
    Runs go to ``out/igr-vae-select-<dataset>-<net>/<relaxation>-tau=<τ>/`` (resumed if they
    exist); the choice is written to ``selected_temperature.json`` there and returned as
    ``{"selected": {relaxation: τ}, "scores": {relaxation: {τ: valid/iw_bound}}, ...}``.
    """
    for relaxation in relaxations:
        if relaxation not in RELAXATIONS:
            raise ValueError(
                f"relaxation must be one of {', '.join(RELAXATIONS)}, got {relaxation!r}"
            )
    if not grid or any(not t > 0 for t in grid):
        raise ValueError(f"grid must hold positive temperatures, got {list(grid)}")
    max_extensions = check_int("max_extensions", max_extensions, min=0)
    root = Path(out) / f"igr-vae-select-{dataset}-{net}"

    def score(relaxation: str, tau: float) -> float:
        name = f"{relaxation}-tau={tau:g}"
        sets = [f"dataset={dataset}", f"net={net}", f"relaxation={relaxation}",
                f"temperature={tau!r}", *overrides]  # fmt: skip
        done = root / name / "metrics.json"
        if resume and done.exists():
            return json.loads(done.read_text())["metrics"].get("valid/iw_bound", math.nan)
        result = run(EXPERIMENT, budget=budget, overrides=sets, out=root, name=name,
                     data_dir=data_dir, resume=resume, progress_bar=False)  # fmt: skip
        assert result is not None
        return result.metrics.get("valid/iw_bound", math.nan)  # absent: diverged

    scores: dict[str, dict[str, float]] = {}
    selected: dict[str, float] = {}
    on_edge: list[str] = []
    for relaxation in relaxations:
        values = {float(tau): score(relaxation, float(tau)) for tau in grid}
        for _ in range(max_extensions):
            tau = next_temperature(values)
            if tau is None or tau in values:
                break
            values[tau] = score(relaxation, tau)
        if not any(math.isfinite(v) for v in values.values()):
            raise ValueError(f"every temperature diverged for {relaxation}: {values}")
        selected[relaxation], inside = choose_temperature(values)
        if not inside:
            on_edge.append(relaxation)
        scores[relaxation] = {f"{t:g}": values[t] for t in sorted(values)}
    record = {"dataset": dataset, "net": net, "budget": budget, "criterion": "valid/iw_bound",
              "grid": list(grid), "selected": selected, "scores": scores,
              "on_edge": on_edge}  # fmt: skip
    write_json_atomic(root / "selected_temperature.json", record)
    if on_edge:
        raise TemperatureOnEdgeError(
            "the best temperature is on its grid's edge for "
            + ", ".join(
                f"{r} (τ = {selected[r]:g} of {sorted(map(float, scores[r]))})" for r in on_edge
            )
            + f" after {max_extensions} extension(s); extend the grid with --grid"
        )
    return record
