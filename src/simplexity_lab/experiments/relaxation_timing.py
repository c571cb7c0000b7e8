r"""``relaxation-timing``: time per training iteration of the discrete VAE for each relaxation, as a
ratio to the Gumbel-softmax in the same run (the cost comparison of the IGR paper, Potapczynski et
al. 2020).

One :class:`~simplexity_lab.models.DiscreteVAE` per relaxation (20 × 10, ``net``, batch 100) is warmed
up by the engine for ``steps`` steps; the final test evaluation then times ``rounds`` rounds of
``steps_per_round`` Adam iterations (forward, backward, step) of each model on the same batches,
the order of the relaxations rotated each round. Metrics: ``test/<relaxation>_ms`` (median over
rounds of the mean time per iteration) and ``test/<relaxation>_ratio`` (median over rounds of the
ratio to the Gumbel-softmax of the same round). Run with one thread (``--threads 1``, the
default) on a quiet machine.

Usage::

    simplexity run relaxation-timing --budget smoke
    simplexity run relaxation-timing --budget paper --set net=linear

References:
    Potapczynski, Loaiza-Ganem and Cunningham, *Invertible Gaussian Reparameterization:
    Revisiting the Gumbel-Softmax*, NeurIPS 2020.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from simplexity_lab.engine.experiment import Experiment, register
from simplexity_lab.engine.task import StepBatches, Task, TrainConfig, derived_seed
from simplexity_lab.experiments._data import eval_subset, load_split
from simplexity_lab.experiments.vae import DEFAULT_TEMPERATURE
from simplexity_lab.models.discrete_vae import DiscreteVAE

__all__ = [
    "RelaxationTimingConfig",
    "RelaxationTimingTask",
]


@dataclass(frozen=True)
class RelaxationTimingConfig(TrainConfig):
    """Config of ``relaxation-timing``.

    Attributes:
        dataset: the VAE's data set.
        net: ``"linear"`` or ``"nonlinear"``.
        relaxations: the relaxations to time (the first is the reference of the ratios).
        num_variables, num_categories: N and K.
        rounds: timing rounds; steps_per_round: iterations timed per relaxation and round.
    """

    steps: int = 50
    batch_size: int = 100
    lr: str = "3e-4"
    val_every: int = 50
    checkpoint_every: int = 50
    eval_size: int | None = 1000
    dataset: str = "binarized_mnist"
    binarize: Literal["auto", "none", "dynamic"] = "auto"
    net: Literal["linear", "nonlinear"] = "nonlinear"
    relaxations: tuple[str, ...] = ("gumbel_softmax", "igr_i", "igr_planar", "igr_sb")
    num_variables: int = 20
    num_categories: int = 10
    rounds: int = 5
    steps_per_round: int = 200

    minimums: ClassVar[Mapping[str, int]] = {
        "num_variables": 1, "num_categories": 2, "rounds": 1, "steps_per_round": 1,
    }  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        from simplexity.distributions import relaxations

        if not self.relaxations:
            raise ValueError("relaxations must name at least one relaxation")
        for name in self.relaxations:
            if name not in relaxations.names():
                raise ValueError(
                    f"unknown relaxation {name!r}; expected one of {', '.join(relaxations.names())}"
                )
        if len(set(self.relaxations)) != len(self.relaxations):
            raise ValueError(f"relaxations must be distinct, got {self.relaxations}")


class RelaxationTimingTask(Task):
    """One discrete VAE per relaxation; the test evaluation times their training iterations."""

    monitor = "valid/loss"
    monitor_mode = "min"

    def __init__(self, config: RelaxationTimingConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        kw = {"data_dir": data_dir, "seed": config.seed, "binarize": config.binarize}
        self.train_split = load_split(config.dataset, "train", **kw)
        self.splits = {s: load_split(config.dataset, s, **kw) for s in ("valid", "test")}
        dim = self.train_split.data.shape[-1]
        self.models = nn.ModuleDict({
            name: DiscreteVAE(dim, num_variables=config.num_variables,
                              num_categories=config.num_categories, relaxation=name,
                              net=config.net)
            for name in config.relaxations
        })  # fmt: skip
        self.temperatures = {n: DEFAULT_TEMPERATURE.get(n, 0.1) for n in config.relaxations}
        self.timing: dict[str, list[float]] = {}

    def train_batches(self) -> StepBatches:
        s = self.train_split
        return StepBatches(s.data, None, binarize=s.binarize, seed=self.config.seed)

    def training_loss(self, batch, step):
        x = batch[0]
        total = x.new_zeros(())
        logs: dict[str, Any] = {}
        for name, model in self.models.items():
            loss, _ = model.loss(x, self.temperatures[name])
            total = total + loss
            logs[f"loss_{name}"] = loss.detach()
        logs["loss"] = total.detach()
        return total, logs

    def _batches(self) -> list[torch.Tensor]:
        config = self.config
        generator = torch.Generator().manual_seed(derived_seed(config.seed, 11))
        data = self.train_split.data
        out = []
        for _ in range(config.steps_per_round):
            index = torch.randint(len(data), (config.batch_size,), generator=generator)
            x = data[index]
            out.append(torch.bernoulli(x, generator=generator) if self.train_split.binarize else x)
        return out

    def time_iterations(self) -> dict[str, list[float]]:
        """Seconds per iteration of each relaxation, one entry per round."""
        config = self.config
        batches = self._batches()
        names = list(self.models)
        optimizers = {n: torch.optim.Adam(self.models[n].parameters(), lr=1e-4) for n in names}
        times: dict[str, list[float]] = {n: [] for n in names}
        with torch.enable_grad():
            for r in range(config.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    model, optimizer, tau = (
                        self.models[name],
                        optimizers[name],
                        self.temperatures[name],
                    )
                    start = time.perf_counter()
                    for x in batches:
                        loss, _ = model.loss(x, tau)
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                    times[name].append((time.perf_counter() - start) / len(batches))
        return times

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        x = self.splits[split].data
        x = x[eval_subset(len(x), self.config.eval_size)]
        out = {}
        losses = [float(m.loss(x, self.temperatures[n])[1]["loss"]) for n, m in self.models.items()]
        out[f"{split}/loss"] = sum(losses)
        if split == "test":
            self.timing = self.time_iterations()
            reference = self.timing[self.config.relaxations[0]]
            for name, values in self.timing.items():
                out[f"test/{name}_ms"] = 1000 * statistics.median(values)
                ratios = [v / ref for v, ref in zip(values, reference)]
                out[f"test/{name}_ratio"] = statistics.median(ratios)
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "seconds_per_iteration_by_round": self.timing,
            "threads": torch.get_num_threads(),
            "load_average_1_5_15min": list(os.getloadavg()),
            "temperatures": self.temperatures,
        }


EXPERIMENT = register(
    Experiment(
        name="relaxation-timing",
        description="time per VAE training iteration per relaxation, ratio to Gumbel-softmax",
        config_class=RelaxationTimingConfig,
        task_class=RelaxationTimingTask,
        budgets={
            "smoke": TrainConfig.smoke(
                4,
                val_every=4,
                checkpoint_every=4,
                log_every=2,
                batch_size=20,
                eval_size=50,
                rounds=2,
                steps_per_round=3,
            ),
            "paper": {"steps": 50, "rounds": 5, "steps_per_round": 200},
        },
        paper_command="simplexity run relaxation-timing --budget paper --set net=nonlinear",
    )
)
