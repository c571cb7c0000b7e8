r"""Invertible maps of the IGR family, as :class:`torch.distributions.transforms.Transform` objects.

- :class:`SoftmaxPlusPlusTransform`: :math:`\mathbb{R}^{K-1} \to` interior of :math:`\Delta^{K-1}`.
- :class:`StickBreakingTransform`: sigmoid stick-breaking :math:`\mathbb{R}^{K-1} \to`
  :math:`\{\pi \in (0, 1)^{K-1} : \sum_k \pi_k < 1\}` (the IGR-SB map, before softmax++).
- :class:`PlanarTransform`: a planar flow :math:`\mathbb{R}^{D} \to \mathbb{R}^{D}` with the
  invertibility constraint of Rezende & Mohamed and a numerical inverse.

All three default to ``cache_size=1`` so that the density of a value that a
:class:`~torch.distributions.TransformedDistribution` has just sampled is evaluated at its exact
pre-image, and all Jacobians are computed in log space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from simplexity._checks import check_floating, check_positive

__all__ = [
    "PlanarTransform",
    "SoftmaxPlusPlusTransform",
    "StickBreakingTransform",
    "log_simplex",
    "open_sub_simplex",
]


def _as_tensor(name: str, value: float | Tensor, like: Tensor | None = None) -> Tensor:
    """Return a positive hyperparameter as a floating tensor (checks plain numbers eagerly)."""
    if isinstance(value, Tensor):
        return check_floating(name, value)
    check_positive(name, value)
    dtype = like.dtype if like is not None else torch.get_default_dtype()
    device = like.device if like is not None else None
    return torch.tensor(float(value), dtype=dtype, device=device)


def _beside(value: Tensor, param: Tensor) -> Tensor:
    """Read a hyperparameter tensor with a trailing singleton as standing beside ``param``.

    ``param`` has shape ``batch + (n,)``. A hyperparameter with at least as many axes whose last
    axis is 1 faces the event axis, as torch users write it (a per-row temperature ``(B, 1)``
    beside logits ``(B, K)``, pytorch #37162): that axis is dropped. Any other shape is a batch shape.
    """
    if value.dim() >= max(param.dim(), 1) and value.shape[-1] == 1:
        return value.squeeze(-1)
    return value


class _LogSimplex(constraints.Constraint):
    """Logs of points of the simplex: entries <= 0 whose ``logsumexp`` is 0 (event_dim 1)."""

    event_dim = 1

    def check(self, value: Tensor) -> Tensor:
        return (value <= 0).all(-1) & (value.logsumexp(-1).abs() < 1e-4)


log_simplex = _LogSimplex()


def _validate_log_value(log_value: Tensor, num_categories: int) -> None:
    """Raise ``ValueError`` unless ``log_value`` holds logs of points of the K-simplex."""
    if log_value.dim() < 1 or log_value.shape[-1] != num_categories:
        raise ValueError(
            f"log_value must have shape (..., {num_categories}), got {tuple(log_value.shape)}"
        )
    if not bool(log_simplex.check(log_value).all()):
        raise ValueError(
            "log_value must be the log of a point of the simplex (entries <= 0, logsumexp 0)"
        )


class _OpenSubSimplex(constraints.Constraint):
    """Vectors with positive entries summing to less than one (event_dim 1)."""

    event_dim = 1

    def check(self, value: Tensor) -> Tensor:
        return (value > 0).all(-1) & (value.sum(-1) < 1)


open_sub_simplex = _OpenSubSimplex()


class SoftmaxPlusPlusTransform(Transform):
    r"""softmax++ with temperature: :math:`\mathbb{R}^{K-1} \to \Delta^{K-1}` (interior).

    .. math::
        z_k = \frac{e^{\lambda_k/\tau}}{\sum_{j<K} e^{\lambda_j/\tau} + \delta}\ (k < K),\qquad
        z_K = \frac{\delta}{\sum_{j<K} e^{\lambda_j/\tau} + \delta},

    computed as :math:`\log z = (\lambda/\tau, \log\delta) - \operatorname{logsumexp}(\lambda/\tau,
    \log\delta)`. The inverse is :math:`\lambda_k = \tau(\log z_k - \log z_K + \log\delta)` and

    .. math::
        \log\left|\det \frac{\partial z_{1:K-1}}{\partial \lambda}\right|
            = -(K-1)\log\tau + \sum_{k=1}^{K} \log z_k,

    evaluated from :math:`\lambda` (never from :math:`\log z` of an underflowed :math:`z`).

    Args:
        temperature: :math:`\tau > 0`, a float or a tensor broadcastable with the batch shape of the
            inputs (without their last axis).
        delta: :math:`\delta > 0`, likewise.
        cache_size: torch's transform cache (1 keeps the last ``(x, y)`` pair).

    References:
        Potapczynski, Loaiza-Ganem, Cunningham. Invertible Gaussian Reparameterization: Revisiting
        the Gumbel-Softmax. NeurIPS 2020.

    Example:
        >>> t = SoftmaxPlusPlusTransform(0.5)
        >>> lam = torch.tensor([0.3, -1.0])
        >>> z = t(lam)
        >>> bool((z.sum() - 1).abs() < 1e-6)
        True
        >>> torch.allclose(t.inv(z.clone()), lam, atol=1e-5)
        True
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.simplex
    bijective = True

    def __init__(
        self, temperature: float | Tensor, delta: float | Tensor = 1.0, cache_size: int = 1
    ) -> None:
        super().__init__(cache_size=cache_size)
        self.temperature = _as_tensor("temperature", temperature)
        like = self.temperature
        self.delta = _as_tensor("delta", delta, like)
        self._log_z_cache: tuple[Tensor, Tensor] | None = None

    def with_cache(self, cache_size: int = 1) -> SoftmaxPlusPlusTransform:
        if self._cache_size == cache_size:
            return self
        return SoftmaxPlusPlusTransform(self.temperature, self.delta, cache_size=cache_size)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SoftmaxPlusPlusTransform)
            and _same(self.temperature, other.temperature)
            and _same(self.delta, other.delta)
        )

    def _scaled(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(lam / tau, log z)`` for inputs ``lam`` of shape ``(..., K-1)``."""
        tau = self.temperature.to(x.dtype).unsqueeze(-1)
        log_delta = self.delta.to(x.dtype).log().unsqueeze(-1)
        scaled = x / tau
        padded = torch.cat((scaled, log_delta.expand((*scaled.shape[:-1], 1))), dim=-1)
        return scaled, padded.log_softmax(dim=-1)

    def log_z(self, x: Tensor) -> Tensor:
        r"""Return :math:`\log z` for pre-images ``x`` without computing :math:`z` first.

        For the input of the last forward call it is the value that call computed (no recompute).
        """
        cache = self._log_z_cache
        if cache is not None and cache[0] is x:
            return cache[1]
        return self._scaled(x)[1]

    def _call(self, x: Tensor) -> Tensor:
        log_z = self._scaled(x)[1]
        if self._cache_size:
            self._log_z_cache = (x, log_z)
        return log_z.exp()

    def _inverse(self, y: Tensor) -> Tensor:
        return self.inverse_from_log(y.log())

    def inverse_from_log(self, log_y: Tensor) -> Tensor:
        r"""Return :math:`\lambda` from :math:`\log z` (no underflow at low temperature)."""
        tau = self.temperature.to(log_y.dtype).unsqueeze(-1)
        log_delta = self.delta.to(log_y.dtype).log().unsqueeze(-1)
        return tau * (log_y[..., :-1] - log_y[..., -1:] + log_delta)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.log_abs_det_jacobian_from_log(self.log_z(x))

    def log_abs_det_jacobian_from_log(self, log_y: Tensor) -> Tensor:
        """The log-Jacobian determinant given :math:`\\log z` of shape ``(..., K)``."""
        k = log_y.shape[-1]
        return log_y.sum(-1) - (k - 1) * self.temperature.to(log_y.dtype).log()

    def forward_shape(self, shape: torch.Size | tuple[int, ...]) -> torch.Size:
        if len(shape) < 1:
            raise ValueError("SoftmaxPlusPlusTransform needs inputs of shape (..., K-1)")
        return torch.Size((*shape[:-1], shape[-1] + 1))

    def inverse_shape(self, shape: torch.Size | tuple[int, ...]) -> torch.Size:
        if len(shape) < 1 or shape[-1] < 2:
            raise ValueError("SoftmaxPlusPlusTransform needs values of shape (..., K), K >= 2")
        return torch.Size((*shape[:-1], shape[-1] - 1))


class StickBreakingTransform(Transform):
    r"""Sigmoid stick-breaking, the IGR-SB map before softmax++.

    .. math::
        \eta = \sigma(\kappa),\qquad \pi_k = \eta_k \prod_{j<k} (1 - \eta_j),\qquad
        \log\left|\det\frac{\partial\pi}{\partial\kappa}\right| = \sum_{k} \Big[\log\eta_k
            + \log(1-\eta_k) + \sum_{j<k}\log(1-\eta_j)\Big].

    Everything is computed from :math:`\log\sigma(\pm\kappa)`; the inverse is
    :math:`\kappa_k = \log\pi_k - \log(1 - \sum_{j\le k}\pi_j)`. Unlike torch's
    ``StickBreakingTransform`` the output keeps the dimension (the remainder
    :math:`1 - \sum_k \pi_k` is not appended).

    References:
        Potapczynski, Loaiza-Ganem, Cunningham. Invertible Gaussian Reparameterization.
        NeurIPS 2020.

    Example:
        >>> t = StickBreakingTransform()
        >>> kappa = torch.tensor([0.0, 0.0])
        >>> t(kappa)
        tensor([0.5000, 0.2500])
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = open_sub_simplex
    bijective = True

    def __init__(self, cache_size: int = 1) -> None:
        super().__init__(cache_size=cache_size)

    def with_cache(self, cache_size: int = 1) -> StickBreakingTransform:
        if self._cache_size == cache_size:
            return self
        return StickBreakingTransform(cache_size=cache_size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StickBreakingTransform)

    @staticmethod
    def log_sticks(x: Tensor) -> tuple[Tensor, Tensor]:
        r"""Return ``(log pi, log(1 - eta))`` for ``kappa = x``."""
        log_rest = F.logsigmoid(-x)
        before = log_rest.cumsum(-1) - log_rest  # exclusive cumulative sum
        return F.logsigmoid(x) + before, log_rest

    def _call(self, x: Tensor) -> Tensor:
        return self.log_sticks(x)[0].exp()

    def _inverse(self, y: Tensor) -> Tensor:
        remaining = (1 - y.cumsum(-1)).clamp_min(torch.finfo(y.dtype).tiny)
        return y.log() - remaining.log()

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        log_pi, log_rest = self.log_sticks(x)
        return log_pi.sum(-1) + log_rest.sum(-1)


class PlanarTransform(Transform):
    r"""Planar flow :math:`f(x) = x + \hat u \tanh(w^\top x + b)` along the last axis.

    With :math:`m(a) = -1 + \operatorname{softplus}(a)`, the constrained vector

    .. math::
        \hat u = u + \big(m(w^\top u) - w^\top u\big) \frac{w}{\lVert w\rVert^2}

    has :math:`w^\top\hat u = m(w^\top u) > -1`, which makes :math:`f` invertible (dividing by
    :math:`\lVert w\rVert` instead, as the IGR reference code does, guarantees this only when
    :math:`\lVert w\rVert = 1`). The log-determinant is
    :math:`\log(1 + (1 - \tanh^2(w^\top x + b))\, w^\top\hat u)`. There is no closed-form inverse:
    values that were just computed come from the cache; other values are inverted by solving the
    monotone scalar equation :math:`w^\top y = \alpha + w^\top\hat u \tanh(\alpha + b)` for
    :math:`\alpha = w^\top x` (safeguarded Newton, then one differentiable Newton step so that
    gradients are those of the exact inverse).

    Args:
        u: shape ``(..., D)``.
        w: shape ``(..., D)``.
        b: shape ``(...)`` (broadcastable with the batch shape).
        cache_size: torch's transform cache.

    References:
        Rezende, Mohamed. Variational Inference with Normalizing Flows. ICML 2015, appendix A.1.

    Example:
        >>> u, w = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 1.0])
        >>> t = PlanarTransform(u, w, torch.tensor(0.1))
        >>> x = torch.tensor([0.5, -0.2])
        >>> torch.allclose(t.inv(t(x).clone()), x, atol=1e-5)
        True
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True

    def __init__(self, u: Tensor, w: Tensor, b: Tensor, cache_size: int = 1) -> None:
        super().__init__(cache_size=cache_size)
        for name, value in (("u", u), ("w", w), ("b", b)):
            check_floating(name, value)
        if u.dim() < 1 or w.dim() < 1 or u.shape[-1] != w.shape[-1]:
            raise ValueError(
                f"u and w must have shape (..., D) with the same D, got {tuple(u.shape)} and "
                f"{tuple(w.shape)}"
            )
        self.u, self.w, self.b = u, w, b

    def with_cache(self, cache_size: int = 1) -> PlanarTransform:
        if self._cache_size == cache_size:
            return self
        return PlanarTransform(self.u, self.w, self.b, cache_size=cache_size)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PlanarTransform)
            and _same(self.u, other.u)
            and _same(self.w, other.w)
            and _same(self.b, other.b)
        )

    def _params(self) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(u_hat, w, w^T u_hat)``."""
        u, w = self.u, self.w
        wu = (w * u).sum(-1, keepdim=True)
        norm2 = (w * w).sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
        m = F.softplus(wu) - 1
        u_hat = u + (m - wu) * w / norm2
        return u_hat, w, m

    def _call(self, x: Tensor) -> Tensor:
        u_hat, w, _ = self._params()
        return x + u_hat * torch.tanh((w * x).sum(-1, keepdim=True) + self.b.unsqueeze(-1))

    def _inverse(self, y: Tensor) -> Tensor:
        u_hat, w, m = self._params()
        b = self.b.unsqueeze(-1)
        target = (w * y).sum(-1, keepdim=True)
        with torch.no_grad():
            t0, m0, b0 = target.detach(), m.detach(), b.detach()
            span = m0.abs()
            lo, hi = t0 - span, t0 + span  # |alpha - w^T y| <= |w^T u_hat|
            alpha = t0.clone()
            tol = 4 * torch.finfo(y.dtype).eps * (1 + t0.abs() + span)
            for i in range(100):
                th = torch.tanh(alpha + b0)
                g = alpha + m0 * th - t0
                if i % 8 == 7 and bool((g.abs() <= tol).all()):
                    break
                lo = torch.where(g < 0, alpha, lo)
                hi = torch.where(g > 0, alpha, hi)
                step = alpha - g / (1 + m0 * (1 - th * th))
                inside = (step > lo) & (step < hi)
                alpha = torch.where(inside, step, (lo + hi) / 2)
        # one Newton step with gradients: exact implicit derivatives at the fixed point
        th = torch.tanh(alpha + b)
        alpha = alpha - (alpha + m * th - target) / (1 + m * (1 - th * th))
        return y - u_hat * torch.tanh(alpha + b)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        _, w, m = self._params()
        th = torch.tanh((w * x).sum(-1) + self.b)
        return torch.log1p((1 - th * th) * m.squeeze(-1))


def _same(a: Tensor, b: Tensor) -> bool:
    """Whether two parameter tensors are the same object or equal after broadcasting."""
    if a is b:
        return True
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        return False
    return bool(torch.equal(a.detach().expand(shape), b.detach().to(a.dtype).expand(shape)))
