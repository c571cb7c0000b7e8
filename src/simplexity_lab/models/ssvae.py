r"""Semi-supervised VAE (Kingma et al. 2014, "M2") with the class marginalized exactly over the
support of a sparse normalizer, or sampled with Gumbel-softmax as a Monte Carlo baseline.

Networks: classifier :math:`q(y \mid x)` = MLP ``[D → 256 → 256 → 256 → C]`` followed by the
chosen normalizer; Gaussian encoder :math:`q(z \mid x, y)` = MLP ``[D + C → 256 → 2 d]``; decoder
:math:`p(x \mid y, z)` = MLP ``[C + d → 256 → D]`` (Bernoulli logits); priors :math:`p(y)` uniform,
:math:`p(z) = \mathcal N(0, I)`. With :math:`f(x, y) = -\mathbb E_{q(z \mid x, y)} \log p(x \mid
y, z) + \mathrm{KL}(q(z \mid x, y) \,\|\, p(z))` (one reparameterized sample), the unlabelled loss is

.. math::
    \mathcal U(x) = \sum_{y:\, q(y \mid x) > 0} q(y \mid x)\, f(x, y)
        + \mathrm{KL}(q(y \mid x) \,\|\, \mathcal U\{1..C\}),

computed exactly with one decoder call per class in the support ("decoder calls" = mean support
size; 10 for softmax). The weights are the *exact* normalizer (ev-softmax with ε = 0), whose
Jacobian is the softmax Jacobian restricted to the support; the classification term of the
labelled loss uses the normalizer's training loss (ev-softmax's ε-form NLL, the Fenchel–Young
losses of sparsemax and entmax), so every logit gets a gradient there. Labelled loss:
:math:`f(x, y) + \alpha\, \ell(q(\cdot \mid x), y)`.

Monte Carlo baselines (``"gumbel"``, ``"st_gumbel"``): :math:`q(y \mid x)` = softmax, one
Gumbel-softmax sample :math:`\tilde y` (relaxed or straight-through one-hot) replaces the sum,
:math:`\mathcal U(x) \approx f(x, \tilde y) + \mathrm{KL}(q \,\|\, \mathcal U)` — one decoder call.

References:
    Kingma, Rezende, Mohamed and Welling, *Semi-supervised Learning with Deep Generative
    Models*, NeurIPS 2014. Correia, Niculae, Aziz and Martins, *Efficient Marginalization of
    Discrete and Structured Latent Variables via Sparsity*, NeurIPS 2020. Chen et al.,
    *Evidential Softmax for Sparse Multimodal Distributions in Deep Generative Models*,
    NeurIPS 2021.

Example:
    >>> model = SemiSupervisedVAE(16, method="sparsemax")
    >>> x = torch.rand(4, 16)
    >>> loss, logs = model.unlabelled_loss(x)
    >>> bool(1 <= logs["decoder_calls"] <= 10)
    True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from simplexity import normalizers
from simplexity.distributions.gumbel_softmax import GumbelSoftmax
from simplexity.nn import MLP

__all__ = ["MONTE_CARLO", "SemiSupervisedVAE", "methods"]

MONTE_CARLO = ("gumbel", "st_gumbel")
"""Methods that sample the class with Gumbel-softmax instead of summing over a support."""


def methods() -> list[str]:
    """Every accepted ``method``: the normalizers of bare logits and the Monte Carlo baselines.

    The post-hoc evidential normalizer is left out: it filters a linear layer by its weights.
    """
    bare = [name for name in normalizers.names() if not normalizers.get(name).posthoc_evidential]
    return [*bare, *MONTE_CARLO]


class SemiSupervisedVAE(nn.Module):
    """M2 with a class latent marginalized over the normalizer's support (or sampled).

    Args:
        input_dim: flattened input size D.
        method: a normalizer name, ``"gumbel"`` or ``"st_gumbel"``.
        num_classes: C.
        latent_dim: Gaussian latent size d.
        hidden: hidden width of every network.
        temperature: Gumbel-softmax temperature of the Monte Carlo baselines.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        method: str = "ev_softmax",
        num_classes: int = 10,
        latent_dim: int = 8,
        hidden: int = 256,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if method not in methods():
            raise ValueError(f"unknown method {method!r}; expected one of {', '.join(methods())}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.method = method
        self.monte_carlo = method in MONTE_CARLO
        self.normalizer = normalizers.get("softmax" if self.monte_carlo else method)
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.temperature = float(temperature)
        self.classifier = MLP(input_dim, num_classes, (hidden,) * 3, activation=nn.ReLU)
        self.encoder = MLP(input_dim + num_classes, 2 * latent_dim, (hidden,), activation=nn.ReLU)
        self.decoder = MLP(num_classes + latent_dim, input_dim, (hidden,), activation=nn.ReLU)

    def class_probs(self, x: Tensor) -> Tensor:
        r"""Exact :math:`q(y \mid x)` (ev-softmax with ε = 0), shape ``(B, C)``."""
        return self.normalizer(self.classifier(x), -1)

    def _f(self, x: Tensor, y: Tensor) -> Tensor:
        """Negative single-sample ELBO of ``(x, y)`` given the class (one-hot or relaxed) ``y``."""
        mean, log_std = self.encoder(torch.cat([x, y], -1)).chunk(2, -1)
        log_std = log_std.clamp(-10.0, 5.0)
        z = mean + log_std.exp() * torch.randn_like(mean)
        logits = self.decoder(torch.cat([y, z], -1))
        rec = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl_z = 0.5 * (mean.square() + (2 * log_std).exp() - 1 - 2 * log_std).sum(-1)
        return rec + kl_z

    def labelled_loss(self, x: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean over the batch of :math:`f(x, y) + α ℓ(q(·|x), y)`."""
        one_hot = nn.functional.one_hot(y, self.num_classes).to(x.dtype)
        f = self._f(x, one_hot)
        clf = self.normalizer.loss(self.classifier(x), y, reduction="none")
        loss = (f + alpha * clf).mean()
        return loss, {"labelled_f": f.mean().detach(), "classification": clf.mean().detach()}

    def unlabelled_loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean over the batch of :math:`\\mathcal U(x)` and the mean number of decoder calls."""
        logits = self.classifier(x)
        batch = x.shape[0]
        if self.monte_carlo:
            q = torch.softmax(logits, -1)
            y = GumbelSoftmax(
                torch.as_tensor(self.temperature, dtype=x.dtype),
                logits=logits,
                straight_through=self.method == "st_gumbel",
            ).rsample()
            expected = self._f(x, y)
            calls = torch.tensor(1.0)
        else:
            q = self.normalizer(logits, -1)
            rows, classes = (q > 0).nonzero(as_tuple=True)
            one_hot = nn.functional.one_hot(classes, self.num_classes).to(x.dtype)
            f = self._f(x[rows], one_hot)
            weighted = q[rows, classes] * f
            expected = torch.zeros(batch, dtype=x.dtype).index_add(0, rows, weighted)
            calls = torch.tensor(len(rows) / batch)
        # KL(q || uniform) = sum q log q + log C, with 0 log 0 = 0
        neg_entropy = torch.where(q > 0, q * q.clamp_min(torch.finfo(q.dtype).tiny).log(), 0.0)
        kl_y = neg_entropy.sum(-1) + math.log(self.num_classes)
        loss = (expected + kl_y).mean()
        return loss, {"unlabelled": loss.detach(), "decoder_calls": calls}
