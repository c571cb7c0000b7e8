r"""Two-dimensional toy densities (the FFJORD-style generators), in torch.

``sample(name, num, generator=...)`` returns a ``(num, 2)`` float32 tensor. The shapes follow the
generators of Grathwohl et al. (FFJORD, 2019), with the angles and positions drawn at random
(instead of on a grid) so that every sample is i.i.d.; no scikit-learn is needed.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> sample("8gaussians", 5, generator=g).shape
    torch.Size([5, 2])
    >>> sorted(NAMES)[:3]
    ['2spirals', '8gaussians', 'checkerboard']
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from simplexity._checks import check_int

__all__ = ["NAMES", "sample"]

_Gen = torch.Generator | None


def _randn(n: int, d: int, g: _Gen) -> Tensor:
    return torch.randn(n, d, generator=g)


def _rand(n: int, d: int, g: _Gen) -> Tensor:
    return torch.rand(n, d, generator=g)


def _eight_gaussians(n: int, g: _Gen) -> Tensor:
    s = 1.0 / math.sqrt(2.0)
    centers = torch.tensor(
        [[1, 0], [-1, 0], [0, 1], [0, -1], [s, s], [s, -s], [-s, s], [-s, -s]], dtype=torch.float32
    )
    index = torch.randint(8, (n,), generator=g)
    return (4.0 * centers[index] + 0.5 * _randn(n, 2, g)) / 1.414


def _moons(n: int, g: _Gen) -> Tensor:
    t = math.pi * _rand(n, 1, g).squeeze(-1)
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(upper, t.cos(), 1.0 - t.cos())
    y = torch.where(upper, t.sin(), 0.5 - t.sin())
    data = torch.stack([x, y], -1) + 0.1 * _randn(n, 2, g)
    return 2.0 * data + torch.tensor([-1.0, -0.2])


def _rings(n: int, g: _Gen) -> Tensor:
    radii = torch.tensor([1.0, 0.75, 0.5, 0.25])
    r = radii[torch.randint(4, (n,), generator=g)]
    t = 2.0 * math.pi * torch.rand(n, generator=g)
    data = torch.stack([r * t.cos(), r * t.sin()], -1) * 3.0
    return data + 0.08 * _randn(n, 2, g)


def _circles(n: int, g: _Gen) -> Tensor:
    r = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, 0.5)
    t = 2.0 * math.pi * torch.rand(n, generator=g)
    data = torch.stack([r * t.cos(), r * t.sin()], -1) + 0.08 * _randn(n, 2, g)
    return 3.0 * data


def _checkerboard(n: int, g: _Gen) -> Tensor:
    x1 = 4.0 * torch.rand(n, generator=g) - 2.0
    x2 = torch.rand(n, generator=g) - 2.0 * torch.randint(2, (n,), generator=g).float()
    x2 = x2 + torch.floor(x1) % 2
    return 2.0 * torch.stack([x1, x2], -1)


def _pinwheel(n: int, g: _Gen) -> Tensor:
    radial_std, tangential_std, num_classes, rate = 0.3, 0.1, 5, 0.25
    rads = torch.arange(num_classes) * (2.0 * math.pi / num_classes)
    features = _randn(n, 2, g) * torch.tensor([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = torch.randint(num_classes, (n,), generator=g)
    angles = rads[labels] + rate * features[:, 0].exp()
    c, s = angles.cos(), angles.sin()
    rotations = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    return 2.0 * torch.einsum("ni,nij->nj", features, rotations)


def _two_spirals(n: int, g: _Gen) -> Tensor:
    t = _rand(n, 1, g).sqrt().squeeze(-1) * 540.0 * (2.0 * math.pi) / 360.0
    x = -t.cos() * t + 0.5 * torch.rand(n, generator=g)
    y = t.sin() * t + 0.5 * torch.rand(n, generator=g)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0)
    data = sign.unsqueeze(-1) * torch.stack([x, y], -1) / 3.0
    return data + 0.1 * _randn(n, 2, g)


def _swissroll(n: int, g: _Gen) -> Tensor:
    t = 1.5 * math.pi * (1.0 + 2.0 * torch.rand(n, generator=g))
    data = torch.stack([t * t.cos(), t * t.sin()], -1) + _randn(n, 2, g)
    return data / 5.0


_GENERATORS: dict[str, Callable[[int, _Gen], Tensor]] = {
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "rings": _rings,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "2spirals": _two_spirals,
    "circles": _circles,
    "swissroll": _swissroll,
}

#: Names accepted by :func:`sample`.
NAMES: tuple[str, ...] = tuple(_GENERATORS)


def sample(name: str, num: int, *, generator: torch.Generator | None = None) -> Tensor:
    r"""Draw ``num`` i.i.d. points of the toy density ``name`` (one of :data:`NAMES`).

    Args:
        name: the density.
        num: the number of points (>= 0).
        generator: a CPU ``torch.Generator`` for reproducibility.

    Returns:
        A float32 tensor of shape ``(num, 2)``.
    """
    if name not in _GENERATORS:
        raise ValueError(f"unknown toy density {name!r}; expected one of {NAMES}")
    check_int("num", num, min=0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return _GENERATORS[name](num, generator).to(torch.float32)
