r"""Base distributions of flows as lazy modules: ``module()`` returns the distribution."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from simplexity.distributions.mixture import REPARAMS, MixtureOfGaussians, kmeans_plusplus_init

__all__ = ["GaussianBase", "MixtureBase"]


class GaussianBase(nn.Module):
    r"""Standard normal :math:`\mathcal{N}(0, I_D)` (no trainable parameters).

    Example:
        >>> GaussianBase(2)().sample((3,)).shape
        torch.Size([3, 2])
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be an int >= 1, got {features!r}")
        self.register_buffer("loc", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))

    def forward(self) -> Independent:
        return Independent(Normal(self.loc, self.scale), 1)


class MixtureBase(nn.Module):
    r"""Trainable :class:`~simplexity.distributions.mixture.MixtureOfGaussians` base.

    Holds the logits, means and log-scales; ``forward()`` builds the mixture with the chosen
    ``reparam`` and ``temperature``. :meth:`initialize_from_data` sets them by k-means++ (useful
    when the flow above starts at the identity, as affine couplings do).

    Args:
        features: the dimension D.
        num_components: the number of components K.
        reparam: one of ``MixtureOfGaussians``'s reparameterizations.
        temperature: temperature of the relaxed reparameterizations (a float, or ``None``).
        spread: the initial means are ``spread`` times standard normal draws.

    Example:
        >>> base = MixtureBase(2, 4)
        >>> base().rsample((5,)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        features: int,
        num_components: int,
        *,
        reparam: str = "pathwise",
        temperature: float | None = None,
        spread: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be an int >= 1, got {features!r}")
        if (
            isinstance(num_components, bool)
            or not isinstance(num_components, int)
            or num_components < 1
        ):
            raise ValueError(f"num_components must be an int >= 1, got {num_components!r}")
        if reparam not in REPARAMS:
            raise ValueError(f"reparam must be one of {REPARAMS}, got {reparam!r}")
        self.reparam = reparam
        self.temperature = temperature
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.loc = nn.Parameter(torch.randn(num_components, features) * spread)
        self.log_scale = nn.Parameter(torch.zeros(num_components, features))

    def forward(self) -> MixtureOfGaussians:
        return MixtureOfGaussians(
            self.logits,
            self.loc,
            self.log_scale.exp(),
            reparam=self.reparam,
            temperature=self.temperature,
        )

    @torch.no_grad()
    def initialize_from_data(
        self, data: Tensor, *, generator: torch.Generator | None = None, iterations: int = 10
    ) -> MixtureBase:
        """Set the weights, means and scales by k-means++ and Lloyd iterations on ``data``."""
        logits, loc, scale = kmeans_plusplus_init(
            data.to(self.loc.dtype), self.loc.shape[0], generator=generator, iterations=iterations
        )
        self.logits.copy_(logits)
        self.loc.copy_(loc)
        self.log_scale.copy_(scale.log())
        return self

    def extra_repr(self) -> str:
        k, d = self.loc.shape
        temp = "" if self.temperature is None else f", temperature={self.temperature}"
        return f"features={d}, num_components={k}, reparam={self.reparam!r}{temp}"
