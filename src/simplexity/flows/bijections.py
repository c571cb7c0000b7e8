r"""Fixed bijections onto constrained supports (appended to a flow to move it there)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.transforms import Transform

__all__ = ["SimplexTransform"]


class SimplexTransform(Transform):
    r"""The additive logistic map :math:`\mathbb{R}^{D-1} \to \Delta^{D-1}` (open simplex).

    .. math::
        z = \operatorname{softmax}(x_1, \dots, x_{D-1}, 0), \qquad
        x_k = \log z_k - \log z_D,

    with, as a map onto the first :math:`D - 1` coordinates of the simplex (the convention of
    ``torch.distributions.Dirichlet``),

    .. math::
        \log|\det \partial z_{1:D-1}/\partial x| = \sum_{k=1}^{D} \log z_k .

    References:
        Aitchison. The Statistical Analysis of Compositional Data. 1986.

    Example:
        >>> t = SimplexTransform()
        >>> z = t(torch.randn(4, 2))
        >>> z.shape, bool(torch.allclose(z.sum(-1), torch.ones(4)))
        (torch.Size([4, 3]), True)
    """

    domain = constraints.real_vector
    codomain = constraints.simplex
    bijective = True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SimplexTransform)

    def _log_simplex(self, x: Tensor) -> Tensor:
        return torch.cat([x, torch.zeros_like(x[..., :1])], -1).log_softmax(-1)

    def _call(self, x: Tensor) -> Tensor:
        return self._log_simplex(x).exp()

    def _inverse(self, y: Tensor) -> Tensor:
        log_y = y.log()
        return log_y[..., :-1] - log_y[..., -1:]

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self._log_simplex(x).sum(-1)

    def forward_shape(self, shape: torch.Size) -> torch.Size:
        if len(shape) < 1:
            raise ValueError("too few dimensions on the input")
        return (*torch.Size(shape[:-1]), shape[-1] + 1)

    def inverse_shape(self, shape: torch.Size) -> torch.Size:
        if len(shape) < 1 or shape[-1] < 2:
            raise ValueError("the simplex needs at least 2 coordinates")
        return (*torch.Size(shape[:-1]), shape[-1] - 1)
