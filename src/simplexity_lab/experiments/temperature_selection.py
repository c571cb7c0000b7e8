"""Temperature selection of ``igr-vae`` on the validation split: one short run per (relaxation, τ).

The IGR paper fixes one temperature per relaxation, chosen on a validation set (Potapczynski,
Loaiza-Ganem and Cunningham, *Invertible Gaussian Reparameterization: Revisiting the
Gumbel-Softmax*, NeurIPS 2020). :func:`select_temperature` trains one run of the ``select`` budget
per point of the grid and keeps, for each relaxation, the τ with the highest ``valid/iw_bound``
(the test split is never looked at). ``simplexity select-temperature`` runs it::

    simplexity select-temperature --dataset mnist --net nonlinear --out runs/igr
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simplexity_lab.engine.runner import run
from simplexity_lab.engine.runs import write_json_atomic
from simplexity_lab.experiments.igr_vae import EXPERIMENT, RELAXATIONS

__all__ = ["TEMPERATURE_GRID", "select_temperature"]

TEMPERATURE_GRID: tuple[float, ...] = (0.03, 0.05, 0.1, 0.15, 0.25, 0.5, 0.67)
"""The validation grid for τ (the paper's range 0.03–0.67)."""


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
) -> dict[str, Any]:
    """Train one ``budget`` run per (relaxation, τ) and pick τ by ``valid/iw_bound``.

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
    root = Path(out) / f"igr-vae-select-{dataset}-{net}"
    scores: dict[str, dict[str, float]] = {}
    for relaxation in relaxations:
        scores[relaxation] = {}
        for tau in grid:
            name = f"{relaxation}-tau={tau:g}"
            sets = [f"dataset={dataset}", f"net={net}", f"relaxation={relaxation}",
                    f"temperature={tau!r}", *overrides]  # fmt: skip
            done = root / name / "metrics.json"
            if resume and done.exists():
                metrics = json.loads(done.read_text())["metrics"]
            else:
                result = run(EXPERIMENT, budget=budget, overrides=sets, out=root, name=name,
                             data_dir=data_dir, resume=resume, progress_bar=False)  # fmt: skip
                assert result is not None
                metrics = result.metrics
            scores[relaxation][f"{tau:g}"] = metrics["valid/iw_bound"]
    selected = {}
    for relaxation, values in scores.items():
        finite = {t: v for t, v in values.items() if math.isfinite(v)}  # a diverged run never wins
        if not finite:
            raise ValueError(f"every temperature diverged for {relaxation}: {values}")
        selected[relaxation] = float(max(finite, key=finite.__getitem__))
    record = {"dataset": dataset, "net": net, "budget": budget, "criterion": "valid/iw_bound",
              "grid": list(grid), "selected": selected, "scores": scores}  # fmt: skip
    write_json_atomic(root / "selected_temperature.json", record)
    return record
