r"""The baseline normalizers, through the ``entmax`` package (not rewritten here).

softmax, sparsemax, 1.5-entmax and :math:`\alpha`-entmax (bisection), each with a ``mask`` argument that
has ev-softmax's semantics (True = valid; invalid entries get 0, a row with no valid entry gives zeros)
and its training loss in ``CrossEntropyLoss``'s layout: cross-entropy for softmax, the Fenchel–Young loss
for the sparse maps.

References:
    Martins & Astudillo. "From Softmax to Sparsemax", ICML 2016.
    Peters, Niculae, Martins. "Sparse Sequence-to-Sequence Models", ACL 2019.
    Blondel, Martins, Niculae. "Learning with Fenchel-Young Losses", JMLR 2020.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import entmax
import torch
import torch.nn.functional as F
from torch import Tensor

from simplexity._checks import check_dim, check_floating, check_mask
from simplexity.normalizers._losses import check_loss_args, reduce

__all__ = [
    "entmax15",
    "entmax15_loss",
    "entmax_bisect",
    "entmax_bisect_loss",
    "fenchel_young_loss",
    "masked",
    "softmax",
    "softmax_loss",
    "sparsemax",
    "sparsemax_loss",
]


def masked(
    mapping: Callable[[Tensor, int], Tensor], x: Tensor, dim: int, mask: Tensor | None
) -> Tensor:
    """Apply ``mapping(x, dim)`` with invalid entries (``mask`` False) filled with ``-inf``.

    Rows with no valid entry come out as zeros instead of NaN.
    """
    check_floating("x", x)
    if x.dim() == 0:
        raise ValueError(
            "x must have at least one dimension (the one normalized), got a 0-dim tensor"
        )
    dim = check_dim("dim", dim, x.dim())
    mask = check_mask("mask", mask, x)
    if mask is None:
        return mapping(x, dim)
    valid = mask.expand_as(x)
    empty = ~valid.any(dim, keepdim=True)
    filled = x.masked_fill(~valid, -math.inf).masked_fill(empty, 0.0)
    return mapping(filled, dim).masked_fill(~valid | empty, 0.0)


def softmax(x: Tensor, dim: int = -1, *, mask: Tensor | None = None) -> Tensor:
    """``torch.softmax`` with the library's mask semantics."""
    return masked(lambda t, d: torch.softmax(t, d), x, dim, mask)


def sparsemax(x: Tensor, dim: int = -1, *, mask: Tensor | None = None) -> Tensor:
    """Sparsemax (Euclidean projection onto the simplex), from ``entmax``."""
    return masked(lambda t, d: entmax.sparsemax(t, dim=d), x, dim, mask)


def entmax15(x: Tensor, dim: int = -1, *, mask: Tensor | None = None) -> Tensor:
    """1.5-entmax (exact sort-based algorithm), from ``entmax``."""
    return masked(lambda t, d: entmax.entmax15(t, dim=d), x, dim, mask)


def entmax_bisect(
    x: Tensor, dim: int = -1, *, alpha: float = 1.5, n_iter: int = 50, mask: Tensor | None = None
) -> Tensor:
    r""":math:`\alpha`-entmax by bisection (``alpha`` > 1; 2 is sparsemax, → 1 is softmax)."""
    if not alpha > 1:
        raise ValueError(f"alpha must be > 1 for entmax_bisect, got {alpha}")
    return masked(
        lambda t, d: entmax.entmax_bisect(t, alpha=alpha, dim=d, n_iter=n_iter), x, dim, mask
    )


def fenchel_young_loss(
    per_row: Callable[[Tensor, Tensor], Tensor],
    input: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Apply a per-row Fenchel–Young loss ``per_row(X (n, C), y (n,)) -> (n,)`` in ``CrossEntropyLoss``'s layout.

    Classes are on dim 1 of ``input``; entries whose target equals ``ignore_index`` contribute 0 and are
    left out of the mean. ``label_smoothing`` :math:`\lambda` gives, as for ``cross_entropy``,
    :math:`(1-\lambda) L(v; e_y) + \frac{\lambda}{C}\sum_k L(v; e_k)`: with the convention
    :math:`\Omega(e_k) = 0` a Fenchel–Young loss has :math:`L(v; e_k) = L(v; e_y) + v_y - v_k`, so this is
    :math:`L(v; e_y) + \lambda (v_y - \bar v)`, the loss of the smoothed target up to a constant.

    References:
        Blondel, Martins, Niculae. "Learning with Fenchel-Young Losses", JMLR 2020.
    """
    label_smoothing = check_loss_args(
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
    flat = input.movedim(1, -1).reshape(-1, input.shape[1])
    y = target.reshape(-1)
    keep = y != ignore_index
    losses = flat.new_zeros(y.shape)
    if bool(keep.any()):
        rows, labels = flat[keep], y[keep]
        kept = per_row(rows, labels)
        if label_smoothing:
            gap = rows.gather(1, labels[:, None]).squeeze(1) - rows.mean(1)
            kept = kept + label_smoothing * gap
        losses = losses.masked_scatter(keep, kept)
    return reduce(losses.reshape(target.shape), keep.reshape(target.shape), reduction)


def softmax_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy (torch's), with the same argument checks as the other losses."""
    label_smoothing = check_loss_args(
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
    return F.cross_entropy(
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


def sparsemax_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Sparsemax (Fenchel–Young) loss."""
    return fenchel_young_loss(
        lambda x, y: entmax.sparsemax_loss(x, y),
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


def entmax15_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> Tensor:
    """1.5-entmax (Fenchel–Young) loss."""
    return fenchel_young_loss(
        lambda x, y: entmax.entmax15_loss(x, y),
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


def entmax_bisect_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.5,
    n_iter: int = 50,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> Tensor:
    r""":math:`\alpha`-entmax (Fenchel–Young) loss, the map computed by bisection."""
    if not alpha > 1:
        raise ValueError(f"alpha must be > 1 for entmax_bisect, got {alpha}")
    return fenchel_young_loss(
        lambda x, y: entmax.entmax_bisect_loss(x, y, alpha=alpha, n_iter=n_iter),
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
