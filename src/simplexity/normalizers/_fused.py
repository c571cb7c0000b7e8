"""A fused ev-softmax forward, compiled with ``torch.compile`` for large inputs; eager fallback.

The eager path needs a few passes over memory besides softmax's own (mean, shift, threshold). The
fused kernel computes the mean, the max, the masked exponentials and their sum in about the passes a
softmax needs. Rows with ``-inf`` (invalid entries) or non-finite values are left to the eager path,
which takes the mean over valid entries only. It is used for inputs of at least
:data:`MIN_NUMEL` elements (where a compile of a few seconds pays off), normalized along a
contiguous last dimension in float32/float64 without an explicit mask. Set
``SIMPLEXITY_COMPILE=0`` to disable it; if compiling fails (no C++ compiler, unsupported platform)
it warns once and the eager path is used from then on.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["MIN_NUMEL", "fused_ev_softmax"]

MIN_NUMEL = 1 << 20
_state: dict[str, Callable[[Tensor, float], Tensor] | bool | None] = {"fn": None, "failed": False}


def _kernel(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """Unnormalized ev-softmax_eps weights along the last dim, their sum, and the mean.

    The weights are materialized (one exp per entry, like softmax) and normalized in place by the
    caller; the mean is not finite where a row has -inf/+inf/NaN.
    """
    largest = x.amax(-1, keepdim=True)
    mean = x.mean(-1, keepdim=True)
    weights = torch.where(x >= torch.minimum(mean, largest), 1.0 + eps, eps) * torch.exp(
        x - largest
    )
    return weights, weights.sum(-1, keepdim=True), mean


def _enabled() -> bool:
    return os.environ.get("SIMPLEXITY_COMPILE", "1") != "0" and not _state["failed"]


def fused_ev_softmax(x: Tensor, eps: float, *, min_numel: int | None = None) -> Tensor | None:
    """The fused forward of ev-softmax along the last dim, or None where it does not apply."""
    threshold = MIN_NUMEL if min_numel is None else min_numel
    if (
        x.numel() < threshold
        or x.dtype not in (torch.float32, torch.float64)
        or not x.is_contiguous()
        or x.dim() == 0
        or not _enabled()
    ):
        return None
    try:
        if _state["fn"] is None:
            _state["fn"] = torch.compile(_kernel, dynamic=True)
        weights, total, mean = _state["fn"](x, eps)  # type: ignore[operator]
    except Exception as error:  # any compiler failure: fall back for good
        _state["failed"] = True
        warnings.warn(
            f"simplexity: the compiled ev-softmax kernel is unavailable ({type(error).__name__}: "
            f"{error}); using the eager implementation",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    # rows with -inf (invalid entries), +inf or NaN need the eager path's masked mean
    return weights.div_(total) if bool(torch.isfinite(mean).all()) else None
