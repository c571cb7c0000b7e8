"""Tests of the test helper ``default_dtype``: set inside the block, restored after it, even on error."""

from __future__ import annotations

import pytest
import torch

from default_dtype import default_dtype


def test_default_dtype_is_set_inside_and_restored_after_even_on_error():
    before = torch.get_default_dtype()
    with default_dtype(torch.float64):
        assert torch.get_default_dtype() == torch.float64 and torch.zeros(1).dtype == torch.float64
    assert torch.get_default_dtype() == before
    with pytest.raises(KeyError), default_dtype(torch.float64):
        raise KeyError("inside")
    assert torch.get_default_dtype() == before
