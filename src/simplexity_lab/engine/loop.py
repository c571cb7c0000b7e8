r"""The optimizer, the learning-rate schedule, seeded evaluation, and a plain training loop.

:func:`train_plain` is the engine without Lightning: the same task, batches, schedules and seeds,
no checkpoints or loggers. The demo uses it (its install stays light); ``simplexity run`` uses
:mod:`simplexity_lab.engine.lightning`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from simplexity_lab.engine.schedules import parse_schedule
from simplexity_lab.engine.task import Task, derived_seed, step_loader

__all__ = ["build_optimizer", "evaluate_seeded", "lr_lambda", "train_plain"]


def build_optimizer(task: Task) -> torch.optim.Optimizer:
    """Adam or SGD on the task's trainable parameters, base learning rate 1 (scaled by the schedule)."""
    config = task.config
    params = [p for p in task.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=1.0, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=1.0, weight_decay=config.weight_decay)


def lr_lambda(task: Task) -> Callable[[int], float]:
    """The learning rate at each step, as a plain function (``LambdaLR`` then saves no object)."""
    schedule = parse_schedule(task.config.lr, name="lr")

    def learning_rate(step: int) -> float:
        return schedule(step)

    return learning_rate


def evaluate_seeded(task: Task, split: str, *, salt: int = 0) -> dict[str, float]:
    """``task.evaluate(split)`` with the global RNG forked and seeded from the run's seed."""
    was_training = task.training
    task.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(task.config.seed, 4, salt))
            return task.evaluate(split)
    finally:
        task.train(was_training)


def train_plain(
    task: Task,
    *,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    evaluate: bool = True,
) -> dict[str, Any]:
    """Train ``task`` for ``task.config.steps`` steps with a minimal loop.

    Seeds the global RNG with the config's seed before the first step (the model is built by the
    caller), evaluates on the validation split every ``val_every`` steps when ``evaluate``, and
    returns ``{"train_time_s": ..., "last": {scalars of the last step}}``.
    """
    config = task.config
    torch.manual_seed(config.seed)
    loader = step_loader(task.train_batches(), config)
    optimizer = build_optimizer(task)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(task))
    task.train()
    start = time.perf_counter()
    last: dict[str, float] = {}
    for step, batch in enumerate(loader):
        loss, logs = task.training_loss(batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(task.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        if evaluate and ((step + 1) % config.val_every == 0 or step + 1 == config.steps):
            metrics = evaluate_seeded(task, "valid", salt=step + 1)
            if on_eval is not None:
                on_eval(step + 1, metrics)
        if step + 1 == config.steps:
            last = {k: float(v) for k, v in logs.items()}
    return {"train_time_s": time.perf_counter() - start, "last": last}
