"""Neural-network layers with a pluggable normalizer: attention, a key/value cache, output layers, the MLP."""

from __future__ import annotations

from simplexity.nn.attention import (
    KeyValueCache,
    MultiheadAttention,
    attention,
    attention_weights,
    causal_mask,
    evidential_attention_support,
    padding_mask,
    resolve_normalizer,
)
from simplexity.nn.output import NormalizedOutput, output_layer, output_names

__all__ = [
    "KeyValueCache",
    "MultiheadAttention",
    "NormalizedOutput",
    "attention",
    "attention_weights",
    "causal_mask",
    "evidential_attention_support",
    "output_layer",
    "output_names",
    "padding_mask",
    "resolve_normalizer",
]
