"""A fused ev-softmax forward, compiled with ``torch.compile`` for large inputs; eager fallback.

The eager path needs a few passes over memory besides softmax's own (mean, shift, threshold). The
fused kernel does what a softmax kernel does, row by row while the row is in cache: one pass for
the row's max and sum, one for the (thresholded) exponentials and their sum, one to normalize.
Rows with ``-inf`` (invalid entries) or non-finite values are left to the eager path, which takes
the mean over valid entries only. It is used for inputs of at least :data:`MIN_NUMEL` elements
(where a compile of a few seconds pays off), normalized along a contiguous last dimension in
float32/float64 without an explicit mask. Set ``SIMPLEXITY_COMPILE=0`` to disable it; if compiling
fails (no C++ compiler, unsupported platform) it warns once and the eager path is used from then on.

The kernel is compiled for a static row length (the number of categories K, which is fixed in a
model) and any number of rows: a static K lets the compiler emit tight inner loops. After
:data:`MAX_STATIC` distinct (K, dtype, eps) a second, shape-generic compilation takes the others.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from simplexity._warnings import user_stacklevel

__all__ = ["MAX_STATIC", "MIN_NUMEL", "fused_ev_softmax"]

MIN_NUMEL = 1 << 20
MAX_STATIC = 6
_state: dict[str, object] = {"fn": None, "generic": None, "failed": False, "seen": set()}


def _body(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """ev-softmax_eps along the last dim of a 2-D ``x``, and whether every row sum is finite (it is
    not where a row has -inf/+inf/NaN, or overflows)."""
    largest = x.amax(-1, keepdim=True)
    total = x.sum(-1, keepdim=True)
    # x >= mean, with the mean capped at the max: a rounded mean may exceed equal logits
    keep = x >= torch.minimum(total / x.shape[-1], largest)
    e = torch.exp(x - largest)
    w = torch.where(keep, e, 0.0) if eps == 0 else torch.where(keep, 1.0 + eps, eps) * e
    return w * torch.reciprocal(w.sum(-1, keepdim=True)), torch.isfinite(total).all()


def _kernel(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    return _body(x, eps)


def _kernel_generic(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    # a separate code object: its compiled versions are cached apart from _kernel's
    return _body(x, eps)


def _enabled() -> bool:
    return os.environ.get("SIMPLEXITY_COMPILE", "1") != "0" and not _state["failed"]


def _compiled(rows: Tensor, eps: float) -> Callable[[Tensor, float], tuple[Tensor, Tensor]]:
    """The static-K compilation for the first :data:`MAX_STATIC` (K, dtype, eps), then the generic."""
    seen: set = _state["seen"]  # type: ignore[assignment]
    key = (rows.shape[-1], rows.dtype, float(eps))
    if key in seen or len(seen) < MAX_STATIC:
        seen.add(key)
        if _state["fn"] is None:
            _state["fn"] = torch.compile(_kernel, dynamic=False)
        torch._dynamo.mark_dynamic(rows, 0)  # any number of rows, one compilation per K
        return _state["fn"]  # type: ignore[return-value]
    if _state["generic"] is None:
        _state["generic"] = torch.compile(_kernel_generic, dynamic=True)
    return _state["generic"]  # type: ignore[return-value]


def fused_ev_softmax(x: Tensor, eps: float, *, min_numel: int | None = None) -> Tensor | None:
    """The fused forward of ev-softmax along the last dim, or None where it does not apply."""
    threshold = MIN_NUMEL if min_numel is None else min_numel
    if (
        x.numel() < threshold
        or x.numel() == 0
        or x.dtype not in (torch.float32, torch.float64)
        or not x.is_contiguous()
        or x.dim() == 0
        or not _enabled()
    ):
        return None
    rows = x.reshape(-1, x.shape[-1])  # a view: x is contiguous
    if rows.shape[0] < 2:  # a single row would be specialized as a constant size
        return None
    # torch.compile's first run sets torch.distributions' validate_args default to False for the
    # whole process; a normalizer call must not switch off a user's argument checks
    validate = torch.distributions.Distribution._validate_args
    try:
        probs, finite = _compiled(rows, eps)(rows, eps)
    except Exception as error:  # any compiler failure: fall back for good
        _state["failed"] = True
        warnings.warn(
            f"simplexity: the compiled ev-softmax kernel is unavailable ({type(error).__name__}: "
            f"{error}); using the eager implementation",
            RuntimeWarning,
            stacklevel=user_stacklevel(sys._getframe()),
        )
        return None
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
    # rows with -inf (invalid entries), +inf or NaN need the eager path's masked mean
    return probs.view(x.shape) if finite.item() else None
