r"""Planar flows (Rezende & Mohamed 2015): the trainable layer.

The transform itself, :class:`~simplexity.distributions.transforms.PlanarTransform` (invertibility
constraint on :math:`u`, closed-form log-determinant, safeguarded-Newton inverse with
implicit-function gradients), is shared with IGR-Planar and re-exported here.
"""

from __future__ import annotations

import torch
from torch import nn

from simplexity.distributions.transforms import PlanarTransform

__all__ = ["Planar", "PlanarTransform"]


class Planar(nn.Module):
    r"""Trainable planar layer: ``Planar(D)()`` returns a :class:`PlanarTransform`.

    Args:
        features: the dimension D.
        init_scale: standard deviation of the random initialization of :math:`u` and :math:`w`.

    Example:
        >>> layer = Planar(3)
        >>> t = layer()
        >>> t(torch.randn(5, 3)).shape
        torch.Size([5, 3])
        >>> x = torch.randn(4, 3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)  # no cache: the numerical inverse
        True
    """

    def __init__(self, features: int, init_scale: float = 0.1) -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be an int >= 1, got {features!r}")
        self.u = nn.Parameter(torch.randn(features) * init_scale)
        self.w = nn.Parameter(torch.randn(features) * init_scale)
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self) -> PlanarTransform:
        return PlanarTransform(self.u, self.w, self.b, cache_size=0)
