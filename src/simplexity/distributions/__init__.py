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
from simplexity.distributions.planar import PlanarFlows
from simplexity.distributions.score_function import RunningMean, score_function_surrogate
from simplexity.distributions.straight_through import (
    DecoupledStraightThrough,
    GumbelRao,
    GumbelStraightThrough,
    OneHotSurrogate,
    ReinMax,
    StraightThrough,
    conditional_gumbel,
)
from simplexity.distributions.transforms import (
    PlanarTransform,
    SoftmaxPlusPlusTransform,
    StickBreakingTransform,
)

__all__ = [
    "IGR",
    "DecoupledStraightThrough",
    "ExpGumbelSoftmax",
    "GumbelRao",
    "GumbelSoftmax",
    "GumbelStraightThrough",
    "IGRBase",
    "IGRPlanar",
    "IGRStickBreaking",
    "MixtureOfGaussians",
    "NoClosedFormKLError",
    "OneHotSurrogate",
    "PlanarFlows",
    "PlanarTransform",
    "ReinMax",
    "RunningMean",
    "SoftmaxPlusPlusTransform",
    "StickBreakingTransform",
    "StraightThrough",
    "Truncation",
    "conditional_gumbel",
    "igr_uniform_prior",
    "igr_uniform_prior_loc",
    "igr_zero_temperature_probs",
    "monte_carlo_kl",
    "relaxations",
    "score_function_surrogate",
    "stick_breaking_truncation",
    "zero_temperature_limit",
]
