"""Neural-network layers with a pluggable normalizer: attention (functional and multi-head), a key/value cache, output layers.

:mod:`simplexity.nn.functional` holds ``attention`` (``scaled_dot_product_attention``'s arguments),
:mod:`simplexity.nn.multihead` the drop-in ``MultiheadAttention`` (``torch.nn.MultiheadAttention``'s),
:mod:`simplexity.nn.cache` the ``KeyValueCache`` for decoding, :mod:`simplexity.nn.output` the
``NormalizedOutput`` layer and :mod:`simplexity.nn.mlp` the library's one ``MLP``.
"""

from __future__ import annotations

from simplexity.nn import functional
from simplexity.nn.cache import KeyValueCache
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
    "causal_mask",
    "evidential_attention_support",
    "functional",
    "output_layer",
    "padding_mask",
    "resolve_normalizer",
]
