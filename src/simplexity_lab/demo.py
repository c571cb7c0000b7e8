"""``simplexity demo``: the three papers on built-in data, in a few minutes on two CPU cores.

1. **IGR** — the discrete VAE (N categorical latents × 10 categories) on scikit-learn's 8×8 digits
   with the Gumbel-softmax, IGR-I and IGR-SB; importance-weighted bound on the discrete model.
2. **Evidential softmax** — the CVAE's even/odd task on digits with softmax, sparsemax,
   entmax-1.5 and ev-softmax: how many digits each prior keeps and its distance to the true prior.
3. **Mixture bases for flows** — a coupling flow with a Gaussian vs a mixture-of-Gaussians base on
   eight Gaussians.
4. The normalizer tour (what each normalizer keeps of a bimodal set of logits; the padding defect).

Each model is an experiment of :mod:`simplexity_lab.experiments` at its ``demo`` budget, trained with
the plain loop of :mod:`simplexity_lab.engine.loop` (no Lightning needed). Prints one table and writes
``report.md`` and PNG plots under ``out``; the report says which command reproduces each result at
paper scale.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["run_demo"]

VAE_RELAXATIONS = ("gumbel_softmax", "igr_i", "igr_sb")
CVAE_NORMALIZERS = ("softmax", "sparsemax", "entmax15", "ev_softmax")
FLOW_BASES = ("gaussian", "mixture")
LABELS = {"gumbel_softmax": "Gumbel-softmax", "igr_i": "IGR-I", "igr_sb": "IGR-SB",
          "softmax": "softmax", "sparsemax": "sparsemax", "entmax15": "entmax-1.5",
          "ev_softmax": "ev-softmax", "gaussian": "Gaussian base", "mixture": "mixture base (8)"}  # fmt: skip
QUICK = {"steps": 6, "val_every": 3, "eval_size": 60, "classifier_steps": 20}


def _train(experiment: str, overrides: dict[str, Any], quick: bool, data_dir: str | None):
    from simplexity_lab import experiments
    from simplexity_lab.engine.config import config_fields
    from simplexity_lab.engine.loop import evaluate_seeded, train_plain

    exp = experiments.get(experiment)
    fields = config_fields(exp.config_class)
    extra = {k: v for k, v in QUICK.items() if k in fields} if quick else {}
    if quick and experiment == "vae":
        extra["eval_samples"] = 10
    config = exp.make_config("demo", overrides, extra)
    torch.manual_seed(config.seed)
    task = exp.build(config, data_dir=data_dir)
    history: list[dict[str, Any]] = []
    info = train_plain(task, on_eval=lambda step, m: history.append({"step": step, "metrics": m}))
    metrics = evaluate_seeded(task, "test")
    return task, metrics, history, info["train_time_s"]


def _command(experiment: str, key: str, value: str) -> str:
    return f"simplexity run {experiment} --budget paper --set {key}={value} --set seed=S"


def run_demo(
    out: str | Path = "runs/demo",
    *,
    seed: int = 0,
    quick: bool = False,
    data_dir: str | None = None,
    echo: bool = True,
) -> Path:
    """Run the demo; returns the path of ``report.md``.

    Args:
        out: output folder (``report.md`` and ``*.png``).
        seed: the seed of every model.
        quick: a few steps per model (for tests); the numbers then mean nothing.
        data_dir: unused by the built-in data; passed to the data registry.
        echo: print the progress and the table.
    """
    from simplexity_lab import plots
    from simplexity_lab.tour import normalizer_tour

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = print if echo else (lambda *a, **k: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fastest for these small models, and no fight over shared cores
    start = time.perf_counter()
    rows: list[tuple[str, str, str, str, str]] = []
    try:
        # 1. discrete VAE -------------------------------------------------------------------
        say("[1/3] discrete VAE on digits: Gumbel-softmax vs IGR-I vs IGR-SB", flush=True)
        vae_rows, image_rows, image_labels, curves = [], [], [], {}
        for name in VAE_RELAXATIONS:
            task, m, history, seconds = _train(
                "vae", {"relaxation": name, "seed": seed}, quick, data_dir
            )
            x = task.splits["test"].data[:10]
            if not image_rows:
                image_rows.append(x.reshape(-1, 8, 8))
                image_labels.append("data")
            image_rows.append(task.model.reconstruct(x).reshape(-1, 8, 8))
            image_labels.append(f"{LABELS[name]} recon.")
            image_rows.append(task.model.sample(10, x).reshape(-1, 8, 8))
            image_labels.append(f"{LABELS[name]} samples")
            curves[LABELS[name]] = ([h["step"] for h in history],
                                    [h["metrics"]["valid/iw_bound"] for h in history])  # fmt: skip
            vae_rows.append((name, m, seconds, task.config.temperature))
            rows.append(("IGR", "discrete VAE, digits", LABELS[name],
                         f"IW bound {m['test/iw_bound']:.2f} nats", _command("vae", "relaxation", name)))  # fmt: skip
        plots.image_rows(image_rows, image_labels, title="discrete VAE on 8×8 digits").savefig(
            out / "vae_reconstructions.png", dpi=110
        )
        plots.curves(curves, ylabel="valid IW bound (nats)", title="discrete VAE").savefig(
            out / "vae_training.png", dpi=110
        )

        # 2. CVAE even/odd ------------------------------------------------------------------
        say("[2/3] CVAE even/odd on digits: softmax, sparsemax, entmax-1.5, ev-softmax", flush=True)
        cvae_rows, bars, targets, distance, latent = [], {}, {}, {}, {}
        for name in CVAE_NORMALIZERS:
            task, m, history, seconds = _train(
                "cvae", {"normalizer": name, "seed": seed}, quick, data_dir
            )
            report = task.prior_report()
            for i, query in enumerate(("even", "odd")):
                bars[f"{LABELS[name]}, y={query}"] = report["marginal"][i]
                latent[f"{LABELS[name]}, y={query}"] = report["prior"][i]
                targets[f"{LABELS[name]}, y={query}"] = task.targets[i]
            distance[LABELS[name]] = ([h["step"] for h in history],
                                      [h["metrics"]["valid/tv"] for h in history])  # fmt: skip
            cvae_rows.append((name, m, seconds))
            rows.append(("ev-softmax", "CVAE even/odd, digits", LABELS[name],
                         f"prior keeps {m['test/prior_support']:.1f} of 10 classes, "
                         f"{m['test/digits_kept']:.1f} digits; TV {m['test/tv']:.3f}",
                         _command("cvae", "normalizer", name)))  # fmt: skip
        plots.prior_bars(latent, xlabel="latent class z",
                         title="the priors p(z | y) over the 10 latent classes (exact zeros: no bar)").savefig(
            out / "cvae_latent_priors.png", dpi=110)  # fmt: skip
        plots.prior_bars(bars, xlabel="digit", targets=targets, count_nonzero=False,
                         title="p(digit | y) = Σ_z p(z | y) classifier(decode(z)) (red outline: the true prior)").savefig(
            out / "cvae_priors.png", dpi=110)  # fmt: skip
        plots.curves(distance, ylabel="TV to the true prior", title="CVAE prior").savefig(
            out / "cvae_distance.png", dpi=110
        )

        # 3. flows on eight Gaussians -------------------------------------------------------
        say("[3/3] flows on eight Gaussians: Gaussian vs mixture base", flush=True)
        flow_rows, grids, points = [], {}, None
        for base in FLOW_BASES:
            task, m, history, seconds = _train(
                "flow2d", {"base": base, "seed": seed}, quick, data_dir
            )
            grids[LABELS[base]] = task.density_grid()
            points = task.splits["test"].data[:2000]
            flow_rows.append((base, m, seconds))
            rows.append(("mixture bases", "coupling flow, 8 Gaussians", LABELS[base],
                         f"test log-lik. {m['test/log_likelihood']:.3f} nats",
                         _command("flow2d", "base", base)))  # fmt: skip
        plots.densities(grids, points=points, title="flow densities on eight Gaussians").savefig(
            out / "flow_densities.png", dpi=110
        )
        tour = normalizer_tour(seed=seed)
    finally:
        torch.set_num_threads(threads)
    elapsed = time.perf_counter() - start

    table = [
        "| paper | model | method | result | reproduce at paper scale |",
        "|---|---|---|---|---|",
    ]
    table += [f"| {a} | {b} | {c} | {d} | `{e}` |" for a, b, c, d, e in rows]
    say("\n# simplexity demo\n")
    say("\n".join(table))
    report = _report(table, vae_rows, cvae_rows, flow_rows, tour, elapsed, seed, quick)
    path = out / "report.md"
    path.write_text(report)
    say(f"\nreport: {path}  (plots: {', '.join(sorted(p.name for p in out.glob('*.png')))})")
    say(f"finished in {elapsed:.0f} s")
    return path


def _report(table, vae_rows, cvae_rows, flow_rows, tour, elapsed, seed, quick) -> str:
    lines = [
        "# simplexity demo",
        "",
        f"Built-in data only (scikit-learn's 8×8 digits, generated 2-D points); seed {seed}; "
        f"{elapsed:.0f} s on this machine."
        + (" **Quick mode: the numbers mean nothing.**" if quick else ""),
        "Small models at the `demo` budget: the table shows the trends, the commands reproduce the "
        "papers' setups (`--budget paper`, real MNIST from `--data-dir`; run seeds S = 0…4 and "
        "aggregate them with `simplexity table runs/`).",
        "",
        *table,
        "",
        "## 1. Discrete VAE: Gumbel-softmax vs IGR (Potapczynski et al. 2020)",
        "",
        "Latents: categorical variables × 10 categories, relaxed for training; evaluated with the "
        "importance-weighted bound on the *discrete* model (higher is better), which is a valid "
        "lower bound on log p(x) (the IGR reference code's test number is not).",
        "",
        "| relaxation | τ | test IW bound (nats) | test relaxed −ELBO | train time (s) |",
        "|---|---|---|---|---|",
    ]
    for name, m, seconds, tau in vae_rows:
        lines.append(
            f"| {LABELS[name]} | {tau} | {m['test/iw_bound']:.3f} | {m['test/loss']:.3f} | {seconds:.1f} |"
        )
    lines += [
        "",
        "![reconstructions and samples](vae_reconstructions.png)",
        "",
        "![validation bound during training](vae_training.png)",
        "",
        "## 2. CVAE even/odd: which digits does each prior keep? (Chen et al. 2021)",
        "",
        "The prior p(z | y) over 10 latent classes is normalized with each map; decoding each class "
        "and classifying it gives p(digit | y). The true prior is uniform over the five digits of "
        "the query's parity. *kept*: digits with mass ≥ 0.05; *support*: nonzero latent classes; "
        "TV and W1 (digits as the support) to the true prior; the reference code's metric treats "
        "probabilities as sample values and scores any 5-way uniform 0, even on the wrong digits "
        "(shown for comparison only).",
        "",
        "| normalizer | digits kept | prior support | mass on right parity | TV | W1 | reference-code metric |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m, _seconds in cvae_rows:
        lines.append(
            f"| {LABELS[name]} | {m['test/digits_kept']:.1f} | {m['test/prior_support']:.1f} | "
            f"{m['test/correct_mass']:.3f} | {m['test/tv']:.3f} | {m['test/w1']:.3f} | {m['test/paper_w1']:.3f} |"
        )
    lines += [
        "",
        "![priors over latent classes](cvae_latent_priors.png)",
        "",
        "![priors over digits](cvae_priors.png)",
        "",
        "![distance during training](cvae_distance.png)",
        "",
        "## 3. Flows on eight Gaussians: Gaussian vs mixture base (Stimper et al. 2022)",
        "",
        "| base | test log-likelihood (nats) | train time (s) |",
        "|---|---|---|",
    ]
    for base, m, seconds in flow_rows:
        lines.append(f"| {LABELS[base]} | {m['test/log_likelihood']:.3f} | {seconds:.1f} |")
    lines += ["", "![densities](flow_densities.png)", "", "## 4. Normalizer tour", "", tour]
    return "\n".join(lines) + "\n"
