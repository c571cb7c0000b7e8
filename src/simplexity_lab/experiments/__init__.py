"""Experiments by name: ``vae``, ``cvae``, ``flow2d``, … (see :mod:`.registry` to add one).

Each experiment module holds a config dataclass, a :class:`~simplexity_lab.engine.task.Task`, its
budgets (``smoke``, ``demo``, ``paper``) and a ``main(config)`` driver. Importing this package
registers them; nothing here imports Lightning or matplotlib.
"""

from __future__ import annotations

# isort: off
from simplexity_lab.experiments import cvae, flow2d, vae
from simplexity_lab.experiments import discrete_approx, igr_vae, relaxation_timing, sop  # IGR paper
from simplexity_lab.experiments import ssvae, translation, vqvae  # ev-softmax paper reproductions
from simplexity_lab.experiments import flow_objectives, maxent_dirichlet  # flows issue
from simplexity_lab.experiments.registry import Experiment, get, names, register

# isort: on

__all__ = [
    "Experiment",
    "cvae",
    "discrete_approx",
    "flow2d",
    "flow_objectives",
    "get",
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
