"""The test helper raises_exactly fails on a different message, a different type or no error."""

from __future__ import annotations

import pytest

from exact_error import raises_exactly


def test_raises_exactly_needs_the_whole_message_and_the_type():
    with raises_exactly(ValueError, "x must be positive"):
        raise ValueError("x must be positive")
    for error, message in ((ValueError, "XXx must be positiveXX"), (ValueError, "x must be")):
        with pytest.raises(AssertionError):
            with raises_exactly(ValueError, "x must be positive"):
                raise error(message)
    with pytest.raises(TypeError):
        with raises_exactly(ValueError, "x"):
            raise TypeError("x")
    with pytest.raises(pytest.fail.Exception):
        with raises_exactly(ValueError, "x"):
            pass
