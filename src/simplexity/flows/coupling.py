r"""Affine coupling layers (Real NVP, Dinh et al. 2017) and the small MLP they use."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import constraints
from torch.distributions.transforms import Transform

__all__ = ["MLP", "AffineCoupling", "AffineCouplingTransform"]


class MLP(nn.Sequential):
    r"""A multi-layer perceptron ``in -> hidden... -> out`` with SiLU activations.

    Args:
        in_features: input size.
        out_features: output size.
        hidden: sizes of the hidden layers.
        zero_last: initialize the last layer to zero (so that a coupling starts at the identity).

    Example:
        >>> MLP(2, 3, (8, 8))(torch.randn(4, 2)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        *,
        zero_last: bool = False,
    ) -> None:
        layers: list[nn.Module] = []
        sizes = [in_features, *hidden]
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.SiLU()]
        last = nn.Linear(sizes[-1], out_features)
        if zero_last:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        super().__init__(*layers)


def _soft_clamp(x: Tensor, bound: float) -> Tensor:
    return bound * torch.tanh(x / bound)


class AffineCouplingTransform(Transform):
    r"""Affine coupling :math:`y = m \odot x + (1 - m) \odot (x e^{s(m \odot x)} + t(m \odot x))`.

    The entries where the boolean mask :math:`m` is true pass through and condition the others;
    :math:`s` is soft-clamped to :math:`[-B, B]`. Then

    .. math::
        \log|\det \partial y/\partial x| = \sum_i (1 - m_i)\, s_i(m \odot x),

    and the inverse is :math:`x = m \odot y + (1 - m) \odot (y - t) e^{-s}`.

    Args:
        mask: boolean tensor of shape ``(D,)``, true for the conditioning entries.
        conditioner: callable mapping ``(..., D)`` (masked input) to ``(..., 2D)`` (raw log-scale,
            shift).
        bound: the clamp :math:`B` of the log-scale.

    References:
        Dinh, Sohl-Dickstein, Bengio. Density Estimation Using Real NVP. ICLR 2017.

    Example:
        >>> net = MLP(2, 4, (8,))
        >>> t = AffineCouplingTransform(torch.tensor([True, False]), net)
        >>> x = torch.randn(3, 2)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(
        self,
        mask: Tensor,
        conditioner: Callable[[Tensor], Tensor],
        bound: float = 3.0,
        cache_size: int = 0,
    ) -> None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() != 1:
            raise TypeError("mask must be a boolean tensor of shape (D,)")
        super().__init__(cache_size=cache_size)
        self.mask = mask
        self.conditioner = conditioner
        self.bound = bound

    def _scale_shift(self, x: Tensor) -> tuple[Tensor, Tensor]:
        keep = self.mask.to(x.dtype)
        log_scale, shift = self.conditioner(x * keep).chunk(2, dim=-1)
        free = 1.0 - keep
        return _soft_clamp(log_scale, self.bound) * free, shift * free

    def _call(self, x: Tensor) -> Tensor:
        log_scale, shift = self._scale_shift(x)
        return x * log_scale.exp() + shift

    def _inverse(self, y: Tensor) -> Tensor:
        log_scale, shift = self._scale_shift(y)  # the kept entries of y equal those of x
        return (y - shift) * (-log_scale).exp()

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self._scale_shift(x)[0].sum(-1)


class AffineCoupling(nn.Module):
    r"""Trainable affine coupling layer; ``forward()`` returns an :class:`AffineCouplingTransform`.

    Starts at the identity (the conditioner's last layer is zero).

    Args:
        features: the dimension D (at least 2).
        parity: the entries with ``index % 2 == parity`` condition the others (alternate it
            between layers), unless ``mask`` is given.
        hidden: hidden sizes of the conditioner MLP.
        mask: explicit boolean mask of shape ``(D,)`` (true = conditioning entry).
        bound: clamp of the log-scale.

    Example:
        >>> t = AffineCoupling(2, parity=1)()
        >>> t(torch.randn(5, 2)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        features: int,
        parity: int = 0,
        hidden: Sequence[int] = (64, 64),
        *,
        mask: Tensor | None = None,
        bound: float = 3.0,
    ) -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 2:
            raise ValueError(f"features must be an int >= 2 for a coupling layer, got {features!r}")
        if mask is None:
            mask = torch.arange(features) % 2 == parity
        elif mask.shape != (features,) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a boolean tensor of shape ({features},)")
        if bool(mask.all()) or not bool(mask.any()):
            raise ValueError("mask must keep at least one entry and transform at least one")
        self.register_buffer("mask", mask)
        self.bound = bound
        self.net = MLP(features, 2 * features, hidden, zero_last=True)

    def forward(self) -> AffineCouplingTransform:
        return AffineCouplingTransform(self.mask, self.net, self.bound)
