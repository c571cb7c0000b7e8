"""The flows results page (``docs/results/flows.md``): its tables from the kept runs of the CLI.

One table per experiment (mean ± s.e. over seeds, as ``simplexity table``): ``flow2d`` (density
estimation with a Gaussian, mixture or RAD base), ``mixture-entropy`` and ``flow-objectives`` (the
sampling-based objectives) and ``maxent-dirichlet`` (the maximum-entropy check). The kept runs are
``flows/runs/<experiment>/<name>/``, as ``docs/results/flows/run_all.sh`` lays them out under
``runs/flows``. When runs are kept, the seed-0 plots of each run are copied beside the page.

References:
    Dinh, Sohl-Dickstein and Bengio, *Density estimation using Real NVP*, ICLR 2017.
    Dinh, Sohl-Dickstein, Pascanu and Larochelle, *A RAD Approach to Deep Mixture Models*, ICLR
    2019 workshop.
    Loaiza-Ganem, Gao and Cunningham, *Maximum Entropy Flow Networks*, ICLR 2017.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simplexity_lab.engine.table import collect, markdown_table
from simplexity_lab.report.page import PAGES, Page, PageBuild, copy_plots

__all__ = ["METRICS", "PAGE"]

METRICS: dict[str, tuple[str, ...]] = {
    "flow2d": ("test/log_likelihood", "test/nonfinite"),
    "mixture-entropy": ("test/truth", "test/truth_halfwidth", "test/gap_exact", "test/gap_joint",
                        *(f"test/gap_{e}_M{m}" for e in ("nested", "nested_own")
                          for m in (1, 16, 256))),
    "flow-objectives": ("test/estimate", "test/truth", "test/truth_halfwidth", "test/gap",
                        "test/residual_norm", "train/diverged_at_step"),
    "maxent-dirichlet": ("test/entropy", "test/entropy_gap", "test/residual_norm",
                         "test/kl_to_dirichlet"),
}  # fmt: skip
"""Each experiment's table columns."""


def build(page: PageBuild) -> None:
    """Write one table per experiment that has kept runs."""
    for experiment, metrics in METRICS.items():
        folder = page.runs / experiment
        if folder.is_dir() and any(folder.rglob("metrics.json")):
            page.table(experiment, markdown_table(collect([folder]), metrics))


def snapshot(record: dict[str, Any], run: Path, folder: Path) -> list[Path]:
    """Copy the seed-0 plots of a run being kept (``<experiment>-<run>-<plot>.png``)."""
    if record.get("config", {}).get("seed") != 0 or not (run / "plots").is_dir():
        return []
    names = sorted(p.name for p in (run / "plots").glob("*.png"))
    return copy_plots(run, folder, names, f"{record['experiment']}-{run.name}-")


PAGE = PAGES.add(
    "flows",
    Page(
        name="flows",
        description="mixture bases, RAD and maximum-entropy flows",
        build=build,
        snapshot=snapshot,
    ),
)
