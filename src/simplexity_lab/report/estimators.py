"""The estimators results page (``docs/results/estimators.md``): gradient quality and the MNIST VAE.

``gradient-quality-runs`` (embedded in the page) lists the kept runs; ``gradient-quality.md`` beside
the page holds every kept ``gradient-quality`` run's tables (each method at its least biased
temperature, then the full temperature grids), written by
:func:`simplexity_lab.experiments.gradient_quality.report` from ``estimators/runs/gradient-quality/``.

``vae-<config>-selected`` and ``vae-<config>`` (one pair per latent configuration of
``docs/results/estimators/run_vae.sh``) are the ``igr-vae`` temperature selections and the test
results of the runs at the selected temperature: the kept runs ``estimators/runs/select-<config>/``
and ``estimators/runs/vae-<config>/``, and for IGR's 20 × 10 also the IGR page's MNIST selection and
``short`` runs of the four relaxations (``igr/runs/``: the same experiment, budget and rule), which
are not run twice.

References:
    Liu, Zhao, Wang, Zhao, Chen, Gao. "Bridging Discrete and Backpropagation: Straight-Through and
    Beyond", NeurIPS 2023.
    Paulus, Maddison, Krause. "Rao-Blackwellizing the Straight-Through Gumbel-Softmax Gradient
    Estimator", ICLR 2021.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simplexity_lab.engine.table import collect, format_mean_se
from simplexity_lab.experiments.gradient_quality import report
from simplexity_lab.report.page import PAGES, Page, PageBuild
from simplexity_lab.report.selection import is_selection, selection_table, selections

__all__ = ["PAGE", "VAE_CONFIGS", "VAE_METRICS"]

VAE_CONFIGS: dict[str, tuple[int, int]] = {
    "igr-20x10": (20, 10),
    "reinmax-8x4": (4, 8),
    "reinmax-4x24": (24, 4),
}
"""The latent configurations of the VAE table: name -> (variables, categories), as ``run_vae.sh``."""

VAE_METRICS: tuple[str, ...] = ("test/iw_bound", "test/relaxed_elbo")
"""The VAE table's columns: the discrete model's test IW bound and the training objective on the test
set (the relaxed ELBO; the categorical one for the straight-through estimators). Not the time: the
runs share the machine with other queues (``relaxation-timing`` on the IGR page measures it)."""

_ORDER = {"toy": 0, "vae": 1}


def build(page: PageBuild) -> None:
    """Write the gradient-quality and the VAE tables from the kept runs."""
    _gradient_quality(page)
    _vae(page)


def _vae_records(page: PageBuild) -> list[dict[str, Any]]:
    """The kept ``igr-vae`` runs of this page, and the IGR page's MNIST nonlinear 20 × 10 ones."""
    records = [r for r in _collect(page.runs) if r["experiment"] == "igr-vae"]
    for r in _collect(page.source / "igr" / "runs"):
        c = r["config"]
        if (r["experiment"] == "igr-vae" and c["dataset"] == "mnist" and c["net"] == "nonlinear"
                and (is_selection(r["experiment"], r["_path"]) or r["budget"] == "short")):  # fmt: skip
            records.append(r)
    return records


def _collect(folder: Path) -> list[dict[str, Any]]:
    return collect([folder]) if folder.is_dir() and any(folder.rglob("metrics.json")) else []


def _method(record: dict[str, Any]) -> str:
    """The estimator a run trained with: its score-function estimator, else its relaxation."""
    estimator = record["config"].get("estimator", "pathwise")
    return record["config"]["relaxation"] if estimator == "pathwise" else estimator


def _vae(page: PageBuild) -> None:
    """One selection table and one result table per configuration that has kept runs.

    A result row is a method at its selected temperature (the score-function estimators, which use
    none, always), mean ± s.e. over its seeds.
    """
    records = _vae_records(page)
    for name, shape in VAE_CONFIGS.items():
        mine = [r for r in records
                if (r["config"]["num_variables"], r["config"]["num_categories"]) == shape]  # fmt: skip
        chosen_runs = [r for r in mine if "select" in Path(r["_path"]).parent.name]
        if not chosen_runs:
            continue
        chosen = selections(chosen_runs)
        page.table(f"vae-{name}-selected", selection_table(chosen))
        rows: dict[str, list[dict[str, Any]]] = {}
        for r in mine:
            c, method = r["config"], _method(r)
            if "select" in Path(r["_path"]).parent.name:
                continue
            if method in SCORE_FUNCTION:
                rows.setdefault(method, []).append(r)
                continue
            pick = chosen.get((c["dataset"], c["net"], c["relaxation"]))
            if pick is not None and abs(float(c["temperature"]) - pick["temperature"]) < 1e-12:
                rows.setdefault(method, []).append(r)
        if rows:
            page.table(f"vae-{name}", _vae_table(rows))


SCORE_FUNCTION = ("rloo", "reinforce")

_ORDER_METHODS = ("gumbel_softmax", "igr_i", "igr_planar", "igr_sb", "straight_through",
                  "st_gumbel", "gumbel_rao", "reinmax", "decoupled_st", *SCORE_FUNCTION)  # fmt: skip


def _vae_table(rows: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| method | τ | decoder evaluations per image and step | seeds | "
        + " | ".join(VAE_METRICS)
        + " |",
        "|---|---|---|---|" + "---|" * len(VAE_METRICS),
    ]
    for method in sorted(rows, key=_ORDER_METHODS.index):
        members = rows[method]
        c = members[0]["config"]
        tau = "—" if method in SCORE_FUNCTION else f"{float(c['temperature']):g}"
        evaluations = c.get("score_samples", 4) if method in SCORE_FUNCTION else 1
        values = [[r["metrics"][m] for r in members if m in r["metrics"]] for m in VAE_METRICS]
        cells = [format_mean_se(v) if v else "—" for v in values]  # — : every seed diverged
        lines.append(
            f"| {method} | {tau} | {evaluations} | {len(members)} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def _gradient_quality(page: PageBuild) -> None:
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
