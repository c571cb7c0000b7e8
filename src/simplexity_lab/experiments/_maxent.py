r"""Maximum-entropy training on the engine: :class:`simplexity.flows.MaxEntTrainer`'s augmented
Lagrangian as a :class:`~simplexity_lab.engine.task.Task`.

The library's trainer runs the loop of Loaiza-Ganem et al.; here the engine runs the optimizer (so a
long run checkpoints and resumes) and the trainer does the rest: each optimizer step minimizes
:meth:`~simplexity.flows.MaxEntTrainer.loss` on a fresh batch, and after every ``inner`` steps
(one outer iteration) :meth:`~simplexity.flows.MaxEntTrainer.update` updates the multipliers on
``update_samples`` fresh samples; the learning rate is multiplied by ``lr_decay`` per outer
iteration (a :class:`~simplexity_lab.engine.schedules.StepDecay`). The trainer's state (the
multipliers, :math:`c`, the last residual norm) is saved in every checkpoint.

References:
    Loaiza-Ganem, Gao and Cunningham, *Maximum Entropy Flow Networks*, ICLR 2017.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from simplexity.flows import AugmentedLagrangian, MaxEntTrainer
from simplexity_lab.engine.schedules import Constant, StepDecay, parse_schedule
from simplexity_lab.engine.task import StepBatches, Task, TrainConfig

__all__ = ["AugmentedLagrangianConfig", "AugmentedLagrangianTask"]


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

    minimums: ClassVar[Mapping[str, int]] = {"inner": 1, "update_samples": 2}

    def uses_lagrangian(self) -> bool:
        """Whether the run trains with the augmented Lagrangian (subclasses may say no)."""
        return True

    def lagrangian(self) -> AugmentedLagrangian:
        """The library's settings of this run (the learning rate: the schedule's first value)."""
        return AugmentedLagrangian(
            outer=self.steps // self.inner, inner=self.inner, batch=self.batch_size,
            lr=float(parse_schedule(self.lr, name="lr")(0)), c0=self.c0, gamma=self.gamma,
            beta=self.beta, eval_samples=self.update_samples, lr_decay=self.lr_decay,
        )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.uses_lagrangian():
            return
        if self.steps % self.inner:
            raise ValueError(
                f"steps ({self.steps}) must be a positive multiple of inner ({self.inner}): "
                "set steps=OUTER*INNER"
            )
        if self.batch_size % 2:
            raise ValueError(
                f"batch_size must be even (the penalty splits it in halves), got {self.batch_size}"
            )
        schedule = parse_schedule(self.lr, name="lr")
        if self.lr_decay != 1 and not isinstance(schedule, (Constant, StepDecay)):
            raise ValueError(f"lr_decay needs a constant lr (a number), got lr={self.lr!r}")
        self.lagrangian()  # the library checks c0, gamma, beta and lr_decay


class AugmentedLagrangianTask(Task):
    """Maximize the entropy of ``model()`` subject to :math:`\\mathbb{E}[T(z)] = 0`.

    Subclasses build ``model``, ``constraint`` (:math:`T`) and ``estimator_kwargs`` (for a
    mixture base) and call :meth:`setup_lagrangian`; they implement :meth:`evaluate`.
    """

    model: nn.Module
    constraint: Callable[[Tensor], Tensor]
    estimator_kwargs: dict[str, Any]
    trainer: MaxEntTrainer | None = None

    def setup_lagrangian(self, num_constraints: int) -> None:
        """Create the library's trainer (multipliers at zero) and the learning-rate schedule."""
        config = self.config
        settings = replace(config.lagrangian(), estimator_kwargs=self.estimator_kwargs or None)
        self.trainer = MaxEntTrainer(self.model, self.constraint, settings)
        self.num_constraints = num_constraints
        self.register_buffer("outer_done", torch.zeros((), dtype=torch.long))
        # per outer iteration: the residual norm of the update and the c of its inner loop
        outer = config.steps // config.inner
        self.register_buffer("updates", torch.full((outer, 2), math.nan, dtype=torch.float64))
        if config.lr_decay != 1:
            lr = float(parse_schedule(config.lr, name="lr")(0))
            self.config = replace(config, lr=StepDecay(lr, config.lr_decay, config.inner))

    @property
    def lam(self) -> Tensor:
        """The Lagrange multipliers :math:`\\lambda` (zero before the first step)."""
        assert self.trainer is not None
        lam = self.trainer.lam
        return torch.zeros(self.num_constraints) if lam is None else lam

    @property
    def penalty(self) -> float:
        """The penalty coefficient :math:`c`."""
        assert self.trainer is not None
        return self.trainer.c

    def get_extra_state(self) -> dict[str, Any] | None:
        return None if self.trainer is None else self.trainer.state_dict()

    def set_extra_state(self, state: dict[str, Any] | None) -> None:
        if state is not None and self.trainer is not None:
            self.trainer.load_state_dict(state)

    def sample(self, num: int) -> tuple[Tensor, Tensor]:
        """``num`` samples of the model and their log densities (or the estimator's)."""
        return self.model().rsample_and_log_prob((num,), **self.estimator_kwargs)

    def train_batches(self) -> StepBatches:
        # the samples are drawn by the model; the batches only count the steps
        return StepBatches(torch.zeros(self.config.batch_size, 1), seed=self.config.seed)

    @torch.no_grad()
    def update_multipliers(self) -> None:
        """The outer update after ``inner`` steps (fresh samples from the training RNG)."""
        assert self.trainer is not None
        record = self.trainer.update()
        k = int(self.outer_done)
        self.updates[k] = torch.tensor([record["residual_norm"], record["c"]], dtype=torch.float64)
        self.outer_done += 1

    def training_loss(self, batch, step):
        assert self.trainer is not None
        # the update of outer iteration k runs before the first step of iteration k + 1, so a run
        # resumed from a checkpoint at that boundary does it exactly once
        inner = self.config.inner
        if step > 0 and step % inner == 0 and int(self.outer_done) < step // inner:
            self.update_multipliers()
        lam = self.trainer.lam
        if lam is not None and lam.device != self.outer_done.device:  # a checkpoint's, on the CPU
            self.trainer.lam = lam.to(self.outer_done.device)
        c = self.trainer.c
        loss = self.trainer.loss()
        return loss, {"loss": loss.detach(), "penalty_c": c}

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
