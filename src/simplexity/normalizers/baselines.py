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

from simplexity._checks import check_dim, check_floating, check_mask, check_tensor

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


def _check_loss_args(input: Tensor, target: Tensor, reduction: str, ignore_index: int) -> None:
    check_floating("input", input)
    check_tensor("target", target)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if input.dim() < 2:
        raise ValueError(
            f"input must have shape (N, C) or (N, C, d1, ...) with classes on dim 1, got {tuple(input.shape)}"
        )
    expected = input.shape[:1] + input.shape[2:]
    if target.is_floating_point() or target.dtype == torch.bool or target.shape != expected:
        raise ValueError(
            f"target must hold integer class indices of shape {tuple(expected)}, "
            f"got {tuple(target.shape)} {target.dtype}"
        )
    num_classes = input.shape[1]
    real = target[target != ignore_index]
    if real.numel() and bool(((real < 0) | (real >= num_classes)).any()):
        raise ValueError(
            f"target class indices must be in [0, {num_classes}) or equal ignore_index={ignore_index}"
        )


def fenchel_young_loss(
    per_row: Callable[[Tensor, Tensor], Tensor],
    input: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    """Apply a per-row loss ``per_row(X (n, C), y (n,)) -> (n,)`` in ``CrossEntropyLoss``'s layout.

    Classes are on dim 1 of ``input``; entries whose target equals ``ignore_index`` contribute 0 and are
    left out of the mean.
    """
    _check_loss_args(input, target, reduction, ignore_index)
    flat = input.movedim(1, -1).reshape(-1, input.shape[1])
    y = target.reshape(-1)
    keep = y != ignore_index
    losses = flat.new_zeros(y.shape)
    if bool(keep.any()):
        losses = losses.masked_scatter(keep, per_row(flat[keep], y[keep]))
    if reduction == "none":
        return losses.reshape(target.shape)
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / keep.sum().clamp_min(1)


def softmax_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy (torch's), with the same argument checks as the other losses."""
    _check_loss_args(input, target, reduction, ignore_index)
    return F.cross_entropy(
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


def sparsemax_loss(
    input: Tensor, target: Tensor, *, reduction: str = "mean", ignore_index: int = -100
) -> Tensor:
    """Sparsemax (Fenchel–Young) loss."""
    return fenchel_young_loss(
        lambda x, y: entmax.sparsemax_loss(x, y),
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
    )


def entmax15_loss(
    input: Tensor, target: Tensor, *, reduction: str = "mean", ignore_index: int = -100
) -> Tensor:
    """1.5-entmax (Fenchel–Young) loss."""
    return fenchel_young_loss(
        lambda x, y: entmax.entmax15_loss(x, y),
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
    )


def entmax_bisect_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.5,
    n_iter: int = 50,
    reduction: str = "mean",
    ignore_index: int = -100,
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
    )
