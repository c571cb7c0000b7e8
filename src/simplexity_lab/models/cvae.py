r"""The conditional VAE of the ev-softmax paper (Chen et al. 2021): a multimodal prior over latent
classes given a query ``y`` (e.g. even / odd), normalized by any registered normalizer.

Networks (the paper's): posterior :math:`q(z \mid x, y)` = MLP ``[D + C → 256 → L]``, prior
:math:`p(z \mid y)` = MLP ``[C → 30 → L]``, decoder ``[L → 256 → D]`` (Bernoulli logits), where C is
the number of query values and L the number of latent classes (10). Both :math:`q` and :math:`p`
use the chosen normalizer (its training form while training, e.g. ev-softmax's ε-family). The
loss per example is

.. math::
    -\log p(x \mid z) + \beta\, \mathrm{KL}(\tilde q \,\|\, \tilde p),\qquad
    z \sim \mathrm{GumbelSoftmax}(\tau, \log q),

where :math:`\tilde q, \tilde p` add ``kl_smoothing`` to every probability of a sparse normalizer
and renormalize (as the reference code does with 1e-6), so that the KL stays finite where a
sparse map puts exact zeros.

β is explicit: the paper writes the plain ELBO (β = 1); the reference code weights the KL by 0.01
*and* sums the reconstruction over the batch while averaging the KL, i.e. β = 0.01 / batch size per
example.

References:
    Chen, Itkina, Senanayake and Kochenderfer, *Evidential Softmax for Sparse Multimodal
    Distributions in Deep Generative Models*, NeurIPS 2021.

Example:
    >>> cvae = ConditionalVAE(16, normalizer="ev_softmax")
    >>> x, y = torch.rand(4, 16), torch.tensor([0, 1, 0, 1])
    >>> loss, logs = cvae.loss(x, y, temperature=0.67)
    >>> cvae.prior_probs(torch.tensor([0, 1])).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent

from simplexity import normalizers
from simplexity.distributions.gumbel_softmax import GumbelSoftmax
from simplexity.nn import MLP

__all__ = ["ConditionalVAE", "digit_prior_distances"]


class ConditionalVAE(nn.Module):
    """Conditional VAE with a categorical latent and a prior normalized by name.

    Args:
        input_dim: size of the flattened input D.
        num_conditions: number of query values C (2: even / odd).
        num_latent: number of latent classes L.
        normalizer: a name in ``simplexity.normalizers.names()``.
        hidden: hidden size of the posterior and the decoder.
        prior_hidden: hidden size of the prior network.
        kl_smoothing: added to the probabilities of sparse normalizers inside the KL.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        num_conditions: int = 2,
        num_latent: int = 10,
        normalizer: str = "ev_softmax",
        hidden: int = 256,
        prior_hidden: int = 30,
        kl_smoothing: float = 1e-6,
        normalizer_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not kl_smoothing >= 0:
            raise ValueError(f"kl_smoothing must be >= 0, got {kl_smoothing}")
        self.normalizer = normalizers.get(normalizer, **(normalizer_options or {}))
        if self.normalizer.posthoc_evidential:
            raise ValueError(
                f"normalizer {normalizer!r} filters a linear layer by its weights; the CVAE "
                "normalizes bare logits (use NormalizedOutput for the post-hoc evidential filter)"
            )
        self.num_conditions = num_conditions
        self.num_latent = num_latent
        self.kl_smoothing = float(kl_smoothing)
        self.posterior_net = MLP(
            input_dim + num_conditions, num_latent, (hidden,), activation=nn.ReLU
        )
        self.prior_net = MLP(num_conditions, num_latent, (prior_hidden,), activation=nn.ReLU)
        self.decoder = MLP(num_latent, input_dim, (hidden,), activation=nn.ReLU)

    def _condition(self, y: Tensor, like: Tensor) -> Tensor:
        return nn.functional.one_hot(y, self.num_conditions).to(like.dtype)

    def posterior_probs(self, x: Tensor, y: Tensor) -> Tensor:
        r""":math:`q(z \mid x, y)` (training form in training mode)."""
        logits = self.posterior_net(torch.cat([x, self._condition(y, x)], -1))
        return self.normalizer(logits, -1, training=self.training)

    def prior_probs(self, y: Tensor) -> Tensor:
        r""":math:`p(z \mid y)` (training form in training mode)."""
        c = self._condition(y, next(self.prior_net.parameters()))
        return self.normalizer(self.prior_net(c), -1, training=self.training)

    def _smooth(self, p: Tensor) -> Tensor:
        if not self.normalizer.sparse or self.kl_smoothing == 0:
            return p
        p = p + self.kl_smoothing
        return p / p.sum(-1, keepdim=True)

    def decode(self, z: Tensor) -> Tensor:
        """Decoder means (pixel probabilities) for latents ``z`` of shape ``(..., L)``."""
        return torch.sigmoid(self.decoder(z))

    def loss(
        self, x: Tensor, y: Tensor, temperature: float | Tensor, beta: float = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """β-weighted negative ELBO averaged over the batch, and its parts."""
        q = self.posterior_probs(x, y)
        p = self.prior_probs(y)
        qs, ps = self._smooth(q), self._smooth(p)
        tiny = torch.finfo(x.dtype).tiny
        kl = (qs * (qs.clamp_min(tiny).log() - ps.clamp_min(tiny).log())).sum(-1)
        t = torch.as_tensor(temperature, dtype=x.dtype, device=x.device)
        z = GumbelSoftmax(t, logits=q.clamp_min(tiny).log()).rsample()
        rec = -Independent(Bernoulli(logits=self.decoder(z), validate_args=False), 1).log_prob(x)
        loss = (rec + beta * kl).mean()
        return loss, {"loss": loss.detach(), "rec": rec.mean().detach(), "kl": kl.mean().detach()}

    @torch.no_grad()
    def digit_marginal(self, classifier: nn.Module) -> Tensor:
        r""":math:`p(\text{digit} \mid y) = \sum_z p(z \mid y)\, \mathrm{clf}(\text{decode}(e_z))`,
        shape ``(C, num_digits)``, with the exact (evaluation) normalizer."""
        was = self.training
        self.eval()
        try:
            eye = torch.eye(self.num_latent, dtype=next(self.parameters()).dtype)
            digit_given_z = torch.softmax(classifier(self.decode(eye)), -1)  # (L, digits)
            prior = self.prior_probs(torch.arange(self.num_conditions))  # (C, L)
            return prior @ digit_given_z
        finally:
            self.train(was)


def digit_prior_distances(marginal: Tensor, target: Tensor) -> dict[str, Tensor]:
    r"""Distances between the digit marginals and the target priors, per query value.

    Returns:
        ``tv``: total variation :math:`\frac12\sum_k |p_k - t_k|`;
        ``w1``: the 1-D Wasserstein distance with the digits 0–9 as support and the probabilities
        as weights, :math:`\sum_k |F_p(k) - F_t(k)|`;
        ``paper_w1``: the reference code's metric, ``scipy.stats.wasserstein_distance(p, t)``,
        which treats the probabilities as *sample values* (permutation invariant) —
        reported for comparison only.

    Example:
        >>> t = torch.tensor([[0.2, 0, 0.2, 0, 0.2, 0, 0.2, 0, 0.2, 0]])
        >>> wrong = t.roll(1, -1)  # uniform on the odd digits
        >>> {k: round(float(v), 3) for k, v in digit_prior_distances(wrong, t).items()}
        {'tv': 1.0, 'w1': 1.0, 'paper_w1': 0.0}
    """
    tv = 0.5 * (marginal - target).abs().sum(-1)
    w1 = (marginal.cumsum(-1) - target.cumsum(-1)).abs().sum(-1)
    paper = (marginal.sort(-1).values - target.sort(-1).values).abs().mean(-1)
    return {"tv": tv, "w1": w1, "paper_w1": paper}
