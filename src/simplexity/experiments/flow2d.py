r"""``flow2d``: a normalizing flow on a 2-D toy density with a Gaussian or a mixture-of-Gaussians
base (REFERENCE §3.4).

Affine coupling layers over a base that is either :math:`\mathcal N(0, I)` or a trainable mixture
of ``num_components`` Gaussians (initialized by k-means++ on the data); trained by maximum
likelihood; reported: the mean test log-likelihood in nats (``test/log_likelihood``, higher is
better).

Usage::

    simplexity run flow2d --budget smoke --set base=gaussian
    simplexity run flow2d --budget paper --set base=mixture --set dataset=toy2d:8gaussians
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from simplexity.engine.task import StepBatches, Task, TrainConfig, derived_seed
from simplexity.experiments._data import eval_subset, load_split
from simplexity.experiments.registry import Experiment, register

__all__ = ["Flow2DConfig", "Flow2DTask", "main"]


@dataclass(frozen=True)
class Flow2DConfig(TrainConfig):
    """Config of the ``flow2d`` experiment.

    Attributes:
        dataset: a ``toy2d:<name>`` data set.
        base: ``"gaussian"`` or ``"mixture"``.
        num_components: components of the mixture base.
        num_layers: affine coupling layers.
        hidden: width of the couplings' conditioner (two hidden layers).
    """

    steps: int = 20_000
    batch_size: int = 256
    lr: str = "1e-3"
    val_every: int = 2000
    checkpoint_every: int = 2000
    eval_size: int | None = 10_000
    dataset: str = "toy2d:8gaussians"
    base: Literal["gaussian", "mixture"] = "mixture"
    num_components: int = 8
    num_layers: int = 6
    hidden: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.dataset.startswith("toy2d:"):
            raise ValueError(f"dataset must be a toy2d:<name> data set, got {self.dataset!r}")


class Flow2DTask(Task):
    """Maximum-likelihood training of a coupling flow on 2-D points."""

    monitor = "valid/loss"
    monitor_mode = "min"

    def __init__(self, config: Flow2DConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        from simplexity.flows import AffineCoupling, GaussianBase, LazyFlow, MixtureBase

        kw = {"data_dir": data_dir, "seed": config.seed}
        self.train_split = load_split(config.dataset, "train", **kw)
        self.splits = {s: load_split(config.dataset, s, **kw) for s in ("valid", "test")}
        if config.base == "mixture":
            base = MixtureBase(2, config.num_components)
            generator = torch.Generator().manual_seed(derived_seed(config.seed, 7))
            base.initialize_from_data(self.train_split.data[:5000], generator=generator)
        else:
            base = GaussianBase(2)
        layers = [
            AffineCoupling(2, i % 2, (config.hidden, config.hidden))
            for i in range(config.num_layers)
        ]
        self.model = LazyFlow(base, layers)

    def train_batches(self) -> StepBatches:
        return StepBatches(self.train_split.data, None, seed=self.config.seed)

    def training_loss(self, batch, step):
        loss = -self.model().log_prob(batch[0]).mean()
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        x = self.splits[split].data
        x = x[eval_subset(len(x), self.config.eval_size)]
        ll = self.model().log_prob(x).mean()
        return {f"{split}/loss": float(-ll), f"{split}/log_likelihood": float(ll)}

    @torch.no_grad()
    def density_grid(self, points: int = 120, bound: float = 4.5) -> tuple[Any, Any, Any]:
        """``(xs, ys, density)`` of the trained flow on a square grid."""
        axis = torch.linspace(-bound, bound, points)
        xx, yy = torch.meshgrid(axis, axis, indexing="xy")
        grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)
        density = self.model().log_prob(grid).exp().reshape(points, points)
        return axis.numpy(), axis.numpy(), density.numpy()

    def figures(self, history):
        from simplexity import plots

        xs, ys, z = self.density_grid()
        return {
            "density": plots.densities(
                {f"{self.config.base} base": (xs, ys, z)},
                points=self.splits["test"].data[:2000].numpy(),
            )
        }


EXPERIMENT = register(
    Experiment(
        name="flow2d",
        description="coupling flow on a 2-D toy density, Gaussian or mixture base; --set base=, dataset=",
        config_class=Flow2DConfig,
        task_class=Flow2DTask,
        budgets={
            "smoke": {
                "steps": 20,
                "val_every": 10,
                "checkpoint_every": 10,
                "log_every": 5,
                "eval_size": 1000,
                "num_layers": 2,
                "hidden": 16,
            },
            "demo": {
                "steps": 1500,
                "val_every": 500,
                "checkpoint_every": 500,
                "num_layers": 4,
                "hidden": 32,
                "lr": "3e-3",
                "eval_size": 5000,
            },
            "paper": {},
        },
        paper_command="simplexity run flow2d --budget paper --set base=BASE --set seed=S",
    )
)


def main(config: Flow2DConfig, **run_options: Any) -> Any:
    """Run the experiment with ``config`` (options of :func:`simplexity.engine.run_config`)."""
    from simplexity.engine.runner import run_config

    return run_config("flow2d", config, **run_options)
