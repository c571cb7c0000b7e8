r"""``sop``: structured output prediction on binarized MNIST halves (the IGR paper's experiment).

Predict the lower half (rows 14–27) of a statically binarized MNIST digit from its upper half
(rows 0–13) through two stochastic layers of 240 binary units
(:class:`~simplexity_lab.models.sop.StructuredOutputPredictor`), binary Gumbel-softmax (``relaxation=gumbel_softmax``) against binary
IGR (``relaxation=igr_i``). Trained on :math:`-\log p(x_\downarrow \mid u)` with one relaxed sample,
Adam with the learning rate decaying from 1e-3 to 1e-4, batch 100. Metrics (nats per image, lower
is better):

- ``test/nll``: :math:`-\log\frac1S\sum_s p(x_\downarrow\mid h_s)` with S = 100 samples of the
  *rounded* units (the discrete model the relaxation stands for);
- ``test/nll_relaxed``: the same with relaxed units at the training temperature.

Usage::

    simplexity run sop --budget smoke
    simplexity run sop --budget paper --set relaxation=igr_i --set seed=1
    simplexity select-temperature --experiment sop --relaxations gumbel_softmax,igr_i

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
from simplexity_lab.experiments.vae import default_temperature
from simplexity_lab.models.sop import BINARY_RELAXATIONS, StructuredOutputPredictor

__all__ = ["SOPConfig", "SOPTask", "split_halves"]


def split_halves(x: torch.Tensor, side: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper rows ``0 .. side/2 - 1`` and lower rows of flattened square images ``(N, side²)``.

    Example:
        >>> up, low = split_halves(torch.arange(16.0).view(1, 16), side=4)
        >>> up.tolist(), low.tolist()
        ([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]], [[8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]])
    """
    if x.shape[-1] != side * side:
        raise ValueError(
            f"images must have {side}x{side} = {side * side} pixels, got {x.shape[-1]}"
        )
    half = (side // 2) * side
    return x[..., :half], x[..., half:]


@dataclass(frozen=True)
class SOPConfig(TrainConfig):
    """Config of ``sop``.

    Attributes:
        dataset: a data set of square binary images (``binarized_mnist``).
        relaxation: ``"gumbel_softmax"``, ``"igr_i"`` or ``"igr_planar"``.
        hidden: units of the stochastic layers.
        temperature: τ schedule spec, or ``"auto"`` (as in ``vae``: 0.67 for the Gumbel-softmax,
            0.1 for IGR).
        delta: softmax++ offset of the IGR units.
        binarize: ``"auto"``, ``"none"`` or ``"dynamic"`` (as in ``vae``).
        eval_samples: S of the test NLL (validation too).
    """

    steps: int = 50_000
    batch_size: int = 100
    lr: str = "exp:1e-3:1e-4:50000"
    val_every: int = 5000
    checkpoint_every: int = 1000
    dataset: str = "binarized_mnist"
    relaxation: str = "gumbel_softmax"
    hidden: tuple[int, ...] = (240, 240)
    temperature: str = "auto"
    delta: float = 1.0
    binarize: Literal["auto", "none", "dynamic"] = "auto"
    eval_samples: int = 100

    minimums: ClassVar[Mapping[str, int]] = {"eval_samples": 1}
    schedules: ClassVar[tuple[str, ...]] = ("temperature",)

    def __post_init__(self) -> None:
        if self.temperature == "auto":
            object.__setattr__(self, "temperature", default_temperature(self.relaxation))
        super().__post_init__()
        if self.relaxation not in BINARY_RELAXATIONS:
            raise ValueError(
                f"relaxation must be one of {', '.join(BINARY_RELAXATIONS)}, got {self.relaxation!r}"
            )
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be positive sizes, got {self.hidden}")


class SOPTask(Task):
    """Trains a :class:`~simplexity_lab.models.sop.StructuredOutputPredictor` on image halves."""

    monitor = "valid/nll"
    monitor_mode = "min"

    def __init__(self, config: SOPConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        kw = {"data_dir": data_dir, "seed": config.seed, "binarize": config.binarize}
        self.train_split = load_split(config.dataset, "train", **kw)
        self.splits = {s: load_split(config.dataset, s, **kw) for s in ("valid", "test")}
        dim = self.train_split.data.shape[-1]
        self.side = round(dim**0.5)
        up, low = split_halves(self.train_split.data[:1], self.side)
        options = {"delta": config.delta} if config.relaxation.startswith("igr") else {}
        self.model = StructuredOutputPredictor(
            up.shape[-1], low.shape[-1], hidden=config.hidden, relaxation=config.relaxation,
            relaxation_options=options,
        )  # fmt: skip
        self.temperature = parse_schedule(config.temperature, name="temperature")

    def train_batches(self) -> StepBatches:
        s = self.train_split
        return StepBatches(s.data, None, binarize=s.binarize, seed=self.config.seed)

    def training_loss(self, batch, step):
        up, low = split_halves(batch[0], self.side)
        tau = self.temperature(step)
        loss = -self.model.log_likelihood(up, low, tau).mean()
        return loss, {"loss": loss.detach(), "temperature": tau}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        x = self.splits[split].data
        x = x[eval_subset(len(x), self.config.eval_size)]
        tau = self.temperature(self.config.steps)
        s = self.config.eval_samples
        nll, relaxed, loss = [], [], []
        for chunk in x.split(500):
            up, low = split_halves(chunk, self.side)
            nll.append(-self.model.log_likelihood(up, low, tau, s, discrete=True))
            relaxed.append(-self.model.log_likelihood(up, low, tau, s))
            loss.append(-self.model.log_likelihood(up, low, tau))
        return {
            f"{split}/nll": float(torch.cat(nll).mean()),
            f"{split}/nll_relaxed": float(torch.cat(relaxed).mean()),
            f"{split}/loss": float(torch.cat(loss).mean()),
        }

    def figures(self, history):
        from simplexity_lab import plots

        x = self.splits["test"].data[:10]
        up, _ = split_halves(x, self.side)
        units = self.model.units(up.expand(3, *up.shape), 1.0, discrete=True)
        means = torch.sigmoid(self.model.output(units))
        rows = [x] + [torch.cat((up, m), -1) for m in means]
        shape = (-1, self.side, self.side)
        return {
            "predictions": plots.image_rows(
                [r.reshape(shape) for r in rows],
                ["data", "sample 1", "sample 2", "sample 3"],
                title=f"lower half predicted ({self.config.relaxation}, rounded units)",
            )
        }

    def summary(self) -> dict[str, Any]:
        return {"temperature": self.config.temperature}


_SHORT = {"steps": 5000, "lr": "exp:1e-3:1e-4:5000", "eval_samples": 100}

EXPERIMENT = register(
    Experiment(
        name="sop",
        description="structured output prediction, MNIST halves, 2×240 binary units: GS vs IGR",
        config_class=SOPConfig,
        task_class=SOPTask,
        budgets={
            "smoke": TrainConfig.smoke(batch_size=50, eval_size=100, eval_samples=10, lr="1e-3"),
            # every relaxation alike when 100 epochs do not fit: 10 epochs, the same lr schedule
            "short": dict(_SHORT),
            # one point of the temperature grid (``simplexity select-temperature --experiment
            # sop``): the short budget, scored on 2,000 validation images
            "select": {**_SHORT, "val_every": 5000, "eval_size": 2000},
            "paper": {"steps": 50_000, "lr": "exp:1e-3:1e-4:50000", "eval_samples": 100},
        },
        paper_command="simplexity run sop --budget paper --set relaxation=R --set seed=S",
    )
)
