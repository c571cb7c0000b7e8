"""Normalizers onto the simplex: ev-softmax, its baselines, post-hoc evidential sparsification, a registry.

``get(name, **options)`` returns a :class:`Normalizer` (map, log-space form, training loss) for
``"softmax"``, ``"sparsemax"``, ``"entmax15"``, ``"entmax_bisect"`` (``alpha``), ``"ev_softmax"``
(``eps``) and ``"posthoc_evidential"`` (a softmax layer evaluated with the post-hoc evidential filter).
"""

from simplexity.normalizers.baselines import (
    entmax15,
    entmax15_loss,
    entmax_bisect,
    entmax_bisect_loss,
    softmax,
    softmax_loss,
    sparsemax,
    sparsemax_loss,
)
from simplexity.normalizers.ev_softmax import (
    EvSoftmax,
    EvSoftmaxLoss,
    LogEvSoftmax,
    ev_softmax,
    ev_softmax_loss,
    log_ev_softmax,
)
from simplexity.normalizers.evidential import (
    evidence_weights,
    evidential_support,
    posthoc_evidential,
    singleton_log_masses,
)
from simplexity.normalizers.registry import (
    Normalizer,
    NormalizerModule,
    check_name,
    get,
    names,
    register,
    resolve,
)

__all__ = [
    "EvSoftmax",
    "EvSoftmaxLoss",
    "LogEvSoftmax",
    "Normalizer",
    "NormalizerModule",
    "check_name",
    "entmax15",
    "entmax15_loss",
    "entmax_bisect",
    "entmax_bisect_loss",
    "ev_softmax",
    "ev_softmax_loss",
    "evidence_weights",
    "evidential_support",
    "get",
    "log_ev_softmax",
    "names",
    "posthoc_evidential",
    "register",
    "resolve",
    "singleton_log_masses",
    "softmax",
    "softmax_loss",
    "sparsemax",
    "sparsemax_loss",
]
