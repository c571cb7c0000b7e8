r"""Multi-head attention with any normalizer, a drop-in for ``torch.nn.MultiheadAttention``.

:class:`MultiheadAttention` takes ``torch.nn.MultiheadAttention``'s constructor arguments, forward
arguments and parameter names (``in_proj_weight``, ``in_proj_bias``, ``out_proj``, or
``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when ``kdim``/``vdim`` differ, ``bias_k``/``bias_v``),
so a torch checkpoint loads into it and it replaces ``self_attn`` of ``nn.TransformerEncoderLayer`` and
``nn.TransformerDecoderLayer``; its ``normalizer=`` puts ev-softmax (the default), sparsemax, entmax or a
module such as ``simplexity.EvSoftmax(eps=...)`` in place of the softmax, as the ev-softmax paper does in
its translation Transformer. With ``normalizer="softmax"`` it computes torch's numbers.

References:
    Vaswani et al. "Attention Is All You Need", NeurIPS 2017.
    Chen, Itkina, Senanayake, Kochenderfer. "Evidential Softmax for Sparse Multimodal Distributions in
    Deep Generative Models", NeurIPS 2021 (arXiv:2110.14182).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simplexity._checks import check_floating, check_int, check_tensor
from simplexity.nn.cache import KeyValueCache
from simplexity.nn.functional import (
    NormalizerLike,
    attention,
    attention_weights,
    resolve_normalizer,
)
from simplexity.normalizers import Normalizer

__all__ = ["MultiheadAttention"]


def _keep_off_torch_fast_path(module: nn.Module, args: tuple[Any, ...]) -> None:
    """A no-op forward pre-hook (see :class:`MultiheadAttention`, "torch's fast path")."""
    return None


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


class MultiheadAttention(nn.Module):
    r"""``torch.nn.MultiheadAttention`` with a pluggable normalizer (ev-softmax by default).

    Arguments, forward signature, masks and parameter names are ``torch.nn.MultiheadAttention``'s:

    - ``key_padding_mask`` (N, S) or (S,): boolean **True = ignore this key** (padding), or float, added
      to the scores;
    - ``attn_mask`` (L, S), (N · num_heads, L, S) or (N, num_heads, L, S): boolean **True = not allowed**
      (torch's ``nn.MultiheadAttention`` polarity, the opposite of ``scaled_dot_product_attention``'s),
      or float, added to the scores;
    - ``is_causal=True`` applies the causal mask (*and*-ed with ``attn_mask``; torch reads it as a hint
      that ``attn_mask`` is causal and requires one, which gives the same result);
    - ``need_weights=True`` (the default) also returns the weights, averaged over heads (N, L, S) unless
      ``average_attn_weights=False`` (N, num_heads, L, S); as torch, they are the weights after dropout.

    Masked keys (``True`` in a boolean mask, ``-inf`` in a float one) get weight exactly 0 and never
    enter the normalizer's statistics (ev-softmax's mean); a query with nothing to attend to gets a zero
    output (torch: NaN). In training mode the normalizer's training form is used (ev-softmax with its
    ``eps``) and dropout is applied to the weights; in eval mode the exact map. A module normalizer
    follows its own train/eval mode, which ``.train()``/``.eval()`` set with this module's.

    Incremental decoding (an extension): pass a :class:`~simplexity.nn.KeyValueCache` as ``cache``; each
    call appends the new projected keys and values and attends to everything cached; ``is_causal``
    is then lower-right aligned (the queries are the last positions). Decoding one position at a time
    gives the outputs of the full pass with ``is_causal=True``.

    **torch's fast path**: in eval mode without autograd, ``nn.TransformerEncoderLayer`` would call
    torch's fused softmax kernel with ``self_attn``'s weights and never call ``self_attn``. This
    module carries a no-op forward pre-hook, one of the conditions under which the layer calls
    ``self_attn`` instead; so the normalizer is honoured in every mode. ``nn.TransformerEncoder`` may
    still hand it a nested tensor in that mode: it is padded, attended and nested again.

    Args:
        embed_dim: E, the query and output features.
        num_heads: number of heads; must divide ``embed_dim``.
        dropout: dropout probability on the attention weights (training mode only).
        bias: biases in the input and output projections.
        add_bias_kv: append a learned key and value (``bias_k``, ``bias_v``) to every sequence.
        add_zero_attn: append a zero key and value to every sequence.
        kdim: features of ``key`` (default E).
        vdim: features of ``value`` (default E).
        batch_first: inputs and outputs are (N, L, E) if True, else (L, N, E) (torch's default).
        device, dtype: of the parameters.
        normalizer: a registry name (``"softmax"``, ``"sparsemax"``, ``"entmax15"``, ``"entmax_bisect"``,
            ``"ev_softmax"``), a :class:`~simplexity.normalizers.Normalizer`, a module such as
            ``simplexity.EvSoftmax(eps=1e-6)``, or ``"posthoc_evidential"`` (softmax in training; in eval the
            post-hoc evidential filter with the running mean of each head's scaled queries, the buffer
            ``query_mean`` (num_heads, E / num_heads), tracked in training with ``momentum`` as
            BatchNorm's running mean).
        normalizer_options: options of a registry name (e.g. ``{"eps": 1e-6}``).
        momentum: weight of the current batch in ``query_mean`` (post-hoc evidential only).

    Example:
        >>> mha = MultiheadAttention(8, 2, batch_first=True).eval()
        >>> x = torch.randn(3, 5, 8)
        >>> pad = torch.tensor([[False] * 5, [False] * 4 + [True], [False] * 2 + [True] * 3])
        >>> out, w = mha(x, x, x, key_padding_mask=pad, average_attn_weights=False)
        >>> out.shape, w.shape
        (torch.Size([3, 5, 8]), torch.Size([3, 2, 5, 5]))
        >>> bool((w[2, :, :, 2:] == 0).all()), bool((w == 0).any())
        (True, True)
    """

    __constants__: ClassVar[list[str]] = ["batch_first"]  # as torch, for TorchScript
    in_proj_weight: Tensor | None
    in_proj_bias: Tensor | None
    q_proj_weight: Tensor | None
    k_proj_weight: Tensor | None
    v_proj_weight: Tensor | None
    bias_k: Tensor | None
    bias_v: Tensor | None

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        normalizer: NormalizerLike = "ev_softmax",
        normalizer_options: dict[str, Any] | None = None,
        momentum: float = 0.1,
    ) -> None:
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        super().__init__()
        embed_dim = check_int("embed_dim", embed_dim, min=1)
        num_heads = check_int("num_heads", num_heads, min=1)
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim must be divisible by num_heads, got {embed_dim} and {num_heads}"
            )
        kdim = embed_dim if kdim is None else check_int("kdim", kdim, min=1)
        vdim = embed_dim if vdim is None else check_int("vdim", vdim, min=1)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
            raise TypeError(f"dropout must be a real number, got {type(dropout).__name__}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout}")
        for name, value in (
            ("bias", bias),
            ("add_bias_kv", add_bias_kv),
            ("add_zero_attn", add_zero_attn),
            ("batch_first", batch_first),
        ):
            _check_bool(name, value)
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype or None, got {dtype}")
        self.embed_dim, self.kdim, self.vdim = embed_dim, kdim, vdim
        self._qkv_same_embed_dim = kdim == embed_dim and vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = float(dropout)
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        self.add_zero_attn = add_zero_attn

        # torch's parameters, names and registration order (so state_dicts are interchangeable)
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, **factory))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = nn.Parameter(torch.empty(embed_dim, embed_dim, **factory))
            self.k_proj_weight = nn.Parameter(torch.empty(embed_dim, kdim, **factory))
            self.v_proj_weight = nn.Parameter(torch.empty(embed_dim, vdim, **factory))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, embed_dim, **factory))
            self.bias_v = nn.Parameter(torch.empty(1, 1, embed_dim, **factory))
        else:
            self.bias_k = self.bias_v = None

        self.normalizer = resolve_normalizer(normalizer, normalizer_options)
        if self.posthoc_evidential:
            if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
                raise TypeError(f"momentum must be a real number, got {type(momentum).__name__}")
            if not 0 < momentum <= 1:
                raise ValueError(f"momentum must be a number in (0, 1], got {momentum}")
            self.momentum = float(momentum)
            self.register_buffer(
                "query_mean", torch.zeros(num_heads, self.head_dim, device=device, dtype=dtype)
            )
        self._reset_parameters()
        self.register_forward_pre_hook(_keep_off_torch_fast_path)

    def _reset_parameters(self) -> None:
        """torch's initialization: Xavier-uniform input projections, zero biases, Xavier-normal bias_k/v."""
        if self._qkv_same_embed_dim:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            nn.init.xavier_uniform_(self.q_proj_weight)
            nn.init.xavier_uniform_(self.k_proj_weight)
            nn.init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.constant_(self.in_proj_bias, 0.0)
            nn.init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            nn.init.xavier_normal_(self.bias_v)

    @property
    def posthoc_evidential(self) -> bool:
        """Whether eval mode applies the post-hoc evidential filter (the normalizer says so)."""
        return isinstance(self.normalizer, Normalizer) and self.normalizer.posthoc_evidential

    def extra_repr(self) -> str:
        name = getattr(self.normalizer, "name", type(self.normalizer).__name__)
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, normalizer={name!r}, "
            f"dropout={self.dropout}, batch_first={self.batch_first}"
        )

    # ------------------------------------------------------------------------------ projections

    def _project(
        self, query: Tensor, key: Tensor, value: Tensor, same: tuple[bool, bool]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Input projections, packed as torch packs them (so the rounding is torch's too)."""
        e = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else b.split(e)
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            assert w is not None
            self_attention, kv_same = same
            if self_attention:
                q, k, v = F.linear(query, w, b).unflatten(-1, (3, e)).unbind(-2)
                return q, k, v
            wq, wkv = w.split([e, 2 * e])
            if kv_same:
                bkv = None if b is None else b[e:]
                k, v = F.linear(key, wkv, bkv).unflatten(-1, (2, e)).unbind(-2)
                return F.linear(query, wq, bq), k, v
            wk, wv = wkv.split(e)
            return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)
        assert self.q_proj_weight is not None
        assert self.k_proj_weight is not None and self.v_proj_weight is not None
        return (
            F.linear(query, self.q_proj_weight, bq),
            F.linear(key, self.k_proj_weight, bk),
            F.linear(value, self.v_proj_weight, bv),
        )

    def _heads(self, x: Tensor) -> Tensor:
        """(N, L, E) -> (N, H, L, E / H)."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    # ------------------------------------------------------------------------------------ masks

    def _check_key_padding_mask(
        self, mask: Tensor | None, shape: tuple[int, int], batched: bool
    ) -> Tensor | None:
        if mask is None:
            return None
        check_tensor("key_padding_mask", mask)
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise TypeError(
                "key_padding_mask must be boolean (True = padding, the key is ignored) or float "
                f"(added to the scores), got dtype {mask.dtype}"
            )
        expected = shape if batched else shape[1:]
        if tuple(mask.shape) != expected:
            layout = "(N, S)" if batched else "(S,)"
            raise ValueError(
                f"key_padding_mask must have shape {layout} = {expected}, got {tuple(mask.shape)}"
            )
        return mask if batched else mask.unsqueeze(0)

    def _check_attn_mask(
        self, mask: Tensor | None, batch: int, query_len: int, key_len: int
    ) -> Tensor | None:
        """(L, S), (N·H, L, S) or (N, H, L, S) -> broadcastable to (N, H, L, S)."""
        if mask is None:
            return None
        check_tensor("attn_mask", mask)
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise TypeError(
                "attn_mask must be boolean (True = not allowed, as nn.MultiheadAttention) or float "
                f"(added to the scores), got dtype {mask.dtype}"
            )
        h = self.num_heads
        shape = tuple(mask.shape)
        if shape == (query_len, key_len):
            return mask
        if shape == (batch * h, query_len, key_len):
            return mask.unflatten(0, (batch, h))
        if shape == (batch, h, query_len, key_len):
            return mask
        raise ValueError(
            f"attn_mask must have shape (L, S), (N*num_heads, L, S) or (N, num_heads, L, S) with "
            f"N={batch}, num_heads={h}, L={query_len}, S={key_len}, got {shape}"
        )

    @staticmethod
    def _merge(
        padding: Tensor | None, attn_mask: Tensor | None, dtype: torch.dtype
    ) -> Tensor | None:
        """One mask for :func:`~simplexity.nn.attention`: boolean True = may attend, or additive float."""
        allowed: Tensor | None = None
        additive: Tensor | None = None
        for mask in (padding, attn_mask):
            if mask is None:
                continue
            if mask.dtype == torch.bool:
                allowed = ~mask if allowed is None else allowed & ~mask
            else:
                mask = mask.to(dtype)
                additive = mask if additive is None else additive + mask
        if additive is None:
            return allowed
        if allowed is not None:
            additive = additive.masked_fill(~allowed, -math.inf)
        return additive

    # ---------------------------------------------------------------------------------- forward

    def forward(
        self,
        query: Tensor,
        key: Tensor | None,
        value: Tensor | None,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
        *,
        cache: KeyValueCache | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value`` (``torch.nn.MultiheadAttention.forward``'s arguments).

        Args:
            query: (L, N, E), or (N, L, E) if ``batch_first``, or (L, E) unbatched.
            key: (S, N, kdim) / (N, S, kdim) / (S, kdim); None only with a filled static ``cache``.
            value: (S, N, vdim) / (N, S, vdim) / (S, vdim); None only with a filled static ``cache``.
            key_padding_mask: (N, S) or (S,); boolean **True = padding** (ignored), or float (added).
            need_weights: also return the attention weights.
            attn_mask: (L, S), (N * num_heads, L, S) or (N, num_heads, L, S); boolean **True = not
                allowed**, or float (added). With a cache, S counts the cached keys.
            average_attn_weights: average the returned weights over the heads.
            is_causal: apply the causal mask (lower-right aligned with a cache).
            cache: a :class:`~simplexity.nn.KeyValueCache` for incremental decoding (updated in place).

        Returns:
            ``(output, weights)``: the output is laid out like ``query``; the weights are (N, L, S) or
            (N, num_heads, L, S) (without N if unbatched), or None if not ``need_weights``.
        """
        if query.is_nested:
            return self._forward_nested(query, key, value, key_padding_mask, need_weights, attn_mask,
                                        average_attn_weights, is_causal, cache)  # fmt: skip
        return self._forward(query, key, value, key_padding_mask, need_weights, attn_mask,
                             average_attn_weights, is_causal, cache)  # fmt: skip

    def _forward(
        self,
        query: Tensor,
        key: Tensor | None,
        value: Tensor | None,
        key_padding_mask: Tensor | None,
        need_weights: bool,
        attn_mask: Tensor | None,
        average_attn_weights: bool,
        is_causal: bool,
        cache: KeyValueCache | None,
    ) -> tuple[Tensor, Tensor | None]:
        for name, flag in (
            ("need_weights", need_weights),
            ("average_attn_weights", average_attn_weights),
            ("is_causal", is_causal),
        ):
            _check_bool(name, flag)
        check_floating("query", query)
        batched = query.dim() == 3
        if query.dim() not in (2, 3) or query.shape[-1] != self.embed_dim:
            layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
            raise ValueError(
                f"query must have shape {layout} (batch_first={self.batch_first}) or (L, E) with "
                f"E = {self.embed_dim}, got {tuple(query.shape)}"
            )
        if cache is not None and not isinstance(cache, KeyValueCache):
            raise TypeError(f"cache must be a KeyValueCache or None, got {type(cache).__name__}")
        reuse = cache is not None and cache.static and len(cache) > 0
        if cache is not None and (self.bias_k is not None or self.add_zero_attn):
            raise ValueError("a cache cannot be used with add_bias_kv or add_zero_attn")
        same = (query is key and key is value, key is value)
        query = query if batched else query.unsqueeze(0)
        if self.batch_first is False and batched:
            query = query.transpose(0, 1)
        batch, query_len = query.shape[:2]
        heads = self.num_heads

        if reuse:
            assert cache is not None
            if key is not None or value is not None or key_padding_mask is not None:
                raise ValueError(
                    "a filled static cache holds its keys, values and key padding mask: pass "
                    "key=None, value=None and no key_padding_mask"
                )
            q = self._heads(self._project_query(query))
            k, v, padding = cache.key, cache.value, cache.key_padding_mask
            assert k is not None and v is not None
        else:
            if key is None or value is None:
                raise ValueError("key and value are required unless a filled static cache is given")
            key, value = self._check_key_value(key, value, batch, batched)
            padding = self._check_key_padding_mask(key_padding_mask, (batch, key.shape[1]), batched)
            q, k, v = (self._heads(t) for t in self._project(query, key, value, same))
            if cache is not None:
                cache.append(k, v, self._bool_padding(padding))
                k, v, padding = cache.key, cache.value, cache.key_padding_mask
                assert k is not None and v is not None
        if k.shape[0] != batch:
            raise ValueError(f"the cache holds a batch of {k.shape[0]}, the query {batch}")
        key_len = k.shape[2]
        attn_mask = self._check_attn_mask(attn_mask, batch, query_len, key_len)
        # decoding over a cache: its running key sum gives ev-softmax's threshold (linear in the mean
        # valid key) without a pass over the cached keys, where every query sees every cached key
        key_mean = None
        if cache is not None and attn_mask is None and (query_len == 1 or not is_causal):
            key_mean = cache.key_mean()

        extra = int(self.bias_k is not None) + int(self.add_zero_attn)
        causal = is_causal and cache is None and not extra  # upper-left: attention()'s is_causal
        if is_causal and not causal:
            # lower-right after cached keys; before the appended bias/zero keys, as torch's masks
            blocked = torch.ones(query_len, key_len, dtype=torch.bool, device=query.device)
            blocked = ~blocked.tril(key_len - query_len if cache is not None else 0)
            attn_mask = blocked if attn_mask is None else self._and_not(attn_mask, blocked)
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self._heads(self.bias_k).expand(batch, -1, -1, -1)], 2)
            v = torch.cat([v, self._heads(self.bias_v).expand(batch, -1, -1, -1)], 2)
        if self.add_zero_attn:
            k = torch.cat([k, k.new_zeros((batch, heads, 1, k.shape[-1]))], 2)
            v = torch.cat([v, v.new_zeros((batch, heads, 1, v.shape[-1]))], 2)
        if extra:  # the appended keys are never masked (torch pads its masks with zeros)
            if padding is not None:
                padding = F.pad(padding, (0, extra), value=0)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, extra), value=0)
        mask = self._merge(
            None if padding is None else padding[:, None, None, :], attn_mask, q.dtype
        )

        training = None if isinstance(self.normalizer, nn.Module) else self.training
        feature_mean = None
        if self.posthoc_evidential:
            if self.training:
                with torch.no_grad():
                    scaled = q.detach() / math.sqrt(self.head_dim)
                    self.query_mean.lerp_(
                        scaled.mean((0, 2)).to(self.query_mean.dtype), self.momentum
                    )
            else:
                feature_mean = self.query_mean.to(q.dtype)  # (H, E / H): q's batch dims are (N, H)
        dropout_p = self.dropout if self.training else 0.0
        options: dict[str, Any] = {
            "normalizer": self.normalizer,
            "training": training,
            "feature_mean": feature_mean,
        }
        weights = None
        if need_weights:
            weights = attention_weights(q, k, mask, causal, **options)
            if dropout_p > 0:
                weights = F.dropout(weights, dropout_p, training=True)
            out = torch.matmul(weights, v)
            if average_attn_weights:
                weights = weights.mean(1)
            if not batched:
                weights = weights.squeeze(0)
        else:
            out = attention(q, k, v, mask, dropout_p, causal, key_mean=key_mean, **options)
        out = self.out_proj(out.transpose(1, 2).flatten(-2))
        if not batched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    @staticmethod
    def _and_not(mask: Tensor, blocked: Tensor) -> Tensor:
        """Also block ``blocked`` (True = not allowed) in a torch-polarity boolean or additive mask."""
        if mask.dtype == torch.bool:
            return mask | blocked
        return mask.masked_fill(blocked, -math.inf)

    def _project_query(self, query: Tensor) -> Tensor:
        e = self.embed_dim
        w = self.in_proj_weight[:e] if self.in_proj_weight is not None else self.q_proj_weight
        b = None if self.in_proj_bias is None else self.in_proj_bias[:e]
        assert w is not None
        return F.linear(query, w, b)

    def _check_key_value(
        self, key: Tensor, value: Tensor, batch: int, batched: bool
    ) -> tuple[Tensor, Tensor]:
        check_floating("key", key)
        check_floating("value", value)
        ndim = 3 if batched else 2
        for name, t, dim in (("key", key, self.kdim), ("value", value, self.vdim)):
            if t.dim() != ndim or t.shape[-1] != dim:
                layout = ("(N, S, " if self.batch_first else "(S, N, ") if batched else "(S, "
                raise ValueError(
                    f"{name} must have shape {layout}{name[0]}dim) with {name[0]}dim = {dim} "
                    f"(batch_first={self.batch_first}, batched={batched}), got {tuple(t.shape)}"
                )
        if not batched:
            key, value = key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:
            key, value = key.transpose(0, 1), value.transpose(0, 1)
        if key.shape[0] != batch or value.shape[:2] != key.shape[:2]:
            raise ValueError(
                f"key and value must have the query's batch size N = {batch} and the same length S, "
                f"got key {tuple(key.shape)} and value {tuple(value.shape)} (as (N, S, ·))"
            )
        return key, value

    @staticmethod
    def _bool_padding(padding: Tensor | None) -> Tensor | None:
        """A cache stores a boolean padding mask: a float one must hold only 0 and -inf."""
        if padding is None or padding.dtype == torch.bool:
            return padding
        blocked = padding == -math.inf
        if bool(((padding != 0) & ~blocked).any()):
            raise ValueError(
                "with a cache, a float key_padding_mask may hold only 0 and -inf (use a boolean one)"
            )
        return blocked

    def _forward_nested(
        self,
        query: Tensor,
        key: Tensor | None,
        value: Tensor | None,
        key_padding_mask: Tensor | None,
        need_weights: bool,
        attn_mask: Tensor | None,
        average_attn_weights: bool,
        is_causal: bool,
        cache: KeyValueCache | None,
    ) -> tuple[Tensor, Tensor | None]:
        """Self-attention on a nested (N, L_i, E) tensor, as ``nn.TransformerEncoder`` hands one in eval."""
        if key is not query or value is not query or cache is not None or not self.batch_first:
            raise TypeError(
                "a nested tensor is accepted only for batch_first self-attention (query is key is value) "
                "without a cache, as nn.TransformerEncoder passes it"
            )
        if key_padding_mask is not None or attn_mask is not None:
            raise ValueError(
                "masks cannot be given with a nested tensor (it carries its own lengths)"
            )
        lengths = [t.shape[0] for t in query.unbind()]
        padded = query.to_padded_tensor(0.0)
        padding = torch.arange(padded.shape[1], device=padded.device) >= torch.tensor(
            lengths, device=padded.device
        ).unsqueeze(-1)
        out, weights = self._forward(padded, padded, padded, padding, need_weights, None,
                                     average_attn_weights, is_causal, None)  # fmt: skip
        pieces = [o[:n] for o, n in zip(out, lengths, strict=True)]
        nested = torch.nested.as_nested_tensor(pieces, layout=query.layout)
        return nested, weights
