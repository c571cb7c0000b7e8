"""Tests of the library's shared argument checks (``simplexity._checks``): exact messages, bounds."""

from __future__ import annotations

import math

import numpy as np
import torch

from exact_error import raises_exactly
from simplexity._checks import (
    check_dim,
    check_event,
    check_floating,
    check_int,
    check_mask,
    check_nonnegative,
    check_positive,
    check_tensor,
)


def _raises(error: type[Exception], message: str, call, *args, **kwargs) -> None:
    with raises_exactly(error, message):
        call(*args, **kwargs)


def test_check_tensor_and_check_floating() -> None:
    x = torch.zeros(2)
    assert check_tensor("x", x) is x and check_floating("x", x) is x
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        y = torch.zeros(1, dtype=dtype)
        assert check_floating("y", y) is y
    _raises(TypeError, "x must be a torch.Tensor, got list", check_tensor, "x", [1.0])
    _raises(TypeError, "x must be a torch.Tensor, got list", check_floating, "x", [1.0])
    _raises(
        TypeError,
        "x must be a floating-point tensor (float16, bfloat16, float32 or float64), got dtype "
        "torch.int64",
        check_floating, "x", torch.zeros(2, dtype=torch.long),
    )  # fmt: skip


def test_check_dim_normalizes_and_bounds() -> None:
    assert [check_dim("dim", d, 3) for d in (-3, -1, 0, 2)] == [0, 2, 0, 2]
    assert check_dim("dim", np.int64(-1), 2) == 1 and type(check_dim("dim", np.int64(1), 2)) is int
    assert check_dim("dim", 0, 0) == 0 and check_dim("dim", -1, 0) == 0  # a scalar: dim 0 or -1
    _raises(IndexError, "dim=3 is out of range for a tensor with 3 dimension(s) (expected an int "
            "in [-3, 2])", check_dim, "dim", 3, 3)  # fmt: skip
    _raises(IndexError, "dim=-4 is out of range for a tensor with 3 dimension(s) (expected an "
            "int in [-3, 2])", check_dim, "dim", -4, 3)  # fmt: skip
    _raises(IndexError, "axis=1 is out of range for a tensor with 0 dimension(s) (expected an "
            "int in [-1, 0])", check_dim, "axis", 1, 0)  # fmt: skip
    _raises(TypeError, "dim must be an int, got bool", check_dim, "dim", True, 2)
    _raises(TypeError, "dim must be an int, got float", check_dim, "dim", 1.0, 2)


def test_check_int_bounds_and_messages() -> None:
    assert (
        check_int("n", 3) == 3 and check_int("n", 1, min=1) == 1 and check_int("n", 5, max=5) == 5
    )
    assert check_int("n", 2, min=2, max=2) == 2 and type(check_int("n", np.int32(4))) is int
    _raises(TypeError, "n must be an int, got bool", check_int, "n", False)
    _raises(TypeError, "n must be an int, got float", check_int, "n", 2.0)
    _raises(ValueError, "n must be an int >= 1, got 0", check_int, "n", 0, min=1)
    _raises(ValueError, "n must be an int <= 5, got 6", check_int, "n", 6, max=5)
    _raises(ValueError, "n must be an int in [1, 5], got 0", check_int, "n", 0, min=1, max=5)
    _raises(ValueError, "n must be an int in [1, 5], got 6", check_int, "n", 6, min=1, max=5)


def test_check_nonnegative() -> None:
    assert check_nonnegative("w", 0) == 0.0 and type(check_nonnegative("w", 2)) is float
    assert check_nonnegative("w", 1e308) == 1e308
    _raises(
        ValueError, "w must be a finite number >= 0, got -1e-12", check_nonnegative, "w", -1e-12
    )
    _raises(ValueError, "w must be a finite number >= 0, got inf", check_nonnegative, "w", math.inf)
    _raises(ValueError, "w must be a finite number >= 0, got nan", check_nonnegative, "w", math.nan)
    _raises(TypeError, "w must be a real number, got bool", check_nonnegative, "w", True)
    _raises(TypeError, "w must be a real number, got str", check_nonnegative, "w", "1")


def test_check_positive_numbers_and_tensors() -> None:
    assert check_positive("t", 2) == 2.0 and type(check_positive("t", 2)) is float
    assert check_positive("t", 5e-324) == 5e-324
    t = torch.tensor([0.5, 2.0])
    assert check_positive("t", t) is t
    for bad in (0, -1.0, math.inf, math.nan):
        _raises(ValueError, f"t must be finite and > 0, got {bad}", check_positive, "t", bad)
    _raises(TypeError, "t must be a positive number or tensor, got bool", check_positive, "t", True)
    _raises(TypeError, "t must be a positive number or tensor, got str", check_positive, "t", "1")
    for bad in (torch.tensor([0.5, 0.0]), torch.tensor([0.5, -1.0]), torch.tensor([1.0, math.inf]),
                torch.tensor([1.0, math.nan])):  # fmt: skip
        _raises(ValueError, "t must be finite and > 0 everywhere", check_positive, "t", bad)
    _raises(TypeError, "t must be a floating-point tensor, got dtype torch.int64", check_positive,
            "t", torch.ones(2, dtype=torch.long))  # fmt: skip


def test_check_mask_polarity_shape_and_device() -> None:
    x = torch.zeros(2, 3)
    assert check_mask("mask", None, x) is None
    m = torch.tensor([True, False, True])
    assert check_mask("mask", m, x) is m  # broadcasts to (2, 3)
    _raises(TypeError, "mask must be a torch.Tensor, got list", check_mask, "mask", [True], x)
    _raises(TypeError, "mask must be a boolean tensor (True where valid), got dtype torch.int64",
            check_mask, "mask", torch.ones(3, dtype=torch.long), x)  # fmt: skip
    _raises(ValueError, "mask of shape (4,) does not broadcast to the input's shape (2, 3)",
            check_mask, "mask", torch.ones(4, dtype=torch.bool), x)  # fmt: skip
    # broadcasting that would grow the input is refused too
    _raises(ValueError, "mask of shape (5, 2, 3) does not broadcast to the input's shape (2, 3)",
            check_mask, "mask", torch.ones(5, 2, 3, dtype=torch.bool), x)  # fmt: skip
    meta = torch.ones(3, dtype=torch.bool, device="meta")
    _raises(ValueError, "mask is on meta but the input is on cpu", check_mask, "mask", meta, x)


def test_check_event_trailing_shape() -> None:
    v = torch.zeros(4, 2, 3)
    assert check_event("value", v, torch.Size([2, 3])) is v
    assert check_event("value", v, torch.Size([])) is v
    w = v[0]
    assert check_event("value", w, torch.Size([2, 3])) is w  # no batch dimensions
    _raises(ValueError, "value must have shape (..., 2, 3) (the event shape), got (4, 3, 2)",
            check_event, "value", torch.zeros(4, 3, 2), torch.Size([2, 3]))  # fmt: skip
    _raises(ValueError, "value must have shape (..., 2, 3) (the event shape), got (3,)",
            check_event, "value", torch.zeros(3), torch.Size([2, 3]))  # fmt: skip
    _raises(TypeError, "value must be a torch.Tensor, got float", check_event, "value", 1.0,
            torch.Size([2]))  # fmt: skip
