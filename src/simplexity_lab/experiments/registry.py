"""The registry of experiments by name, each with its config class and budgets.

An :class:`Experiment` ties a name (``"vae"``, ``"cvae"``, ``"flow2d"``, and later ``"igr-vae"``,
``"ssvae"``, …) to a config dataclass (a :class:`~simplexity_lab.engine.task.TrainConfig` subclass),
the :class:`~simplexity_lab.engine.task.Task` it trains, and named budgets: partial configs applied
before the user's overrides. Every experiment has at least ``"smoke"`` (seconds, for tests) and
``"paper"`` (the published setup); ``"demo"`` is what ``simplexity demo`` runs.

To add one::

    register(Experiment(
        name="my-exp", description="...", config_class=MyConfig, task_class=MyTask,
        budgets={"smoke": {"steps": 20}, "paper": {"steps": 100_000}},
        paper_command="simplexity run my-exp --budget paper",
    ))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simplexity_lab.engine.config import build_config

__all__ = ["Experiment", "get", "names", "register"]


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
                f"unknown budget {budget!r} for {self.name}; expected one of "
                f"{', '.join(self.budgets)}"
            )
        return build_config(self.config_class, self.budgets[budget], *layers)

    def build(self, config: Any, *, data_dir: str | None = None) -> Any:
        """Build the task for ``config``."""
        return self.task_class(config, data_dir=data_dir)


_REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry (its name must be new)."""
    if not isinstance(experiment, Experiment):
        raise TypeError(f"experiment must be an Experiment, got {type(experiment).__name__}")
    if experiment.name in _REGISTRY:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    _REGISTRY[experiment.name] = experiment
    return experiment


def names() -> list[str]:
    """The registered experiment names."""
    return sorted(_REGISTRY)


def get(name: str) -> Experiment:
    """The experiment registered as ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; expected one of {', '.join(names())}")
    return _REGISTRY[name]
