"""``raises_exactly``: the error a test expects, with its whole message (not a pattern inside it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def raises_exactly(error: type[BaseException], message: str) -> Iterator[None]:
    """Like ``pytest.raises(error)``, and the message must equal ``message`` in full."""
    with pytest.raises(error) as info:
        yield
    assert str(info.value) == message
