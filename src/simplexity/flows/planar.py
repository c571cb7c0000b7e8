r"""Planar flows (Rezende & Mohamed 2015), with an exact numerical inverse."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from simplexity._checks import check_floating

__all__ = ["Planar", "PlanarTransform"]


class PlanarTransform(Transform):
    r"""The planar map :math:`f(x) = x + \hat u \tanh(w^\top x + b)`.

    The raw vector :math:`u` is replaced by :math:`\hat u = u + (m(w^\top u) - w^\top u)
    w / \|w\|^2` with :math:`m(a) = -1 + \operatorname{softplus}(a)`, so that
    :math:`w^\top \hat u > -1` and the map is invertible. Its Jacobian determinant is

    .. math::
        \log|\det \partial f/\partial x| = \log\bigl(1 + (1 - \tanh^2(w^\top x + b))\,
        w^\top \hat u\bigr).

    There is no closed-form inverse; :meth:`_inverse` solves the scalar equation
    :math:`w^\top y = a + w^\top\hat u \tanh(a + b)` for :math:`a = w^\top x` by Newton's method
    safeguarded by bisection (the left side is increasing in :math:`a`) and takes a last Newton
    step with gradients, which gives the exact first-order (implicit-function) gradient of the
    inverse.

    Args:
        u: vector of shape ``(D,)``.
        w: vector of shape ``(D,)``.
        b: scalar bias (shape ``()``).

    References:
        Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015.

    Example:
        >>> u, w = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.5])
        >>> t = PlanarTransform(u, w, torch.tensor(0.1))
        >>> x = torch.randn(4, 2)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)
        True
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, u: Tensor, w: Tensor, b: Tensor, cache_size: int = 0) -> None:
        for name, value in (("u", u), ("w", w), ("b", b)):
            check_floating(name, value)
        if u.dim() != 1 or w.shape != u.shape or b.dim() != 0:
            raise ValueError(
                f"u and w must be vectors of the same shape (D,) and b a scalar, got u "
                f"{tuple(u.shape)}, w {tuple(w.shape)}, b {tuple(b.shape)}"
            )
        super().__init__(cache_size=cache_size)
        self.w, self.b = w, b
        wu = w @ u
        m = -1.0 + nn.functional.softplus(wu)
        self.u_hat = u + (m - wu) * w / w.square().sum().clamp_min(1e-12)
        self.wu_hat = self.w @ self.u_hat  # = m > -1

    def _call(self, x: Tensor) -> Tensor:
        return x + self.u_hat * torch.tanh(x @ self.w + self.b).unsqueeze(-1)

    def _inverse(self, y: Tensor) -> Tensor:
        target = y @ self.w
        m, b = self.wu_hat, self.b
        with torch.no_grad():
            m0, b0, t = m.detach(), b.detach(), target.detach()
            spread = m0.abs() + 1e-6
            lo, hi = t - spread, t + spread
            a0 = t.clone()
            tol = 64 * torch.finfo(t.dtype).eps * (1.0 + t.abs())
            for _ in range(100):  # safeguarded Newton: quadratic near the root, never diverges
                tanh = torch.tanh(a0 + b0)
                g = a0 + m0 * tanh - t
                if bool((g.abs() <= tol).all()):
                    break
                hi = torch.where(g > 0, a0, hi)
                lo = torch.where(g > 0, lo, a0)
                newton = a0 - g / (1.0 + m0 * (1.0 - tanh.square()))
                inside = (newton > lo) & (newton < hi)
                a0 = torch.where(inside, newton, 0.5 * (lo + hi))
        t0 = torch.tanh(a0 + b)
        # One Newton step with gradients: exact value, implicit-function gradient.
        a = a0 - (a0 + m * t0 - target) / (1.0 + m * (1.0 - t0.square()))
        return y - self.u_hat * torch.tanh(a + b).unsqueeze(-1)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        t = torch.tanh(x @ self.w + self.b)
        return torch.log1p((1.0 - t.square()) * self.wu_hat)


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
    """

    def __init__(self, features: int, init_scale: float = 0.1) -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be an int >= 1, got {features!r}")
        self.u = nn.Parameter(torch.randn(features) * init_scale)
        self.w = nn.Parameter(torch.randn(features) * init_scale)
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self) -> PlanarTransform:
        return PlanarTransform(self.u, self.w, self.b)
