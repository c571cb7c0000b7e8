r"""Attention with any normalizer in blocks of queries, each recomputed in the backward: O(L · block) memory.

Sparsemax and entmax need a whole row of scores for their threshold (a sort or a bisection), so unlike
ev-softmax (:mod:`simplexity.nn.ev_attention`) their attention cannot skip the row; it can still avoid
the (..., L, S) matrix. :func:`blocked_attention` splits the queries into blocks, normalizes each
block's rows with the given normalizer and multiplies by the values, and checkpoints every block
(:func:`torch.utils.checkpoint.checkpoint`): the forward keeps only the output, the backward recomputes
one block's scores and weights at a time (with the forward's dropout draws). Under a causal mask a
block's scores stop at its last query's key. The values equal the dense computation's.

References:
    Rabe, Staats. "Self-attention Does Not Need O(n²) Memory", 2021 (arXiv:2112.05682).
    Chen, Xu, Zhang, Guestrin. "Training Deep Nets with Sublinear Memory Cost", 2016
    (arXiv:1604.06174).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from simplexity._checks import check_int

__all__ = ["BLOCK_ELEMENTS", "MIN_SCORES", "blocked_attention"]

BLOCK_ELEMENTS = 1 << 22
"""Scores per block (over all batch entries) when ``block_size`` is None: 16 MiB in float32."""

MIN_SCORES = 1 << 24
"""Score matrices of at least this many entries (64 MiB in float32) take the blocked path in
:func:`simplexity.nn.attention`; below it the dense path is as small and needs no recomputation."""

Normalize = Callable[[Tensor, "Tensor | None"], Tensor]


def _rows_of(mask: Tensor, start: int, end: int) -> Tensor:
    """Rows [start, end) of a mask broadcast along the queries (a row dimension of 1 is shared)."""
    return mask if mask.shape[-2] == 1 else mask[..., start:end, :]


def _block(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    bias: Tensor | None,
    valid: Tensor | None,
    scale: float,
    dropout_p: float,
    normalize: Normalize,
) -> Tensor:
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if bias is not None:
        scores = scores + bias
    weights = normalize(scores, valid)
    if dropout_p > 0:
        weights = F.dropout(weights, dropout_p, training=True)
    return torch.matmul(weights, value)


def blocked_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    normalize: Normalize,
    block_size: int | None = None,
) -> Tensor:
    r"""Attention ``normalize(scale · q kᵀ + b, valid) v`` in checkpointed blocks of queries.

    Arguments as ``scaled_dot_product_attention``'s (validated by the caller,
    :func:`simplexity.nn.attention`): ``attn_mask`` boolean (True = may attend) or float (added to
    the scores; ``-inf`` = may not attend), broadcastable to (..., L, S); ``is_causal`` upper-left
    aligned and *and*-ed with ``attn_mask``.

    Args:
        query: (..., L, E).
        key: (..., S, E).
        value: (..., S, Ev).
        attn_mask: boolean or float mask, or None.
        dropout_p: dropout on the weights (replayed in the backward).
        is_causal: query i attends to keys j <= i.
        scale: multiplier of ``q kᵀ``; ``1/sqrt(E)`` when None.
        normalize: ``normalize(scores, valid)`` along the last dimension, ``valid`` a boolean mask
            broadcastable to the scores (True = valid) or None; masked keys must get weight 0.
        block_size: queries per block; None picks about :data:`BLOCK_ELEMENTS` scores per block.

    Returns:
        (..., L, Ev).

    Example:
        >>> from simplexity.normalizers import sparsemax
        >>> q, k, v = torch.randn(2, 9, 4), torch.randn(2, 7, 4), torch.randn(2, 7, 3)
        >>> norm = lambda s, m: sparsemax(s, -1, mask=m)
        >>> dense = sparsemax(q @ k.transpose(-2, -1) / 2.0) @ v
        >>> torch.allclose(blocked_attention(q, k, v, normalize=norm, block_size=4), dense, atol=1e-6)
        True
    """
    query_len, key_len = query.shape[-2], key.shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1]) if query.shape[-1] else 1.0
    batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    if block_size is None:
        per_row = max(1, math.prod(batch) * key_len)
        block_size = max(1, min(query_len, BLOCK_ELEMENTS // per_row))
    else:
        block_size = check_int("block_size", block_size, min=1)
    bias = mask = None
    if attn_mask is not None:
        if attn_mask.dim() < 2:
            attn_mask = attn_mask.reshape((1,) * (2 - attn_mask.dim()) + tuple(attn_mask.shape))
        if attn_mask.dtype == torch.bool:
            mask = attn_mask
        else:
            bias = attn_mask
    # checkpoint whenever autograd records: a trainable tensor inside ``normalize`` (entmax's alpha)
    # needs the blocks' graph as much as the inputs do, and is invisible from here
    track = torch.is_grad_enabled()
    outputs = []
    for start in range(0, query_len, block_size):
        end = min(start + block_size, query_len)
        key_end = min(end, key_len) if is_causal else key_len
        rows = query[..., start:end, :]
        if key_end == 0:
            outputs.append(rows.new_zeros(*batch, end - start, value.shape[-1]))
            continue
        keys, values = key[..., :key_end, :], value[..., :key_end, :]
        block_bias = None if bias is None else _rows_of(bias, start, end)[..., :key_end]
        valid = None if mask is None else _rows_of(mask, start, end)[..., :key_end]
        if block_bias is not None:
            finite = block_bias != -math.inf
            valid = finite if valid is None else valid & finite
        if is_causal:
            positions = torch.arange(start, end, device=query.device).unsqueeze(-1)
            allowed = torch.arange(key_end, device=query.device) <= positions
            valid = allowed if valid is None else valid & allowed
        args = (rows, keys, values, block_bias, valid, scale, dropout_p, normalize)
        if track:
            out = checkpoint(_block, *args, use_reentrant=False)
        else:
            out = _block(*args)
        outputs.append(out.expand(*batch, end - start, value.shape[-1]))
    if not outputs:
        return query.new_zeros(*batch, 0, value.shape[-1])
    return torch.cat(outputs, -2)
