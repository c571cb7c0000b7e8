"""Shared pytest setup: doctests see ``torch`` and the module's own names; seeds are fixed per test.

Every test also starts from torch's own ``torch.distributions`` validation default (on): importing
zuko (``zuko.distributions``) and torch.compile's first run both turn it off for the whole process,
and a test's result must not depend on which test ran before it in the same worker.
"""

import pytest
import torch
from torch.distributions import Distribution


@pytest.fixture(autouse=True)
def _doctest_torch(doctest_namespace):
    doctest_namespace["torch"] = torch
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _torch_distribution_validation_default():
    before = Distribution._validate_args
    Distribution.set_default_validate_args(True)
    yield
    Distribution.set_default_validate_args(before)
