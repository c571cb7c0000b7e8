r"""Scaled dot-product attention with a pluggable, mask-correct normalizer, and a multi-head module.

.. math::

    \operatorname{Attention}(Q, K, V) = \rho\Big(\frac{Q K^\top}{\sqrt d}\,;\ M\Big)\, V ,

where :math:`\rho` is any normalizer of :mod:`simplexity.normalizers` (``"softmax"``, ``"sparsemax"``,
``"entmax15"``, ``"entmax_bisect"``, ``"ev_softmax"``) applied along the keys with the boolean mask
:math:`M` (**True = may attend**). The mask is handed to the normalizer; scores are never filled with
``-1e18`` before a mean. So padded and future keys get exactly 0 weight and never enter ev-softmax's
mean, and a causal training pass gives the same outputs as step-by-step decoding with a key/value cache
(:class:`KeyValueCache`). A query row with no valid key gives a zero output (not NaN).

The reference implementation of ev-softmax fills masked scores with ``-1e18`` and then averages over
the whole row: the mean is dominated by the fill values, every real score is above it, and no row with
padding (or a future position) is sparsified. Attention here does not have that defect
(``tests/test_attention.py::test_ev_softmax_padding_is_sparse_unlike_reference``).

References:
    Vaswani et al. "Attention Is All You Need", NeurIPS 2017.
    Chen, Itkina, Senanayake, Kochenderfer. "Evidential Softmax for Sparse Multimodal Distributions in
    Deep Generative Models", NeurIPS 2021 (arXiv:2110.14182).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simplexity._checks import check_floating, check_tensor
from simplexity.normalizers import Normalizer, get

__all__ = [
    "POSTHOC_EVIDENTIAL",
    "KeyValueCache",
    "MultiheadAttention",
    "attention",
    "attention_weights",
    "causal_mask",
    "evidential_attention_support",
    "padding_mask",
    "resolve_normalizer",
]


POSTHOC_EVIDENTIAL = "posthoc_evidential"


def resolve_normalizer(
    normalizer: str | Normalizer, options: dict[str, Any] | None = None
) -> Normalizer:
    """A :class:`~simplexity.normalizers.Normalizer` from a registry name (with ``options``) or as is.

    Example:
        >>> resolve_normalizer("ev_softmax", {"eps": 1e-3}).options
        {'eps': 0.001}
    """
    if isinstance(normalizer, Normalizer):
        if options:
            raise ValueError(
                "normalizer_options can only be given with a normalizer name, not a Normalizer object"
            )
        return normalizer
    if isinstance(normalizer, str):
        if options is not None and not isinstance(options, dict):
            raise TypeError(
                f"normalizer_options must be a dict or None, got {type(options).__name__}"
            )
        return get(normalizer, **(options or {}))
    raise TypeError(
        "normalizer must be a registry name (str) or a simplexity.normalizers.Normalizer, "
        f"got {type(normalizer).__name__}"
    )


class _PicklableNormalizer:
    """Mixin: pickle a registry :class:`Normalizer` attribute as its name and options.

    Registry normalizers hold local closures, which ``pickle`` (``torch.save(model)``, spawned
    workers) cannot serialize; they are rebuilt from the registry on unpickling.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        norm = state.get("normalizer")
        if isinstance(norm, Normalizer):
            try:
                rebuilt = get(norm.name, **norm.options)
            except (ValueError, TypeError):
                rebuilt = None
            if rebuilt is not None and rebuilt.options == norm.options:
                state["normalizer"] = ("registry", norm.name, dict(norm.options))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        norm = state.get("normalizer")
        if isinstance(norm, tuple) and len(norm) == 3 and norm[0] == "registry":
            state = {**state, "normalizer": get(norm[1], **norm[2])}
        super().__setstate__(state)  # type: ignore[misc]


def causal_mask(
    query_len: int, key_len: int | None = None, device: torch.device | str | None = None
) -> Tensor:
    r"""Boolean (query_len, key_len) mask, True where query ``i`` may attend to key ``j``.

    The queries are the *last* ``query_len`` positions of the ``key_len`` keys (bottom-right aligned):
    :math:`M_{ij} = [\, j \le i + L_k - L_q \,]`. This is the mask that makes a chunk of new queries
    consistent with keys cached from earlier steps; for ``key_len == query_len`` it is the usual lower
    triangle (torch's ``is_causal``).

    Example:
        >>> causal_mask(2, 3)
        tensor([[ True,  True, False],
                [ True,  True,  True]])
    """
    key_len = query_len if key_len is None else key_len
    for name, value in (("query_len", query_len), ("key_len", key_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    ones = torch.ones(query_len, key_len, dtype=torch.bool, device=device)
    return ones.tril(diagonal=key_len - query_len)


def padding_mask(lengths: Tensor | Sequence[int], max_len: int | None = None) -> Tensor:
    """Boolean (..., max_len) mask, True at the first ``lengths[...]`` positions (the valid ones).

    Example:
        >>> padding_mask(torch.tensor([1, 3]), 4)
        tensor([[ True, False, False, False],
                [ True,  True,  True, False]])
    """
    if not isinstance(lengths, Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
    if lengths.numel() and bool((lengths < 0).any()):
        raise ValueError("lengths must be >= 0")
    longest = int(lengths.max()) if lengths.numel() else 0
    if max_len is None:
        max_len = longest
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < longest:
        raise ValueError(f"max_len must be an int >= the largest length {longest}, got {max_len!r}")
    return torch.arange(max_len, device=lengths.device) < lengths.unsqueeze(-1)


def _check_qkv(q: Tensor, k: Tensor, v: Tensor | None) -> torch.Size:
    """Validate shapes; return the broadcast batch shape."""
    pairs = [("q", q), ("k", k)] + ([("v", v)] if v is not None else [])
    for name, t in pairs:
        check_floating(name, t)
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., L, d), got {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension d: q (..., Lq, d) is {tuple(q.shape)}, "
            f"k (..., Lk, d) is {tuple(k.shape)}"
        )
    shapes = [q.shape[:-2], k.shape[:-2]]
    if v is not None:
        if v.shape[-2] != k.shape[-2]:
            raise ValueError(
                f"v (..., Lk, dv) must have as many rows as k (..., Lk, d): k is {tuple(k.shape)}, "
                f"v is {tuple(v.shape)}"
            )
        shapes.append(v.shape[:-2])
        if v.dtype != q.dtype or k.dtype != q.dtype:
            raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    elif k.dtype != q.dtype:
        raise TypeError(f"q and k must share a dtype, got {q.dtype} and {k.dtype}")
    try:
        return torch.broadcast_shapes(*shapes)
    except RuntimeError:
        raise ValueError(
            "the batch dimensions (all but the last two) of q, k and v must broadcast, got "
            + ", ".join(str(tuple(s)) for s in shapes)
        ) from None


def _check_attention_mask(mask: Tensor | None, scores_shape: torch.Size, device: Any) -> None:
    if mask is None:
        return
    check_tensor("mask", mask)
    if mask.dtype != torch.bool:
        raise TypeError(
            "mask must be a boolean tensor, True where a query may attend to a key "
            f"(not an additive float mask), got dtype {mask.dtype}"
        )
    try:
        shape = torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        shape = None
    if shape != scores_shape:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
            f"(..., Lq, Lk) = {tuple(scores_shape)}"
        )
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device} but q is on {device}")


def evidential_attention_support(
    q: Tensor, k: Tensor, mask: Tensor | None = None, feature_mean: Tensor | None = None
) -> Tensor:
    r"""Keys kept by the post-hoc evidential filter of Itkina et al., read on attention scores.

    Scores :math:`s_{ik} = \phi_i \cdot k_k` are a linear layer with features :math:`\phi_i` (the
    scaled query, J = d features), one "class" per valid key and weights :math:`\beta_{jk} = k_{kj}` (no
    bias). As in :func:`simplexity.normalizers.evidential_support` (which handles one weight matrix; this
    is its batched form, with the keys centred over each row's *valid* keys only), feature :math:`j`
    gives key :math:`k` the evidence

    .. math::

        w_{jk} = \tilde\beta_{jk} (\phi_j - \mu_j) + \tfrac1J \sum_q \tilde\beta_{qk}\mu_q ,

    and key :math:`k` is kept iff it has positive evidence from some feature or every other valid key
    has some negative evidence; a vacuous row keeps every valid key.

    Args:
        q: scaled queries :math:`\phi` (..., Lq, d).
        k: keys (..., Lk, d).
        mask: boolean (..., Lq, Lk), True = valid key; None = all valid.
        feature_mean: :math:`\mu`, broadcastable to (..., d) over the batch dimensions; None = 0.

    Returns:
        Boolean (..., Lq, Lk), a subset of ``mask``. Memory O(Lq · Lk · d) per batch entry.
    """
    scores_shape = torch.broadcast_shapes((*q.shape[:-1], 1), (*k.shape[:-2], 1, k.shape[-2]))
    valid = (
        torch.ones(scores_shape, dtype=torch.bool, device=q.device)
        if mask is None
        else mask.expand(scores_shape)
    )
    weights = valid.to(k.dtype)
    centre = (weights @ k) / weights.sum(-1, keepdim=True).clamp_min(1)  # (..., Lq, d)
    beta = k.unsqueeze(-3) - centre.unsqueeze(-2)  # (..., Lq, Lk, d)
    if feature_mean is None:
        evidence = beta * q.unsqueeze(-2)
    else:
        mu = feature_mean.unsqueeze(-2).unsqueeze(-2)  # (..., 1, 1, d)
        shared = (beta * mu).sum(-1, keepdim=True) / q.shape[-1]
        evidence = beta * (q.unsqueeze(-2) - mu) + shared
    has_positive = (evidence > 0).any(-1)
    no_negative = ~(evidence < 0).any(-1) & valid
    others_no_negative = (no_negative.sum(-1, keepdim=True) - no_negative.long()) > 0
    keep = (has_positive | ~others_no_negative) & valid
    return keep | (valid & ~keep.any(-1, keepdim=True))


def attention_weights(
    q: Tensor,
    k: Tensor,
    *,
    mask: Tensor | None = None,
    normalizer: str | Normalizer = "ev_softmax",
    training: bool = False,
    scale: float | None = None,
    feature_mean: Tensor | None = None,
) -> Tensor:
    r"""The attention distribution :math:`\rho(q k^\top \cdot \text{scale};\ M)`, shape (..., Lq, Lk).

    Arguments as in :func:`attention`. Masked keys have weight exactly 0.

    Example:
        >>> q, k = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 0.0], [-2.0, 0.0]])
        >>> attention_weights(q, k, scale=1.0)
        tensor([[0.8808, 0.1192, 0.0000]])
        >>> attention_weights(q, k, mask=torch.tensor([False, True, True]), scale=1.0)
        tensor([[0., 1., 0.]])
    """
    _check_qkv(q, k, None)
    posthoc = normalizer == POSTHOC_EVIDENTIAL
    norm = resolve_normalizer("softmax" if posthoc else normalizer)
    if feature_mean is not None:
        if not posthoc:
            raise ValueError("feature_mean is only used with normalizer='posthoc_evidential'")
        check_floating("feature_mean", feature_mean)
        if feature_mean.shape[-1:] != q.shape[-1:]:
            raise ValueError(
                f"feature_mean must have shape (..., d) with d = {q.shape[-1]}, "
                f"got {tuple(feature_mean.shape)}"
            )
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    _check_attention_mask(mask, scores.shape, q.device)
    if posthoc and not training:
        with torch.no_grad():
            mask = evidential_attention_support(q.detach() * scale, k.detach(), mask, feature_mean)
    return norm(scores, -1, mask=mask, training=training)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    normalizer: str | Normalizer = "ev_softmax",
    training: bool = False,
    return_weights: bool = False,
    dropout: float = 0.0,
    scale: float | None = None,
    feature_mean: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Scaled dot-product attention with a pluggable normalizer along the keys.

    .. math::

        \operatorname{out} = \rho\big(\text{scale}\cdot q k^\top;\ M\big)\, v ,
        \qquad \text{scale} = 1/\sqrt d \text{ by default.}

    Args:
        q: queries (..., Lq, d).
        k: keys (..., Lk, d).
        v: values (..., Lk, dv). Batch dimensions of ``q``, ``k``, ``v`` broadcast.
        mask: boolean, broadcastable to (..., Lq, Lk); **True where the query may attend** to the key
            (the library's convention, as for the boolean ``attn_mask`` of torch's
            ``scaled_dot_product_attention``; ``nn.MultiheadAttention``'s masks mean the opposite). Masked keys get weight exactly 0 and are left out of
            the normalizer's statistics (ev-softmax's mean); ``-inf`` scores count as masked. A query
            with no valid key gets a zero output.
        normalizer: a registry name (``"softmax"``, ``"sparsemax"``, ``"entmax15"``, ``"entmax_bisect"``,
            ``"ev_softmax"``) or a :class:`~simplexity.normalizers.Normalizer`; or
            ``"posthoc_evidential"``: softmax when ``training``, and otherwise the softmax restricted to
            :func:`evidential_attention_support` (the post-hoc evidential baseline).
        training: use the normalizer's training form (ev-softmax with its ``eps``) and apply dropout.
        return_weights: also return the attention weights (before dropout).
        dropout: dropout probability on the weights, applied only when ``training``.
        scale: multiplier of the scores; ``1/sqrt(d)`` when None.
        feature_mean: for ``"posthoc_evidential"`` only, the training mean of the scaled queries,
            broadcastable to (..., d); None means 0.

    Returns:
        The output (..., Lq, dv), and the weights (..., Lq, Lk) if ``return_weights``.

    Example:
        >>> q = torch.tensor([[1.0, 0.0]])
        >>> k = torch.tensor([[2.0, 0.0], [0.0, 0.0], [-2.0, 0.0], [9.0, 9.0]])
        >>> v = torch.tensor([[1.0], [2.0], [3.0], [100.0]])
        >>> out, w = attention(q, k, v, mask=torch.tensor([True, True, True, False]), scale=1.0,
        ...                    return_weights=True)
        >>> w
        tensor([[0.8808, 0.1192, 0.0000, 0.0000]])
        >>> out
        tensor([[1.1192]])
    """
    _check_qkv(q, k, v)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    weights = attention_weights(
        q,
        k,
        mask=mask,
        normalizer=normalizer,
        training=training,
        scale=scale,
        feature_mean=feature_mean,
    )
    dropped = F.dropout(weights, dropout, training=True) if training and dropout > 0 else weights
    out = torch.matmul(dropped, v)
    return (out, weights) if return_weights else out


class KeyValueCache:
    """Projected keys and values of earlier steps, for incremental (step-by-step) decoding.

    Pass the same cache to :meth:`MultiheadAttention.forward` at every step: the new keys and values
    are projected, appended, and the queries attend to everything cached. With ``static=True`` (for
    cross-attention over a fixed memory) the first call fills the cache and later calls reuse it; their
    ``key``/``value`` may then be None.

    Attributes:
        key: (B, H, L, d_head) or None before the first call.
        value: (B, H, L, dv_head) or None.
        valid: (B, L) boolean, True at valid (non-padded) cached keys, or None when all are valid.
        static: whether the cache is filled once and then reused.
    """

    def __init__(self, static: bool = False) -> None:
        self.static = bool(static)
        self.key: Tensor | None = None
        self.value: Tensor | None = None
        self.valid: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.key is None else self.key.shape[-2]

    def __repr__(self) -> str:
        return f"KeyValueCache(length={len(self)}, static={self.static})"

    def append(self, key: Tensor, value: Tensor, valid: Tensor | None = None) -> None:
        """Append (B, H, L_new, ·) keys and values, and their (B, L_new) validity (None = all valid)."""
        if self.key is None or self.value is None:
            self.key, self.value, self.valid = key, value, valid
            return
        if key.shape[:2] != self.key.shape[:2]:
            raise ValueError(
                f"new keys of shape {tuple(key.shape)} do not match the cached (B, H) = "
                f"{tuple(self.key.shape[:2])}"
            )
        if valid is not None or self.valid is not None:
            batch, old, new = key.shape[0], self.key.shape[-2], key.shape[-2]
            before = self.valid
            if before is None:
                before = torch.ones(batch, old, dtype=torch.bool, device=key.device)
            after = valid
            if after is None:
                after = torch.ones(batch, new, dtype=torch.bool, device=key.device)
            self.valid = torch.cat([before, after], -1)
        self.key = torch.cat([self.key, key], -2)
        self.value = torch.cat([self.value, value], -2)

    def reorder(self, index: Tensor) -> None:
        """Select batch entries (e.g. surviving beams): ``index`` is a (B',) long tensor."""
        if self.key is None or self.value is None:
            return
        self.key = self.key.index_select(0, index)
        self.value = self.value.index_select(0, index)
        if self.valid is not None:
            self.valid = self.valid.index_select(0, index)


class MultiheadAttention(_PicklableNormalizer, nn.Module):
    r"""Multi-head attention whose normalizer is picked by name (ev-softmax by default).

    Projections ``q_proj``, ``k_proj``, ``v_proj`` (``kdim``/``vdim`` → ``embed_dim``) and ``out_proj``,
    each head attending with :func:`attention`. In training mode the normalizer's training form is used
    (ev-softmax with ``eps``) and dropout is applied to the weights; in eval mode the exact map.

    **Mask convention** (the library's, True = valid): ``key_padding_mask`` is (B, Lk) with **True at
    real keys and False at padding — the opposite of** ``torch.nn.MultiheadAttention``'s
    ``key_padding_mask``. A mask written for torch can be passed as ``key_is_padding=`` instead (True =
    padding), which is unambiguous; giving both is an error. ``attn_mask`` is boolean, True where a
    query may attend, of shape (Lq, Lk), (B, Lq, Lk) or (B, num_heads, Lq, Lk); float (additive) masks
    are rejected. ``causal=True`` adds :func:`causal_mask` (bottom-right aligned, so it also holds for a
    chunk of queries after cached keys). All masks are combined with logical and.

    Incremental decoding: pass a :class:`KeyValueCache` as ``cache``; each call appends the new keys and
    values and attends to everything cached. Decoding one position at a time with a cache gives the same
    outputs as the full pass with ``causal=True``.

    Args:
        embed_dim: model dimension E (queries and output).
        num_heads: number of heads; must divide ``embed_dim``.
        normalizer: registry name or :class:`~simplexity.normalizers.Normalizer`, or
            ``"posthoc_evidential"`` (softmax in training; in eval the post-hoc evidential filter with
            the running mean of each head's scaled queries, the buffer ``query_mean`` (H, E / H),
            tracked in training mode with ``momentum`` as BatchNorm's running mean).
        normalizer_options: options for the registry (e.g. ``{"eps": 1e-6}``).
        dropout: dropout on the attention weights (training mode only).
        bias: biases in the projections.
        kdim: feature size of ``key`` (default E).
        vdim: feature size of ``value`` (default E).
        batch_first: inputs are (B, L, ·) if True, else (L, B, ·).
        momentum: weight of the current batch in ``query_mean`` (post-hoc evidential only).

    Example:
        >>> mha = MultiheadAttention(8, 2).eval()
        >>> x = torch.randn(3, 5, 8)
        >>> valid = padding_mask(torch.tensor([5, 4, 2]), 5)
        >>> out, w = mha(x, x, x, key_padding_mask=valid, need_weights=True)
        >>> out.shape, w.shape
        (torch.Size([3, 5, 8]), torch.Size([3, 2, 5, 5]))
        >>> bool((w[2, :, :, 2:] == 0).all())
        True
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        normalizer: str | Normalizer = "ev_softmax",
        normalizer_options: dict[str, Any] | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = True,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim must be divisible by num_heads, got {embed_dim} and {num_heads}"
            )
        kdim = embed_dim if kdim is None else kdim
        vdim = embed_dim if vdim is None else vdim
        for name, value in (("kdim", kdim), ("vdim", vdim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim, self.vdim = kdim, vdim
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        self.posthoc_evidential = normalizer == POSTHOC_EVIDENTIAL
        self.normalizer = resolve_normalizer(
            "softmax" if self.posthoc_evidential else normalizer, normalizer_options
        )
        if (
            isinstance(momentum, bool)
            or not isinstance(momentum, (int, float))
            or not 0 < momentum <= 1
        ):
            raise ValueError(f"momentum must be a number in (0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        self.register_buffer("query_mean", torch.zeros(num_heads, embed_dim // num_heads))
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform projections and zero biases, as in ``torch.nn.MultiheadAttention``."""
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
            f"normalizer={POSTHOC_EVIDENTIAL if self.posthoc_evidential else self.normalizer.name!r}, "
            f"dropout={self.dropout}"
        )

    def _heads(self, x: Tensor) -> Tensor:
        """(B, L, E) -> (B, H, L, E / H)."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def _key_valid(
        self, key_padding_mask: Tensor | None, key_is_padding: Tensor | None, shape: tuple[int, int]
    ) -> Tensor | None:
        if key_padding_mask is not None and key_is_padding is not None:
            raise ValueError(
                "give either key_padding_mask (True = valid) or key_is_padding (True = padding), not both"
            )
        name, mask = (
            ("key_is_padding", key_is_padding)
            if key_is_padding is not None
            else ("key_padding_mask", key_padding_mask)
        )
        if mask is None:
            return None
        check_tensor(name, mask)
        if mask.dtype != torch.bool:
            raise TypeError(f"{name} must be a boolean tensor, got dtype {mask.dtype}")
        if tuple(mask.shape) != shape:
            raise ValueError(f"{name} must have shape (B, Lk) = {shape}, got {tuple(mask.shape)}")
        return ~mask if key_is_padding is not None else mask

    def forward(
        self,
        query: Tensor,
        key: Tensor | None,
        value: Tensor | None,
        *,
        key_padding_mask: Tensor | None = None,
        key_is_padding: Tensor | None = None,
        attn_mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        cache: KeyValueCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: (B, Lq, E) (or (Lq, B, E) if not ``batch_first``).
            key: (B, Lk, kdim); may be None only with a filled static ``cache``.
            value: (B, Lk, vdim); may be None only with a filled static ``cache``.
            key_padding_mask: (B, Lk) boolean, **True = valid key** (opposite of torch).
            key_is_padding: (B, Lk) boolean, True = padding (torch's convention); exclusive with
                ``key_padding_mask``.
            attn_mask: boolean, True = may attend; (Lq, Lk), (B, Lq, Lk) or (B, H, Lq, Lk), where Lk
                counts the cached keys too.
            causal: add the (bottom-right aligned) causal mask.
            need_weights: also return the per-head weights.
            cache: a :class:`KeyValueCache` for incremental decoding (updated in place).

        Returns:
            ``(output, weights)``: output like ``query`` with E features; weights (B, H, Lq, Lk) if
            ``need_weights``, else None.
        """
        check_floating("query", query)
        if query.dim() != 3 or query.shape[-1] != self.embed_dim:
            layout = "(B, Lq, E)" if self.batch_first else "(Lq, B, E)"
            raise ValueError(
                f"query must have shape {layout} with E = {self.embed_dim}, got {tuple(query.shape)}"
            )
        if not self.batch_first:
            query = query.transpose(0, 1)
        batch, query_len = query.shape[:2]
        q = self._heads(self.q_proj(query))

        reuse = cache is not None and cache.static and len(cache) > 0
        if reuse:
            if key_padding_mask is not None or key_is_padding is not None:
                raise ValueError("a filled static cache keeps its own key padding mask; pass None")
        else:
            if key is None or value is None:
                raise ValueError("key and value are required unless a filled static cache is given")
            check_floating("key", key)
            check_floating("value", value)
            if not self.batch_first:
                key, value = key.transpose(0, 1), value.transpose(0, 1)
            if key.dim() != 3 or key.shape[-1] != self.kdim or key.shape[0] != batch:
                raise ValueError(
                    f"key must have shape (B, Lk, kdim) with B = {batch}, kdim = {self.kdim} "
                    f"(batch_first={self.batch_first}), got {tuple(key.shape)}"
                )
            if value.dim() != 3 or value.shape[-1] != self.vdim or value.shape[:2] != key.shape[:2]:
                raise ValueError(
                    f"value must have shape (B, Lk, vdim) with (B, Lk) = {tuple(key.shape[:2])}, "
                    f"vdim = {self.vdim}, got {tuple(value.shape)}"
                )
            valid = self._key_valid(key_padding_mask, key_is_padding, tuple(key.shape[:2]))
            k, v = self._heads(self.k_proj(key)), self._heads(self.v_proj(value))
        if cache is not None:
            if not reuse:
                cache.append(k, v, valid)
            if cache.key is None or cache.value is None or cache.key.shape[0] != batch:
                raise ValueError(
                    f"the cache holds a batch of another size than the query's {batch}"
                )
            k, v, valid = cache.key, cache.value, cache.valid
        key_len = k.shape[-2]

        mask = None if valid is None else valid[:, None, None, :]
        if attn_mask is not None:
            check_tensor("attn_mask", attn_mask)
            if attn_mask.dtype != torch.bool:
                raise TypeError(
                    "attn_mask must be a boolean tensor, True where a query may attend "
                    f"(not an additive float mask), got dtype {attn_mask.dtype}"
                )
            allowed = {
                (query_len, key_len),
                (batch, query_len, key_len),
                (batch, self.num_heads, query_len, key_len),
            }
            if tuple(attn_mask.shape) not in allowed:
                raise ValueError(
                    f"attn_mask must have shape (Lq, Lk), (B, Lq, Lk) or (B, H, Lq, Lk) with "
                    f"B={batch}, H={self.num_heads}, Lq={query_len}, Lk={key_len}, "
                    f"got {tuple(attn_mask.shape)}"
                )
            extra = attn_mask.unsqueeze(1) if attn_mask.dim() == 3 else attn_mask
            mask = extra if mask is None else mask & extra
        if causal:
            extra = causal_mask(query_len, key_len, device=query.device)
            mask = extra if mask is None else mask & extra

        scale = 1.0 / math.sqrt(self.head_dim)
        if self.posthoc_evidential and self.training:
            with torch.no_grad():
                batch_mean = (q.detach() * scale).mean((0, 2)).to(self.query_mean.dtype)
                self.query_mean.lerp_(batch_mean, self.momentum)
        out, weights = attention(
            q,
            k,
            v,
            mask=mask,
            normalizer=POSTHOC_EVIDENTIAL if self.posthoc_evidential else self.normalizer,
            training=self.training,
            return_weights=True,
            dropout=self.dropout,
            scale=scale,
            feature_mean=self.query_mean.to(q.dtype) if self.posthoc_evidential else None,
        )
        out = self.out_proj(out.transpose(1, 2).flatten(-2))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, (weights if need_weights else None)
