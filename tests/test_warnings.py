"""Tests of simplexity._warnings: the stack level that makes a library warning name the user's line."""

from __future__ import annotations

import os
import sys
import warnings

import torch

import simplexity
from simplexity._warnings import user_stacklevel


def _function_in(directory: str, name: str, source: str):
    """A function whose code claims to live in ``directory`` (as library or torch code does)."""
    namespace: dict = {"sys": sys, "warnings": warnings}
    exec(compile(source, os.path.join(directory, f"{name}.py"), "exec"), namespace)
    return namespace[name]


LIBRARY = os.path.dirname(simplexity.__file__)
TORCH = os.path.dirname(torch.__file__)


def test_user_code_warns_at_its_own_line():
    assert user_stacklevel(sys._getframe()) == 1


def test_library_and_torch_frames_are_skipped():
    warn = _function_in(
        LIBRARY, "warn", "def warn():\n    return user_stacklevel(sys._getframe())\n"
    )
    warn.__globals__["user_stacklevel"] = user_stacklevel
    assert warn() == 2  # the library function, then this test
    through = _function_in(TORCH, "through", "def through(f):\n    return f()\n")
    assert through(warn) == 3  # the library function, torch's frame, then this test
    again = _function_in(LIBRARY, "again", "def again(f, g):\n    return f(g)\n")
    assert again(through, warn) == 4


def test_the_warning_names_the_caller():
    source = (
        "def warn():\n"
        "    warnings.warn('careful', RuntimeWarning, stacklevel=user_stacklevel(sys._getframe()))\n"
    )
    warn = _function_in(LIBRARY, "warn", source)
    warn.__globals__["user_stacklevel"] = user_stacklevel
    through = _function_in(TORCH, "through", "def through(f):\n    return f()\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        through(warn)
    assert caught[0].filename == __file__
