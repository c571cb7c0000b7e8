"""Neural-network layers with a pluggable normalizer: attention (functional and multi-head), a key/value cache, output layers.

:mod:`simplexity.nn.functional` holds ``attention`` (``scaled_dot_product_attention``'s arguments),
:mod:`simplexity.nn.multihead` the drop-in ``MultiheadAttention`` (``torch.nn.MultiheadAttention``'s),
:mod:`simplexity.nn.cache` the ``KeyValueCache`` for decoding, :mod:`simplexity.nn.output` the
``NormalizedOutput`` layer and :mod:`simplexity.nn.mlp` the library's one ``MLP``.
:mod:`simplexity.nn.ev_attention` computes ev-softmax attention in blocks of queries without the score
matrix (``attention`` takes it for ev-softmax), :mod:`simplexity.nn.blocked_attention` any normalizer's
attention in checkpointed query blocks (``attention`` takes it for long sequences).
"""

from __future__ import annotations

from simplexity.nn import (
    blocked_attention,  # the module (its function shares the name)
    functional,
)
from simplexity.nn.cache import KeyValueCache
from simplexity.nn.ev_attention import ev_softmax_attention
from simplexity.nn.functional import (
    attention,
    attention_weights,
    causal_mask,
    evidential_attention_support,
    padding_mask,
    resolve_normalizer,
)
from simplexity.nn.mlp import MLP
from simplexity.nn.multihead import MultiheadAttention
from simplexity.nn.output import NormalizedOutput, output_layer

__all__ = [
    "MLP",
    "KeyValueCache",
    "MultiheadAttention",
    "NormalizedOutput",
    "attention",
    "attention_weights",
    "blocked_attention",
    "causal_mask",
    "ev_softmax_attention",
    "evidential_attention_support",
    "functional",
    "output_layer",
    "padding_mask",
    "resolve_normalizer",
]
