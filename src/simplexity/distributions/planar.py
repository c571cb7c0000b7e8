r"""Trainable planar flows: the parameters of planar layers, whose ``forward()`` builds the transforms.

This is the library's one trainable planar flow. IGR-Planar (:class:`~simplexity.distributions.IGRPlanar`
and the ``"igr_planar"`` relaxation) takes the list of transforms of ``PlanarFlows(K - 1, L)()``; the
normalizing flows of :mod:`simplexity.flows` take one layer at a time, ``PlanarFlows(D, None)()``
(a single :class:`~simplexity.distributions.transforms.PlanarTransform`), which
:class:`simplexity.flows.Planar` names. The transform itself (the invertibility constraint on
:math:`u`, the closed-form log-determinant, the numerical inverse) is
:class:`~simplexity.distributions.transforms.PlanarTransform`.

References:
    Rezende, Mohamed. "Variational Inference with Normalizing Flows", ICML 2015.
    Potapczynski, Loaiza-Ganem, Cunningham. "Invertible Gaussian Reparameterization: Revisiting the
    Gumbel-Softmax", NeurIPS 2020.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from simplexity._checks import check_int
from simplexity.distributions.transforms import PlanarTransform

__all__ = ["PlanarFlows"]


class PlanarFlows(nn.Module):
    r"""Trainable parameters of ``num_flows`` planar flows on :math:`\mathbb{R}^{D}`.

    Calling the module returns the list of :class:`PlanarTransform` to give to
    :class:`~simplexity.distributions.IGRPlanar`, first layer first; with ``num_flows=None`` it holds a
    single layer and returns one transform (what :class:`~simplexity.flows.Flow` takes). The
    parameters ``u``, ``w`` (``(num_flows, D)``, or ``(D,)`` for a single layer) and ``b`` are shared
    across the batch (as in the IGR reference code); ``u`` and ``w`` start at
    :math:`\mathcal N(0, \text{init\_scale}^2)` and ``b`` at 0.

    Args:
        dim: :math:`D` (:math:`K-1` for IGR-Planar).
        num_flows: number of planar layers, or None for a single layer.
        init_scale: standard deviation of the random initialization of ``u`` and ``w``.
        cache_size: the transforms' cache (1: the density of a value the flow just returned is
            evaluated at its exact pre-image; 0: always the numerical inverse).

    Example:
        >>> from simplexity.distributions import IGRPlanar
        >>> flows = PlanarFlows(dim=3, num_flows=2)
        >>> q = IGRPlanar(torch.zeros(3), torch.ones(3), 0.5, flows=flows())
        >>> q.rsample((4,)).shape
        torch.Size([4, 4])
        >>> PlanarFlows(3, None)()(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        dim: int,
        num_flows: int | None = 1,
        init_scale: float = 0.1,
        *,
        cache_size: int = 1,
    ) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, min=1)
        self.num_flows = None if num_flows is None else check_int("num_flows", num_flows, min=0)
        self.cache_size = check_int("cache_size", cache_size, min=0, max=1)
        shape = (self.dim,) if self.num_flows is None else (self.num_flows, self.dim)
        self.u = nn.Parameter(init_scale * torch.randn(shape))
        self.w = nn.Parameter(init_scale * torch.randn(shape))
        self.b = nn.Parameter(torch.zeros(shape[:-1]))

    def forward(self, c: Tensor | None = None) -> list[PlanarTransform] | PlanarTransform:
        """The planar transforms, first layer first (one transform if ``num_flows`` is None).

        The context ``c`` is ignored (zuko's lazy-module protocol: the flows are unconditional).
        """
        if self.num_flows is None:
            return PlanarTransform(self.u, self.w, self.b, cache_size=self.cache_size)
        return [
            PlanarTransform(self.u[i], self.w[i], self.b[i], cache_size=self.cache_size)
            for i in range(self.num_flows)
        ]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_flows={self.num_flows}"
