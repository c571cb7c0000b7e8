"""Shared pytest setup: doctests see ``torch`` and the module's own names; seeds are fixed per test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_torch(doctest_namespace):
    doctest_namespace["torch"] = torch
    torch.manual_seed(0)
