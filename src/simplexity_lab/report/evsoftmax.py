"""The ev-softmax results page (``docs/results/evsoftmax.md``): its tables and figures from the kept
runs.

Tables (mean ± s.e. over seeds, as ``simplexity table``): ``cvae-paper``, ``cvae-reference``,
``ssvae``, ``vqvae``, ``translation``, and ``translation-diagnostics`` from the
``translation_diagnostics.json`` kept beside each translation run (written by
``docs/results/evsoftmax/translation_diagnostics.py``, which needs the runs' checkpoints).
Figures: the CVAE's validation distances over iterations, mean ± s.e. over seeds, one curve per
normalizer. When runs are kept, the seed-0 plots of each run family (CVAE priors, VQ-VAE samples,
translation cross-attention) are copied beside the page.

References:
    Chen, Tsang, Itkina and Kochenderfer, *Evidential Softmax for Sparse Multimodal Distributions
    in Deep Generative Models*, NeurIPS 2021.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simplexity_lab.engine.table import collect, markdown_table, seed_mean
from simplexity_lab.report.page import PAGES, Page, PageBuild, copy_plots

__all__ = ["DIAGNOSTICS", "PAGE", "TABLES"]

NORMALIZERS = ("softmax", "sparsemax", "entmax15", "ev_softmax")

_CVAE = ("test/tv", "test/w1", "test/paper_w1", "test/prior_support", "test/digits_kept",
         "test/posterior_support")  # fmt: skip
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cvae-paper": ("cvae-paper-*", _CVAE),
    "cvae-reference": ("cvae-reference-*", _CVAE),
    "ssvae": ("ssvae-*", ("test/accuracy", "test/decoder_calls")),
    "vqvae": ("vqvae-*", ("test/accuracy_top1", "test/accuracy_topk", "test/nonzero")),
    "translation": ("translation-*", ("test/bleu", "test/attended")),
}
"""Each table: the kept runs' name pattern and the metric columns."""

DIAGNOSTICS = "translation_diagnostics.json"
"""The file of measurements kept beside a translation run."""

DIAGNOSTICS_COLUMNS = ("test/bleu", "tf_accuracy", "p_reference", "output_support", "repeats")

SNAPSHOTS = ("priors.png", "samples.png", "cross_attention.png")
"""The seed-0 plots copied when a run is kept (if under 300 KB)."""


def build(page: PageBuild) -> None:
    """Write the page's tables and figures from the kept runs."""
    for key, (pattern, metrics) in TABLES.items():
        runs = sorted(r for r in page.runs.glob(pattern) if (r / "metrics.json").is_file())
        if runs:
            page.table(key, markdown_table(collect(runs), metrics))
    kept = sorted(page.runs.glob(f"translation-*/{DIAGNOSTICS}"))
    if kept:
        records = collect([f.parent for f in kept])
        for record, f in zip(records, kept, strict=True):
            record["metrics"] = json.loads(f.read_text())
        page.table("translation-diagnostics", markdown_table(records, DIAGNOSTICS_COLUMNS))
    if page.figures:
        _cvae_curves(page)


def _history(run: Path) -> dict[int, dict[str, float]]:
    out = {}
    for line in (run / "history.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "valid/tv" in row["metrics"]:
            out[row["step"]] = row["metrics"]
    return out


def _cvae_curves(page: PageBuild) -> None:
    """The CVAE's validation distances over iterations, one figure per budget and distance."""
    from simplexity_lab.plots import curves

    for budget in ("paper", "reference"):
        for key, label in (("tv", "TV to the true p(digit | y)"), ("paper_w1", "reference metric")):
            series = {}
            for norm in NORMALIZERS:
                runs = sorted(page.runs.glob(f"cvae-{budget}-{norm}-s*"))
                histories = [_history(r) for r in runs if (r / "history.jsonl").exists()]
                if histories:
                    values = [{s: m[f"valid/{key}"] for s, m in h.items()} for h in histories]
                    series[f"{norm} ({len(histories)} seeds)"] = seed_mean(values)
            if series:
                fig = curves(series, ylabel=label, title=f"CVAE, {budget} budget")
                page.figure(f"cvae_{budget}_{key}.png", fig, dpi=90)


def snapshot(record: dict[str, Any], run: Path, folder: Path) -> list[Path]:
    """Copy the seed-0 plots of a run being kept beside the page (``<run>-<plot>.png``)."""
    if record.get("config", {}).get("seed") != 0:
        return []
    return copy_plots(run, folder, SNAPSHOTS, f"{run.name}-")


PAGE = PAGES.add(
    "evsoftmax",
    Page(
        name="evsoftmax",
        description="ev-softmax paper: CVAE, SSVAE, VQ-VAE, translation",
        build=build,
        snapshot=snapshot,
    ),
)
