r"""Scaled dot-product attention with any normalizer, in ``torch.nn.functional.scaled_dot_product_attention``'s conventions.

.. math::

    \operatorname{Attention}(Q, K, V) = \rho\big(s\, Q K^\top + B;\ M\big)\, V ,
    \qquad s = 1/\sqrt{d} \text{ by default,}

where :math:`\rho` is a normalizer of :mod:`simplexity.normalizers` (``"softmax"``, ``"sparsemax"``,
``"entmax15"``, ``"entmax_bisect"``, ``"ev_softmax"``, or a module such as
:class:`~simplexity.normalizers.EvSoftmax`) applied along the keys, :math:`B` an additive float mask and
:math:`M` the keys a query may attend to. The arguments are those of torch's
``scaled_dot_product_attention``: a **boolean** ``attn_mask`` is **True where a query may attend**, a
float ``attn_mask`` is added to the scores (its ``-inf`` entries count as masked), ``is_causal`` applies
the upper-left aligned lower triangle, ``scale`` replaces :math:`1/\sqrt d`, and ``dropout_p`` drops
attention weights whenever it is positive (a module passes 0 in eval mode).

Masked keys are *handed to the normalizer* as a boolean validity, never filled with a large negative
number before a mean: they get weight exactly 0 and never enter ev-softmax's mean, so a causal training
pass agrees with step-by-step decoding (:class:`~simplexity.nn.KeyValueCache`). A query with no key to
attend to gets a zero output (torch's gives NaN).

The reference implementation of ev-softmax fills masked scores with ``-1e18`` and then averages over the
whole row: the fill values dominate the mean, every real score is above it, and no row with padding (or a
future position) is sparsified. The tests compute that masking beside this one
(``tests/test_attention_functional.py::test_ev_softmax_padding_is_sparse_unlike_reference``).

References:
    Vaswani et al. "Attention Is All You Need", NeurIPS 2017.
    Chen, Itkina, Senanayake, Kochenderfer. "Evidential Softmax for Sparse Multimodal Distributions in
    Deep Generative Models", NeurIPS 2021 (arXiv:2110.14182).
    Itkina, Ivanovic, Senanayake, Kochenderfer, Pavone. "Evidential Sparsification of Multimodal Latent
    Spaces in Conditional Variational Autoencoders", NeurIPS 2020.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simplexity._checks import check_floating, check_int, check_tensor
from simplexity.nn import blocked_attention as blocked
from simplexity.nn.ev_attention import ev_softmax_attention
from simplexity.normalizers import (
    EvSoftmax,
    LogEvSoftmax,
    Normalizer,
    NormalizerModule,
    ev_softmax,
    get,
    resolve,
)

__all__ = [
    "attention",
    "attention_weights",
    "causal_mask",
    "evidential_attention_support",
    "padding_mask",
    "resolve_normalizer",
]

NormalizerLike = str | Normalizer | nn.Module


# ----------------------------------------------------------------------------------------- helpers


def causal_mask(
    query_len: int,
    key_len: int | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Additive causal mask (query_len, key_len): 0 where query ``i`` may attend to key ``j``, ``-inf`` elsewhere.

    A float mask means the same to :func:`attention`, to :class:`~simplexity.nn.MultiheadAttention` and
    to torch's attention (whose *boolean* masks have opposite polarities in
    ``scaled_dot_product_attention`` and ``nn.MultiheadAttention``), as torch's
    ``nn.Transformer.generate_square_subsequent_mask`` does. The queries are the *last* ``query_len``
    of the ``key_len`` positions (lower-right aligned): key ``j`` is allowed iff
    :math:`j \le i + L_k - L_q`, which keeps a chunk of new queries consistent with keys cached at earlier
    steps. For ``key_len == query_len`` it is the lower triangle of ``is_causal=True``.

    Example:
        >>> causal_mask(2, 3)
        tensor([[0., 0., -inf],
                [0., 0., 0.]])
    """
    allowed = _causal_allowed(query_len, query_len if key_len is None else key_len, device, True)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, -math.inf)


def _causal_allowed(query_len: int, key_len: int, device: Any, lower_right: bool) -> Tensor:
    """Boolean (query_len, key_len), True where allowed: upper-left (SDPA) or lower-right aligned."""
    for name, value in (("query_len", query_len), ("key_len", key_len)):
        check_int(name, value, min=0)
    ones = torch.ones(query_len, key_len, dtype=torch.bool, device=device)
    return ones.tril(diagonal=key_len - query_len if lower_right else 0)


def padding_mask(lengths: Tensor | Sequence[int], max_len: int | None = None) -> Tensor:
    """Boolean (..., max_len) key padding mask: **True at padding**, after the first ``lengths[...]`` positions.

    This is the polarity of ``nn.MultiheadAttention``'s ``key_padding_mask`` (and of
    :class:`~simplexity.nn.MultiheadAttention`'s). A boolean ``attn_mask`` of :func:`attention` means the
    opposite (True = may attend): pass ``~padding_mask(lengths)[:, None, None, :]`` there.

    Example:
        >>> padding_mask(torch.tensor([1, 3]), 4)
        tensor([[False,  True,  True,  True],
                [False, False, False,  True]])
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
    check_int("max_len", max_len, min=longest)  # at least the largest length
    return torch.arange(max_len, device=lengths.device) >= lengths.unsqueeze(-1)


# ------------------------------------------------------------------------------------- normalizers


def resolve_normalizer(
    normalizer: NormalizerLike, options: dict[str, Any] | None = None
) -> Normalizer | nn.Module:
    """The normalizer attention applies: a registry name (with ``options``), a ``Normalizer`` or a module.

    A module must take the scores and a boolean ``mask=`` (True = valid) and normalize the last
    dimension, as :class:`~simplexity.normalizers.EvSoftmax` does; its hyperparameters and its
    train/eval mode are honoured. ``torch.nn.Softmax(dim=-1)`` is read as ``"softmax"``.

    Example:
        >>> resolve_normalizer("ev_softmax", {"eps": 1e-3}).options
        {'eps': 0.001}
        >>> resolve_normalizer(EvSoftmax(eps=1e-3))
        EvSoftmax(dim=-1, eps=0.001)
    """
    if isinstance(normalizer, (str, Normalizer)):
        return resolve(normalizer, options)
    if options:
        raise ValueError(
            "normalizer_options can only be given with a normalizer name, not a "
            f"{type(normalizer).__name__}: configure the module itself"
        )
    if isinstance(normalizer, nn.Softmax):
        if normalizer.dim not in (-1, None):
            raise ValueError(
                f"normalizer nn.Softmax must normalize dim=-1 (the keys), got dim={normalizer.dim}"
            )
        return get("softmax")
    if isinstance(normalizer, nn.Module):
        if isinstance(normalizer, NormalizerModule) and normalizer.normalizer.posthoc_evidential:
            raise ValueError(
                "the post-hoc evidential filter reads the queries and keys: pass "
                "normalizer='posthoc_evidential' (or its Normalizer), not a module"
            )
        if isinstance(normalizer, LogEvSoftmax):
            raise TypeError(
                "normalizer LogEvSoftmax returns log-probabilities; attention needs probabilities "
                "(use EvSoftmax)"
            )
        try:
            takes_mask = "mask" in inspect.signature(normalizer.forward).parameters
        except (TypeError, ValueError):
            takes_mask = False
        if not takes_mask:
            raise TypeError(
                f"a normalizer module must accept a boolean mask= keyword (True = valid), as "
                f"simplexity.EvSoftmax does; {type(normalizer).__name__}.forward does not"
            )
        dim = getattr(normalizer, "dim", -1)
        if dim != -1:
            raise ValueError(
                f"a normalizer module must normalize dim=-1 (the keys), got dim={dim!r}"
            )
        return normalizer
    raise TypeError(
        "normalizer must be a registry name (str), a simplexity.normalizers.Normalizer or an "
        f"nn.Module such as simplexity.EvSoftmax(), got {type(normalizer).__name__}"
    )


def _training_form(norm: Normalizer | nn.Module, training: bool | None) -> bool:
    """Whether to use the training form: the module's own mode, else ``training`` (None = False)."""
    if training is not None and not isinstance(training, bool):
        raise TypeError(f"training must be a bool or None, got {type(training).__name__}")
    if isinstance(norm, nn.Module):
        if training is not None and training != norm.training:
            raise ValueError(
                f"training={training} disagrees with the normalizer module's mode "
                f"(training={norm.training}); a module normalizer follows its own train()/eval()"
            )
        return norm.training
    return bool(training)


def _normalize(
    norm: Normalizer | nn.Module, scores: Tensor, valid: Tensor | None, training: bool
) -> Tensor:
    if isinstance(norm, Normalizer):
        return norm(scores, -1, mask=valid, training=training)
    return norm(scores, mask=valid)


def _ev_softmax_eps(norm: Normalizer | nn.Module, training: bool) -> float | None:
    """ev-softmax's ``eps`` for this call (0 = the exact map), or None if ``norm`` is not ev-softmax."""
    if isinstance(norm, NormalizerModule):
        return _ev_softmax_eps(norm.normalizer, norm.training)
    if isinstance(norm, EvSoftmax) and not isinstance(norm, LogEvSoftmax):
        return float(norm.eps) if norm.training else 0.0
    if isinstance(norm, Normalizer) and norm.mapping is ev_softmax:
        if not training:
            return 0.0
        # the training map's eps is known only from the options (the registry always records it);
        # a hand-built Normalizer without it takes the dense path, through its own train_mapping
        return float(norm.options["eps"]) if "eps" in norm.options else None
    return None


# ------------------------------------------------------------------------------------------ checks


def _check_qkv(
    query: Tensor, key: Tensor, value: Tensor | None, enable_gqa: bool
) -> tuple[Tensor, Tensor | None]:
    """Validate shapes and dtypes; with ``enable_gqa`` repeat key/value heads (dim -3) to the query's."""
    pairs = [("query", query), ("key", key)] + ([("value", value)] if value is not None else [])
    for name, t in pairs:
        check_floating(name, t)
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., L, E), got {tuple(t.shape)}")
        if t.is_nested:
            raise TypeError(f"{name} is a nested tensor; pad it (attention takes dense tensors)")
        if t.dtype != query.dtype:
            raise TypeError(
                f"query, key and value must share a dtype, got {query.dtype} and {name} {t.dtype}"
            )
        if t.device != query.device:
            raise ValueError(f"{name} is on {t.device} but query is on {query.device}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query and key must have the same last dimension E: query (..., L, E) is "
            f"{tuple(query.shape)}, key (..., S, E) is {tuple(key.shape)}"
        )
    if value is not None and value.shape[-2] != key.shape[-2]:
        raise ValueError(
            f"value (..., S, Ev) must have as many rows as key (..., S, E): key is {tuple(key.shape)}, "
            f"value is {tuple(value.shape)}"
        )
    if not isinstance(enable_gqa, bool):
        raise TypeError(f"enable_gqa must be a bool, got {type(enable_gqa).__name__}")
    if enable_gqa and key.dim() >= 3 and query.dim() >= 3 and key.shape[-3] != query.shape[-3]:
        heads, kv_heads = query.shape[-3], key.shape[-3]
        if kv_heads == 0 or heads % kv_heads or (value is not None and value.shape[-3] != kv_heads):
            raise ValueError(
                "with enable_gqa the query heads (dim -3) must be a multiple of the key/value heads, "
                f"got query {tuple(query.shape)}, key {tuple(key.shape)}"
                + ("" if value is None else f", value {tuple(value.shape)}")
            )
        key = key.repeat_interleave(heads // kv_heads, -3)
        value = None if value is None else value.repeat_interleave(heads // kv_heads, -3)
    shapes = [query.shape[:-2], key.shape[:-2]] + ([value.shape[:-2]] if value is not None else [])
    try:
        torch.broadcast_shapes(*shapes)
    except RuntimeError:
        raise ValueError(
            "the batch dimensions (all but the last two) of query, key and value must broadcast, "
            "got " + ", ".join(str(tuple(s)) for s in shapes)
        ) from None
    return key, value


def _check_scale(scale: float | None, embed: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(embed) if embed else 1.0
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
        raise TypeError(f"scale must be a finite real number or None, got {scale!r}")
    return float(scale)


def _check_dropout(dropout_p: float) -> float:
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, numbers.Real):
        raise TypeError(f"dropout_p must be a real number, got {type(dropout_p).__name__}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be a probability in [0, 1), got {dropout_p}")
    return float(dropout_p)


def _check_attn_mask(
    attn_mask: Tensor | None, query: Tensor, scores_shape: torch.Size
) -> Tensor | None:
    """A bool or float ``attn_mask`` broadcastable to the scores (a float one in query's dtype)."""
    if attn_mask is None:
        return None
    check_tensor("attn_mask", attn_mask)
    if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise TypeError(
            "attn_mask must be a boolean tensor (True where a query may attend) or a float tensor "
            f"added to the scores (-inf = masked), got dtype {attn_mask.dtype}"
        )
    try:
        shape = torch.broadcast_shapes(attn_mask.shape, scores_shape)
    except RuntimeError:
        shape = None
    if shape != scores_shape:
        raise ValueError(
            f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the scores' shape "
            f"(..., L, S) = {tuple(scores_shape)}"
        )
    if attn_mask.device != query.device:
        raise ValueError(f"attn_mask is on {attn_mask.device} but query is on {query.device}")
    if attn_mask.is_floating_point() and attn_mask.dtype != query.dtype:
        attn_mask = attn_mask.to(
            query.dtype
        )  # as the scores: a mask never changes the output dtype
    return attn_mask


def _scores_shape(query: Tensor, key: Tensor) -> torch.Size:
    batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2])
    return torch.Size((*batch, query.shape[-2], key.shape[-2]))


def _validity(
    attn_mask: Tensor | None, is_causal: bool, query_len: int, key_len: int, device: Any
) -> Tensor | None:
    """Boolean (broadcastable) validity, True where a query may attend, from the mask and is_causal."""
    valid = None
    if attn_mask is not None:
        valid = attn_mask if attn_mask.dtype == torch.bool else attn_mask != -math.inf
    if is_causal:
        causal = _causal_allowed(query_len, key_len, device, False)
        valid = causal if valid is None else valid & causal
    return valid


# ---------------------------------------------------------------------------------- post-hoc filter


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
        q: scaled queries :math:`\phi` (..., L, d).
        k: keys (..., S, d).
        mask: boolean broadcastable to (..., L, S), **True = valid key**; None = all valid.
        feature_mean: :math:`\mu`, broadcastable to (..., d) over the batch dimensions; None = 0.

    Returns:
        Boolean (..., L, S), a subset of ``mask``. Memory O(L · S · d) per batch entry.
    """
    scores_shape = torch.broadcast_shapes((*q.shape[:-1], 1), (*k.shape[:-2], 1, k.shape[-2]))
    valid = (
        torch.ones(scores_shape, dtype=torch.bool, device=q.device)
        if mask is None
        else mask.expand(scores_shape)
    )
    weights = valid.to(k.dtype)
    centre = (weights @ k) / weights.sum(-1, keepdim=True).clamp_min(1)  # (..., L, d)
    beta = k.unsqueeze(-3) - centre.unsqueeze(-2)  # (..., L, S, d)
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


# ------------------------------------------------------------------------------------ the functions


def _weights(
    query: Tensor,
    key: Tensor,
    attn_mask: Tensor | None,
    is_causal: bool,
    scale: float,
    norm: Normalizer | nn.Module,
    training: bool,
    posthoc: bool,
    feature_mean: Tensor | None,
) -> Tensor:
    """The dense path: (..., L, S) weights from validated arguments."""
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if scores.shape[-1] == 0:  # no keys: nothing to attend to
        return scores
    valid = _validity(attn_mask, is_causal, query.shape[-2], key.shape[-2], query.device)
    if attn_mask is not None and attn_mask.is_floating_point():
        scores = scores + attn_mask
    if posthoc and not training:
        with torch.no_grad():
            valid = evidential_attention_support(
                query.detach() * scale, key.detach(), valid, feature_mean
            )
    return _normalize(norm, scores, valid, training)


def _prepare(
    query: Tensor,
    key: Tensor,
    value: Tensor | None,
    attn_mask: Tensor | None,
    is_causal: bool,
    scale: float | None,
    normalizer: NormalizerLike,
    normalizer_options: dict[str, Any] | None,
    training: bool | None,
    feature_mean: Tensor | None,
    enable_gqa: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None, float, Normalizer | nn.Module, bool, bool]:
    key, value = _check_qkv(query, key, value, enable_gqa)
    if not isinstance(is_causal, bool):
        raise TypeError(f"is_causal must be a bool, got {type(is_causal).__name__}")
    scale = _check_scale(scale, query.shape[-1])
    attn_mask = _check_attn_mask(attn_mask, query, _scores_shape(query, key))
    norm = resolve_normalizer(normalizer, normalizer_options)
    posthoc = isinstance(norm, Normalizer) and norm.posthoc_evidential
    training = _training_form(norm, training)
    if feature_mean is not None:
        if not posthoc:
            raise ValueError(
                "feature_mean is only used by a post-hoc evidential normalizer "
                "(normalizer='posthoc_evidential')"
            )
        check_floating("feature_mean", feature_mean)
        if feature_mean.shape[-1:] != query.shape[-1:]:
            raise ValueError(
                f"feature_mean must have shape (..., E) with E = {query.shape[-1]}, "
                f"got {tuple(feature_mean.shape)}"
            )
    return key, value, attn_mask, scale, norm, training, posthoc


def attention_weights(
    query: Tensor,
    key: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    normalizer: NormalizerLike = "ev_softmax",
    normalizer_options: dict[str, Any] | None = None,
    training: bool | None = None,
    feature_mean: Tensor | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    r"""The attention distribution :math:`\rho(s\, q k^\top + B;\ M)`, shape (..., L, S), before dropout.

    Arguments as in :func:`attention`. Masked keys get weight exactly 0; a query with no key to attend
    to gets a row of zeros.

    Example:
        >>> q, k = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 0.0], [-2.0, 0.0]])
        >>> attention_weights(q, k, scale=1.0)
        tensor([[0.8808, 0.1192, 0.0000]])
        >>> attention_weights(q, k, torch.tensor([False, True, True]), scale=1.0)
        tensor([[0., 1., 0.]])
    """
    key, _, attn_mask, scale, norm, training, posthoc = _prepare(
        query, key, None, attn_mask, is_causal, scale, normalizer, normalizer_options, training,
        feature_mean, enable_gqa,
    )  # fmt: skip
    return _weights(query, key, attn_mask, is_causal, scale, norm, training, posthoc, feature_mean)


def _fused_ev_softmax_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None,
    dropout_p: float,
    is_causal: bool,
    scale: float,
    eps: float,
    key_mean: Tensor | None = None,
) -> Tensor | None:
    """The one dispatch point to a fused ev-softmax attention kernel; None = take the dense path.

    Called by :func:`attention` only for ev-softmax (a name, a ``Normalizer`` or an ``EvSoftmax``
    module), with validated arguments in ``scaled_dot_product_attention``'s conventions: ``query``
    (..., L, E), ``key`` (..., S, E), ``value`` (..., S, Ev) of one dtype and device, batch dimensions
    that broadcast (key/value heads already repeated for ``enable_gqa``); ``attn_mask`` None, boolean
    (True = may attend) or float in query's dtype (added to the scores, ``-inf`` = masked), broadcastable
    to (..., L, S); ``is_causal`` the upper-left lower triangle, *and*-ed with ``attn_mask`` if both are
    given; ``scale`` a float; ``eps`` 0 for the exact map, > 0 for the training family. The result must
    equal the dense path's (zero rows where nothing may be attended to).

    It is :func:`~simplexity.nn.ev_attention.ev_softmax_attention`: blocks of queries, the threshold
    linear in the keys, no (..., L, S) score matrix in the forward or the backward. ``key_mean`` (the
    mean of the valid keys, e.g. from a cache) is used where the threshold is shared by all queries.
    """
    shared = not is_causal and (
        attn_mask is None or attn_mask.dim() < 2 or attn_mask.shape[-2] == 1
    )
    return ev_softmax_attention(
        query, key, value, attn_mask, dropout_p, is_causal, scale, eps=eps,
        key_mean=key_mean if shared else None,
    )  # fmt: skip


def attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    normalizer: NormalizerLike = "ev_softmax",
    normalizer_options: dict[str, Any] | None = None,
    training: bool | None = None,
    feature_mean: Tensor | None = None,
    enable_gqa: bool = False,
    key_mean: Tensor | None = None,
) -> Tensor:
    r"""Scaled dot-product attention with a pluggable normalizer, in ``scaled_dot_product_attention``'s conventions.

    .. math::

        \operatorname{out} = \operatorname{dropout}\big(\rho(s\, q k^\top + B;\ M)\big)\, v .

    Args:
        query: (..., L, E).
        key: (..., S, E).
        value: (..., S, Ev). The batch dimensions of the three broadcast.
        attn_mask: broadcastable to (..., L, S). **Boolean: True where the query may attend** (torch's
            ``scaled_dot_product_attention`` convention; ``nn.MultiheadAttention``'s boolean masks mean the
            opposite). **Float: added to the scores**; its ``-inf`` entries count as masked. Masked keys get
            weight exactly 0 and are left out of the normalizer's statistics (ev-softmax's mean).
        dropout_p: dropout probability on the weights, applied whenever positive (pass 0 in eval).
        is_causal: allow key ``j`` for query ``i`` only if ``j <= i`` (upper-left aligned, as torch);
            *and*-ed with ``attn_mask`` if both are given (torch forbids giving both).
        scale: multiplier of :math:`q k^\top`; :math:`1/\sqrt E` when None.
        normalizer: a registry name (``"softmax"``, ``"sparsemax"``, ``"entmax15"``, ``"entmax_bisect"``,
            ``"ev_softmax"``), a :class:`~simplexity.normalizers.Normalizer`, a module such as
            ``simplexity.EvSoftmax(eps=1e-6)`` (its hyperparameters and train/eval mode are honoured), or
            ``"posthoc_evidential"``: softmax in training, and otherwise the softmax restricted to
            :func:`evidential_attention_support`.
        normalizer_options: options of a registry name (e.g. ``{"eps": 1e-6}``).
        training: use the normalizer's training form (ev-softmax's ``eps`` family); None = False for a
            name or ``Normalizer``, the module's own mode for a module (an explicit value must agree).
        feature_mean: for ``"posthoc_evidential"`` only, the training mean of the scaled queries,
            broadcastable to (..., E); None = 0.
        enable_gqa: grouped-query attention: the query heads (dim -3) are a multiple of the key/value
            heads, which are repeated to match (as torch).
        key_mean: for ev-softmax, the mean of the valid keys (..., 1, E) when it is already known
            (:meth:`~simplexity.nn.KeyValueCache.key_mean` keeps it while decoding), so that the
            threshold costs O(E) per query; used only where no per-query mask or ``is_causal`` applies.

    Returns:
        (..., L, Ev); zeros for a query with no key to attend to (torch: NaN).

    Example:
        >>> q = torch.tensor([[1.0, 0.0]])
        >>> k = torch.tensor([[2.0, 0.0], [0.0, 0.0], [-2.0, 0.0], [9.0, 9.0]])
        >>> v = torch.tensor([[1.0], [2.0], [3.0], [100.0]])
        >>> attention(q, k, v, torch.tensor([True, True, True, False]), scale=1.0)
        tensor([[1.1192]])
        >>> attention(q, k, v, torch.tensor([0.0, 0.0, 0.0, -math.inf]), scale=1.0)
        tensor([[1.1192]])
    """
    key, value, attn_mask, scale, norm, training, posthoc = _prepare(
        query, key, value, attn_mask, is_causal, scale, normalizer, normalizer_options, training,
        feature_mean, enable_gqa,
    )  # fmt: skip
    assert value is not None
    dropout_p = _check_dropout(dropout_p)
    eps = None if posthoc else _ev_softmax_eps(norm, training)
    if eps is not None:
        out = _fused_ev_softmax_attention(
            query, key, value, attn_mask, dropout_p, is_causal, scale, eps, key_mean
        )
        if out is not None:
            return out
    if not posthoc and math.prod(_scores_shape(query, key)) >= blocked.MIN_SCORES:
        # long sequences: checkpointed blocks of queries, O(L * block) memory for every normalizer
        return blocked.blocked_attention(
            query, key, value, attn_mask, dropout_p, is_causal, scale,
            normalize=lambda scores, valid: _normalize(norm, scores, valid, training),
        )  # fmt: skip
    weights = _weights(
        query, key, attn_mask, is_causal, scale, norm, training, posthoc, feature_mean
    )
    if dropout_p > 0:
        weights = F.dropout(weights, dropout_p, training=True)
    return torch.matmul(weights, value)
