r"""Zero-temperature limits of the relaxations as :class:`torch.distributions.Categorical`, and the
uniform IGR-I prior.

As :math:`\tau \to 0` a Gumbel-softmax sample becomes ``one_hot(argmax(l + g))``, so its limit is
``Categorical(logits=l)``. An IGR sample becomes :math:`e_{\arg\max\lambda}` if
:math:`\max_k \lambda_k > 0` and :math:`e_K` otherwise (whatever :math:`\delta`); for IGR-I this pmf
is a one-dimensional integral (computed by quadrature), for the other variants it is estimated from
samples.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution
from torch.special import log_ndtr, ndtri

from simplexity._checks import check_floating, check_int, check_positive
from simplexity.distributions.gumbel_softmax import ExpGumbelSoftmax, GumbelSoftmax
from simplexity.distributions.igr import IGR, IGRBase

__all__ = [
    "igr_uniform_prior",
    "igr_uniform_prior_loc",
    "igr_zero_temperature_probs",
    "zero_temperature_limit",
]


def igr_zero_temperature_probs(loc: Tensor, scale: Tensor, num_nodes: int = 256) -> Tensor:
    r"""The :math:`\tau \to 0` pmf of IGR-I, by Gauss–Legendre quadrature.

    .. math::
        P(H = K) = \prod_{j<K} \Phi(-\mu_j/\sigma_j),\qquad
        P(H = k) = \int_0^\infty \mathcal{N}(t; \mu_k, \sigma_k^2)
            \prod_{j \ne k,\, j<K} \Phi\Big(\frac{t - \mu_j}{\sigma_j}\Big)\, dt.

    The integral is taken in :math:`u = \Phi((t - \mu_k)/\sigma_k) \in (\Phi(-\mu_k/\sigma_k), 1)`
    (its nodes placed from :math:`u = 1`, so that far-negative :math:`\mu_k/\sigma_k` stay accurate),
    where the integrand is a product of normal CDFs bounded by 1. Computed in float64 and returned
    in the dtype of ``loc``; differentiable in ``loc`` and ``scale``.

    Args:
        loc: :math:`\mu`, shape ``(..., K-1)``.
        scale: :math:`\sigma > 0`, broadcastable with ``loc``.
        num_nodes: number of quadrature nodes.

    Returns:
        Probabilities of shape ``(..., K)``.

    Example:
        >>> p = igr_zero_temperature_probs(torch.zeros(1), torch.ones(1))
        >>> p
        tensor([0.5000, 0.5000])
    """
    check_floating("loc", loc)
    check_floating("scale", scale)
    loc, scale = torch.broadcast_tensors(loc, scale)
    dtype = loc.dtype
    mu, sigma = loc.to(torch.float64), scale.to(torch.float64)
    x, w = np.polynomial.legendre.leggauss(check_int("num_nodes", num_nodes, min=1))
    x = torch.as_tensor(x, dtype=torch.float64, device=loc.device)
    w = torch.as_tensor(w, dtype=torch.float64, device=loc.device)
    width = log_ndtr(mu / sigma).exp()  # length of the u interval, 1 - Phi(-mu/sigma): (..., K-1)
    # Nodes measured from u = 1 (v = 1 - u in (0, width)), so that a width far below machine
    # epsilon (mu/sigma << 0) keeps its nodes apart and its gradients finite; v is kept above 0
    # (ndtri(0) = -inf). Shape (..., K-1, N).
    v = (width.unsqueeze(-1) * (1 - x) / 2).clamp_min(torch.finfo(torch.float64).tiny)
    t = mu.unsqueeze(-1) - sigma.unsqueeze(-1) * ndtri(v)  # nodes in t for each k
    # log Phi((t_k - mu_j) / sigma_j) for all (k, j): shape (..., K-1, K-1, N)
    z = (t.unsqueeze(-2) - mu.unsqueeze(-2).unsqueeze(-1)) / sigma.unsqueeze(-2).unsqueeze(-1)
    log_cdf = log_ndtr(z)
    eye = torch.eye(mu.shape[-1], dtype=torch.bool, device=loc.device).unsqueeze(-1)
    log_cdf = log_cdf.masked_fill(eye, 0.0)
    integrand = log_cdf.sum(-2).exp()  # (..., K-1, N)
    probs = width * (integrand * w).sum(-1) / 2
    last = log_ndtr(-mu / sigma).sum(-1, keepdim=True).exp()
    return torch.cat((probs, last), dim=-1).to(dtype)


_LIMIT_CHUNK = 128
"""Samples of the Monte Carlo zero-temperature limit drawn at once."""


def _argmax_limit(lam: Tensor) -> Tensor:
    """Category of the zero-temperature limit of softmax++ at ``lam`` of shape ``(..., K-1)``."""
    value, index = lam.max(dim=-1)
    return torch.where(value > 0, index, torch.full_like(index, lam.shape[-1]))


def zero_temperature_limit(dist: Distribution, num_samples: int = 10000) -> Categorical:
    r"""The :math:`\tau \to 0` limit of a relaxation as a :class:`~torch.distributions.Categorical`.

    - :class:`GumbelSoftmax` (and :class:`ExpGumbelSoftmax`): ``Categorical(logits)``, exact.
    - :class:`IGR` (IGR-I): the quadrature of :func:`igr_zero_temperature_probs`, exact up to
      quadrature error.
    - :class:`IGRPlanar`, :class:`IGRStickBreaking`: frequencies of the limit category over
      ``num_samples`` samples of :math:`\lambda = h(\kappa)` (a Monte Carlo estimate, not
      differentiable).

    Example:
        >>> from simplexity.distributions import IGR
        >>> zero_temperature_limit(IGR(torch.zeros(1), torch.ones(1), 0.1)).probs
        tensor([0.5000, 0.5000])
    """
    if isinstance(dist, (GumbelSoftmax, ExpGumbelSoftmax)):
        shape = dist.batch_shape + dist.event_shape
        return Categorical(logits=dist.logits.expand(shape))
    if type(dist) is IGR:
        return Categorical(probs=igr_zero_temperature_probs(dist.loc, dist.scale))
    if isinstance(dist, IGRBase):
        check_int("num_samples", num_samples, min=1)
        loc = dist.loc
        counts = torch.zeros(
            (*dist.batch_shape, dist.num_categories), dtype=loc.dtype, device=loc.device
        )
        with torch.no_grad():
            for start in range(0, num_samples, _LIMIT_CHUNK):  # bounded memory, no one-hot
                lam = dist.gaussian.sample((min(_LIMIT_CHUNK, num_samples - start),))
                for t in dist.maps:
                    lam = t(lam)
                index = _argmax_limit(lam).movedim(0, -1)  # (..., s)
                counts.scatter_add_(
                    -1, index, torch.ones(index.shape, dtype=loc.dtype, device=loc.device)
                )
        return Categorical(probs=counts / num_samples)
    raise TypeError(
        "dist must be a GumbelSoftmax, ExpGumbelSoftmax or IGR-family distribution "
        f"(zero_temperature_limit), got {type(dist).__name__}"
    )


def igr_uniform_prior_loc(num_categories: int, scale: float | Tensor = 1.0) -> float | Tensor:
    r"""The common mean :math:`\mu_0` that makes the zero-temperature limit of IGR-I uniform.

    With all :math:`\mu_j = \mu_0`, :math:`\sigma_j = \sigma_0`, :math:`P(H = K) =
    \Phi(-\mu_0/\sigma_0)^{K-1} = 1/K` and the other categories are exchangeable, so

    .. math::
        \mu_0 = -\sigma_0\, \Phi^{-1}\big(K^{-1/(K-1)}\big)

    (:math:`K = 10`: :math:`\mu_0 \approx -0.753\,\sigma_0`).

    Example:
        >>> round(igr_uniform_prior_loc(10), 3)
        -0.753
    """
    check_int("num_categories", num_categories, min=2)
    quantile = float(
        ndtri(torch.tensor(num_categories ** (-1.0 / (num_categories - 1)), dtype=torch.float64))
    )
    if isinstance(scale, Tensor):
        return -scale * quantile
    check_positive("scale", scale)
    return -float(scale) * quantile


def igr_uniform_prior(
    num_categories: int,
    temperature: float | Tensor,
    scale: float = 1.0,
    delta: float | Tensor = 1.0,
    batch_shape: torch.Size | tuple[int, ...] = (),
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> IGR:
    r"""IGR-I prior whose zero-temperature limit is uniform over the K categories.

    :math:`\kappa \sim \mathcal{N}(\mu_0 \mathbf 1, \sigma_0^2 I)` with :math:`\mu_0` from
    :func:`igr_uniform_prior_loc` (closed form; the IGR reference code instead fits it by SGD).

    Example:
        >>> p = igr_uniform_prior(10, temperature=0.1)
        >>> zero_temperature_limit(p).probs.sub(0.1).abs().max() < 1e-6
        tensor(True)
    """
    check_positive("scale", scale)
    loc0 = igr_uniform_prior_loc(num_categories, scale)
    if isinstance(temperature, Tensor):
        dtype = dtype or temperature.dtype
        device = device or temperature.device
    dtype = dtype or torch.get_default_dtype()
    shape = (*batch_shape, num_categories - 1)
    loc = torch.full(shape, float(loc0), dtype=dtype, device=device)
    scale_t = torch.full(shape, float(scale), dtype=dtype, device=device)
    return IGR(loc, scale_t, temperature, delta)
