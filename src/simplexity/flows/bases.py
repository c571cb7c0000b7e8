r"""Base distributions of flows as lazy modules: ``module(c=None)`` returns the distribution.

They follow zuko's lazy protocol: ``forward`` takes an optional context and ignores it (the bases
are unconditional), so ``zuko.flows.Flow(transform, MixtureBase(2, 8))`` works as written.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from simplexity._checks import check_int, check_positive
from simplexity.distributions.mixture import MixtureOfGaussians, check_reparam, kmeans_plusplus_init

__all__ = ["GaussianBase", "MixtureBase"]


class GaussianBase(nn.Module):
    r"""Standard normal :math:`\mathcal{N}(0, I_D)` (no trainable parameters).

    Args:
        features: the dimension D.

    Example:
        >>> GaussianBase(2)().sample((3,)).shape
        torch.Size([3, 2])
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        features = check_int("features", features, min=1)
        self.register_buffer("loc", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))

    def forward(self, c: Tensor | None = None) -> Independent:
        """Return :math:`\\mathcal{N}(0, I_D)`; the context ``c`` is ignored."""
        return Independent(Normal(self.loc, self.scale), 1)


class MixtureBase(nn.Module):
    r"""Trainable :class:`~simplexity.distributions.mixture.MixtureOfGaussians` base.

    Holds the logits, means and log-scales; ``forward()`` builds the mixture with the chosen
    ``reparam`` and ``temperature``, with scales

    .. math:: \sigma = \exp(\min(s, s_{\max})) + \sigma_{\min}

    from the parameter ``log_scale`` :math:`= s`, so that they are positive and finite whatever
    values the optimizer (or the caller) gives it. :meth:`initialize_from_data` sets the parameters
    by k-means++ (useful when the flow above starts at the identity, as affine couplings do).

    Args:
        features: the dimension D.
        num_components: the number of components K.
        reparam: one of ``MixtureOfGaussians``'s reparameterizations.
        temperature: temperature of the relaxed reparameterizations (a positive float; required by
            them, not accepted by ``"pathwise"``).
        spread: the initial means are ``spread`` times standard normal draws.
        min_scale: the floor :math:`\sigma_{\min} > 0` of the scales.

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
        min_scale: float = 1e-5,
    ) -> None:
        super().__init__()
        features = check_int("features", features, min=1)
        num_components = check_int("num_components", num_components, min=1)
        check_reparam(reparam, temperature, num_components)
        if isinstance(temperature, Tensor):
            raise TypeError("temperature must be a float here (the module stores it), got a tensor")
        self.reparam = reparam
        self.temperature = None if temperature is None else float(temperature)
        self.min_scale = float(check_positive("min_scale", min_scale))
        spread = float(check_positive("spread", spread))
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.loc = nn.Parameter(torch.randn(num_components, features) * spread)
        self.log_scale = nn.Parameter(torch.zeros(num_components, features))

    @property
    def scale(self) -> Tensor:
        r"""The component scales :math:`\exp(\min(s, s_{\max})) + \sigma_{\min}`, shape (K, D)."""
        # s_max keeps exp finite in the parameter's dtype, with room for the floor and products
        s_max = 0.5 * math.log(torch.finfo(self.log_scale.dtype).max)
        return self.log_scale.clamp(max=s_max).exp() + self.min_scale

    def forward(self, c: Tensor | None = None) -> MixtureOfGaussians:
        """Return the mixture; the context ``c`` is ignored."""
        return MixtureOfGaussians(
            self.logits,
            self.loc,
            self.scale,
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
        tiny = torch.finfo(scale.dtype).tiny
        self.log_scale.copy_((scale - self.min_scale).clamp_min(tiny).log())
        return self

    def extra_repr(self) -> str:
        k, d = self.loc.shape
        temp = "" if self.temperature is None else f", temperature={self.temperature}"
        return f"features={d}, num_components={k}, reparam={self.reparam!r}{temp}"
