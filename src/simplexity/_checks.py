"""Argument checks shared by the library: each raises a clear error naming the argument."""

from __future__ import annotations

import numbers

import torch

__all__ = [
    "check_dim",
    "check_event",
    "check_floating",
    "check_int",
    "check_mask",
    "check_nonnegative",
    "check_positive",
    "check_tensor",
]


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a tensor, else raise ``TypeError`` naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_floating(name: str, value: torch.Tensor) -> torch.Tensor:
    """Require a floating-point tensor (float16, bfloat16, float32 or float64)."""
    check_tensor(name, value)
    if not value.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got dtype {value.dtype}"
        )
    return value


def check_dim(name: str, dim: int, ndim: int) -> int:
    """Normalize ``dim`` for a tensor of ``ndim`` dimensions; ``IndexError`` if out of range."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__}")
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not lo <= dim <= hi:
        raise IndexError(
            f"{name}={dim} is out of range for a tensor with {ndim} dimension(s) "
            f"(expected an int in [{lo}, {hi}])"
        )
    return int(dim) % max(ndim, 1)


def check_int(name: str, value: object, *, min: int | None = None, max: int | None = None) -> int:
    """Require an integer (``bool`` is not one) in ``[min, max]`` (each bound optional).

    Example:
        >>> check_int("num_samples", 3, min=1)
        3
        >>> check_int("num_samples", 0, min=1)
        Traceback (most recent call last):
        ...
        ValueError: num_samples must be an int >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if (min is not None and value < min) or (max is not None and value > max):
        if min is not None and max is not None:
            expected = f"an int in [{min}, {max}]"
        elif min is not None:
            expected = f"an int >= {min}"
        else:
            expected = f"an int <= {max}"
        raise ValueError(f"{name} must be {expected}, got {value}")
    return value


def check_nonnegative(name: str, value: float) -> float:
    """Require a finite real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def check_positive(name: str, value: float | torch.Tensor) -> float | torch.Tensor:
    """Require a number, or every entry of a tensor, to be finite and > 0."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        if not bool(torch.all((value > 0) & torch.isfinite(value))):
            raise ValueError(f"{name} must be finite and > 0 everywhere")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number or tensor, got {type(value).__name__}")
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return float(value)


def check_mask(name: str, mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """Require a boolean mask that broadcasts to ``x`` (True = valid entry)."""
    if mask is None:
        return None
    check_tensor(name, mask)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must be a boolean tensor (True where valid), got dtype {mask.dtype}"
        )
    try:
        shape = torch.broadcast_shapes(mask.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} does not broadcast to the input's shape "
            f"{tuple(x.shape)}"
        )
    if mask.device != x.device:
        raise ValueError(f"{name} is on {mask.device} but the input is on {x.device}")
    return mask


def check_event(name: str, value: object, event_shape: torch.Size) -> torch.Tensor:
    """Require a tensor whose trailing dimensions are ``event_shape`` (a value of a distribution)."""
    check_tensor(name, value)
    assert isinstance(value, torch.Tensor)
    n = len(event_shape)
    if value.dim() < n or tuple(value.shape[value.dim() - n :]) != tuple(event_shape):
        expected = ", ".join(str(d) for d in event_shape)
        raise ValueError(
            f"{name} must have shape (..., {expected}) (the event shape), got {tuple(value.shape)}"
        )
    return value
