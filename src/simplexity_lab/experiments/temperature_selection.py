"""Temperature selection on the validation split: one short run per (relaxation, τ).

The IGR paper fixes one temperature per relaxation, chosen on a validation set (Potapczynski,
Loaiza-Ganem and Cunningham, *Invertible Gaussian Reparameterization: Revisiting the
Gumbel-Softmax*, NeurIPS 2020). :func:`select_temperature` trains one run of the ``select`` budget
per point of the grid and keeps, for each relaxation, the τ with the best validation criterion
(:data:`CRITERIA`: ``igr-vae``'s highest ``valid/iw_bound``, ``sop``'s lowest ``valid/nll``; the
test split is never looked at). A choice on the grid's edge is no choice: the grid is extended
beyond that edge (×1.5 above, ÷1.5 below, :func:`next_temperature`) until the best value is strictly
inside, at most ``max_extensions`` times, and the selection fails loudly if it is still on the edge.
``simplexity select-temperature`` runs it::

    simplexity select-temperature --dataset mnist --net nonlinear --out runs/igr
    simplexity select-temperature --experiment sop --relaxations gumbel_softmax,igr_i --out runs/igr
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
from simplexity_lab.experiments.sop import EXPERIMENT as SOP_EXPERIMENT
from simplexity_lab.models.sop import BINARY_RELAXATIONS

__all__ = [
    "CRITERIA",
    "TEMPERATURE_GRID",
    "TemperatureOnEdgeError",
    "choose_temperature",
    "next_temperature",
    "select_temperature",
]

TEMPERATURE_GRID: tuple[float, ...] = (0.03, 0.05, 0.1, 0.15, 0.25, 0.5, 0.67)
"""The validation grid for τ (the paper's range 0.03–0.67)."""


CRITERIA: dict[str, tuple[str, str]] = {
    "igr-vae": ("valid/iw_bound", "max"),
    "sop": ("valid/nll", "min"),
}
"""The validation criterion of each experiment whose temperature can be selected, and its direction."""

_EXPERIMENTS = {"igr-vae": (EXPERIMENT, RELAXATIONS), "sop": (SOP_EXPERIMENT, BINARY_RELAXATIONS)}


class TemperatureOnEdgeError(ValueError):
    """The best temperature is still on its grid's edge after every allowed extension."""


def _best(scores: dict[float, float], direction: str) -> float:
    """The temperature of the best finite score (highest for ``"max"``, lowest for ``"min"``)."""
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")
    finite = {t: v for t, v in scores.items() if math.isfinite(v)}
    if not finite:
        raise ValueError(f"every temperature diverged: {scores}")
    return (max if direction == "max" else min)(finite, key=finite.__getitem__)


def next_temperature(
    scores: dict[float, float], factor: float = 1.5, *, direction: str = "max"
) -> float | None:
    """The next temperature to try, or ``None`` when the best finite score is strictly inside the grid.

    The best score is the highest (``direction="max"``, e.g. a bound) or the lowest (``"min"``, e.g.
    an NLL). Non-finite scores (diverged runs) never win. The grid is extended past the edge the
    best value sits on: ``best * factor`` above, ``best / factor`` below (two significant digits).

    Example:
        >>> next_temperature({0.5: -165.3, 0.67: -164.9})
        1.0
        >>> next_temperature({0.03: -140.5, 0.05: -137.8, 0.1: -148.8}) is None
        True
        >>> next_temperature({0.03: -140.5, 0.05: -141.0})
        0.02
        >>> next_temperature({0.03: 75.0, 0.05: 75.9}, direction="min")
        0.02
    """
    best = _best(scores, direction)
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    grid = sorted(scores)
    if best == grid[-1]:
        return float(f"{best * factor:.2g}")
    if best == grid[0]:
        return float(f"{best / factor:.2g}")
    return None


def choose_temperature(scores: dict[float, float], *, direction: str = "max") -> tuple[float, bool]:
    """The temperature with the best finite score, and whether it lies strictly inside the grid.

    Example:
        >>> choose_temperature({0.5: -165.3, 0.67: -164.9, 1.0: -163.3, 1.5: -169.8})
        (1.0, True)
        >>> choose_temperature({0.5: -165.3, 0.67: -164.9})
        (0.67, False)
        >>> choose_temperature({0.01: 75.6, 0.015: 74.8, 0.022: 74.9}, direction="min")
        (0.015, True)
    """
    return _best(scores, direction), next_temperature(scores, direction=direction) is None


def select_temperature(
    *,
    experiment: str = "igr-vae",
    dataset: str | None = None,
    net: str | None = None,
    relaxations: Sequence[str] | None = None,
    grid: Sequence[float] = TEMPERATURE_GRID,
    budget: str = "select",
    overrides: Sequence[str] = (),
    out: str | Path = "runs",
    data_dir: str | None = None,
    resume: bool = True,
    max_extensions: int = 3,
) -> dict[str, Any]:
    """Train one ``budget`` run per (relaxation, τ) and pick τ by the validation criterion, strictly inside.

    ``experiment`` is ``"igr-vae"`` (criterion ``valid/iw_bound``, highest; ``dataset`` defaults
    to ``mnist`` and ``net`` to ``nonlinear``) or ``"sop"`` (``valid/nll``, lowest; ``dataset``
    defaults to ``binarized_mnist``, no ``net``); ``relaxations`` default to all of the
    experiment's. Each relaxation's grid is extended (:func:`next_temperature`) while its best τ is
    on an edge, at most ``max_extensions`` times; :class:`TemperatureOnEdgeError` is raised (after
    the record is written, with ``on_edge`` listing the relaxations) if a best τ is still on its
    grid's edge. Runs go to ``out/<experiment>-select-<dataset>[-<net>]/<relaxation>-tau=<τ>/``
    (resumed if they exist); the choice is written to ``selected_temperature.json`` there and
    returned as ``{"selected": {relaxation: τ}, "scores": {relaxation: {τ: criterion}}, ...}``.
    """
    if experiment not in _EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(_EXPERIMENTS)}, got {experiment!r}")
    exp, known = _EXPERIMENTS[experiment]
    criterion, direction = CRITERIA[experiment]
    settings = {"dataset": dataset or exp.config_class.dataset}
    if experiment == "igr-vae":
        settings["net"] = net or "nonlinear"
    elif net is not None:
        raise ValueError(f"net applies to igr-vae only, got net={net!r} for {experiment}")
    relaxations = known if relaxations is None else relaxations
    for relaxation in relaxations:
        if relaxation not in known:
            raise ValueError(f"relaxation must be one of {', '.join(known)}, got {relaxation!r}")
    if not grid or any(not t > 0 for t in grid):
        raise ValueError(f"grid must hold positive temperatures, got {list(grid)}")
    max_extensions = check_int("max_extensions", max_extensions, min=0)
    root = Path(out) / "-".join((f"{experiment}-select", *settings.values()))

    def score(relaxation: str, tau: float) -> float:
        name = f"{relaxation}-tau={tau:g}"
        sets = [*(f"{k}={v}" for k, v in settings.items()), f"relaxation={relaxation}",
                f"temperature={tau!r}", *overrides]  # fmt: skip
        done = root / name / "metrics.json"
        if resume and done.exists():
            metrics = json.loads(done.read_text())["metrics"]
        else:
            result = run(exp, budget=budget, overrides=sets, out=root, name=name,
                         data_dir=data_dir, resume=resume, progress_bar=False)  # fmt: skip
            assert result is not None
            metrics = result.metrics
        return metrics.get(criterion, math.nan)  # absent: diverged

    scores: dict[str, dict[str, float]] = {}
    selected: dict[str, float] = {}
    on_edge: list[str] = []
    for relaxation in relaxations:
        values = {float(tau): score(relaxation, float(tau)) for tau in grid}
        for _ in range(max_extensions):
            tau = next_temperature(values, direction=direction)
            if tau is None or tau in values:
                break
            values[tau] = score(relaxation, tau)
        if not any(math.isfinite(v) for v in values.values()):
            raise ValueError(f"every temperature diverged for {relaxation}: {values}")
        selected[relaxation], inside = choose_temperature(values, direction=direction)
        if not inside:
            on_edge.append(relaxation)
        scores[relaxation] = {f"{t:g}": values[t] for t in sorted(values)}
    record = {"experiment": experiment, **settings, "budget": budget, "criterion": criterion,
              "direction": direction, "grid": list(grid), "selected": selected,
              "scores": scores, "on_edge": on_edge}  # fmt: skip
    _write_merged(root / "selected_temperature.json", record)
    if on_edge:
        raise TemperatureOnEdgeError(
            "the best temperature is on its grid's edge for "
            + ", ".join(
                f"{r} (τ = {selected[r]:g} of {sorted(map(float, scores[r]))})" for r in on_edge
            )
            + f" after {max_extensions} extension(s); extend the grid with --grid"
        )
    return record


def _write_merged(path: Path, record: dict[str, Any]) -> None:
    """Write ``record``, keeping the selections an earlier call made here for other relaxations
    (one folder, one file, whatever grid each relaxation was given)."""
    if path.is_file():
        earlier = json.loads(path.read_text())
        for key in ("selected", "scores"):
            record[key] = {**{r: v for r, v in earlier.get(key, {}).items() if r not in record[key]},
                           **record[key]}  # fmt: skip
        kept = [r for r in earlier.get("on_edge", []) if r not in record["scores"]]
        record["on_edge"] = kept + [r for r in record["on_edge"] if r not in kept]
    write_json_atomic(path, record)
