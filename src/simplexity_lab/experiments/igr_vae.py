r"""``igr-vae``: the discrete VAE comparison of the IGR paper, built on ``vae``.

20 categorical variables × 10 categories on MNIST, Fashion-MNIST or Omniglot-28 (grey levels
binarized dynamically, Bernoulli decoder), ``relaxation=gumbel_softmax|igr_i|igr_planar|igr_sb``,
``net=linear|nonlinear``, Adam, batch 100, one sample, a fixed temperature. Metrics (nats, higher
is better unless said otherwise):

- ``test/iw_bound``: the importance-weighted bound on :math:`\log p(x)` of the *discrete* model
  (one-hot :math:`h`, discretized proposal; S = ``eval_samples``, 1000 at paper budget) — the valid
  number, see :meth:`~simplexity_lab.models.DiscreteVAE.iw_bound`;
- ``test/relaxed_elbo``: the relaxed ELBO at the training temperature (one sample);
- ``test/reference_not_a_bound``: the test number of the paper's code,
  :math:`\log\frac1S\sum_s p(x\mid h_s) - \mathrm{KL}(q\,\|\,p)` with :math:`h_s` the one-hot argmax
  of relaxed samples and the *relaxed* KL. It is **not** a bound on :math:`\log p(x)` (the KL is
  between the relaxed distributions, not the discrete ones); reported only to compare with the
  paper's numbers;
- ``time/train_epoch_s``, ``time/train_step_ms``: median wall time of one training iteration
  (forward, backward, Adam step, data) times the steps of one epoch.

The temperature is chosen on the validation split by
:func:`simplexity_lab.experiments.temperature_selection.select_temperature`
(``simplexity select-temperature``); ``simplexity report igr`` writes the results page.

Usage::

    simplexity run igr-vae --budget smoke
    simplexity run igr-vae --budget paper --set dataset=fashion_mnist --set relaxation=igr_sb \
        --set temperature=0.1 --set seed=2

References:
    Potapczynski, Loaiza-Ganem and Cunningham, *Invertible Gaussian Reparameterization:
    Revisiting the Gumbel-Softmax*, NeurIPS 2020.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from simplexity_lab.engine.experiment import Experiment, register
from simplexity_lab.experiments.vae import EXPERIMENT as VAE_EXPERIMENT
from simplexity_lab.experiments.vae import VAEConfig, VAETask

__all__ = ["EXPERIMENT", "RELAXATIONS", "IGRVAEConfig", "IGRVAETask"]

RELAXATIONS: tuple[str, ...] = ("gumbel_softmax", "igr_i", "igr_planar", "igr_sb")
"""The four relaxations the paper compares."""


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

    minimums: ClassVar[Mapping[str, int]] = {"reference_samples": 1}


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

EXPERIMENT = register(
    Experiment(
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
)
