"""The experiment type and the registry of experiments by name, owned by the engine.

An :class:`Experiment` ties a name (``"vae"``, ``"cvae"``, ``"flow2d"``, …) to a config dataclass
(a :class:`~simplexity_lab.engine.task.TrainConfig` subclass), the
:class:`~simplexity_lab.engine.task.Task` it trains, and named budgets: partial configs applied
before the user's overrides. Every experiment has at least ``"smoke"`` (seconds, for tests) and
``"paper"`` (the published setup); ``"demo"`` is what ``simplexity demo`` runs.

The engine knows no experiment: :data:`EXPERIMENTS` starts empty and the experiment modules
(:mod:`simplexity_lab.experiments`) fill it when they are imported. To add one::

    EXPERIMENTS.add("my-exp", Experiment(
        name="my-exp", description="...", config_class=MyConfig, task_class=MyTask,
        budgets={"smoke": TrainConfig.smoke(), "paper": {"steps": 100_000}},
        paper_command="simplexity run my-exp --budget paper",
    ))

or :func:`register` (the same, with the experiment's own name).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simplexity._registry import Registry
from simplexity_lab.engine.config import build_config

__all__ = ["EXPERIMENTS", "Experiment", "register"]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    Attributes:
        name: the registry name (what ``simplexity run NAME`` takes).
        description: one line for ``simplexity list``.
        config_class: its config dataclass.
        task_class: ``task_class(config, data_dir=...)`` builds the task.
        budgets: ``{"smoke": {...}, "paper": {...}, ...}`` partial configs.
        paper_command: how to reproduce the paper-scale result.

    Example:
        >>> from simplexity_lab.engine.task import TrainConfig
        >>> exp = Experiment("demo", "a demo", TrainConfig, object,
        ...                  budgets={"smoke": TrainConfig.smoke(), "paper": {"steps": 50}})
        >>> exp.make_config("smoke").steps, exp.make_config("paper", ["seed=3"]).seed
        (20, 3)
    """

    name: str
    description: str
    config_class: type
    task_class: Callable[..., Any]
    budgets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    paper_command: str = ""

    def __post_init__(self) -> None:
        for required in ("smoke", "paper"):
            if required not in self.budgets:
                raise ValueError(f"experiment {self.name!r} needs a {required!r} budget")

    def make_config(
        self,
        budget: str = "smoke",
        *layers: Mapping[str, Any] | Sequence[str] | None,
    ) -> Any:
        """The config: class defaults, then the budget, then each layer (dicts or ``k=v`` lists)."""
        if budget not in self.budgets:
            raise ValueError(
                f"unknown budget {budget!r} for {self.name}; expected one of: "
                f"{', '.join(self.budgets)}"
            )
        return build_config(self.config_class, self.budgets[budget], *layers)

    def build(self, config: Any, *, data_dir: str | None = None) -> Any:
        """Build the task for ``config``."""
        return self.task_class(config, data_dir=data_dir)


EXPERIMENTS: Registry[Experiment] = Registry("experiment")
"""Every registered experiment by name (filled by importing :mod:`simplexity_lab.experiments`)."""


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to :data:`EXPERIMENTS` under its own name (which must be new)."""
    if not isinstance(experiment, Experiment):
        raise TypeError(f"experiment must be an Experiment, got {type(experiment).__name__}")
    return EXPERIMENTS.add(experiment.name, experiment)
