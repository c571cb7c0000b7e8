r"""What an experiment hands to the engine: a :class:`Task` (model, loss, evaluation) and its data.

The engine (:mod:`simplexity_lab.engine.lightning` or the plain loop of :mod:`simplexity_lab.engine.loop`)
only ever calls :meth:`Task.training_loss`, :meth:`Task.evaluate` and :meth:`Task.figures`.

Batches are a pure function of ``(seed, step)`` (:class:`StepSampler`): the permutation of epoch
``e`` comes from a generator seeded with ``(seed, e)``, and dynamic binarization draws from a
generator seeded with ``(seed, step)``. So a run resumed at step ``t`` sees exactly the batches an
uninterrupted run sees, whatever happened to the process in between, and a run on ``W`` processes
splits each global batch into ``W`` equal shards.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from simplexity._checks import check_int
from simplexity_lab.engine.schedules import parse_schedule

__all__ = [
    "StepBatches",
    "StepSampler",
    "Task",
    "TrainConfig",
    "derived_seed",
    "step_loader",
]


@dataclass(frozen=True)
class TrainConfig:
    """Options every experiment shares (experiment configs subclass it).

    Attributes:
        seed: the seed of everything (model init, batches, noise, evaluation).
        steps: number of optimizer steps.
        batch_size: global batch size (split across processes under DDP).
        optimizer: ``"adam"`` or ``"sgd"``.
        lr: learning-rate schedule spec (:func:`~simplexity_lab.engine.schedules.parse_schedule`).
        weight_decay: L2 penalty of the optimizer.
        grad_clip: clip the gradient norm at this value (``None``: no clipping).
        val_every: evaluate on the validation split every this many steps.
        checkpoint_every: save ``last.ckpt`` every this many steps.
        log_every: log training scalars every this many steps.
        eval_size: evaluate on at most this many examples per split (``None``: all).
        deterministic: use deterministic algorithms.

    A subclass declares the checks its own fields need, and :meth:`__post_init__` runs them
    together with these (a subclass's entries add to its parents'):

    - ``minimums``: integer fields and their least values (``None`` passes, for optional fields);
    - ``schedules``: fields that hold schedule specs (:func:`~simplexity_lab.engine.schedules.parse_schedule`).

    Example:
        >>> @dataclass(frozen=True)
        ... class MyConfig(TrainConfig):
        ...     hidden: int = 32
        ...     beta: str = "linear:0:1:100"
        ...     minimums: ClassVar[Mapping[str, int]] = {"hidden": 1}
        ...     schedules: ClassVar[tuple[str, ...]] = ("beta",)
        >>> MyConfig(hidden=0)
        Traceback (most recent call last):
        ...
        ValueError: hidden must be an int >= 1, got 0
        >>> TrainConfig.smoke(eval_size=100)
        {'steps': 20, 'val_every': 10, 'checkpoint_every': 10, 'log_every': 5, 'eval_size': 100}
    """

    seed: int = 0
    steps: int = 1000
    batch_size: int = 100
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: str = "1e-3"
    weight_decay: float = 0.0
    grad_clip: float | None = None
    val_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 50
    eval_size: int | None = None
    deterministic: bool = True

    minimums: ClassVar[Mapping[str, int]] = {
        "steps": 1, "batch_size": 1, "val_every": 1, "checkpoint_every": 1, "log_every": 1,
        "eval_size": 1,
    }  # fmt: skip
    schedules: ClassVar[tuple[str, ...]] = ("lr",)

    def __post_init__(self) -> None:
        minimums: dict[str, int] = {}
        schedules: dict[str, None] = {}
        for cls in reversed(type(self).__mro__):
            minimums.update(vars(cls).get("minimums", {}))
            schedules.update(dict.fromkeys(vars(cls).get("schedules", ())))
        for name, least in minimums.items():
            value = getattr(self, name)
            if value is not None:
                check_int(name, value, min=least)
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or none, got {self.grad_clip}")
        for name in schedules:
            parse_schedule(getattr(self, name), name=name)

    @staticmethod
    def smoke(steps: int = 20, **values: Any) -> dict[str, Any]:
        """A ``smoke`` budget (seconds, for tests): ``steps`` steps, validated and checkpointed
        half way and at the end, logged every quarter, then ``values``."""
        half = max(1, steps // 2)
        return {"steps": steps, "val_every": half, "checkpoint_every": half,
                "log_every": max(1, steps // 4), **values}  # fmt: skip


def derived_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (``numpy.random.SeedSequence``)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class StepSampler(Sampler):
    """Yields ``(step, indices)`` for steps ``start_step .. num_steps - 1``.

    Epoch ``e`` is a permutation drawn from a generator seeded with ``(seed, e)``; step ``t`` takes
    the ``t``-th full batch of its epoch (the incomplete last batch is dropped). With
    ``world_size > 1`` each process takes its contiguous shard of the global batch.

    ``len()`` is ``num_steps`` (not the remaining steps) so that Lightning's batch counters stay
    right when a run resumes mid-epoch.

    Example:
        >>> s = StepSampler(10, 4, seed=0, num_steps=3)
        >>> [step for step, _ in s], [len(i) for _, i in s]
        ([0, 1, 2], [4, 4, 4])
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        *,
        seed: int,
        num_steps: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size > num_examples:
            raise ValueError(
                f"batch_size {batch_size} is larger than the training set ({num_examples})"
            )
        if batch_size % world_size:
            raise ValueError(
                f"batch_size {batch_size} must be divisible by the number of processes "
                f"({world_size})"
            )
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.num_steps = num_steps
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.steps_per_epoch = num_examples // batch_size
        self._epoch: int | None = None
        self._perm: Tensor | None = None

    def indices(self, step: int) -> Tensor:
        """The indices of this process's share of the batch of ``step``."""
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(derived_seed(self.seed, 1, epoch))
            self._perm = torch.randperm(self.num_examples, generator=generator)
            self._epoch = epoch
        assert self._perm is not None
        batch = self._perm[position * self.batch_size : (position + 1) * self.batch_size]
        return batch.chunk(self.world_size)[self.rank]

    def __iter__(self) -> Iterator[tuple[int, Tensor]]:
        for step in range(self.start_step, self.num_steps):
            yield step, self.indices(step)

    def __len__(self) -> int:
        return self.num_steps


class StepBatches(Dataset):
    """In-memory data indexed by ``(step, indices)``: returns the batch tuple.

    Args:
        data: the inputs, ``(N, ...)``.
        labels: ``(N,)`` or ``None``.
        binarize: draw ``x ~ Bernoulli(data)`` afresh for each batch (dynamic binarization), from a
            generator seeded with ``(seed, step)``.
        seed: the run's seed.
    """

    def __init__(
        self, data: Tensor, labels: Tensor | None = None, *, binarize: bool = False, seed: int = 0
    ) -> None:
        self.data = data
        self.labels = labels
        self.binarize = binarize
        self.seed = seed

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, Tensor]) -> tuple[Tensor, ...]:
        step, index = item
        x = self.data[index]
        if self.binarize:
            generator = torch.Generator().manual_seed(derived_seed(self.seed, 2, step))
            x = torch.bernoulli(x, generator=generator)
        return (x,) if self.labels is None else (x, self.labels[index])


def step_loader(
    batches: StepBatches,
    config: TrainConfig,
    *,
    start_step: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """The training loader: one ``DataLoader`` "epoch" of ``config.steps`` batches.

    The loader has its own generator, so creating its iterator never draws from the global RNG
    (which the model's noise uses).
    """
    sampler = StepSampler(
        len(batches),
        config.batch_size,
        seed=config.seed,
        num_steps=config.steps,
        start_step=start_step,
        rank=rank,
        world_size=world_size,
    )
    generator = torch.Generator().manual_seed(derived_seed(config.seed, 3))
    return DataLoader(batches, sampler=sampler, batch_size=None, generator=generator)


class Task(nn.Module):
    """Base class of an experiment's trainable part.

    Subclasses set ``config`` and build their model in ``__init__`` and implement
    :meth:`train_batches`, :meth:`training_loss` and :meth:`evaluate`; :meth:`figures` is optional.

    Attributes:
        monitor: the validation metric that picks ``best.ckpt``.
        monitor_mode: ``"min"`` or ``"max"``.
    """

    monitor: str = "valid/loss"
    monitor_mode: str = "min"

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config

    def train_batches(self) -> StepBatches:
        """The training data."""
        raise NotImplementedError

    def training_loss(self, batch: tuple[Tensor, ...], step: int) -> tuple[Tensor, dict[str, Any]]:
        """Return ``(loss, scalars to log)`` for one batch at optimizer step ``step``."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics on ``split`` (``"valid"`` or ``"test"``), keys prefixed with ``split/``.

        The engine calls it with the global RNG forked and seeded, so it is deterministic and
        leaves the training noise untouched.
        """
        raise NotImplementedError

    def figures(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Named matplotlib figures of the trained model (``history``: the evaluations so far)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """Extra facts about the run to record in ``metrics.json`` (e.g. resolved options)."""
        return {}
