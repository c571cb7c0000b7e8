r"""Radial flows (Rezende & Mohamed 2015), with their closed-form inverse."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from simplexity._checks import check_floating, check_int

__all__ = ["Radial", "RadialTransform"]


class RadialTransform(Transform):
    r"""The radial map :math:`f(z) = z + \beta h(r)(z - z_0)`, :math:`h(r) = 1/(\alpha + r)`.

    With :math:`r = \|z - z_0\|`, :math:`\alpha = \operatorname{softplus}(a) > 0` and
    :math:`\beta = -\alpha + \operatorname{softplus}(b) > -\alpha` (invertibility),

    .. math::
        \log|\det \partial f/\partial z| = (D - 1)\log(1 + \beta h(r))
            + \log\Bigl(1 + \frac{\alpha\beta}{(\alpha + r)^2}\Bigr).

    The inverse is closed form: the radius :math:`r` solves
    :math:`r^2 + (\alpha + \beta - r')r - \alpha r' = 0` for :math:`r' = \|y - z_0\|`.

    Args:
        center: :math:`z_0`, shape ``(D,)``.
        alpha_raw: scalar, :math:`\alpha = \operatorname{softplus}(\cdot)`.
        beta_raw: scalar, :math:`\beta = -\alpha + \operatorname{softplus}(\cdot)`.

    References:
        Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.

    Example:
        >>> t = RadialTransform(torch.zeros(2), torch.tensor(0.0), torch.tensor(2.0))
        >>> x = torch.randn(4, 2)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(
        self, center: Tensor, alpha_raw: Tensor, beta_raw: Tensor, cache_size: int = 0
    ) -> None:
        for name, value in (("center", center), ("alpha_raw", alpha_raw), ("beta_raw", beta_raw)):
            check_floating(name, value)
        if center.dim() != 1 or alpha_raw.dim() != 0 or beta_raw.dim() != 0:
            raise ValueError(
                f"center must have shape (D,) and alpha_raw, beta_raw be scalars, got "
                f"{tuple(center.shape)}, {tuple(alpha_raw.shape)}, {tuple(beta_raw.shape)}"
            )
        super().__init__(cache_size=cache_size)
        self.center = center
        self.alpha = nn.functional.softplus(alpha_raw)
        self.beta = -self.alpha + nn.functional.softplus(beta_raw)

    def _radius(self, x: Tensor) -> Tensor:
        # The tiny floor keeps the gradient of the norm finite at the center.
        return (x - self.center).square().sum(-1).clamp_min(1e-30).sqrt()

    def _call(self, x: Tensor) -> Tensor:
        r = self._radius(x)
        return x + (self.beta / (self.alpha + r)).unsqueeze(-1) * (x - self.center)

    def _inverse(self, y: Tensor) -> Tensor:
        r_out = self._radius(y)
        shift = self.alpha + self.beta - r_out
        r = 0.5 * (-shift + (shift.square() + 4.0 * self.alpha * r_out).sqrt())
        factor = 1.0 + self.beta / (self.alpha + r)
        return self.center + (y - self.center) / factor.unsqueeze(-1)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        r = self._radius(x)
        d = x.shape[-1]
        bh = self.beta / (self.alpha + r)
        return (d - 1) * torch.log1p(bh) + torch.log1p(
            self.alpha * self.beta / (self.alpha + r).square()
        )


class Radial(nn.Module):
    r"""Trainable radial layer: ``Radial(D)()`` returns a :class:`RadialTransform`.

    Args:
        features: the dimension D.
        init_scale: standard deviation of the random initialization of the center.

    Example:
        >>> t = Radial(2)()
        >>> t(torch.randn(5, 2)).shape
        torch.Size([5, 2])
    """

    def __init__(self, features: int, init_scale: float = 1.0) -> None:
        super().__init__()
        features = check_int("features", features, min=1)
        self.center = nn.Parameter(torch.randn(features) * init_scale)
        self.alpha_raw = nn.Parameter(torch.zeros(()))
        self.beta_raw = nn.Parameter(torch.full((), 0.5))

    def forward(self, c: Tensor | None = None) -> RadialTransform:
        """Return the transform; the context ``c`` is ignored (zuko's lazy protocol)."""
        return RadialTransform(self.center, self.alpha_raw, self.beta_raw)
