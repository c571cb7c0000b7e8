r"""Evidential softmax (ev-softmax): a sparse normalization that keeps multimodality.

.. math::

    \operatorname{evsoftmax}(v)_k =
        \frac{\mathbb 1\{v_k \ge \bar v\}\, e^{v_k}}{\sum_j \mathbb 1\{v_j \ge \bar v\}\, e^{v_j}},
    \qquad \bar v = \frac1K \sum_{i} v_i ,

and its full-support training family (:math:`\epsilon > 0`)

.. math::

    \operatorname{evsoftmax}_\epsilon(v)_k \propto (\mathbb 1\{v_k \ge \bar v\} + \epsilon)\, e^{v_k}.

Masking: the mean :math:`\bar v` is taken over the *valid* entries only (``mask`` True and the value not
``-inf``); invalid entries get probability exactly 0 (log-probability ``-inf``). So padding filled with
``-inf`` or ``-1e18`` plus a mask never disables the sparsification, unlike the reference
implementation, which averages over the fill values too. A row with no valid entry returns all zeros
(log: all ``-inf``) rather than NaN. NaN inputs propagate as NaN.

Layers of this module, as in ``entmax``: a private core that turns logits into *shifted logits*
``z`` with ``softmax(z) == evsoftmax_eps(x)`` (``-inf`` off the support when ``eps == 0``), an
:class:`torch.autograd.Function` with the closed-form backward (the softmax Jacobian restricted to the
support; the mean gets no gradient), the public functions, and thin modules.

References:
    Chen, Itkina, Senanayake, Kochenderfer. "Evidential Softmax for Sparse Multimodal Distributions in
    Deep Generative Models", NeurIPS 2021 (arXiv:2110.14182).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simplexity._checks import (
    check_dim,
    check_floating,
    check_mask,
    check_nonnegative,
)
from simplexity.normalizers._fused import fused_ev_softmax
from simplexity.normalizers._losses import check_loss_args, check_loss_options
from simplexity.normalizers._softmax_kernels import softmax_kernel

__all__ = [
    "EvSoftmax",
    "EvSoftmaxLoss",
    "LogEvSoftmax",
    "ev_softmax",
    "ev_softmax_loss",
    "log_ev_softmax",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _off_support_offset(eps: float) -> float:
    """Log-weight of off-support entries relative to support entries: log(eps / (1 + eps))."""
    return -math.inf if eps == 0.0 else math.log(eps) - math.log1p(eps)


def _shifted_logits(
    x: Tensor, dim: int, mask: Tensor | None, eps: float, *, clamp_mean: bool = True
) -> tuple[Tensor, Tensor | None]:
    r"""Return ``(z, empty)`` with ``softmax(z, dim) == evsoftmax_eps(x)`` on rows with a valid entry.

    ``z = x - mean`` on the support and ``x - mean + log(eps / (1 + eps))`` off it (``-inf`` for
    ``eps == 0`` and for invalid entries). ``empty`` is None, or a boolean tensor (keepdim over ``dim``)
    that is True for rows without any valid entry; ``z`` is 0 there and the caller zeroes the output.
    No autograd is recorded through the mean (the indicator is piecewise constant).

    The max is >= the mean, but the rounded mean of (nearly) equal logits can exceed it by an ulp and
    empty the support; ``clamp_mean`` clamps the mean to the max (one more reduction). Without it, the
    only possible failure is a whole row of ``-inf`` (so a NaN row after softmax), which the caller
    can detect from one column and redo with the clamp.
    """
    if x.dtype in _LOW_PRECISION:
        x = x.float()
    if mask is None:
        # A finite mean means no -inf/+inf/NaN in the row: the fast path needs no validity mask.
        mean = x.mean(dim, keepdim=True)
        if clamp_mean or eps != 0.0:
            mean = torch.minimum(mean, x.amax(dim, keepdim=True))
        if bool(torch.isfinite(mean).all()):
            z = x - mean.detach()
            # z >= 0 exactly when x >= mean (exact subtraction with gradual underflow). Keeping
            # z > -tiny instead of z >= 0 lets one vectorized threshold op do it, robust to flush-
            # to-zero; it only merges logits that differ by less than the smallest normal number.
            tiny = torch.finfo(z.dtype).tiny
            if eps == 0.0:
                inplace = not (torch.is_grad_enabled() and z.requires_grad)
                return F.threshold(z, -tiny, -math.inf, inplace=inplace), None
            # z + log(eps / (1 + eps)) off the support, as one comparison and one fused add
            return torch.add(z, z <= -tiny, alpha=_off_support_offset(eps)), None
    valid = x != -math.inf
    if mask is not None:
        valid = valid & mask
    count = valid.sum(dim, keepdim=True)
    total = torch.where(valid, x, 0.0).sum(dim, keepdim=True)
    largest = torch.where(valid, x, -math.inf).amax(dim, keepdim=True)
    mean = torch.minimum(total / count.clamp_min(1), largest).detach()
    empty = count == 0
    z = torch.where(x >= mean, x - mean, x - mean + _off_support_offset(eps))
    z = torch.where(valid, z, -math.inf)
    if bool(empty.any()):
        z = torch.where(empty, 0.0, z)
        return z, empty
    return z, None


class _EvSoftmaxFunction(torch.autograd.Function):
    """ev-softmax with the closed-form backward p * (g - <g, p>) (zero off the support)."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int, mask: Tensor | None, eps: float) -> Tensor:  # type: ignore[override]
        ctx.dim = dim
        ctx.in_dtype = x.dtype
        fused = fused_ev_softmax(x, eps) if mask is None and dim == x.dim() - 1 else None
        if fused is not None:
            ctx.save_for_backward(fused)
            return fused
        z, empty = _shifted_logits(x, dim, mask, eps, clamp_mean=False)
        p = softmax_kernel("softmax_", z, dim)
        if mask is None and eps == 0.0 and bool(p.narrow(dim, 0, 1).isnan().any()):
            # a rounded mean above the max emptied a row (NaN in every entry, so in the first one)
            z, empty = _shifted_logits(x, dim, mask, eps)
            p = softmax_kernel("softmax_", z, dim)
        if empty is not None:
            p = p.masked_fill(empty, 0.0)
        ctx.save_for_backward(p)
        return p.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        (p,) = ctx.saved_tensors
        g = softmax_kernel("softmax_backward", grad.to(p.dtype), p, ctx.dim)
        return g.to(ctx.in_dtype), None, None, None


class _LogEvSoftmaxFunction(torch.autograd.Function):
    """log ev-softmax; backward g_S - p (sum of g over the support S), zero off the support."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int, mask: Tensor | None, eps: float) -> Tensor:  # type: ignore[override]
        z, empty = _shifted_logits(x, dim, mask, eps, clamp_mean=False)
        out = torch.log_softmax(z, dim)
        if mask is None and eps == 0.0 and bool(out.narrow(dim, 0, 1).isnan().any()):
            z, empty = _shifted_logits(x, dim, mask, eps)
            out = torch.log_softmax(z, dim)
        if empty is not None:
            out = out.masked_fill(empty, -math.inf)
        ctx.dim = dim
        ctx.in_dtype = x.dtype
        ctx.save_for_backward(out)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        (out,) = ctx.saved_tensors
        # log p_i = -inf off the support is a constant: its incoming gradient must not leak in.
        g = grad.to(out.dtype).masked_fill(out == -math.inf, 0.0)
        g = softmax_kernel("log_softmax_backward", g, out, ctx.dim)
        return g.to(ctx.in_dtype), None, None, None


def _prepare(
    x: Tensor, dim: int, mask: Tensor | None, eps: float
) -> tuple[int, Tensor | None, float]:
    check_floating("x", x)
    dim = check_dim("dim", dim, x.dim())
    mask = check_mask("mask", mask, x)
    eps = check_nonnegative("eps", eps)
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension (the one to normalize), got a scalar")
    return dim, mask, eps


def ev_softmax(x: Tensor, dim: int = -1, *, mask: Tensor | None = None, eps: float = 0.0) -> Tensor:
    r"""Evidential softmax of ``x`` along ``dim``.

    .. math:: p_k \propto (\mathbb 1\{x_k \ge \bar x\} + \epsilon)\, e^{x_k}

    Args:
        x: logits, any floating dtype (float16/bfloat16 are computed in float32 and returned in their
            own dtype).
        dim: the dimension to normalize.
        mask: optional boolean tensor broadcastable to ``x``, True where an entry is valid. The mean is
            taken over valid entries only; invalid entries (and ``-inf`` logits) get exactly 0.
        eps: 0 for the exact sparse map; > 0 for the full-support training family.

    Returns:
        Probabilities of ``x``'s shape and dtype; rows without a valid entry are all zero.

    Example:
        >>> ev_softmax(torch.tensor([2.0, 1.0, 0.5, 0.1, -1.0]))
        tensor([0.7311, 0.2689, 0.0000, 0.0000, 0.0000])
    """
    dim, mask, eps = _prepare(x, dim, mask, eps)
    if x.shape[dim] == 0:  # nothing to normalize: an empty result, as torch.softmax gives
        return x.clone()
    return _EvSoftmaxFunction.apply(x, dim, mask, eps)


def log_ev_softmax(
    x: Tensor, dim: int = -1, *, mask: Tensor | None = None, eps: float = 0.0
) -> Tensor:
    r"""Log of :func:`ev_softmax`, computed in log space (``-inf`` off the support when ``eps == 0``).

    Example:
        >>> log_ev_softmax(torch.tensor([1.0, 1.0, -2.0]))
        tensor([-0.6931, -0.6931,    -inf])
    """
    dim, mask, eps = _prepare(x, dim, mask, eps)
    if x.shape[dim] == 0:  # nothing to normalize: an empty result, as torch.softmax gives
        return x.clone()
    return _LogEvSoftmaxFunction.apply(x, dim, mask, eps)


def ev_softmax_loss(
    input: Tensor,
    target: Tensor,
    *,
    eps: float = 1e-6,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    weight: Tensor | None = None,
) -> Tensor:
    r"""Negative log-likelihood of :math:`\operatorname{evsoftmax}_\epsilon`, in ``CrossEntropyLoss``'s layout.

    ``input`` is (N, C) or (N, C, d1, ...) with classes on dim 1; ``target`` holds class indices of
    shape (N,) / (N, d1, ...) or class probabilities of ``input``'s shape. As :math:`\epsilon \to 0`
    the gradient tends to :math:`e_y - \operatorname{evsoftmax}(v)`, also for targets below the mean.

    Example:
        >>> x = torch.tensor([[2.0, -1.0, -1.0]])
        >>> ev_softmax_loss(x, torch.tensor([0]), eps=0.0)
        tensor(0.)
    """
    eps = check_nonnegative("eps", eps)
    label_smoothing = check_loss_args(
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        probabilities=True,
    )
    # cross_entropy(z) = -log evsoftmax_eps(input): softmax is shift invariant and the offsets are
    # constants, so autograd through z gives the paper's closed form (Eq. 12 in the eps -> 0 limit).
    z, _ = _shifted_logits(input, 1, None, eps)
    return F.cross_entropy(
        z,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


class EvSoftmax(nn.Module):
    """ev-softmax module: ``eps`` in training mode, the exact map (``eps = 0``) in eval mode.

    Example:
        >>> m = EvSoftmax().eval()
        >>> m(torch.tensor([[3.0, 0.0, 0.0]]))
        tensor([[1., 0., 0.]])
    """

    def __init__(self, dim: int = -1, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim = dim
        self.eps = check_nonnegative("eps", eps)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return ev_softmax(x, self.dim, mask=mask, eps=self.eps if self.training else 0.0)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"


class LogEvSoftmax(EvSoftmax):
    """log ev-softmax module: ``eps`` in training mode, the exact map in eval mode."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return log_ev_softmax(x, self.dim, mask=mask, eps=self.eps if self.training else 0.0)


class EvSoftmaxLoss(nn.Module):
    """Training loss of ev-softmax (see :func:`ev_softmax_loss`), in ``CrossEntropyLoss``'s layout."""

    def __init__(
        self,
        eps: float = 1e-6,
        reduction: str = "mean",
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        weight: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.eps = check_nonnegative("eps", eps)
        self.label_smoothing = check_loss_options(reduction, ignore_index, label_smoothing)
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.register_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return ev_softmax_loss(
            input,
            target,
            eps=self.eps,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            weight=self.weight,
        )

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}, ignore_index={self.ignore_index}"
