"""Relaxed and multimodal distributions on the simplex (real ``torch.distributions`` objects).

Importing this package registers the KL divergences of :mod:`simplexity.distributions.kl`.
"""

from __future__ import annotations

from simplexity.distributions import relaxations
from simplexity.distributions.gumbel_softmax import ExpGumbelSoftmax, GumbelSoftmax
from simplexity.distributions.igr import (
    IGR,
    IGRBase,
    IGRPlanar,
    IGRStickBreaking,
    PlanarFlows,
    Truncation,
    stick_breaking_truncation,
)
from simplexity.distributions.kl import NoClosedFormKLError, monte_carlo_kl
from simplexity.distributions.limits import (
    igr_uniform_prior,
    igr_uniform_prior_loc,
    igr_zero_temperature_probs,
    zero_temperature_limit,
)
from simplexity.distributions.mixture import MixtureOfGaussians
from simplexity.distributions.transforms import (
    PlanarTransform,
    SoftmaxPlusPlusTransform,
    StickBreakingTransform,
)

__all__ = [
    "IGR",
    "ExpGumbelSoftmax",
    "GumbelSoftmax",
    "IGRBase",
    "IGRPlanar",
    "IGRStickBreaking",
    "MixtureOfGaussians",
    "NoClosedFormKLError",
    "PlanarFlows",
    "PlanarTransform",
    "SoftmaxPlusPlusTransform",
    "StickBreakingTransform",
    "Truncation",
    "igr_uniform_prior",
    "igr_uniform_prior_loc",
    "igr_zero_temperature_probs",
    "monte_carlo_kl",
    "relaxations",
    "stick_breaking_truncation",
    "zero_temperature_limit",
]
