r"""``flow2d``: a normalizing flow on a 2-D toy density with a Gaussian base, a mixture-of-Gaussians
base, or RAD in front (experiment 1 of docs/results/flows.md).

Affine coupling layers (Real NVP) over a base that is either :math:`\mathcal N(0, I)`
(``base=gaussian``) or a trainable mixture of ``num_components`` Gaussians initialized by k-means++
on the data (``base=mixture``); or ``base=rad``: two piecewise-affine RAD layers (Dinh et al. 2019;
``rad_pieces`` pieces, one per coordinate, gated) in front of a Real NVP over a Gaussian, its
couplings narrowed so that the total parameter count matches the Gaussian-base flow's
(``rad_coupling_hidden=none``: the width whose count is closest). Trained by maximum likelihood;
reported: the mean test log-likelihood in nats (``test/log_likelihood``, higher is better), its
standard error and the number of test points with a non-finite density.

The ``paper`` budget: 6 couplings of width 32, Adam at 3e-3 with cosine
decay over 2,000 steps of batch 256, gradients clipped at norm 10, 50,000 training points and
20,000 test points.

Usage::

    simplexity run flow2d --budget smoke --set base=gaussian
    simplexity run flow2d --budget paper --set base=rad --set dataset=toy2d:checkerboard --set seed=0

References:
    Dinh, Sohl-Dickstein and Bengio, *Density estimation using Real NVP*, ICLR 2017. Dinh,
    Sohl-Dickstein, Pascanu and Larochelle, *A RAD Approach to Deep Mixture Models*, ICLR 2019
    workshop. Stimper, Schölkopf and Hernández-Lobato, *Resampling Base Distributions of
    Normalizing Flows*, AISTATS 2022 (Gaussian vs mixture bases on the 2-D toys of Grathwohl et
    al., *FFJORD*, ICLR 2019).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import torch

from simplexity_lab.engine.experiment import Experiment, register
from simplexity_lab.engine.task import StepBatches, Task, TrainConfig, derived_seed
from simplexity_lab.experiments._data import ArraySplit, eval_subset, load_split

__all__ = ["Flow2DConfig", "Flow2DTask", "build_flow", "matched_rad_width"]


@dataclass(frozen=True)
class Flow2DConfig(TrainConfig):
    """Config of the ``flow2d`` experiment.

    Attributes:
        dataset: a ``toy2d:<name>`` data set.
        base: ``"gaussian"``, ``"mixture"`` or ``"rad"``.
        num_components: components of the mixture base.
        num_layers: affine coupling layers.
        hidden: width of the couplings' conditioner (two hidden layers).
        init_points: training points for the mixture base's k-means++ initialization.
        rad_pieces: pieces of each RAD layer.
        rad_hidden: width of the RAD layers' conditioner and gate (two hidden layers each).
        rad_coupling_hidden: coupling width under RAD (``none``: match the Gaussian-base flow's
            parameter count).
        test_size: test points (``none``: the data set's 10,000).
    """

    steps: int = 20_000
    batch_size: int = 256
    lr: str = "1e-3"
    val_every: int = 2000
    checkpoint_every: int = 2000
    eval_size: int | None = 10_000
    dataset: str = "toy2d:8gaussians"
    base: Literal["gaussian", "mixture", "rad"] = "mixture"
    num_components: int = 8
    num_layers: int = 6
    hidden: int = 64
    init_points: int = 5000
    rad_pieces: int = 5
    rad_hidden: int = 16
    rad_coupling_hidden: int | None = None
    test_size: int | None = None

    minimums: ClassVar[Mapping[str, int]] = {
        "num_components": 1, "num_layers": 1, "hidden": 1, "init_points": 1, "rad_pieces": 2,
        "rad_hidden": 1, "rad_coupling_hidden": 1, "test_size": 1,
    }  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.dataset.startswith("toy2d:"):
            raise ValueError(f"dataset must be a toy2d:<name> data set, got {self.dataset!r}")


RAD_SPREAD = 1.5
"""The RAD layers' initial piece boundaries span ``[-1.5, 1.5]``."""


def _couplings(config: Flow2DConfig, width: int) -> list[Any]:
    from simplexity.flows import AffineCoupling

    return [AffineCoupling(2, i % 2, (width, width)) for i in range(config.num_layers)]


def build_flow(config: Flow2DConfig, coupling_hidden: int | None = None) -> torch.nn.Module:
    """The untrained model of ``config`` (a mixture base is not yet fitted to data)."""
    from simplexity.flows import RAD, GaussianBase, LazyFlow, MixtureBase, RADLayer

    if config.base == "gaussian":
        return LazyFlow(GaussianBase(2), _couplings(config, config.hidden))
    if config.base == "mixture":
        base = MixtureBase(2, config.num_components)
        return LazyFlow(base, _couplings(config, config.hidden))
    width = coupling_hidden or config.rad_coupling_hidden or config.hidden
    hidden = (config.rad_hidden, config.rad_hidden)
    layers = [RADLayer(2, config.rad_pieces, dim=dim, hidden=hidden, gate_hidden=hidden,
                       spread=RAD_SPREAD) for dim in (1, 0)]  # fmt: skip
    return RAD(LazyFlow(GaussianBase(2), _couplings(config, width)), layers)


def num_parameters(module: torch.nn.Module) -> int:
    """The number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def matched_rad_width(config: Flow2DConfig) -> int:
    """The coupling width under RAD whose total parameter count is closest to the Gaussian-base
    flow's (ties: the narrower)."""
    with torch.random.fork_rng(devices=[]):  # counting must not move the model's RNG
        target = num_parameters(build_flow(replace(config, base="gaussian")))
        counts = {w: num_parameters(build_flow(config, w)) for w in range(1, config.hidden + 1)}
    return min(counts, key=lambda w: (abs(counts[w] - target), w))


class Flow2DTask(Task):
    """Maximum-likelihood training of a coupling flow on 2-D points."""

    monitor = "valid/loss"
    monitor_mode = "min"

    def __init__(self, config: Flow2DConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        from simplexity_lab.data import load_toy2d

        kw = {"data_dir": data_dir, "seed": config.seed}
        self.train_split = load_split(config.dataset, "train", **kw)
        self.splits = {s: load_split(config.dataset, s, **kw) for s in ("valid", "test")}
        if config.test_size is not None:
            name = config.dataset.removeprefix("toy2d:")
            test = load_toy2d(name, "test", num=config.test_size, seed=config.seed)
            self.splits["test"] = ArraySplit(test.data.reshape(len(test.data), -1), None)
        self.coupling_hidden = config.hidden
        if config.base == "rad":
            self.coupling_hidden = config.rad_coupling_hidden or matched_rad_width(config)
        self.model = build_flow(config, self.coupling_hidden)
        if config.base == "mixture":
            generator = torch.Generator().manual_seed(derived_seed(config.seed, 7))
            self.model.base.initialize_from_data(
                self.train_split.data[: config.init_points], generator=generator
            )

    def train_batches(self) -> StepBatches:
        return StepBatches(self.train_split.data, None, seed=self.config.seed)

    def training_loss(self, batch, step):
        loss = -self.model().log_prob(batch[0]).mean()
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        x = self.splits[split].data
        x = x[eval_subset(len(x), self.config.eval_size)]
        dist = self.model()
        log_p = torch.cat([dist.log_prob(chunk) for chunk in x.split(10_000)])
        ll = log_p.mean()
        return {
            f"{split}/loss": float(-ll),
            f"{split}/log_likelihood": float(ll),
            f"{split}/log_likelihood_se": float(log_p.std() / len(log_p) ** 0.5),
            f"{split}/nonfinite": float((~torch.isfinite(log_p)).sum()),
        }

    @torch.no_grad()
    def density_grid(self, points: int = 120, bound: float = 4.5) -> tuple[Any, Any, Any]:
        """``(xs, ys, density)`` of the trained flow on a square grid."""
        axis = torch.linspace(-bound, bound, points)
        xx, yy = torch.meshgrid(axis, axis, indexing="xy")
        grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)
        density = self.model().log_prob(grid).exp().reshape(points, points)
        return axis.numpy(), axis.numpy(), density.numpy()

    def figures(self, history):
        from simplexity_lab import plots

        xs, ys, z = self.density_grid()
        return {
            "density": plots.densities(
                {f"{self.config.base} base": (xs, ys, z)},
                points=self.splits["test"].data[:2000].numpy(),
            )
        }

    def summary(self) -> dict[str, Any]:
        return {"parameters": num_parameters(self.model), "coupling_hidden": self.coupling_hidden}


EXPERIMENT = register(
    Experiment(
        name="flow2d",
        description="coupling flow on a 2-D toy density: Gaussian / mixture base or RAD; --set base=, dataset=",
        config_class=Flow2DConfig,
        task_class=Flow2DTask,
        budgets={
            "smoke": TrainConfig.smoke(eval_size=1000, num_layers=2, hidden=16),
            "demo": {
                "steps": 1500,
                "val_every": 500,
                "checkpoint_every": 500,
                "num_layers": 4,
                "hidden": 32,
                "lr": "3e-3",
                "eval_size": 5000,
            },
            # experiment 1 of docs/results/flows.md
            "paper": {
                "steps": 2000,
                "batch_size": 256,
                "lr": "cosine:3e-3:0:2000",
                "grad_clip": 10.0,
                "val_every": 500,
                "checkpoint_every": 500,
                "eval_size": None,
                "num_layers": 6,
                "hidden": 32,
                "num_components": 8,
                "init_points": 4096,
                "test_size": 20_000,
            },
        },
        paper_command=(
            "simplexity run flow2d --budget paper --set base=BASE --set dataset=toy2d:NAME "
            "--set seed=S"
        ),
    )
)
