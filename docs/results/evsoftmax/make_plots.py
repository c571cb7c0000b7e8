"""Figures of docs/results/evsoftmax.md from the runs under runs/evsoftmax (see queue.sh).

    .venv/bin/python docs/results/evsoftmax/make_plots.py [RUNS_DIR]

Writes cvae_{paper,reference}_{tv,paper_w1}.png (mean ± s.e. over seeds of the validation metrics
over iterations, one curve per normalizer) and copies the seed-0 plots of each run family (CVAE priors,
VQ-VAE samples, translation cross-attention) when they are under 300 KB. Keeps the results of every
finished run (metrics.json, config.json, run.json, history.jsonl; no checkpoints) under runs/ next to
this script, and writes the tables cvae-paper.md, cvae-reference.md, ssvae.md, vqvae.md,
translation.md from them (the same as `simplexity table docs/results/evsoftmax/runs/NAME-* --metrics ...`)
and into docs/results/evsoftmax.md between its table markers.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

from simplexity_lab import plots
from simplexity_lab.engine.table import collect, embed_table, markdown_table, seed_mean

HERE = Path(__file__).parent
NORMS = ("softmax", "sparsemax", "entmax15", "ev_softmax")


def _history(run: Path) -> dict[int, dict[str, float]]:
    out = {}
    for line in (run / "history.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "valid/tv" in row["metrics"]:
            out[row["step"]] = row["metrics"]
    return out


def cvae_curves(runs: Path) -> None:
    for budget in ("paper", "reference"):
        for key, label in (("tv", "TV to the true p(digit | y)"), ("paper_w1", "reference metric")):
            series = {}
            for norm in NORMS:
                histories = [_history(r) for r in sorted(runs.glob(f"cvae-{budget}-{norm}-s*"))
                             if (r / "history.jsonl").exists()]  # fmt: skip
                if not histories:
                    continue
                curves = [{s: m[f"valid/{key}"] for s, m in h.items()} for h in histories]
                series[f"{norm} ({len(histories)} seeds)"] = seed_mean(curves)
            if series:
                fig = plots.curves(series, ylabel=label, title=f"CVAE, {budget} budget")
                fig.savefig(HERE / f"cvae_{budget}_{key}.png", dpi=90)


KEPT = ("metrics.json", "config.json", "run.json", "history.jsonl")


def keep_results(runs: Path) -> None:
    kept = 0
    for run in sorted(runs.iterdir()):
        if not (run / "metrics.json").is_file():
            continue  # unfinished
        dst = HERE / "runs" / run.name
        dst.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            if (run / name).is_file():
                shutil.copyfile(run / name, dst / name)
        kept += 1
    print(f"kept the results of {kept} finished runs in {HERE / 'runs'}")


TABLES = {  # file: (run-name pattern, metrics); the same as `simplexity table` on the kept runs
    "cvae-paper": ("cvae-paper-*", "test/tv,test/w1,test/paper_w1,test/prior_support,test/digits_kept,test/posterior_support"),
    "cvae-reference": ("cvae-reference-*", "test/tv,test/w1,test/paper_w1,test/prior_support,test/digits_kept,test/posterior_support"),
    "ssvae": ("ssvae-*", "test/accuracy,test/decoder_calls"),
    "vqvae": ("vqvae-*", "test/accuracy_top1,test/accuracy_topk,test/nonzero"),
    "translation": ("translation-*", "test/bleu,test/attended"),
}  # fmt: skip


def tables() -> None:
    """One markdown table per experiment from the kept results (mean ± s.e. over seeds)."""
    kept = HERE / "runs"
    for name, (pattern, metrics) in TABLES.items():
        runs = sorted(r for r in kept.glob(pattern) if (r / "metrics.json").is_file())
        if runs:
            text = markdown_table(collect(runs), metrics.split(","))
            (HERE / f"{name}.md").write_text(text)
            print(f"{name}.md: {len(runs)} runs")


def fill_page(page: Path = HERE.parent / "evsoftmax.md") -> None:
    """Put each table into the results page between its ``<!-- begin table NAME -->`` and
    ``<!-- end table NAME -->`` markers (the text around them is written by hand)."""
    for name in TABLES:
        table = HERE / f"{name}.md"
        if table.is_file():
            embed_table(page, name, table.read_text())


def copy_plots(runs: Path) -> None:
    wanted = defaultdict(list)
    for run in sorted(runs.glob("*-s0")):
        for name in ("priors.png", "samples.png", "cross_attention.png"):
            path = run / "plots" / name
            if path.exists() and path.stat().st_size < 300_000:
                shutil.copyfile(path, HERE / f"{run.name}-{name}")
                wanted[run.name].append(name)
    print(json.dumps(wanted, indent=1))


if __name__ == "__main__":
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/evsoftmax")
    keep_results(runs)
    tables()
    fill_page()
    cvae_curves(runs)
    copy_plots(runs)
