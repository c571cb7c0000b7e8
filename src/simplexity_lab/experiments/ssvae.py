r"""``ssvae``: the semi-supervised VAE (M2) of the ev-softmax paper (Chen et al. 2021).

MNIST with a fixed, seeded 10% of the training split labelled. Each step takes an unlabelled
batch (the engine's resumable batches over the other 90%) and a labelled batch of the same size
drawn from a generator seeded with ``(seed, step)`` (so a resumed run sees the same batches). The
first ``warm_start_steps`` steps train on the labelled loss only ("warm start on labels"). Methods:
the registered normalizers with exact marginalization over their support, and ``gumbel`` /
``st_gumbel`` (one Gumbel-softmax sample, softmax classifier) as Monte Carlo baselines; see
:mod:`simplexity_lab.models.ssvae` for the losses. Metrics: ``test/accuracy`` of the classifier and
``test/decoder_calls`` (mean support size of :math:`q(y \mid x)`; 1 for the baselines).

Budgets: ``paper`` = 200 epochs of 50,000 / 64 steps (156,250); ``short`` = 20 epochs (15,625),
the same for every method, for when 200 do not fit.

Usage::

    simplexity run ssvae --budget smoke --set method=sparsemax
    simplexity run ssvae --budget paper --set method=ev_softmax --set seed=S

References:
    Chen, Tsang, Itkina and Kochenderfer, *Evidential Softmax for Sparse Multimodal Distributions
    in Deep Generative Models*, NeurIPS 2021.
    Kingma, Rezende, Mohamed and Welling, *Semi-Supervised Learning with Deep Generative Models*,
    NeurIPS 2014.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from simplexity_lab.engine.experiment import Experiment, register
from simplexity_lab.engine.task import StepBatches, Task, TrainConfig, derived_seed
from simplexity_lab.experiments._data import eval_subset, load_split
from simplexity_lab.models.ssvae import SemiSupervisedVAE, methods

__all__ = [
    "SSVAEConfig",
    "SSVAETask",
    "labelled_indices",
]


@dataclass(frozen=True)
class SSVAEConfig(TrainConfig):
    """Config of the ``ssvae`` experiment (fields of :class:`TrainConfig` plus these).

    Attributes:
        dataset: a labelled data set (``mnist``, ``digits``).
        method: a normalizer name, ``gumbel`` or ``st_gumbel``.
        labelled_fraction: fraction of the training split whose labels are used (paper: 0.1).
        alpha: weight of the classification loss in the labelled loss (same for every method).
        latent_dim, hidden: Gaussian latent size (paper: 8) and network width (paper: 256).
        temperature: Gumbel-softmax temperature of the Monte Carlo baselines.
        warm_start_steps: steps on the labelled loss only before the unlabelled loss joins.
    """

    steps: int = 156_250  # 200 epochs of 50,000 images in batches of 64
    batch_size: int = 64
    lr: str = "5e-4"
    val_every: int = 5000
    checkpoint_every: int = 5000
    dataset: str = "mnist"
    method: str = "ev_softmax"
    labelled_fraction: float = 0.1
    alpha: float = 50.0
    latent_dim: int = 8
    hidden: int = 256
    temperature: float = 1.0
    warm_start_steps: int = 1000

    minimums: ClassVar[Mapping[str, int]] = {"warm_start_steps": 0}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in methods():
            raise ValueError(
                f"unknown method {self.method!r}; expected one of {', '.join(methods())}"
            )
        if not 0 < self.labelled_fraction < 1:
            raise ValueError(f"labelled_fraction must be in (0, 1), got {self.labelled_fraction}")
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def labelled_indices(num: int, fraction: float, seed: int) -> torch.Tensor:
    """The fixed, seeded subset of ``round(fraction * num)`` training indices whose labels are used."""
    generator = torch.Generator().manual_seed(derived_seed(seed, 7))
    count = max(1, round(fraction * num))
    return torch.randperm(num, generator=generator)[:count].sort().values


class SSVAETask(Task):
    """Trains :class:`~simplexity_lab.models.ssvae.SemiSupervisedVAE` with 10% labels."""

    monitor = "valid/accuracy"
    monitor_mode = "max"

    def __init__(self, config: SSVAEConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        kw = {"data_dir": data_dir, "seed": config.seed, "binarize": "none"}
        train = load_split(config.dataset, "train", **kw)
        if train.labels is None:
            raise ValueError(
                f"the ssvae experiment needs a labelled data set, not {config.dataset!r}"
            )
        labelled = labelled_indices(len(train.data), config.labelled_fraction, config.seed)
        unlabelled = torch.ones(len(train.data), dtype=torch.bool)
        unlabelled[labelled] = False
        self.labelled_x, self.labelled_y = train.data[labelled], train.labels[labelled]
        self.unlabelled_x = train.data[unlabelled]
        self.splits = {s: load_split(config.dataset, s, **kw) for s in ("valid", "test")}
        self.model = SemiSupervisedVAE(
            train.data.shape[-1],
            method=config.method,
            num_classes=int(train.labels.max()) + 1,
            latent_dim=config.latent_dim,
            hidden=config.hidden,
            temperature=config.temperature,
        )

    def train_batches(self) -> StepBatches:
        return StepBatches(self.unlabelled_x, seed=self.config.seed)

    def training_loss(self, batch, step):
        (x_unlabelled,) = batch
        generator = torch.Generator().manual_seed(derived_seed(self.config.seed, 8, step))
        index = torch.randint(len(self.labelled_x), (len(x_unlabelled),), generator=generator)
        loss, logs = self.model.labelled_loss(
            self.labelled_x[index], self.labelled_y[index], self.config.alpha
        )
        if step >= self.config.warm_start_steps:
            unlabelled, more = self.model.unlabelled_loss(x_unlabelled)
            loss = loss + unlabelled
            logs = {**logs, **more}
        return loss, {"loss": loss.detach(), **logs}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        s = self.splits[split]
        index = eval_subset(len(s.data), self.config.eval_size)
        x, y = s.data[index], s.labels[index]
        self.model.eval()
        q = self.model.class_probs(x)
        calls = 1.0 if self.model.monte_carlo else float((q > 0).sum(-1).float().mean())
        unlabelled = self.model.unlabelled_loss(x[:1000])[0]  # a side metric: 1,000 examples
        return {
            f"{split}/accuracy": float((self.model.classifier(x).argmax(-1) == y).float().mean()),
            f"{split}/decoder_calls": calls,
            f"{split}/unlabelled_loss": float(unlabelled),
        }

    def figures(self, history):
        from simplexity_lab import plots

        steps = [h["step"] for h in history if "valid/accuracy" in h["metrics"]]
        if not steps:
            return {}
        accuracy = [
            h["metrics"]["valid/accuracy"] for h in history if "valid/accuracy" in h["metrics"]
        ]
        return {
            "accuracy": plots.curves(
                {self.config.method: (steps, accuracy)}, ylabel="valid accuracy"
            )
        }

    def summary(self) -> dict[str, Any]:
        return {"labelled_examples": len(self.labelled_x)}


EXPERIMENT = register(
    Experiment(
        name="ssvae",
        description="semi-supervised VAE (M2), 10% labels, exact sparse marginalization; --set method=",
        config_class=SSVAEConfig,
        task_class=SSVAETask,
        budgets={
            "smoke": TrainConfig.smoke(12, eval_size=300, warm_start_steps=4, hidden=32),
            "short": {"steps": 15_625, "val_every": 1000, "checkpoint_every": 1000},
            "paper": {},
        },
        paper_command="simplexity run ssvae --budget paper --set method=METHOD --set seed=S",
    )
)
