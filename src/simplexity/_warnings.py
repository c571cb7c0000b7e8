"""The stack level of a library warning: the first caller outside simplexity and torch."""

from __future__ import annotations

import os
import sys

import torch

_INTERNAL = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
)


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` called by the function that calls this one, such that
    the warning names the user's line, however many library and torch frames (autograd functions,
    module calls) lie in between."""
    frame = sys._getframe(1)  # the function that warns: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame = frame.f_back
        level += 1
    return level
