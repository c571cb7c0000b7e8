r"""Evidential-softmax attention in query blocks: the threshold is linear in the keys, no score matrix.

ev-softmax keeps the scores at or above their mean. For query :math:`i` with scores
:math:`s_{ij} = \text{scale}\, q_i \cdot k_j + b_{ij}` over its valid keys :math:`V_i` (allowed by the
masks, :math:`b_{ij} > -\infty`), that mean is linear in the keys:

.. math::

    t_i = \frac{1}{|V_i|}\sum_{j \in V_i} s_{ij}
        = \text{scale}\; q_i \cdot \bar k_i + \bar b_i ,
    \qquad \bar k_i = \frac{1}{|V_i|}\sum_{j \in V_i} k_j ,

so it costs one dot product per query once :math:`\bar k_i` is known: one mean of the valid keys under
a key padding mask, a running prefix mean under a causal mask. ev-softmax attention is then softmax
attention restricted to :math:`s_{ij} \ge t_i`,

.. math::

    \operatorname{out}_i = \sum_j \frac{(\mathbb 1\{s_{ij} \ge t_i\} + \epsilon)\, e^{s_{ij}}}
        {\sum_{j'} (\mathbb 1\{s_{ij'} \ge t_i\} + \epsilon)\, e^{s_{ij'}}}\; v_j ,

with the definitions of :func:`simplexity.normalizers.ev_softmax` kept exactly: ties at the threshold
are kept, the threshold is capped at the row's largest score (a rounded mean can exceed it), masked keys
get weight exactly 0, a query without a valid key gets a zero output, and ``eps > 0`` gives the
full-support training family. The threshold carries no gradient, as in ``ev_softmax``'s closed-form
backward.

:func:`ev_softmax_attention` computes it FlashAttention-style (Dao et al.) over blocks of queries (and
of batch entries): the block's scores from one matrix product, less each query's threshold, then a
threshold at 0 and a softmax in place, then the product with the values. The forward keeps only the
output; the backward recomputes each block's weights (the threshold is a vector of Lq numbers).
Memory is the output plus one block of scores (two in the backward), about :data:`BLOCK_ELEMENTS`
numbers; under a causal mask a block's keys stop at its last query. A per-query mask of arbitrary
pattern (``attn_mask`` of shape (..., Lq, Lk)) is read block by block, and its threshold is the
masked mean of the block's scores (the same quantity, without the linear shortcut).

On a CPU the time is that of the two matrix products, the exponentials and a few passes over each
block (``benchmarks/attention.py``); torch's fused softmax kernel
(``scaled_dot_product_attention``) runs its products faster than ``torch.bmm`` does, which bounds how
close this path comes to it.

References:
    Chen, Itkina, Senanayake, Kochenderfer. "Evidential Softmax for Sparse Multimodal Distributions in
    Deep Generative Models", NeurIPS 2021 (arXiv:2110.14182).
    Dao, Fu, Ermon, Rudra, Ré. "FlashAttention: Fast and Memory-Efficient Exact Attention with
    IO-Awareness", NeurIPS 2022 (arXiv:2205.14135).
    Rabe, Staats. "Self-attention Does Not Need O(n²) Memory", 2021 (arXiv:2112.05682).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from simplexity._checks import check_floating, check_int, check_nonnegative, check_tensor
from simplexity.normalizers._softmax_kernels import softmax_kernel

__all__ = ["BLOCK_ELEMENTS", "ev_softmax_attention"]

BLOCK_ELEMENTS = 1 << 20
"""Scores per block when ``block_size`` is None (4 MiB in float32): batch entries are grouped up to it;
a block holds 128 to 256 queries (more scores when the keys are longer than 8192)."""

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _off_support(eps: float) -> float:
    """Log-weight of an off-support key relative to a kept one: log(eps / (1 + eps))."""
    return -math.inf if eps == 0.0 else math.log(eps) - math.log1p(eps)


@dataclass
class _Plan:
    """What one call needs in every block: the centring, the masks, the block layout.

    ``q`` (N, Lq, E) and ``k`` (N, Lk, E) are the inputs; ``threshold`` (N, Lq, 1) holds each query's
    mean score (the linear form), or is None with a per-query mask (``general``), whose threshold is
    taken from each block's scores. ``key_add`` (N, 1, Lk) holds the key-only bias (``-inf`` at
    invalid keys); ``mask``/``bias`` are the per-query masks in their own broadcastable shapes;
    ``empty`` (N, Lq) marks queries known to have no valid key.
    """

    batch: tuple[int, ...]
    query_len: int
    key_len: int
    scale: float
    eps: float
    causal: bool
    general: bool
    rows: int
    q: Tensor
    k: Tensor
    threshold: Tensor | None
    key_add: Tensor | None
    mask: Tensor | None
    bias: Tensor | None
    empty: Tensor | None
    dropout_p: float
    workspace: dict[str, Tensor] = field(default_factory=dict)

    def tile(self, name: str, shape: tuple[int, ...]) -> Tensor:
        """A (shape) view of the reusable buffer ``name``: each block's scores, weights and masks are
        written into the same memory (a fresh allocation per block costs page faults)."""
        numel = math.prod(shape)
        buffer = self.workspace.get(name)
        if buffer is None or buffer.numel() < numel:
            largest = max(numel, self.group() * min(self.rows, self.query_len) * self.key_len)
            buffer = self.q.new_empty(largest)
            self.workspace[name] = buffer
        return buffer[:numel].view(shape)

    def group(self) -> int:
        """Batch entries per block."""
        n = math.prod(self.batch)
        if self.general:
            return n
        return max(1, min(n, BLOCK_ELEMENTS // (self.rows * max(self.key_len, 1))))

    def blocks(self) -> list[tuple[slice, int, int, int]]:
        """(heads, start, end, key_end) of each block of batch entries and queries.

        About :data:`BLOCK_ELEMENTS` scores per block: a few hundred queries of one batch entry for
        long keys (the block stays in cache between the product, the softmax and the next product),
        several batch entries at once for short ones. Causal blocks stop at their last query's key.
        """
        n, group = math.prod(self.batch), self.group()
        out = []
        for first in range(0, n, group):
            heads = slice(first, min(first + group, n))
            for start in range(0, self.query_len, self.rows):
                end = min(start + self.rows, self.query_len)
                key_end = min(end, self.key_len) if self.causal else self.key_len
                out.append((heads, start, end, key_end))
        return out


def _flat_key_mask(
    mask: Tensor | None, bias: Tensor | None, batch: tuple[int, ...], key_len: int
) -> tuple[Tensor | None, Tensor | None]:
    """Key-only masks (row dimension 1) as (N, 1, Lk): validity (None = all valid) and bias."""
    n = math.prod(batch)
    valid = None
    if mask is not None:
        valid = mask.expand(*batch, 1, key_len).reshape(n, 1, key_len)
    flat_bias = None
    if bias is not None:
        flat_bias = bias.expand(*batch, 1, key_len).reshape(n, 1, key_len)
        finite = flat_bias != -math.inf
        valid = finite if valid is None else valid & finite
    return valid, flat_bias


def _plan(
    q: Tensor,
    k: Tensor,
    mask: Tensor | None,
    bias: Tensor | None,
    *,
    batch: tuple[int, ...],
    causal: bool,
    scale: float,
    eps: float,
    rows: int,
    dropout_p: float,
    key_mean: Tensor | None,
) -> _Plan:
    """Centre the scores: the threshold of every query (linear form) or, per-query masks, none yet."""
    n, query_len, key_len = q.shape[0], q.shape[1], k.shape[1]
    general = (mask is not None and mask.shape[-2] != 1) or (
        bias is not None and bias.shape[-2] != 1
    )
    common = dict(
        batch=batch,
        query_len=query_len,
        key_len=key_len,
        scale=scale,
        eps=eps,
        causal=causal,
        rows=rows,
        dropout_p=dropout_p,
        q=q,
        k=k,
    )
    if general:
        return _Plan(
            general=True,
            threshold=None,
            key_add=None,
            mask=mask,
            bias=bias,
            empty=None,
            **common,
        )
    valid, flat_bias = _flat_key_mask(mask, bias, batch, key_len)
    weight = None if valid is None else valid.to(q.dtype)  # (N, 1, Lk)
    masked_bias = None if flat_bias is None else torch.where(valid, flat_bias, 0.0)
    if causal:
        # running prefix means; query i (top-left aligned) sees keys 0..min(i, Lk - 1)
        seen = torch.arange(query_len, device=q.device).clamp_max(max(key_len - 1, 0))
        threshold = q.new_zeros(n, query_len, 1)
        if key_len == 0:
            count = q.new_zeros(n, query_len, 1)
        else:
            weighted = k if weight is None else k * weight.transpose(1, 2)
            key_sum = weighted.cumsum(1)  # one (N, Lk, E) temporary; the rest by blocks of queries
            if weight is None:
                count = (seen + 1).to(q.dtype).view(1, query_len, 1).expand(n, -1, -1)
            else:
                count = weight.transpose(1, 2).cumsum(1)[:, seen]
            for start in range(0, query_len, rows):
                part = slice(start, start + rows)
                sums = key_sum[:, seen[part]]
                threshold[:, part] = (q[:, part] * sums).sum(-1, keepdim=True)
            threshold = threshold * scale / count.clamp_min(1)
            if masked_bias is not None:
                bias_sum = masked_bias.transpose(1, 2).cumsum(1)[:, seen]
                threshold = threshold + bias_sum / count.clamp_min(1)
    else:
        if weight is None:
            count = torch.full((1, 1, 1), float(key_len), dtype=q.dtype, device=q.device)
            mean_key = k.mean(1, keepdim=True) if key_mean is None else key_mean
        else:
            count = weight.sum(-1, keepdim=True)
            mean_key = (weight @ k) / count.clamp_min(1) if key_mean is None else key_mean
        threshold = (q @ mean_key.transpose(1, 2)) * scale  # (N, Lq, 1)
        if masked_bias is not None:
            threshold = threshold + masked_bias.sum(-1, keepdim=True) / count.clamp_min(1)
    empty = (count == 0).squeeze(-1).expand(n, query_len)
    key_add = None
    if valid is not None:
        key_add = torch.where(valid, 0.0 if flat_bias is None else flat_bias, -math.inf)
    return _Plan(
        general=False,
        threshold=threshold.masked_fill(empty.unsqueeze(-1), 0.0),
        key_add=key_add,
        mask=None,
        bias=None,
        empty=empty if bool(empty.any()) else None,
        **common,
    )


def _causal_invalid(start: int, end: int, key_end: int, device: torch.device) -> Tensor:
    """(end - start, key_end) boolean, True at keys after the query (top-left aligned)."""
    rows = torch.arange(start, end, device=device).unsqueeze(-1)
    return torch.arange(key_end, device=device) > rows


Block = tuple[slice, int, int, int]


def _centred_scores(plan: _Plan, block: Block) -> tuple[Tensor, Tensor | None]:
    """The block's ``s - t`` (n, B, key_end) with ``-inf`` at invalid keys, and its empty rows (n, B)."""
    heads, start, end, key_end = block
    # the scaled rows are a contiguous copy: bmm's path for a batch-strided first operand is slower
    queries = plan.q[heads, start:end] * plan.scale
    scores = plan.tile("scores", (queries.shape[0], end - start, key_end))
    torch.bmm(queries, plan.k[heads, :key_end].transpose(1, 2), out=scores)
    if plan.threshold is not None:
        scores.sub_(plan.threshold[heads, start:end])
    if not plan.general:
        if plan.key_add is not None:
            scores.add_(plan.key_add[heads, :, :key_end])
        if plan.causal and start + 1 < key_end:
            # only the keys from the block's first query on can lie in a query's future
            tail = scores[:, :, start + 1 :]
            future = _causal_invalid(start, end, key_end, scores.device)[:, start + 1 :]
            tail.masked_fill_(future, -math.inf)
        empty = None if plan.empty is None else plan.empty[heads, start:end]
        return scores, empty
    # a per-query mask (all batch entries in one block): the threshold is the masked mean of the
    # block's scores, capped at their max
    view = scores.view(*plan.batch, end - start, key_end)
    valid = None
    if plan.mask is not None:
        rows = slice(start, end) if plan.mask.shape[-2] != 1 else slice(None)
        valid = plan.mask[..., rows, :key_end]
    if plan.bias is not None:
        rows = slice(start, end) if plan.bias.shape[-2] != 1 else slice(None)
        bias = plan.bias[..., rows, :key_end]
        view.add_(bias)
        finite = bias != -math.inf
        valid = finite if valid is None else valid & finite
    if plan.causal:
        allowed = ~_causal_invalid(start, end, key_end, scores.device)
        valid = allowed if valid is None else valid & allowed
    if valid is not None:
        view.masked_fill_(~valid, -math.inf)
        valid = valid.expand_as(view).reshape(scores.shape)
        count = valid.sum(-1, keepdim=True)
        total = torch.where(valid, scores, 0.0).sum(-1, keepdim=True)
    else:
        count = torch.full_like(scores[..., :1], key_end)
        total = scores.sum(-1, keepdim=True)
    largest = scores.amax(-1, keepdim=True)
    threshold = torch.minimum(total / count.clamp_min(1), largest)
    empty = count == 0
    scores.sub_(threshold.masked_fill(empty, 0.0))
    return scores, empty.squeeze(-1)


def _normalize_(
    scores: Tensor, eps: float, empty: Tensor | None, *, cap: bool, spare: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """ev-softmax of centred scores (threshold 0) in place; also, for ``eps > 0``, which rows kept no key.

    ``cap`` moves the threshold down to a row's max where rounding put every score below it;
    ``spare`` is a buffer of ``scores``' shape for the eps family's indicator.
    """
    tiny = torch.finfo(scores.dtype).tiny
    if cap:
        largest = scores.amax(-1, keepdim=True)
        low = (largest < 0) & (largest > -math.inf)
        if bool(low.any()):
            scores.sub_(torch.where(low, largest, 0.0))
    none_kept = None
    if eps == 0.0:
        # keep s - t >= 0 (ties kept); -tiny as in ev_softmax: robust to flush-to-zero
        F.threshold(scores, -tiny, -math.inf, inplace=True)
    else:
        # weights (1 + eps) e^s on the support, eps e^s off it: softmax is shift invariant, so adding
        # log((1 + eps) / eps) on the support is adding log(eps / (1 + eps)) off it. The support's
        # indicator in floats, s / tiny + 1 clamped to [0, 1] (1 for s >= 0, 0 for s <= -tiny):
        # comparisons into boolean tensors and their reductions are several times slower on a CPU
        none_kept = scores.amax(-1) <= -tiny
        indicator = torch.mul(scores, 1.0 / tiny, out=spare) if spare is not None else scores / tiny
        indicator.add_(1.0).clamp_(0.0, 1.0)
        scores.add_(indicator, alpha=-_off_support(eps))
        del indicator
    probs = softmax_kernel("softmax_", scores, -1)
    if empty is not None:
        probs.masked_fill_(empty.unsqueeze(-1), 0.0)
        if none_kept is not None:
            none_kept &= ~empty
    return probs, none_kept


def _block_probs(plan: _Plan, block: Block) -> Tensor:
    """The block's ev-softmax weights (n, B, key_end), recomputed identically in the backward."""
    scores, empty = _centred_scores(plan, block)
    spare = plan.tile("indicator", tuple(scores.shape)) if plan.eps else None
    probs, none_kept = _normalize_(scores, plan.eps, empty, cap=False, spare=spare)
    if plan.general:  # the threshold is capped already
        return probs
    # a support emptied by rounding (every score of a row a hair below the threshold): with eps = 0
    # an all -inf row, so NaN (a query without valid keys was zeroed above); redo the block with the
    # threshold capped at each row's max
    if bool(none_kept.any()) if none_kept is not None else bool(probs[:, :, 0].isnan().any()):
        scores, empty = _centred_scores(plan, block)
        probs, _ = _normalize_(scores, plan.eps, empty, cap=True, spare=spare)
    return probs


def _dropout_mask(plan: _Plan, probs: Tensor) -> Tensor:
    """Keep-mask scaled by 1 / (1 - p), drawn as ``F.dropout`` draws it, from the default generator.

    The backward replays the forward's generator state, so each block gets the same draw again.
    """
    keep = plan.tile("keep", tuple(probs.shape)).bernoulli_(1.0 - plan.dropout_p)
    return keep.div_(1.0 - plan.dropout_p)


def _rng_state(device: torch.device) -> Tensor:
    if device.type == "cpu":
        return torch.get_rng_state()
    return torch.get_device_module(device.type).get_rng_state(device)


def _set_rng_state(device: torch.device, state: Tensor) -> None:
    if device.type == "cpu":
        torch.set_rng_state(state)
    else:
        torch.get_device_module(device.type).set_rng_state(state, device)


class _EvSoftmaxAttention(torch.autograd.Function):
    """Blocked forward (output only) and a backward that recomputes each block's weights."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, options: dict
    ) -> Tensor:
        plan = _plan(q, k, options["mask"], bias, **options["plan"])
        out = torch.zeros(q.shape[0], q.shape[1], v.shape[-1], dtype=q.dtype, device=q.device)
        ctx.rng_state = _rng_state(q.device) if plan.dropout_p > 0 else None
        for block in plan.blocks():
            heads, start, end, key_end = block
            if key_end == 0:
                continue
            probs = _block_probs(plan, block)
            if plan.dropout_p > 0:
                probs.mul_(_dropout_mask(plan, probs))
            # bmm into a strided slice takes a slow path: a small block, then a copy
            out[heads, start:end] = torch.bmm(probs, v[heads, :key_end])
            del probs  # before the next block's scores: one block alive at a time
        plan.workspace.clear()  # not kept until the backward
        ctx.plan = plan
        ctx.save_for_backward(q, k, v, bias, out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        q, k, v, bias, out = ctx.saved_tensors
        plan: _Plan = ctx.plan
        need_q, need_k, need_v, need_bias = ctx.needs_input_grad[:4]
        grad = grad.contiguous()
        dq = torch.zeros_like(q) if need_q else None
        dk = torch.zeros_like(k) if need_k else None
        dv = torch.zeros_like(v) if need_v else None
        dbias = None
        if need_bias and bias is not None:
            # per-query bias: its own shape (one block holds every batch entry); key-only: (N, 1, Lk)
            dbias = (
                torch.zeros_like(bias) if plan.general else k.new_zeros(k.shape[0], 1, k.shape[1])
            )
        device = q.device
        replay = ctx.rng_state is not None
        devices = [device] if device.type != "cpu" else []
        with torch.random.fork_rng(devices, enabled=replay, device_type=device.type):
            if replay:  # the forward's dropout draws, block by block
                _set_rng_state(device, ctx.rng_state)
            _backward_blocks(plan, q, k, v, grad, out, dq, dk, dv, dbias)
        plan.workspace.clear()
        if dbias is not None and not plan.general:
            dbias = dbias.view(*plan.batch, 1, plan.key_len).sum_to_size(bias.shape)
        return dq, dk, dv, dbias, None


def _backward_blocks(
    plan: _Plan,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    grad: Tensor,
    out: Tensor,
    dq: Tensor | None,
    dk: Tensor | None,
    dv: Tensor | None,
    dbias: Tensor | None,
) -> None:
    """Accumulate the gradients block by block, each block's weights recomputed (FlashAttention)."""
    # sum_j p_ij dP_ij = dO_i . O_i (dropout included): the softmax Jacobian's row term
    row_dot = (grad * out).sum(-1, keepdim=True)
    for block in plan.blocks():
        heads, start, end, key_end = block
        if key_end == 0:
            continue
        probs = _block_probs(plan, block)
        g = grad[heads, start:end].contiguous()
        keep = _dropout_mask(plan, probs) if plan.dropout_p > 0 else None
        if dv is not None:
            dropped = probs
            if keep is not None:
                dropped = torch.mul(probs, keep, out=plan.tile("dropped", tuple(probs.shape)))
            dv[heads, :key_end].baddbmm_(dropped.transpose(1, 2), g)
            del dropped
        if dq is None and dk is None and dbias is None:
            continue
        dscores = plan.tile("dscores", tuple(probs.shape))
        torch.bmm(g, v[heads, :key_end].transpose(1, 2), out=dscores)
        if keep is not None:
            dscores.mul_(keep)
        # p * (dP - <p, dP>): 0 off the support; the threshold carries no gradient
        dscores.sub_(row_dot[heads, start:end]).mul_(probs)
        if dq is not None:
            dq[heads, start:end] = torch.bmm(dscores, k[heads, :key_end]).mul_(plan.scale)
        if dk is not None:
            dk[heads, :key_end].baddbmm_(
                dscores.transpose(1, 2), q[heads, start:end], alpha=plan.scale
            )
        if dbias is not None and plan.general:
            _accumulate_bias_grad(dbias, dscores, plan, block)
        elif dbias is not None:
            dbias[heads, :, :key_end] += dscores.sum(1, keepdim=True)
        del probs, dscores, keep  # before the next block's: two blocks alive at a time


def _accumulate_bias_grad(dbias: Tensor, dscores: Tensor, plan: _Plan, block: Block) -> None:
    """Add the block's score gradient, summed over the dimensions a per-query ``bias`` broadcasts."""
    _, start, end, key_end = block
    rows = slice(None) if dbias.shape[-2] == 1 else slice(start, end)
    cols = slice(None) if dbias.shape[-1] == 1 else slice(0, key_end)
    target = dbias[..., rows, cols]
    target.add_(dscores.view(*plan.batch, end - start, key_end).sum_to_size(target.shape))


def _check_mask(
    attn_mask: Tensor, query: Tensor, batch: torch.Size, query_len: int, key_len: int
) -> Tensor:
    check_tensor("attn_mask", attn_mask)
    if attn_mask.dtype != torch.bool and attn_mask.dtype != query.dtype:
        raise TypeError(
            "attn_mask must be boolean (True where a query may attend) or a float mask of the "
            f"query's dtype {query.dtype} (added to the scores), got dtype {attn_mask.dtype}"
        )
    if attn_mask.device != query.device:
        raise ValueError(f"attn_mask is on {attn_mask.device} but query is on {query.device}")
    target = (*batch, query_len, key_len)
    try:
        shape = torch.broadcast_shapes(attn_mask.shape, target)
    except RuntimeError:
        shape = None
    if shape != torch.Size(target):
        raise ValueError(
            f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the scores' shape "
            f"(..., Lq, Lk) = {target}"
        )
    while attn_mask.dim() < 2:
        attn_mask = attn_mask.unsqueeze(0)
    return attn_mask


def _check_inputs(query: Tensor, key: Tensor, value: Tensor) -> torch.Size:
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_floating(name, t)
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., L, E), got {tuple(t.shape)}")
    if key.dtype != query.dtype or value.dtype != query.dtype:
        raise TypeError(
            f"query, key and value must share a dtype, got {query.dtype}, {key.dtype}, {value.dtype}"
        )
    if key.device != query.device or value.device != query.device:
        raise ValueError("query, key and value must be on one device")
    if key.shape[-1] != query.shape[-1]:
        raise ValueError(
            f"query (..., Lq, E) and key (..., Lk, E) must share E, got {tuple(query.shape)} and "
            f"{tuple(key.shape)}"
        )
    if value.shape[-2] != key.shape[-2]:
        raise ValueError(
            f"value (..., Lk, Ev) must have as many rows as key (..., Lk, E), got {tuple(value.shape)} "
            f"and {tuple(key.shape)}"
        )
    try:
        return torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except RuntimeError:
        raise ValueError(
            "the batch dimensions of query, key and value must broadcast, got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        ) from None


def ev_softmax_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    *,
    eps: float = 0.0,
    block_size: int | None = None,
    key_mean: Tensor | None = None,
) -> Tensor:
    r"""ev-softmax attention without the score matrix, in ``scaled_dot_product_attention``'s arguments.

    .. math::

        \operatorname{out} = \operatorname{evsoftmax}_\epsilon\big(\text{scale}\cdot q k^\top + b\big)\, v

    Args:
        query: (..., Lq, E).
        key: (..., Lk, E).
        value: (..., Lk, Ev). The batch dimensions of the three broadcast.
        attn_mask: boolean, True where a query may attend to a key, or a float mask of ``query``'s
            dtype added to the scores (``-inf`` = may not attend); broadcastable to (..., Lq, Lk). The
            threshold is the mean over the valid keys only (a float mask's values included); a
            key-only mask (..., 1, Lk) keeps the threshold linear, a per-query one (..., Lq, Lk) is
            read block by block. A float mask that requires grad gets its gradient.
        dropout_p: dropout on the weights (after normalizing, as ``scaled_dot_product_attention``).
        is_causal: query i attends to keys j <= i (top-left aligned, as torch's); combines with
            ``attn_mask``. Key blocks after each query block's last query are skipped.
        scale: multiplier of ``q k^T``; ``1/sqrt(E)`` when None.
        eps: 0 for the exact sparse map; > 0 for the full-support training family.
        block_size: queries per block; None picks about :data:`BLOCK_ELEMENTS` scores per block.
        key_mean: the mean of the valid keys, broadcastable to (..., 1, E), when it is already known
            (a key/value cache keeps the running sum); only without ``is_causal`` or a per-query mask.

    Returns:
        (..., Lq, Ev); zero for a query with no valid key.

    Example:
        >>> from simplexity import ev_softmax
        >>> q, k, v = torch.randn(2, 4, 16, 8), torch.randn(2, 4, 16, 8), torch.randn(2, 4, 16, 8)
        >>> scores = q @ k.transpose(-2, -1) / 8**0.5
        >>> dense = ev_softmax(scores) @ v
        >>> torch.allclose(ev_softmax_attention(q, k, v, block_size=5), dense, atol=1e-6)
        True
        >>> pad = torch.arange(16) < 10  # keys 10.. are padding
        >>> out = ev_softmax_attention(q, k, v, attn_mask=pad, is_causal=True)
        >>> out.shape
        torch.Size([2, 4, 16, 8])
    """
    batch = _check_inputs(query, key, value)
    query_len, key_len = query.shape[-2], key.shape[-2]
    mask = bias = None
    if attn_mask is not None:
        attn_mask = _check_mask(attn_mask, query, batch, query_len, key_len)
        if attn_mask.dtype == torch.bool:
            mask = attn_mask
        else:
            bias = attn_mask
    if (
        isinstance(dropout_p, bool)
        or not isinstance(dropout_p, (int, float))
        or not 0 <= dropout_p < 1
    ):
        raise ValueError(f"dropout_p must be a probability in [0, 1), got {dropout_p!r}")
    if not isinstance(is_causal, bool):
        raise TypeError(f"is_causal must be a bool, got {type(is_causal).__name__}")
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1]) if query.shape[-1] else 1.0
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number or None, got {scale!r}")
    eps = check_nonnegative("eps", eps)
    in_dtype = query.dtype
    per_query = (mask is not None and mask.shape[-2] != 1) or (
        bias is not None and bias.shape[-2] != 1
    )
    if key_mean is not None:
        check_floating("key_mean", key_mean)
        if is_causal or per_query:
            raise ValueError(
                "key_mean applies only to a threshold shared by all queries: not with is_causal or "
                "a per-query attn_mask"
            )
        target = torch.Size((*batch, 1, query.shape[-1]))
        try:
            fits = torch.broadcast_shapes(key_mean.shape, target) == target
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"key_mean must broadcast to (..., 1, E) = {tuple(target)}, got "
                f"{tuple(key_mean.shape)}"
            )
    out_batch = batch
    if len(batch) == 0:
        batch = torch.Size([1])
    n = math.prod(batch)
    if block_size is None:
        # 128..256 queries: large enough for an efficient product, small enough for the cache; a
        # per-query mask is read for every batch entry at once, so its blocks hold fewer queries
        width = max(key_len, 1)
        if per_query:
            block_size = max(16, min(256, BLOCK_ELEMENTS // (n * width)))
        else:
            block_size = max(128, min(256, BLOCK_ELEMENTS // width))
    else:
        block_size = check_int("block_size", block_size, min=1)
    compute = torch.float32 if in_dtype in _LOW_PRECISION else in_dtype

    def flat(t: Tensor) -> Tensor:
        return t.to(compute).expand(*batch, *t.shape[-2:]).reshape(n, *t.shape[-2:])

    if mask is not None and mask.dim() < len(batch) + 2:
        mask = mask.reshape((1,) * (len(batch) + 2 - mask.dim()) + tuple(mask.shape))
    if bias is not None:
        bias = bias.to(compute)
        if bias.dim() < len(batch) + 2:
            bias = bias.reshape((1,) * (len(batch) + 2 - bias.dim()) + tuple(bias.shape))
    flat_mean = None
    if key_mean is not None:
        flat_mean = (
            key_mean.detach().to(compute).expand(*batch, 1, query.shape[-1]).reshape(n, 1, -1)
        )
    options = {
        "mask": mask,
        "plan": dict(
            batch=tuple(batch),
            causal=is_causal,
            scale=float(scale),
            eps=eps,
            rows=block_size,
            dropout_p=float(dropout_p),
            key_mean=flat_mean,
        ),
    }
    out = _EvSoftmaxAttention.apply(flat(query), flat(key), flat(value), bias, options)
    return out.reshape(*out_batch, query_len, value.shape[-1]).to(in_dtype)
