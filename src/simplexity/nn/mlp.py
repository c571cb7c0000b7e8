r"""The multi-layer perceptron: dense layers with an activation between them, the library's one MLP."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from torch import nn

from simplexity._checks import check_int

__all__ = ["MLP"]


class MLP(nn.Sequential):
    r"""Dense layers ``in_features -> hidden... -> out_features`` with an activation between them.

    The layers are ``Linear, activation, Linear, ..., Linear`` (no activation after the last), indexed
    as in ``nn.Sequential``, so a state dict of the same layers written as a plain ``nn.Sequential``
    loads into it.

    Args:
        in_features: input size.
        out_features: output size.
        hidden: sizes of the hidden layers (empty: one linear layer).
        activation: a factory of the activation module, called once per hidden layer (``nn.SiLU``,
            ``nn.ReLU``, ...).
        zero_last: initialize the last layer to zero (so that a coupling layer starts at the
            identity).

    Example:
        >>> MLP(2, 3, (8, 8))(torch.randn(4, 2)).shape
        torch.Size([4, 3])
        >>> MLP(4, 2, (8,), activation=nn.ReLU)
        MLP(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): ReLU()
          (2): Linear(in_features=8, out_features=2, bias=True)
        )
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        *,
        activation: Callable[[], nn.Module] = nn.SiLU,
        zero_last: bool = False,
    ) -> None:
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise TypeError(f"hidden must be a sequence of ints, got {type(hidden).__name__}")
        sizes = [
            check_int("in_features", in_features, min=1),
            *(check_int(f"hidden[{i}]", size, min=1) for i, size in enumerate(hidden)),
        ]
        out_features = check_int("out_features", out_features, min=1)
        if not callable(activation):
            raise TypeError(
                f"activation must be a callable returning an nn.Module (e.g. nn.ReLU), "
                f"got {type(activation).__name__}"
            )
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), activation()]
        last = nn.Linear(sizes[-1], out_features)
        if zero_last:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        super().__init__(*layers)
