r"""``vae``: the discrete-latent VAE of the IGR paper (Potapczynski et al. 2020).

N = 20 categorical variables × K = 10 categories, one relaxation from the registry, linear or
nonlinear networks, Bernoulli (or Gaussian) decoder; trained on the relaxed ELBO, evaluated with
the importance-weighted bound on the discrete model (``test/iw_bound``, nats, higher is better).

Usage::

    simplexity run vae --budget smoke
    simplexity run vae --budget paper --set relaxation=igr_i --set net=nonlinear
    simplexity run vae --set dataset=fashion_mnist --set relaxation=gumbel_softmax --set seed=1

References:
    Potapczynski, Loaiza-Ganem and Cunningham, *Invertible Gaussian Reparameterization:
    Revisiting the Gumbel-Softmax*, NeurIPS 2020.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from simplexity_lab.engine.experiment import Experiment, register
from simplexity_lab.engine.schedules import parse_schedule
from simplexity_lab.engine.task import StepBatches, Task, TrainConfig
from simplexity_lab.experiments._data import eval_subset, load_split
from simplexity_lab.models.discrete_vae import DiscreteVAE, check_estimator

__all__ = [
    "VAEConfig",
    "VAETask",
    "default_temperature",
]

DEFAULT_TEMPERATURE = {
    "gumbel_softmax": 0.67,
    "gumbel_softmax_st": 0.67,
    "st_gumbel": 0.67,
    "gumbel_rao": 0.67,
    "straight_through": 1.0,
    "reinmax": 1.0,
    "decoupled_st": 1.0,
}
"""Temperature when ``temperature="auto"``: 0.67 for the Gumbel-softmax and its straight-through
forms (the value the IGR paper's validation search typically picked for it), 1 for
straight-through and ReinMax (the plain softmax's gradient; ReinMax's authors recommend τ ≥ 1) and
for decoupled straight-through's backward temperature, and 0.1 for the IGR family."""


def default_temperature(relaxation: str) -> str:
    """The schedule spec ``temperature="auto"`` stands for (see :data:`DEFAULT_TEMPERATURE`).

    Example:
        >>> default_temperature("gumbel_softmax"), default_temperature("igr_sb")
        ('0.67', '0.1')
        >>> default_temperature("reinmax")
        '1.0'
    """
    return repr(DEFAULT_TEMPERATURE.get(relaxation, 0.1))


@dataclass(frozen=True)
class VAEConfig(TrainConfig):
    """Config of the ``vae`` experiment (fields of :class:`TrainConfig` plus these).

    Attributes:
        dataset: a name in ``simplexity_lab.data.names()`` (images are flattened).
        relaxation: a name in ``simplexity.distributions.relaxations.names()``.
        net: ``"linear"`` or ``"nonlinear"``.
        likelihood: ``"bernoulli"`` or ``"gaussian"``.
        num_variables, num_categories: N and K.
        temperature: schedule spec, or ``"auto"`` (see :data:`DEFAULT_TEMPERATURE`).
        beta: KL weight schedule spec.
        kl: ``"auto"``, ``"analytic"`` or ``"mc"``; kl_samples: samples of the MC KL.
        delta: softmax++ offset of the IGR family.
        binarize: ``"auto"`` (dynamic for ``dynamic_mnist``), ``"none"`` or ``"dynamic"``.
        eval_samples: S of the importance-weighted bound on the test split (validation: S/10).
        estimator: ``"pathwise"`` (through the relaxation's ``rsample``), or a score-function
            estimator, ``"rloo"`` or ``"reinforce"`` (running-mean baseline), with a relaxation of
            :data:`~simplexity_lab.models.discrete_vae.ONE_HOT_RELAXATIONS` (its categorical samples;
            the temperature is then unused).
        score_samples: S of the score-function estimators (decoder evaluations per image and step).
    """

    steps: int = 50_000
    batch_size: int = 100
    lr: str = "3e-4"
    val_every: int = 5000
    checkpoint_every: int = 1000
    dataset: str = "binarized_mnist"
    relaxation: str = "igr_i"
    net: Literal["linear", "nonlinear"] = "nonlinear"
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    num_variables: int = 20
    num_categories: int = 10
    temperature: str = "auto"
    beta: str = "1.0"
    kl: Literal["auto", "analytic", "mc"] = "auto"
    kl_samples: int = 1
    delta: float = 1.0
    binarize: Literal["auto", "none", "dynamic"] = "auto"
    eval_samples: int = 1000
    estimator: Literal["pathwise", "rloo", "reinforce"] = "pathwise"
    score_samples: int = 4

    minimums: ClassVar[Mapping[str, int]] = {
        "num_variables": 1, "num_categories": 2, "kl_samples": 1, "eval_samples": 1,
        "score_samples": 1,
    }  # fmt: skip
    schedules: ClassVar[tuple[str, ...]] = ("temperature", "beta")

    def __post_init__(self) -> None:
        if self.temperature == "auto":
            object.__setattr__(self, "temperature", default_temperature(self.relaxation))
        super().__post_init__()
        from simplexity.distributions import relaxations

        if self.relaxation not in relaxations.names():
            raise ValueError(
                f"unknown relaxation {self.relaxation!r}; expected one of "
                f"{', '.join(relaxations.names())}"
            )
        check_estimator(self.estimator, self.relaxation, self.score_samples)


class VAETask(Task):
    """Trains :class:`~simplexity_lab.models.DiscreteVAE` on one data set."""

    monitor = "valid/loss"
    monitor_mode = "min"

    def __init__(self, config: VAEConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        self.data_dir = data_dir
        kw = {"data_dir": data_dir, "seed": config.seed, "binarize": config.binarize}
        self.train_split = load_split(config.dataset, "train", **kw)
        self.splits = {s: load_split(config.dataset, s, **kw) for s in ("valid", "test")}
        self.image_side = _image_side(self.train_split.data.shape[-1])
        options: dict[str, Any] = {}
        if config.relaxation.startswith("igr"):
            options["delta"] = config.delta
        self.model = DiscreteVAE(
            self.train_split.data.shape[-1],
            num_variables=config.num_variables,
            num_categories=config.num_categories,
            relaxation=config.relaxation,
            net=config.net,
            likelihood=config.likelihood,
            kl=config.kl,
            kl_samples=config.kl_samples,
            relaxation_options=options,
            estimator=config.estimator,
            score_samples=config.score_samples,
        )
        self.temperature = parse_schedule(config.temperature, name="temperature")
        self.beta = parse_schedule(config.beta, name="beta")

    def train_batches(self) -> StepBatches:
        s = self.train_split
        return StepBatches(s.data, None, binarize=s.binarize, seed=self.config.seed)

    def training_loss(self, batch, step):
        x = batch[0]
        tau = self.temperature(step)
        loss, logs = self.model.loss(x, tau, beta=self.beta(step))
        logs["temperature"] = tau
        return loss, logs

    def _eval_data(self, split: str) -> torch.Tensor:
        x = self.splits[split].data
        return x[eval_subset(len(x), self.config.eval_size)]

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        x = self._eval_data(split)
        tau = self.temperature(self.config.steps)
        samples = (
            self.config.eval_samples if split == "test" else max(1, self.config.eval_samples // 10)
        )
        prior = self.model.discrete_prior(x)
        losses, bounds = [], []
        for chunk in x.split(500):
            losses.append(self.model.loss(chunk, tau)[1]["loss"] * len(chunk))
            bounds.append(self.model.iw_bound(chunk, samples, prior_probs=prior))
        bound = torch.cat(bounds).mean()
        return {
            f"{split}/loss": float(sum(losses) / len(x)),
            f"{split}/iw_bound": float(bound),
        }

    def figures(self, history):
        from simplexity_lab import plots

        x = self.splits["test"].data[:10]
        recon = self.model.reconstruct(x)
        samples = self.model.sample(10, x)
        side = self.image_side
        shape = (-1, side, side) if side else (-1, 1, x.shape[-1])
        out = {
            "reconstructions": plots.image_rows(
                [x.reshape(shape), recon.reshape(shape), samples.reshape(shape)],
                ["data", "reconstruction (argmax h)", "samples h ~ p(h)"],
                title=f"{self.config.relaxation} on {self.config.dataset}",
            )
        }
        steps = [h["step"] for h in history if "valid/iw_bound" in h["metrics"]]
        if steps:
            values = [
                h["metrics"]["valid/iw_bound"] for h in history if "valid/iw_bound" in h["metrics"]
            ]
            out["valid_iw_bound"] = plots.curves(
                {self.config.relaxation: (steps, values)}, ylabel="valid IW bound (nats)"
            )
        return out

    def summary(self) -> dict[str, Any]:
        return {"analytic_kl": self.model.analytic_kl, "temperature": self.config.temperature}


def _image_side(dim: int) -> int | None:
    side = round(dim**0.5)
    return side if side * side == dim else None


EXPERIMENT = register(
    Experiment(
        name="vae",
        description="discrete-latent VAE, 20×10 categorical (IGR paper); --set relaxation=, net=, dataset=",
        config_class=VAEConfig,
        task_class=VAETask,
        budgets={
            "smoke": TrainConfig.smoke(batch_size=50, eval_size=100, eval_samples=10, lr="1e-3"),
            "demo": {
                "dataset": "digits",
                "binarize": "dynamic",
                "steps": 1500,
                "batch_size": 100,
                "lr": "1e-3",
                "beta": "linear:0.0:1.0:1000",
                "val_every": 500,
                "checkpoint_every": 500,
                "eval_samples": 200,
            },
            "paper": {},
        },
        paper_command="simplexity run vae --budget paper --set relaxation=RELAXATION --set net=nonlinear --set seed=S",
    )
)
