"""pytest plugin for ``scripts/mutation``: mutmut runs the library's tests, not the lab's.

The library's tests are the files under ``tests/`` that do not import ``simplexity_lab`` (the lab's
tests are slow and exercise the lab). Deciding by content rather than by a list in pyproject.toml
keeps mutmut's configuration fixed as test files come and go (a change to it discards every verdict).
``MUTATION_IGNORE`` (space-separated paths, e.g. ``tests/test_x.py``) leaves out more files, for a
measurement while one of them is broken; ``MUTATION_TESTS`` keeps only the files it names (a lower
bound on a module's score, for a measurement while the rest of the suite is being changed).
Tests that ``torch.compile`` the library are skipped: dynamo cannot trace mutmut's trampoline.
"""

from __future__ import annotations

import os
from pathlib import Path


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    ignored = {Path(p).name for p in os.environ.get("MUTATION_IGNORE", "").split()}
    only = {Path(p).name for p in os.environ.get("MUTATION_TESTS", "").split()}
    if (
        collection_path.name in ignored
        or (only and collection_path.name not in only)
        or "simplexity_lab" in collection_path.read_text()
    ):
        return True
    return None


def pytest_collection_modifyitems(config, items) -> None:
    """Skip the tests that ``torch.compile`` the library: dynamo cannot trace mutmut's trampoline
    (it reads a ``ContextVar``), so they would fail on every mutant and on the unmutated code alike."""
    import inspect

    import pytest

    skip = pytest.mark.skip(reason="torch.compile cannot trace mutmut's trampoline")
    for item in items:
        function = getattr(item, "function", None)
        try:
            source = inspect.getsource(function) if function is not None else ""
        except (OSError, TypeError):
            continue
        if "torch.compile(" in source:
            item.add_marker(skip)
