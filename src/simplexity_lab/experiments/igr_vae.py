r"""``igr-vae``: the IGR paper's discrete VAE comparison (REFERENCE §2.3), built on ``vae``.

20 categorical variables × 10 categories on MNIST, Fashion-MNIST or Omniglot-28 (grey levels
binarized dynamically, Bernoulli decoder), ``relaxation=gumbel_softmax|igr_i|igr_planar|igr_sb``,
``net=linear|nonlinear``, Adam, batch 100, one sample, a fixed temperature. Metrics (nats, higher
is better unless said otherwise):

- ``test/iw_bound``: the importance-weighted bound on :math:`\log p(x)` of the *discrete* model
  (one-hot :math:`h`, discretized proposal; S = ``eval_samples``, 1000 at paper budget) — the valid
  number, see :meth:`~simplexity_lab.models.DiscreteVAE.iw_bound`;
- ``test/relaxed_elbo``: the relaxed ELBO at the training temperature (one sample);
- ``test/reference_not_a_bound``: the IGR reference code's test number
  :math:`\log\frac1S\sum_s p(x\mid h_s) - \mathrm{KL}(q\,\|\,p)` with :math:`h_s` the one-hot argmax
  of relaxed samples and the *relaxed* KL. It is **not** a bound on :math:`\log p(x)` (REFERENCE
  §2.3); reported only to compare with the paper's numbers;
- ``time/train_epoch_s``, ``time/train_step_ms``: median wall time of one training iteration
  (forward, backward, Adam step, data) times the steps of one epoch.

Temperature selection (the paper picks a fixed τ per relaxation on a validation split)::

    python -m simplexity_lab.experiments.igr_vae select --dataset mnist --net nonlinear

trains one short run (budget ``select``) per (relaxation, τ) of :data:`TEMPERATURE_GRID`, scores
each on ``valid/iw_bound`` (the validation split, never the test split) and writes
``runs/igr-vae-select-<dataset>-<net>/selected_temperature.json``; pass the chosen value with
``--set temperature=...``. ``python -m simplexity_lab.experiments.igr_vae report`` keeps the results of
the IGR runs (``runs/igr``) in ``docs/results/igr`` with tables and figures.

Usage::

    simplexity run igr-vae --budget smoke
    simplexity run igr-vae --budget paper --set dataset=fashion_mnist --set relaxation=igr_sb \
        --set temperature=0.1 --set seed=2
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from simplexity_lab.experiments.registry import Experiment, register
from simplexity_lab.experiments.vae import EXPERIMENT as VAE_EXPERIMENT
from simplexity_lab.experiments.vae import VAEConfig, VAETask

__all__ = [
    "RELAXATIONS",
    "TEMPERATURE_GRID",
    "IGRVAEConfig",
    "IGRVAETask",
    "main",
    "report",
    "select_temperature",
]

RELAXATIONS: tuple[str, ...] = ("gumbel_softmax", "igr_i", "igr_planar", "igr_sb")
"""The four relaxations the paper compares."""

TEMPERATURE_GRID: tuple[float, ...] = (0.03, 0.05, 0.1, 0.15, 0.25, 0.5, 0.67)
"""The validation grid for τ (the paper's range 0.03–0.67)."""


@dataclass(frozen=True)
class IGRVAEConfig(VAEConfig):
    """Config of ``igr-vae``: :class:`~simplexity_lab.experiments.vae.VAEConfig` plus these.

    Attributes:
        reference_samples: S of the reference code's (non-bound) test number.
    """

    dataset: str = "mnist"
    binarize: Literal["auto", "none", "dynamic"] = "dynamic"
    val_every: int = 2500
    reference_samples: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reference_samples < 1:
            raise ValueError(f"reference_samples must be >= 1, got {self.reference_samples}")


class IGRVAETask(VAETask):
    """:class:`~simplexity_lab.experiments.vae.VAETask` plus the relaxed ELBO, the reference code's
    number and the time per training iteration."""

    def __init__(self, config: IGRVAEConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config, data_dir=data_dir)
        self._tick: float | None = None
        self._step_times: list[float] = []

    def training_loss(self, batch, step):
        # the interval between consecutive calls is one full iteration (forward, backward, step)
        now = time.perf_counter()
        if self._tick is not None:
            self._step_times.append(now - self._tick)
        self._tick = now
        return super().training_loss(batch, step)

    def step_time(self) -> float | None:
        """Median seconds per training iteration so far (``None`` before two steps)."""
        if not self._step_times:
            return None
        return float(torch.tensor(self._step_times, dtype=torch.float64).median())

    @torch.no_grad()
    def reference_number(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        r"""The reference code's test number per example (not a bound; see the module doc)."""
        model = self.model
        tau = self.temperature(self.config.steps)
        q = model.posterior(x, tau)
        kl = model.kl(q, model.prior(tau, x)).sum(-1)
        terms = []
        for s in _chunks(num_samples, 50):
            z = q.rsample((s,))
            h = nn.functional.one_hot(z.argmax(-1), model.num_categories).to(x.dtype)
            terms.append(model.likelihood(h).log_prob(x))
        log_px = torch.logsumexp(torch.cat(terms), 0) - math.log(num_samples)
        return log_px - kl

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        out = super().evaluate(split)
        self._tick = None  # the next interval spans this evaluation: not an iteration
        out[f"{split}/relaxed_elbo"] = -out[f"{split}/loss"]
        if split == "test":
            x = self._eval_data(split)
            values = [self.reference_number(c, self.config.reference_samples) for c in x.split(500)]
            out["test/reference_not_a_bound"] = float(torch.cat(values).mean())
            step = self.step_time()
            if step is not None:
                per_epoch = len(self.train_split.data) // self.config.batch_size
                out["time/train_step_ms"] = 1000 * step
                out["time/train_epoch_s"] = step * per_epoch
        return out

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["timed_steps"] = len(self._step_times)
        out["reference_not_a_bound"] = (
            "test/reference_not_a_bound = logmeanexp_s log p(x|h_s) - KL: the IGR reference "
            "code's number, not a bound on log p(x)"
        )
        return out


def _chunks(total: int, size: int) -> list[int]:
    return [min(size, total - i) for i in range(0, total, size)]


_SMOKE = dict(VAE_EXPERIMENT.budgets["smoke"])

_EXPERIMENT = Experiment(
    name="igr-vae",
    description="IGR paper's discrete VAE: Gumbel-softmax vs IGR-I/Planar/SB, valid IW bound",
    config_class=IGRVAEConfig,
    task_class=IGRVAETask,
    budgets={
        "smoke": {**_SMOKE, "reference_samples": 4},
        # one point of the temperature grid: 6 epochs of MNIST, S = 20 on 2,000 validation images
        "select": {
            "steps": 3000,
            "val_every": 3000,
            "eval_size": 2000,
            "eval_samples": 200,
            "reference_samples": 10,
        },
        # the same for every method when the paper's epochs do not fit: 20 epochs of MNIST
        "reduced": {
            "steps": 10_000,
            "val_every": 2000,
            "lr": "3e-4",
            "eval_samples": 1000,
            "reference_samples": 100,
        },
        # what fits one session for all 48 runs: 6 epochs of MNIST (as ``select``), test S = 200
        "short": {
            "steps": 3000,
            "val_every": 1000,
            "eval_samples": 200,
            "reference_samples": 20,
        },
        # 100 epochs of MNIST / Fashion-MNIST (50,000 training images), S = 1000
        "paper": {
            "steps": 50_000,
            "lr": "3e-4",
            "eval_samples": 1000,
            "reference_samples": 100,
        },
    },
    paper_command=(
        "simplexity run igr-vae --budget paper --set dataset=DATASET --set relaxation=R "
        "--set net=nonlinear --set temperature=TAU --set seed=S"
    ),
)
# run as ``python -m``, this file is __main__ and the package import has registered it already
EXPERIMENT = register(_EXPERIMENT) if __name__ != "__main__" else _EXPERIMENT


def main(config: IGRVAEConfig, **run_options: Any) -> Any:
    """Run the experiment with ``config`` (options of :func:`simplexity_lab.engine.run_config`)."""
    from simplexity_lab.engine.runner import run_config

    return run_config("igr-vae", config, **run_options)


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
    from simplexity_lab.engine.runner import run

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
                result = run("igr-vae", budget=budget, overrides=sets, out=root, name=name,
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
    from simplexity_lab.engine.runs import write_json_atomic

    write_json_atomic(root / "selected_temperature.json", record)
    return record


REPORT_METRICS: dict[str, tuple[str, ...]] = {
    "igr-vae": ("test/iw_bound", "test/relaxed_elbo", "test/reference_not_a_bound",
                "time/train_epoch_s"),
    "discrete-approx": ("test/tv", "test/target_mass_outside", "test/categories_used",
                        "test/support_at_threshold", "test/threshold_met"),
    "igr-vae-select": ("valid/iw_bound", "valid/relaxed_elbo"),
    "sop": ("test/nll", "test/nll_relaxed"),
    "relaxation-timing": tuple(f"test/{r}_{m}" for m in ("ms", "ratio") for r in RELAXATIONS),
}  # fmt: skip
"""The table columns of each IGR experiment in :func:`report`."""

_KEPT_FILES = ("metrics.json", "config.json", "run.json", "history.jsonl")


def report(runs: str | Path = "runs/igr", out: str | Path = "docs/results/igr") -> list[Path]:
    """Keep the results of the IGR runs under ``runs`` and write tables and figures to ``out``.

    Copies ``metrics.json``, ``config.json``, ``run.json`` and ``history.jsonl`` of every finished
    run (no checkpoints) to ``out/runs/...`` (characters Windows does not allow in paths, such as
    ``:``, become ``_``), writes one markdown table per experiment
    (``out/<experiment>.md``, mean ± s.e. over seeds, as ``simplexity table``; also into the page
    ``out.md`` between its ``<!-- begin table <experiment> -->`` markers) and the figures:
    validation curves of ``igr-vae``, the histograms of ``discrete-approx``, and copies of a few
    sample plots. Returns the files written.
    """
    import shutil

    from simplexity_lab.engine.table import collect, embed_table, markdown_table

    runs, out = Path(runs), Path(out)
    page = out.parent / f"{out.name}.md"
    written: list[Path] = []
    records = collect([runs])
    for record in records:
        src = Path(record["_path"])
        # ':' and the like are not allowed in Windows paths: the kept copy must check out anywhere
        parts = [re.sub(r'[<>:"|?*\\]', "_", part) for part in src.relative_to(runs).parts]
        dst = out.joinpath("runs", *parts)
        dst.mkdir(parents=True, exist_ok=True)
        for name in _KEPT_FILES:
            if (src / name).is_file():
                shutil.copyfile(src / name, dst / name)
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        # the temperature-selection runs get their own table
        selection = Path(record["_path"]).parent.name.startswith("igr-vae-select-")
        key = record["experiment"] + ("-select" if selection else "")
        by_experiment.setdefault(key, []).append(record)
    for experiment, members in sorted(by_experiment.items()):
        metrics = [
            m for m in REPORT_METRICS.get(experiment, ()) if any(m in r["metrics"] for r in members)
        ]
        path = out / f"{experiment}.md"
        table = markdown_table(members, metrics or None)
        path.write_text(table)
        written.append(path)
        # and into the results page next to ``out`` (docs/results/igr.md), where it has markers
        if page.is_file() and embed_table(page, experiment, table):
            written.append(page)
    written += _report_figures(by_experiment, out)
    return written


def _report_figures(by_experiment: dict[str, list[dict[str, Any]]], out: Path) -> list[Path]:
    import shutil

    from simplexity_lab.engine.table import seed_mean
    from simplexity_lab.plots import _pyplot, curve_panels

    Figure = _pyplot()
    written: list[Path] = []
    # igr-vae: validation IW bound against steps, mean ± s.e. over seeds, one panel per data set
    vae = by_experiment.get("igr-vae", [])
    for net in ("nonlinear", "linear"):
        members = [r for r in vae if r["config"]["net"] == net]
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
                    if c["dataset"] != dataset or c["relaxation"] != relaxation:
                        continue
                    history = Path(r["_path"]) / "history.jsonl"
                    if history.is_file():
                        rows = [
                            json.loads(line) for line in history.read_text().splitlines() if line
                        ]
                        curves.append({h["step"]: h["metrics"]["valid/iw_bound"] for h in rows})
                if curves:
                    series[f"{relaxation} ({len(curves)} seeds)"] = seed_mean(curves)
            panels[f"{dataset}, {net}"] = series
        fig = curve_panels(panels, ylabel="valid IW bound (nats)")
        path = out / f"igr_vae_curves_{net}.png"
        fig.savefig(path, dpi=80)
        written.append(path)
        for r in members:
            c = r["config"]
            src = Path(r["_path"]) / "plots" / "reconstructions.png"
            if c["seed"] == 0 and src.is_file():
                dst = out / "samples" / f"{c['dataset']}-{net}-{c['relaxation']}.png"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                written.append(dst)
    # discrete-approx: discretized-sample pmf against the target, one figure per target
    from simplexity_lab.experiments.discrete_approx import target_pmf

    approx = by_experiment.get("discrete-approx", [])
    for target in sorted({r["config"]["target"] for r in approx}):
        members = sorted(
            (r for r in approx if r["config"]["target"] == target and "summary" in r),
            key=lambda r: (r["config"]["relaxation"], r["config"]["num_categories"]),
        )
        if not members:
            continue
        fig = Figure(figsize=(3.2 * len(members), 2.6))
        axes = fig.subplots(1, len(members), squeeze=False)[0]
        reach = max(len(r["summary"]["discretized_pmf"]) for r in members)
        truth = target_pmf(target, reach).numpy()
        bulk = (truth > 1e-4).nonzero()[0]
        last = min(reach, int(bulk.max()) + 2) if len(bulk) else reach
        for ax, r in zip(axes, members):
            pmf = r["summary"]["discretized_pmf"][:last]
            c = r["config"]
            ax.bar(range(len(pmf)), pmf, width=1.0, alpha=0.6)
            ax.plot(range(last), truth[:last], "k.-", ms=2, lw=0.7)
            name = "IGR-SB" if c["relaxation"] == "igr_sb" else f"GS, K = {c['num_categories']}"
            m = r["metrics"]
            ax.set_title(f"{name}: TV {m['test/tv']:.3f}, n = {m['test/categories_used']:.0f}",
                         fontsize=8)  # fmt: skip
            ax.set_xlim(-1, last)
        fig.suptitle(target, fontsize=9)
        fig.tight_layout()
        path = out / f"discrete_approx_{target.replace(':', '_').replace('.', 'p')}.png"
        fig.savefig(path, dpi=80)
        written.append(path)
    for r in by_experiment.get("sop", []):
        src = Path(r["_path"]) / "plots" / "predictions.png"
        if r["config"]["seed"] == 0 and src.is_file():
            dst = out / "samples" / f"sop-{r['config']['relaxation']}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            written.append(dst)
    return written


def _cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simplexity_lab.experiments.igr_vae",
        description="igr-vae helpers: `select` picks the temperature per relaxation on the "
        "validation split.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sel = sub.add_parser("select", help="temperature selection over the grid (valid/iw_bound)")
    sel.add_argument("--dataset", default="mnist")
    sel.add_argument("--net", default="nonlinear")
    sel.add_argument("--relaxations", default=",".join(RELAXATIONS))
    sel.add_argument("--grid", default=",".join(f"{t:g}" for t in TEMPERATURE_GRID))
    sel.add_argument("--budget", default="select")
    sel.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sel.add_argument("--out", default="runs")
    sel.add_argument("--data-dir", default=None)
    sel.add_argument("--threads", type=int, default=1)
    rep = sub.add_parser("report", help="keep the runs' results, write tables and figures")
    rep.add_argument("--runs", default="runs/igr")
    rep.add_argument("--out", default="docs/results/igr")
    args = parser.parse_args(argv)
    if args.command == "report":
        try:
            for path in report(args.runs, args.out):
                print(path)
        except (ValueError, FileNotFoundError) as error:
            parser.exit(2, f"{parser.prog}: error: {str(error).splitlines()[0]}\n")
        return 0
    torch.set_num_threads(args.threads)
    try:
        grid = [float(t) for t in args.grid.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--grid must be comma-separated numbers, got {args.grid!r}")
    try:
        record = select_temperature(
            dataset=args.dataset, net=args.net, relaxations=args.relaxations.split(","),
            grid=grid, budget=args.budget, overrides=args.set, out=args.out,
            data_dir=args.data_dir,
        )  # fmt: skip
    except (ValueError, TypeError, FileNotFoundError) as error:
        parser.exit(2, f"{parser.prog}: error: {str(error).splitlines()[0]}\n")
    print(json.dumps(record["selected"], indent=2))
    return 0


if __name__ == "__main__":
    from simplexity_lab.experiments.igr_vae import _cli as _package_cli

    raise SystemExit(_package_cli())
