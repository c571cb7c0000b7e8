r"""Post-hoc evidential sparsification of a trained linear-softmax layer (Itkina et al. 2020).

A linear layer with logits :math:`v_k = \sum_j \beta_{jk}\phi_j + \beta_{0k}` is read, after Denœux (2019),
as a combination of simple mass functions: feature :math:`j` gives class :math:`k` the weight of evidence

.. math::

    w_{jk} = \beta_{jk}\phi_j + \alpha_{jk}, \qquad
    \alpha_{jk} = \tfrac1J\Big(\beta_{0k} + \sum_{q} \beta_{qk}\mu_q\Big) - \beta_{jk}\mu_j ,

with :math:`\beta` centred over the classes and :math:`\mu_j` the training mean of feature :math:`j`
(the least-committed choice of :math:`\alpha`). Positive and negative evidence
:math:`w_k^\pm = \sum_j \max(0, \pm w_{jk})` give, by Dempster's rule, the singleton masses

.. math::

    m(\{\theta_k\}) \propto e^{-w_k^-}\Big(e^{w_k^+} - 1 + \prod_{l\ne k}\big(1 - e^{-w_l^-}\big)\Big),

and the normalized plausibilities of the singletons are exactly the softmax of the logits. The post-hoc
filter keeps class :math:`k` iff :math:`m(\{\theta_k\}) > 0` and renormalizes the softmax over the kept
classes. Because :math:`\sum_j w_{jk} = v_k - \bar v`, every class above the mean has positive evidence:
the filter's support contains ev-softmax's, and with a single feature (:math:`J = 1`) the two coincide with
probability one (Theorem 3.1 of the ev-softmax paper). With :math:`J > 1` a class below the mean that gets
positive evidence from one feature is kept.

References:
    Denœux. "Logistic regression, neural networks and Dempster–Shafer theory: a new perspective",
    Knowledge-Based Systems 2019.
    Itkina, Ivanovic, Senanayake, Kochenderfer, Pavone. "Evidential Sparsification of Multimodal Latent
    Spaces in Conditional Variational Autoencoders", NeurIPS 2020.
"""

from __future__ import annotations

import torch
from torch import Tensor

from simplexity._checks import check_floating

__all__ = ["evidence_weights", "evidential_support", "posthoc_evidential", "singleton_log_masses"]


def _check(
    features: Tensor, weight: Tensor, bias: Tensor | None, feature_mean: Tensor | None
) -> None:
    check_floating("features", features)
    check_floating("weight", weight)
    if weight.dim() != 2:
        raise ValueError(
            f"weight must have shape (K, J) like nn.Linear.weight, got {tuple(weight.shape)}"
        )
    num_classes, num_features = weight.shape
    if features.dim() < 1 or features.shape[-1] != num_features:
        raise ValueError(
            f"features must have shape (..., J) with J = {num_features} (weight's second dimension), "
            f"got {tuple(features.shape)}"
        )
    if bias is not None and (check_floating("bias", bias).shape != (num_classes,)):
        raise ValueError(f"bias must have shape ({num_classes},), got {tuple(bias.shape)}")
    if feature_mean is not None and check_floating("feature_mean", feature_mean).shape != (
        num_features,
    ):
        raise ValueError(
            f"feature_mean must have shape ({num_features},), got {tuple(feature_mean.shape)}"
        )


def evidence_weights(
    features: Tensor, weight: Tensor, bias: Tensor | None = None, feature_mean: Tensor | None = None
) -> Tensor:
    r"""Weights of evidence :math:`w_{jk}` of shape (..., J, K) for a linear layer ``(weight, bias)``.

    Args:
        features: last-layer inputs :math:`\phi`, shape (..., J).
        weight: the layer's weight (K, J), as in ``nn.Linear``.
        bias: the layer's bias (K,), or None.
        feature_mean: the training mean :math:`\mu` of the features (J,); None means 0.

    Their sum over ``j`` is the centred logit :math:`v_k - \bar v`.
    """
    _check(features, weight, bias, feature_mean)
    beta = weight - weight.mean(0, keepdim=True)  # (K, J), centred over classes
    beta0 = torch.zeros_like(beta[:, 0]) if bias is None else bias - bias.mean()
    mu = torch.zeros_like(beta[0]) if feature_mean is None else feature_mean
    num_features = beta.shape[1]
    shared = (beta0 + beta @ mu) / num_features  # (K,)
    centred = features - mu  # (..., J)
    return centred.unsqueeze(-1) * beta.T + shared  # (..., J, K)


def singleton_log_masses(
    features: Tensor, weight: Tensor, bias: Tensor | None = None, feature_mean: Tensor | None = None
) -> Tensor:
    r"""Log of the (normalized) singleton masses :math:`m(\{\theta_k\})`, shape (..., K); ``-inf`` = no mass."""
    w = evidence_weights(features, weight, bias, feature_mean)
    w_pos = w.clamp_min(0).sum(-2)
    w_neg = (-w).clamp_min(0).sum(-2)
    # log prod_{l != k} (1 - e^{-w_l^-}), with exact -inf when another class has no negative evidence
    log_one_minus = torch.log(-torch.expm1(-w_neg))  # -inf where w_neg == 0
    zero = w_neg == 0
    finite = torch.where(zero, 0.0, log_one_minus)
    others = finite.sum(-1, keepdim=True) - finite
    others_zero = (zero.sum(-1, keepdim=True) - zero.long()) > 0
    log_prod = torch.where(others_zero, -torch.inf, others)
    log_excess = torch.log(torch.expm1(w_pos))  # log(e^{w+} - 1), -inf where w_pos == 0
    log_mass = -w_neg + torch.logaddexp(log_excess, log_prod)
    return log_mass - torch.logsumexp(log_mass, -1, keepdim=True)


def evidential_support(
    features: Tensor, weight: Tensor, bias: Tensor | None = None, feature_mean: Tensor | None = None
) -> Tensor:
    r"""Boolean mask (..., K) of the classes with nonzero singleton mass (exact, by cases).

    :math:`m(\{\theta_k\}) > 0` iff :math:`w_k^+ > 0` or every other class has negative evidence. A row
    whose evidence is vacuous (all weights 0, e.g. equal logits from zero features) keeps every class.
    """
    w = evidence_weights(features, weight, bias, feature_mean)
    has_pos = (w > 0).any(-2)
    no_neg = ~(w < 0).any(-2)
    others_no_neg = (no_neg.sum(-1, keepdim=True) - no_neg.long()) > 0
    keep = has_pos | ~others_no_neg
    # A vacuous body of evidence (every w_jk = 0) puts no mass on any singleton: keep every class.
    return keep | ~keep.any(-1, keepdim=True)


def posthoc_evidential(
    features: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    feature_mean: Tensor | None = None,
) -> Tensor:
    r"""The filtered distribution: the layer's softmax restricted to :func:`evidential_support`.

    .. math:: p_k \propto \mathbb 1\{m(\{\theta_k\}) > 0\}\; \operatorname{softmax}(v)_k

    Example:
        >>> layer = torch.nn.Linear(1, 4)
        >>> phi = torch.tensor([[1.0]])
        >>> p = posthoc_evidential(phi, layer.weight, layer.bias)
        >>> bool(torch.isclose(p.sum(), torch.tensor(1.0)))
        True
    """
    _check(features, weight, bias, feature_mean)
    logits = torch.nn.functional.linear(features, weight, bias)
    keep = evidential_support(features, weight, bias, feature_mean)
    return torch.softmax(logits.masked_fill(~keep, -torch.inf), -1)
