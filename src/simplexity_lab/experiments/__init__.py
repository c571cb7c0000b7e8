"""Experiments by name: ``vae``, ``cvae``, ``flow2d``, … (each registers itself on import).

Each experiment module holds a config dataclass, a :class:`~simplexity_lab.engine.task.Task` and
its budgets (``smoke``, ``paper``, …), and adds an
:class:`~simplexity_lab.engine.experiment.Experiment` to the engine's registry
:data:`~simplexity_lab.engine.experiment.EXPERIMENTS`; importing this package registers them all.
Nothing here imports Lightning or matplotlib.
"""

from __future__ import annotations

# isort: off
from simplexity_lab.experiments import cvae, flow2d, vae
from simplexity_lab.experiments import discrete_approx, igr_vae, relaxation_timing, sop  # IGR paper
from simplexity_lab.experiments import ssvae, translation, vqvae  # ev-softmax paper reproductions
from simplexity_lab.experiments import flow_objectives, maxent_dirichlet  # mixture bases, flows
from simplexity_lab.experiments import gradient_quality  # estimators issue
from simplexity_lab.engine.experiment import EXPERIMENTS, Experiment, register

# isort: on

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "cvae",
    "discrete_approx",
    "flow2d",
    "flow_objectives",
    "get",
    "gradient_quality",
    "igr_vae",
    "maxent_dirichlet",
    "names",
    "register",
    "relaxation_timing",
    "sop",
    "ssvae",
    "translation",
    "vae",
    "vqvae",
]


def names() -> list[str]:
    """The registered experiment names, sorted."""
    return sorted(EXPERIMENTS.names())


def get(name: str) -> Experiment:
    """The experiment registered as ``name`` (``ValueError`` naming the known ones otherwise)."""
    return EXPERIMENTS[name]
