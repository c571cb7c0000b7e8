r"""Normalizing flows over any base (Gaussian or mixture), RAD, and maximum-entropy flows.

Transforms are plain ``torch.distributions.transforms.Transform`` objects; their trainable state
lives in small modules whose ``forward()`` builds them (``Planar(2)()`` is a
:class:`PlanarTransform`), and :class:`LazyFlow` assembles a base module and transform modules into
a :class:`Flow` distribution.
"""

from __future__ import annotations

from simplexity.flows.bases import GaussianBase, MixtureBase
from simplexity.flows.bijections import SimplexTransform
from simplexity.flows.coupling import AffineCoupling, AffineCouplingTransform
from simplexity.flows.flow import Flow, LazyFlow
from simplexity.flows.maxent import (
    AugmentedLagrangian,
    MaxEntTrainer,
    augmented_lagrangian_loss,
    dirichlet_constraints,
    dirichlet_entropy,
    update_multipliers,
)
from simplexity.flows.planar import Planar, PlanarTransform
from simplexity.flows.rad import RAD, RADDistribution, RADLayer
from simplexity.flows.radial import Radial, RadialTransform

__all__ = [
    "RAD",
    "AffineCoupling",
    "AffineCouplingTransform",
    "AugmentedLagrangian",
    "Flow",
    "GaussianBase",
    "LazyFlow",
    "MaxEntTrainer",
    "MixtureBase",
    "Planar",
    "PlanarTransform",
    "RADDistribution",
    "RADLayer",
    "Radial",
    "RadialTransform",
    "SimplexTransform",
    "augmented_lagrangian_loss",
    "dirichlet_constraints",
    "dirichlet_entropy",
    "update_multipliers",
]
