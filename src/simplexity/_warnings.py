"""The stack level of a library warning: the first caller outside simplexity and torch."""

from __future__ import annotations

import os
from types import FrameType

import torch

_INTERNAL = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
)


def user_stacklevel(frame: FrameType) -> int:
    """The ``stacklevel`` for ``warnings.warn`` in the function whose frame is ``frame``
    (``sys._getframe()``) that makes the warning name the user's line, however many library and
    torch frames (autograd functions, module calls) lie in between."""
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame = frame.f_back
        level += 1
    return level
