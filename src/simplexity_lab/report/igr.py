"""The IGR results page (``docs/results/igr.md``): its tables and figures from the kept runs.

Tables (mean ± s.e. over seeds, as ``simplexity table``): one per experiment — ``igr-vae`` (the
runs at their data set's selected temperature; ``igr-vae-other`` holds the rest),
``igr-vae-select`` (the temperature-selection runs), ``discrete-approx``, ``sop`` (likewise, with
``sop-other`` and ``sop-select``) and ``relaxation-timing`` — and ``igr-vae-selected`` and
``sop-selected``, the temperature each kept selection picks and whether it lies strictly inside the
temperatures run. Figures: the validation IW bound of ``igr-vae`` against steps (mean ± s.e.
over seeds, one panel per data set and one figure per net) and the discretized-sample pmf of
``discrete-approx`` against its target. When runs are kept, the seed-0 reconstructions of
``igr-vae`` and predictions of ``sop`` are copied to ``igr/samples/``.

References:
    Potapczynski, Loaiza-Ganem and Cunningham, *Invertible Gaussian Reparameterization:
    Revisiting the Gumbel-Softmax*, NeurIPS 2020.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from simplexity_lab.engine.table import collect, markdown_table, seed_mean
from simplexity_lab.experiments.discrete_approx import target_pmf
from simplexity_lab.experiments.igr_vae import RELAXATIONS
from simplexity_lab.report.page import PAGES, Page, PageBuild
from simplexity_lab.report.selection import NO_NET, is_selection, selection_table, selections

__all__ = ["METRICS", "PAGE"]

METRICS: dict[str, tuple[str, ...]] = {
    "igr-vae": ("test/iw_bound", "test/relaxed_elbo", "test/reference_not_a_bound",
                "time/train_epoch_s"),
    "discrete-approx": ("test/tv", "test/target_mass_outside", "test/categories_used",
                        "test/support_at_threshold", "test/threshold_met"),
    "igr-vae-select": ("valid/iw_bound", "valid/relaxed_elbo"),
    "sop": ("test/nll", "test/nll_relaxed"),
    "sop-select": ("valid/nll", "valid/nll_relaxed"),
    "relaxation-timing": tuple(f"test/{r}_{m}" for m in ("ms", "ratio") for r in RELAXATIONS),
}  # fmt: skip
"""The table columns of each experiment of the page."""


def _table_key(record: dict[str, Any]) -> str:
    selection = is_selection(record["experiment"], record["_path"])
    return record["experiment"] + ("-select" if selection else "")


def _temperature(record: dict[str, Any]) -> float:
    return float(record["config"]["temperature"])


def _at_selected(
    record: dict[str, Any], chosen: dict[tuple[str, str, str], dict[str, Any]]
) -> bool:
    """Whether a run used its data set's selected τ (for the VAE, the nonlinear net's selection
    serves both nets)."""
    c = record["config"]
    net = "nonlinear" if "net" in c else NO_NET
    pick = chosen.get((c["dataset"], net, c["relaxation"]))
    return pick is not None and abs(_temperature(record) - pick["temperature"]) < 1e-12


def build(page: PageBuild) -> None:
    """Write the page's tables and figures from the kept runs.

    The VAE runs at their data set's selected τ form the ``igr-vae`` table; runs at any other τ
    (the first selection's, made on MNIST alone) form ``igr-vae-other``.
    """
    by_table: dict[str, list[dict[str, Any]]] = {}
    for record in collect([page.runs]):
        by_table.setdefault(_table_key(record), []).append(record)
    for experiment in ("igr-vae", "sop"):
        chosen = selections(by_table.get(f"{experiment}-select", []), experiment)
        if not chosen:
            continue
        page.table(f"{experiment}-selected", selection_table(chosen, experiment))
        for r in by_table.pop(experiment, []):
            key = experiment if _at_selected(r, chosen) else f"{experiment}-other"
            by_table.setdefault(key, []).append(r)
    for key, members in sorted(by_table.items()):
        kind = key.removesuffix("-other")
        metrics = [m for m in METRICS.get(kind, ()) if any(m in r["metrics"] for r in members)]
        page.table(key, markdown_table(members, metrics or None))
    if page.figures:
        _vae_curves(page, by_table.get("igr-vae", []))
        _discrete_approx(page, by_table.get("discrete-approx", []))


def _history(run: Path, metric: str) -> dict[int, float] | None:
    path = run / "history.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return {row["step"]: row["metrics"][metric] for row in rows}


def _vae_curves(page: PageBuild, records: list[dict[str, Any]]) -> None:
    """Validation IW bound against steps, mean ± s.e. over seeds, one panel per data set."""
    from simplexity_lab.plots import curve_panels

    for net in ("nonlinear", "linear"):
        members = [r for r in records if r["config"]["net"] == net]
        datasets = sorted({r["config"]["dataset"] for r in members})
        if not datasets:
            continue
        panels = {}
        for dataset in datasets:
            series = {}
            for relaxation in RELAXATIONS:
                curves = []
                for r in members:
                    c = r["config"]
                    if c["dataset"] == dataset and c["relaxation"] == relaxation:
                        curve = _history(Path(r["_path"]), "valid/iw_bound")
                        if curve is not None:
                            curves.append(curve)
                if curves:
                    series[f"{relaxation} ({len(curves)} seeds)"] = seed_mean(curves)
            panels[f"{dataset}, {net}"] = series
        fig = curve_panels(panels, ylabel="valid IW bound (nats)")
        page.figure(f"igr_vae_curves_{net}.png", fig, dpi=80)


def _discrete_approx(page: PageBuild, records: list[dict[str, Any]]) -> None:
    """The pmf of discretized samples against the target, one figure per target."""
    from simplexity_lab.plots import pmf_panels

    for target in sorted({r["config"]["target"] for r in records}):
        members = sorted(
            (r for r in records if r["config"]["target"] == target and "summary" in r),
            key=lambda r: (r["config"]["relaxation"], r["config"]["num_categories"]),
        )
        if not members:
            continue
        reach = max(len(r["summary"]["discretized_pmf"]) for r in members)
        truth = target_pmf(target, reach).numpy()
        bulk = (truth > 1e-4).nonzero()[0]
        last = min(reach, int(bulk.max()) + 2) if len(bulk) else reach
        panels = {}
        for r in members:
            c, m = r["config"], r["metrics"]
            name = "IGR-SB" if c["relaxation"] == "igr_sb" else f"GS, K = {c['num_categories']}"
            title = f"{name}: TV {m['test/tv']:.3f}, n = {m['test/categories_used']:.0f}"
            panels[title] = r["summary"]["discretized_pmf"]
        fig = pmf_panels(panels, truth[:last], title=target)
        slug = target.replace(":", "_").replace(".", "p")
        page.figure(f"discrete_approx_{slug}.png", fig, dpi=80)


def snapshot(record: dict[str, Any], run: Path, folder: Path) -> list[Path]:
    """Copy the seed-0 sample plots of a run being kept to ``samples/``."""
    c = record.get("config", {})
    if c.get("seed") != 0 or is_selection(record.get("experiment"), run):
        return []
    if record.get("experiment") == "igr-vae":
        src, name = (
            run / "plots" / "reconstructions.png",
            (f"{c['dataset']}-{c['net']}-{c['relaxation']}.png"),
        )
    elif record.get("experiment") == "sop":
        src, name = run / "plots" / "predictions.png", f"sop-{c['relaxation']}.png"
    else:
        return []
    if not src.is_file():
        return []
    dst = folder / "samples" / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return [dst]


PAGE = PAGES.add(
    "igr",
    Page(
        name="igr",
        description="IGR paper: Gumbel-softmax vs IGR-I/Planar/SB (VAE, discrete approximation, "
        "SOP, timing)",
        build=build,
        snapshot=snapshot,
    ),
)
