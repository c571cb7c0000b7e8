"""Experiments by name: ``vae``, ``cvae``, ``flow2d`` (see :mod:`.registry` to add one).

Each experiment module holds a config dataclass, a :class:`~simplexity.engine.task.Task`, its
budgets (``smoke``, ``demo``, ``paper``) and a ``main(config)`` driver. Importing this package
registers them; nothing here imports Lightning or matplotlib.
"""

from __future__ import annotations

from simplexity.experiments import cvae, flow2d, vae
from simplexity.experiments.registry import Experiment, get, names, register

__all__ = ["Experiment", "cvae", "flow2d", "get", "names", "register", "vae"]
