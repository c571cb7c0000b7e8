"""simplexity: sparse, relaxed and multimodal distributions on the simplex for deep generative models."""

from __future__ import annotations

from simplexity.normalizers.ev_softmax import (
    EvSoftmax,
    EvSoftmaxLoss,
    LogEvSoftmax,
    ev_softmax,
    ev_softmax_loss,
    log_ev_softmax,
)

__version__ = "0.1.0"

__all__ = [
    "EvSoftmax",
    "EvSoftmaxLoss",
    "LogEvSoftmax",
    "__version__",
    "ev_softmax",
    "ev_softmax_loss",
    "log_ev_softmax",
]
