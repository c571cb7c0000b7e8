"""``default_dtype``: torch's default floating dtype changed inside a ``with`` block, then restored."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Set ``torch.get_default_dtype()`` to ``dtype`` for the block (restored even on error)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
