"""Small building blocks: multi-layer perceptrons and the VAE network presets."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import nn

__all__ = ["NETS", "mlp"]

NETS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "linear": ((), ()),
    "nonlinear": ((512, 256), (256, 512)),
}
"""Hidden sizes ``(encoder, decoder)`` of the IGR paper's networks (REFERENCE §2.3): ``linear`` is
one dense layer each way, ``nonlinear`` a 512-256 ReLU encoder and a 256-512 ReLU decoder."""


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Dense layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them (none last).

    Example:
        >>> mlp([4, 8, 2])
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): ReLU()
          (2): Linear(in_features=8, out_features=2, bias=True)
        )
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must hold at least two positive sizes, got {sizes}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)
