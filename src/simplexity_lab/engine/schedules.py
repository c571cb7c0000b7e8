r"""Schedules as objects: a value as a function of the training step (temperature, β, learning rate).

A schedule is a small frozen dataclass with ``__call__(step) -> float``; it holds no state, so a
resumed run gets the same value at the same step. Configs name schedules with a compact spec
(:func:`parse_schedule`):

=============================  ===============================================================
spec                           schedule
=============================  ===============================================================
``"0.67"``                     :class:`Constant` 0.67
``"linear:1.0:0.1:5000"``      :class:`Linear` from 1.0 to 0.1 over 5000 steps, then 0.1
``"exp:1.0:0.1:5000"``         :class:`Exponential` (geometric) from 1.0 to 0.1 over 5000 steps
``"cosine:1e-3:1e-5:10000"``   :class:`Cosine` from 1e-3 to 1e-5 over 10000 steps
``"warmup:0:1:1000"``          :class:`Linear` β warm-up from 0 to 1 (an alias of ``linear``)
=============================  ===============================================================

:class:`StepDecay` (a value multiplied by a factor every so many steps, as an outer loop decays its
learning rate) has no spec string: a task hands the object itself to the engine.

Example:
    >>> s = parse_schedule("exp:1.0:0.01:100")
    >>> round(s(0), 3), round(s(50), 3), round(s(100), 3), round(s(1000), 3)
    (1.0, 0.1, 0.01, 0.01)
    >>> s.spec()
    'exp:1.0:0.01:100'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from simplexity._checks import check_int

__all__ = ["Constant", "Cosine", "Exponential", "Linear", "Schedule", "StepDecay", "parse_schedule"]


class Schedule:
    """Base class: ``schedule(step)`` is the value at ``step`` (0-based optimizer steps)."""

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def spec(self) -> str:  # pragma: no cover - abstract
        """The spec string :func:`parse_schedule` reads back into this schedule."""
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """The same value at every step."""

    value: float

    def __call__(self, step: int) -> float:
        return self.value

    def spec(self) -> str:
        return repr(float(self.value))


@dataclass(frozen=True)
class _Ramp(Schedule):
    """From ``start`` to ``end`` over ``steps`` steps, then ``end``; ``kind`` names it in a spec."""

    start: float
    end: float
    steps: int

    kind: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_int("a schedule's steps", self.steps, min=1)

    def __call__(self, step: int) -> float:
        return self.at(min(max(step, 0), self.steps) / self.steps)

    def at(self, fraction: float) -> float:  # pragma: no cover - abstract
        """The value at ``fraction`` of the way, in [0, 1]."""
        raise NotImplementedError

    def spec(self) -> str:
        return f"{self.kind}:{self.start!r}:{self.end!r}:{self.steps}"


@dataclass(frozen=True)
class Linear(_Ramp):
    """Linear interpolation from ``start`` to ``end`` over ``steps`` steps, then ``end``."""

    kind: ClassVar[str] = "linear"

    def at(self, fraction: float) -> float:
        return self.start + (self.end - self.start) * fraction


@dataclass(frozen=True)
class Exponential(_Ramp):
    """Geometric interpolation from ``start`` to ``end`` (both > 0) over ``steps``, then ``end``."""

    kind: ClassVar[str] = "exp"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.start > 0 and self.end > 0):
            raise ValueError(f"exp schedule needs start, end > 0, got {self.start}, {self.end}")

    def at(self, fraction: float) -> float:
        return math.exp((1 - fraction) * math.log(self.start) + fraction * math.log(self.end))


@dataclass(frozen=True)
class Cosine(_Ramp):
    """Half-cosine from ``start`` to ``end`` over ``steps`` steps, then ``end``."""

    kind: ClassVar[str] = "cosine"

    def at(self, fraction: float) -> float:
        return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * fraction))


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``start * factor ** (step // every)``: a value decayed once per ``every`` steps (the learning
    rate of an outer loop, decayed after each outer iteration).

    Example:
        >>> s = StepDecay(1e-3, 0.5, 10)
        >>> s(0), s(9), s(10), s(25)
        (0.001, 0.001, 0.0005, 0.00025)
    """

    start: float
    factor: float
    every: int

    def __post_init__(self) -> None:
        check_int("every", self.every, min=1)

    def __call__(self, step: int) -> float:
        return self.start * self.factor ** (max(step, 0) // self.every)

    def spec(self) -> str:
        """A description (no spec string of :func:`parse_schedule` names a step decay)."""
        return f"{self.start!r} decayed by {self.factor!r} every {self.every} steps"


_KINDS = {"linear": Linear, "warmup": Linear, "exp": Exponential, "cosine": Cosine}


def parse_schedule(spec: str | float | Schedule, *, name: str = "schedule") -> Schedule:
    """Read a schedule spec (see the module docstring); ``name`` is used in error messages."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Constant(float(spec))
    if not isinstance(spec, str):
        raise TypeError(f"{name} must be a number or a schedule spec string, got {spec!r}")
    parts = spec.strip().split(":")
    try:
        if len(parts) == 1:
            return Constant(float(parts[0]))
        kind = parts[0].lower()
        if kind not in _KINDS or len(parts) != 4:
            raise ValueError
        start, end, steps = float(parts[1]), float(parts[2]), int(parts[3])
        return _KINDS[kind](start, end, steps)
    except ValueError as error:
        detail = f" ({error})" if str(error) else ""
        raise ValueError(
            f"{name} must be a number or KIND:START:END:STEPS with KIND in "
            f"{sorted(_KINDS)}, got {spec!r}{detail}"
        ) from None
