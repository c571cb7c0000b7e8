r"""KL divergences of the relaxed categorical distributions, registered with ``@register_kl``.

Closed form only where it holds: two IGR distributions that push their Gaussians through the *same*
invertible map (same class, temperature, delta and flows) have

.. math::
    \mathrm{KL}(q \,\|\, p) = \sum_{k=1}^{K-1} \mathrm{KL}\big(\mathcal{N}(\mu_k, \sigma_k^2)
        \,\|\, \mathcal{N}(\mu_{0,k}, \sigma_{0,k}^2)\big),

because the Jacobians cancel. Every other pair (different temperatures or deltas, planar flows that
differ, Gumbel-softmax pairs, mixed families) raises :class:`NoClosedFormKLError`, a ``ValueError``
(and ``NotImplementedError``, torch's convention) that points to :func:`monte_carlo_kl`.

The straight-through family of :mod:`~simplexity.distributions.straight_through` are categoricals,
so their KL to a ``OneHotCategorical`` or ``Categorical`` prior is the categorical one,
:math:`\sum_k q_k(\log q_k - \log p_k)`, exact.

Importing :mod:`simplexity.distributions` registers these.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import (
    Categorical,
    Distribution,
    OneHotCategorical,
    kl_divergence,
    register_kl,
)

from simplexity._checks import check_int
from simplexity.distributions.gumbel_softmax import ExpGumbelSoftmax, GumbelSoftmax
from simplexity.distributions.igr import IGRBase
from simplexity.distributions.straight_through import OneHotSurrogate

__all__ = ["NoClosedFormKLError", "monte_carlo_kl"]


class NoClosedFormKLError(ValueError, NotImplementedError):
    """Raised by ``kl_divergence`` where no closed form holds; use :func:`monte_carlo_kl`."""


def _no_closed_form(q: Distribution, p: Distribution, why: str) -> NoClosedFormKLError:
    return NoClosedFormKLError(
        f"kl_divergence({type(q).__name__}, {type(p).__name__}) has no closed form: {why}. "
        "Estimate it with simplexity.distributions.monte_carlo_kl(q, p, num_samples)."
    )


@register_kl(IGRBase, IGRBase)
def _kl_igr_igr(q: IGRBase, p: IGRBase) -> Tensor:
    if type(q) is not type(p):
        raise _no_closed_form(q, p, "the two distributions use different maps")
    if not q.same_map(p):
        raise _no_closed_form(
            q, p, "the closed form needs the same temperature, delta and flows in q and p"
        )
    return kl_divergence(q.gaussian, p.gaussian)


def _raise_no_closed_form(q: Distribution, p: Distribution) -> Tensor:
    raise _no_closed_form(q, p, "the Gumbel-softmax density has no closed-form KL")


for _pair in (
    (GumbelSoftmax, GumbelSoftmax),
    (ExpGumbelSoftmax, ExpGumbelSoftmax),
    (GumbelSoftmax, IGRBase),
    (IGRBase, GumbelSoftmax),
):
    register_kl(*_pair)(_raise_no_closed_form)


def _categorical_kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """KL(Cat(p) || Cat(q)) from normalized logits: 0 log 0 = 0, +inf where q = 0 < p."""
    p_probs = p_logits.exp()
    support = p_probs > 0
    # the masked entries are replaced before the product so that no NaN reaches the gradient
    diff = torch.where(support, p_logits, torch.zeros_like(p_logits)) - torch.where(
        support, q_logits, torch.zeros_like(q_logits)
    )
    return (p_probs * diff).sum(-1)


# The straight-through family (straight_through.py) are categoricals: their KL to a categorical
# prior is the categorical KL, in closed form and exact (gradient included).
@register_kl(OneHotSurrogate, OneHotCategorical)
def _kl_surrogate_one_hot(q: OneHotSurrogate, p: OneHotCategorical) -> Tensor:
    return _categorical_kl(q.logits, p.logits)


@register_kl(OneHotSurrogate, Categorical)
def _kl_surrogate_categorical(q: OneHotSurrogate, p: Categorical) -> Tensor:
    if q.event_shape[-1] != p.param_shape[-1]:
        raise ValueError(f"q has {q.event_shape[-1]} categories but p has {p.param_shape[-1]}")
    return _categorical_kl(q.logits, p.logits)


def _has_log_space(d: Any) -> bool:
    return hasattr(d, "rsample_log") and hasattr(d, "log_prob_from_log")


def monte_carlo_kl(q: Distribution, p: Distribution, num_samples: int = 1) -> Tensor:
    r"""Reparameterized Monte Carlo estimate of :math:`\mathrm{KL}(q\,\|\,p)`.

    .. math::
        \widehat{\mathrm{KL}} = \frac{1}{S}\sum_{s=1}^S \log q(z_s) - \log p(z_s),\qquad
        z_s \sim q,

    unbiased, differentiable through ``rsample``. For the distributions of this package (Gumbel-
    softmax and the IGR family) both densities are evaluated from :math:`\log z`, so the estimate
    stays finite at low temperature where entries of :math:`z` underflow. Any other pair needs
    ``rsample`` (or ``sample``) and ``log_prob``.

    Args:
        q: the distribution sampled from.
        p: the other distribution, with the same event shape.
        num_samples: number of samples :math:`S` (averaged over).

    Returns:
        The estimate, of shape ``broadcast(q.batch_shape, p.batch_shape)``.

    Example:
        >>> from simplexity.distributions import GumbelSoftmax
        >>> q = GumbelSoftmax(0.5, logits=torch.tensor([1.0, 0.0, -1.0]))
        >>> p = GumbelSoftmax(0.5, logits=torch.zeros(3))
        >>> monte_carlo_kl(q, p, num_samples=100).shape
        torch.Size([])
    """
    check_int("num_samples", num_samples, min=1)
    for name, d in (("q", q), ("p", p)):
        if not isinstance(d, Distribution):
            raise TypeError(f"{name} must be a torch Distribution, got {type(d).__name__}")
    if q.event_shape != p.event_shape:
        raise ValueError(
            f"q and p must have the same event shape, got {tuple(q.event_shape)} and "
            f"{tuple(p.event_shape)}"
        )
    shape = torch.Size((num_samples,))
    if _has_log_space(q) and _has_log_space(p):
        z, log_z = q.rsample_log(shape)  # type: ignore[attr-defined]
        log_q = q.log_prob(z)  # exact at its own sample (cached pre-image)
        log_p = p.log_prob_from_log(log_z)  # type: ignore[attr-defined]
    else:
        z = q.rsample(shape) if q.has_rsample else q.sample(shape)
        log_q, log_p = q.log_prob(z), p.log_prob(z)
    return (log_q - log_p).mean(0)
