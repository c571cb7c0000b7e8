"""The estimators results page (``docs/results/estimators.md``): the gradient-quality tables.

``gradient-quality-runs`` (embedded in the page) lists the kept runs; ``gradient-quality.md`` beside the page holds every kept ``gradient-quality`` run's tables (each
method at its least biased temperature, then the full temperature grids), written by
:func:`simplexity_lab.experiments.gradient_quality.report` from ``estimators/runs/gradient-quality/``.

References:
    Liu, Zhao, Wang, Zhao, Chen, Gao. "Bridging Discrete and Backpropagation: Straight-Through and
    Beyond", NeurIPS 2023.
    Paulus, Maddison, Krause. "Rao-Blackwellizing the Straight-Through Gumbel-Softmax Gradient
    Estimator", ICLR 2021.
"""

from __future__ import annotations

import json

from simplexity_lab.experiments.gradient_quality import report
from simplexity_lab.report.page import PAGES, Page, PageBuild

__all__ = ["PAGE"]

_ORDER = {"toy": 0, "vae": 1}


def build(page: PageBuild) -> None:
    """Write ``gradient-quality.md`` from the kept runs (the toy first, then the VAEs by size)."""
    folder = page.runs / "gradient-quality"
    records = {p.parent: json.loads(p.read_text()) for p in sorted(folder.glob("*/metrics.json"))}
    runs = sorted(
        records,
        key=lambda run: (
            _ORDER.get(records[run]["config"]["model"], 2),
            records[run]["config"]["num_categories"],
            run.name,
        ),
    )
    if not runs:
        return
    rows = [
        "| run | model | N × K | training steps | S | M | test images |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        c = records[run]["config"]
        images = c["num_points"] if c["model"] != "toy" else "—"
        rows.append(
            f"| `{run.name}` | {c['model']} | {c['num_variables']} × {c['num_categories']} | "
            f"{c['steps']} | {c['evaluations']} | {c['estimates']} | {images} |"
        )
    page.table("gradient-quality-runs", "\n".join(rows) + "\n")
    names = " ".join(f"`{run.name}`" for run in runs)
    header = (
        "# gradient-quality: every table, with the temperature grids\n\n"
        f"Written by `simplexity report estimators` from the kept runs {names} in "
        "[`runs/gradient-quality/`](runs/gradient-quality/); the page "
        "[../estimators.md](../estimators.md) explains the setup and the metrics. Grid cells: "
        "cosine / rel. bias, then rel. variance of one estimate of S evaluations.\n\n"
    )
    page.table("gradient-quality", header + report(runs) + "\n")


PAGE = PAGES.add(
    "estimators",
    Page(
        name="estimators",
        description="gradient estimators for categorical latents against the exact gradient",
        build=build,
    ),
)
