"""simplexity: sparse, relaxed and multimodal distributions on the simplex for deep generative models.

The library: :mod:`simplexity.normalizers` (ev-softmax and its baselines), :mod:`simplexity.distributions`
(relaxed categoricals, the IGR family, mixtures of Gaussians), :mod:`simplexity.flows` (normalizing flows,
RAD, maximum-entropy flows) and :mod:`simplexity.nn` (attention and output layers with any normalizer).
It needs torch, numpy and ``entmax`` only; the experiments live in ``simplexity_lab``.
"""

from __future__ import annotations

from simplexity import distributions, flows, nn, normalizers
from simplexity.distributions import (
    IGR,
    GumbelSoftmax,
    IGRPlanar,
    IGRStickBreaking,
    MixtureOfGaussians,
)
from simplexity.flows import Flow
from simplexity.nn import MultiheadAttention, attention
from simplexity.normalizers import (
    EvSoftmax,
    EvSoftmaxLoss,
    LogEvSoftmax,
    ev_softmax,
    ev_softmax_loss,
    log_ev_softmax,
)

__version__ = "0.1.0"

__all__ = [
    "IGR",
    "EvSoftmax",
    "EvSoftmaxLoss",
    "Flow",
    "GumbelSoftmax",
    "IGRPlanar",
    "IGRStickBreaking",
    "LogEvSoftmax",
    "MixtureOfGaussians",
    "MultiheadAttention",
    "__version__",
    "attention",
    "distributions",
    "ev_softmax",
    "ev_softmax_loss",
    "flows",
    "log_ev_softmax",
    "nn",
    "normalizers",
]
