r"""Maximum-entropy training on the engine: the augmented Lagrangian of
:mod:`simplexity.flows.maxent` as a :class:`~simplexity_lab.engine.task.Task`.

:class:`~simplexity.flows.MaxEntTrainer` runs its own loop; here the engine runs it, so that a
long run checkpoints and resumes. Each optimizer step minimizes
:func:`~simplexity.flows.augmented_lagrangian_loss` on a fresh batch; after every ``inner`` steps
(one outer iteration) the multipliers are updated by
:func:`~simplexity.flows.update_multipliers` on ``update_samples`` fresh samples, and the learning
rate is multiplied by ``lr_decay``. The multipliers live in buffers, so they are saved in every
checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from simplexity_lab.engine.schedules import Constant, Schedule, parse_schedule
from simplexity_lab.engine.task import StepBatches, Task, TrainConfig

__all__ = ["AugmentedLagrangianConfig", "AugmentedLagrangianTask", "StepDecay"]


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``start * factor ** (step // every)``: the learning rate of an outer loop decayed per outer
    iteration (the engine's spec strings have no step decay, so the task hands this object to the
    engine; :func:`~simplexity_lab.engine.schedules.parse_schedule` accepts a schedule object).

    Example:
        >>> s = StepDecay(1e-3, 0.5, 10)
        >>> s(0), s(9), s(10), s(25)
        (0.001, 0.001, 0.0005, 0.00025)
    """

    start: float
    factor: float
    every: int

    def __call__(self, step: int) -> float:
        return self.start * self.factor ** (max(step, 0) // self.every)

    def spec(self) -> str:
        """A description (no spec string of :func:`parse_schedule` names a step decay)."""
        return f"{self.start!r} decayed by {self.factor!r} every {self.every} steps"


@dataclass(frozen=True)
class AugmentedLagrangianConfig(TrainConfig):
    """Options of the augmented Lagrangian (see :class:`~simplexity.flows.AugmentedLagrangian`).

    Attributes:
        inner: optimizer steps per outer iteration (``steps`` must be a multiple).
        lr_decay: the learning rate is multiplied by this after each outer iteration (needs a
            constant ``lr``).
        c0: initial penalty coefficient; gamma, beta: ``c`` grows by ``beta`` unless the residual
            fell below ``gamma`` times its last value.
        update_samples: fresh samples for each multiplier update.
    """

    inner: int = 3000
    lr_decay: float = 1.0
    c0: float = 0.05
    gamma: float = 0.25
    beta: float = 4.0
    update_samples: int = 20_000

    def uses_lagrangian(self) -> bool:
        """Whether the run trains with the augmented Lagrangian (subclasses may say no)."""
        return True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.uses_lagrangian():
            return
        if self.inner < 1 or self.steps % self.inner:
            raise ValueError(
                f"steps ({self.steps}) must be a positive multiple of inner ({self.inner}): "
                "set steps=OUTER*INNER"
            )
        if self.batch_size % 2:
            raise ValueError(
                f"batch_size must be even (the penalty splits it in halves), got {self.batch_size}"
            )
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        schedule = parse_schedule(self.lr, name="lr")
        if self.lr_decay != 1 and not isinstance(schedule, (Constant, StepDecay)):
            raise ValueError(f"lr_decay needs a constant lr (a number), got lr={self.lr!r}")
        if not self.c0 > 0 or not self.beta > 0:
            raise ValueError(f"c0 and beta must be > 0, got {self.c0}, {self.beta}")
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma must be in (0, 1), got {self.gamma}")
        if self.update_samples < 2:
            raise ValueError(f"update_samples must be >= 2, got {self.update_samples}")


class AugmentedLagrangianTask(Task):
    """Maximize the entropy of ``model()`` subject to :math:`\\mathbb{E}[T(z)] = 0`.

    Subclasses build ``model``, ``constraint`` (:math:`T`) and ``estimator_kwargs`` (for a
    mixture base) and call :meth:`setup_lagrangian`; they implement :meth:`evaluate`.
    """

    model: nn.Module
    constraint: Callable[[Tensor], Tensor]
    estimator_kwargs: dict[str, Any]

    def setup_lagrangian(self, num_constraints: int) -> None:
        """Create the multiplier buffers and the learning-rate schedule."""
        config = self.config
        self.register_buffer("lam", torch.zeros(num_constraints))
        self.register_buffer("penalty", torch.tensor(float(config.c0), dtype=torch.float64))
        self.register_buffer("last_norm", torch.tensor(math.inf, dtype=torch.float64))
        self.register_buffer("outer_done", torch.zeros((), dtype=torch.long))
        outer = config.steps // config.inner
        # per outer iteration: the residual norm of the update and the c of its inner loop
        self.register_buffer("updates", torch.full((outer, 2), math.nan, dtype=torch.float64))
        if config.lr_decay != 1:
            lr = float(parse_schedule(config.lr, name="lr")(0))
            self.config = replace(config, lr=StepDecay(lr, config.lr_decay, config.inner))

    def sample(self, num: int) -> tuple[Tensor, Tensor]:
        """``num`` samples of the model and their log densities (or the estimator's)."""
        return self.model().rsample_and_log_prob((num,), **self.estimator_kwargs)

    def train_batches(self) -> StepBatches:
        # the samples are drawn by the model; the batches only count the steps
        return StepBatches(torch.zeros(self.config.batch_size, 1), seed=self.config.seed)

    @torch.no_grad()
    def update_multipliers(self) -> None:
        """The outer update after ``inner`` steps (fresh samples from the training RNG)."""
        from simplexity.flows import update_multipliers

        z, _ = self.sample(self.config.update_samples)
        residual = self.constraint(z).mean(0)
        c = float(self.penalty)
        lam, new_c = update_multipliers(
            self.lam, c, residual, float(self.last_norm),
            gamma=self.config.gamma, beta=self.config.beta,
        )  # fmt: skip
        k = int(self.outer_done)
        norm = float(residual.norm())
        self.updates[k] = torch.tensor([norm, c], dtype=torch.float64)
        self.lam.copy_(lam)
        self.penalty.fill_(new_c)
        self.last_norm.fill_(norm)
        self.outer_done += 1

    def training_loss(self, batch, step):
        from simplexity.flows import augmented_lagrangian_loss

        # the update of outer iteration k runs before the first step of iteration k + 1, so a run
        # resumed from a checkpoint at that boundary does it exactly once
        inner = self.config.inner
        if step > 0 and step % inner == 0 and int(self.outer_done) < step // inner:
            self.update_multipliers()
        z, log_p = self.sample(self.config.batch_size)
        t = self.constraint(z)
        loss = augmented_lagrangian_loss(log_p, t, self.lam, float(self.penalty))
        logs = {"loss": loss.detach(), "entropy_estimate": -log_p.mean().detach(),
                "penalty_c": float(self.penalty)}  # fmt: skip
        return loss, logs

    def lagrangian_summary(self) -> dict[str, Any]:
        """The multipliers and the per-outer-iteration updates (for ``metrics.json``)."""
        done = int(self.outer_done)
        return {
            "lambda": [round(float(v), 6) for v in self.lam],
            "c": float(self.penalty),
            "outer_updates": [
                {
                    "outer": k,
                    "residual_norm": float(self.updates[k, 0]),
                    "c": float(self.updates[k, 1]),
                }
                for k in range(done)
            ],
            "lr": self.config.lr if isinstance(self.config.lr, str) else self.config.lr.spec(),
        }
