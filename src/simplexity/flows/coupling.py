r"""Affine coupling layers (Real NVP, Dinh et al. 2017), conditioned by :class:`simplexity.nn.MLP`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from simplexity._checks import check_int
from simplexity.nn.mlp import MLP

__all__ = ["AffineCoupling", "AffineCouplingTransform"]


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
        features = check_int("features", features, min=2)
        if mask is None:
            mask = torch.arange(features) % 2 == parity
        elif mask.shape != (features,) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a boolean tensor of shape ({features},)")
        if bool(mask.all()) or not bool(mask.any()):
            raise ValueError("mask must keep at least one entry and transform at least one")
        self.register_buffer("mask", mask)
        self.bound = bound
        self.net = MLP(features, 2 * features, hidden, zero_last=True)

    def forward(self, c: Tensor | None = None) -> AffineCouplingTransform:
        """Return the transform; the context ``c`` is ignored (zuko's lazy-module protocol)."""
        return AffineCouplingTransform(self.mask, self.net, self.bound)
