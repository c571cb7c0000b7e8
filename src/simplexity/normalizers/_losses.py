"""The argument checks and the reduction shared by every training loss of the normalizers.

Every loss takes ``CrossEntropyLoss``'s layout and vocabulary: ``input`` (N, C) or (N, C, d1, ...)
with classes on dim 1, ``target`` of class indices (N,) or (N, d1, ...), ``reduction``,
``ignore_index`` and ``label_smoothing``. Its arguments are checked here, once.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from simplexity._checks import check_floating, check_int, check_tensor

__all__ = ["check_loss_args", "check_loss_options", "reduce"]

REDUCTIONS = ("mean", "sum", "none")


def check_loss_options(reduction: str, ignore_index: int, label_smoothing: float) -> float:
    """Check the scalar options of a loss; return ``label_smoothing`` as a float.

    Example:
        >>> check_loss_options("mean", -100, 0.1)
        0.1
        >>> check_loss_options("mean", -100, -0.1)
        Traceback (most recent call last):
        ...
        ValueError: label_smoothing must be a number in [0, 1], got -0.1
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    check_int("ignore_index", ignore_index)
    if (
        isinstance(label_smoothing, bool)
        or not isinstance(label_smoothing, numbers.Real)
        or not 0.0 <= label_smoothing <= 1.0
    ):
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    return float(label_smoothing)


def check_loss_args(
    input: Tensor,
    target: Tensor,
    *,
    reduction: str,
    ignore_index: int,
    label_smoothing: float,
    probabilities: bool = False,
) -> float:
    """Check a loss's tensors and options; return ``label_smoothing`` as a float.

    Args:
        input: logits (N, C) or (N, C, d1, ...).
        target: class indices (N,) or (N, d1, ...), each in ``[0, C)`` or equal to ``ignore_index``;
            with ``probabilities``, also class probabilities of ``input``'s shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: the index of targets that contribute nothing.
        label_smoothing: in [0, 1].
        probabilities: whether floating-point targets (class probabilities) are accepted.
    """
    check_floating("input", input)
    check_tensor("target", target)
    label_smoothing = check_loss_options(reduction, ignore_index, label_smoothing)
    if input.dim() < 2:
        raise ValueError(
            "input must have shape (N, C) or (N, C, d1, ...) with classes on dim 1, "
            f"got {tuple(input.shape)}"
        )
    if probabilities and target.is_floating_point():
        if target.shape != input.shape:
            raise ValueError(
                f"probability targets must have input's shape {tuple(input.shape)}, "
                f"got {tuple(target.shape)}"
            )
        return label_smoothing
    expected = tuple(input.shape[:1] + input.shape[2:])
    if (
        target.is_floating_point()
        or target.is_complex()
        or target.dtype == torch.bool
        or tuple(target.shape) != expected
    ):
        also = f" (or probabilities of shape {tuple(input.shape)})" if probabilities else ""
        raise ValueError(
            f"target must hold integer class indices of shape {expected}{also}, "
            f"got {tuple(target.shape)} {target.dtype}"
        )
    num_classes = input.shape[1]
    real = target[target != ignore_index]
    if real.numel() and bool(((real < 0) | (real >= num_classes)).any()):
        raise ValueError(
            f"target class indices must be in [0, {num_classes}) or equal "
            f"ignore_index={ignore_index}"
        )
    return label_smoothing


def reduce(losses: Tensor, keep: Tensor, reduction: str) -> Tensor:
    """Reduce per-position ``losses`` (0 where ``keep`` is False) as ``CrossEntropyLoss`` does."""
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / keep.sum().clamp_min(1)
