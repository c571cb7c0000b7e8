r"""A VAE with discrete latents: N categorical variables with K categories, relaxed for training.

The encoder outputs the raw parameters of a relaxation from the registry
(:mod:`simplexity.distributions.relaxations`: ``"gumbel_softmax"``, ``"gumbel_softmax_st"``,
``"igr_i"``, ``"igr_planar"``, ``"igr_sb"``, and the straight-through family ``"straight_through"``,
``"st_gumbel"``, ``"gumbel_rao"``, ``"reinmax"``, ``"decoupled_st"``, whose samples are already
one-hot and whose KL is the categorical one); ``posterior(x)`` returns :math:`q(z \mid x)` as a
Distribution with batch shape ``(B, N)`` and event shape ``(K,)``. Training maximizes the relaxed
ELBO

.. math::
    \mathcal{L}(x) = \mathbb{E}_{q(z \mid x)}[\log p(x \mid z)] - \beta\,\mathrm{KL}(q(z \mid x)\,\|\,p(z)),

with the KL in closed form where one holds (the IGR family with the same map) and by Monte Carlo
otherwise (the Gumbel-softmax). Evaluation uses the *discrete* model: :math:`h` one-hot, the prior
:math:`p(h)` the zero-temperature limit of :math:`p(z)` (uniform for the Gumbel-softmax and IGR-I
priors), and the importance-weighted bound

.. math::
    \log p(x) \ge \mathbb{E}\Big[\log \frac1S \sum_{s=1}^S
        \frac{p(x \mid h_s)\, p(h_s)}{\pi(h_s \mid x)}\Big],\qquad h_s \sim \pi(h \mid x),

a valid bound for *any* proposal :math:`\pi` that is sampled from and evaluated exactly. Here
:math:`\pi` is the zero-temperature limit of :math:`q` (exact for the Gumbel-softmax, quadrature for
IGR-I, sample frequencies for IGR-Planar and IGR-SB) mixed with 0.1% of the uniform distribution.

References:
    Potapczynski, Loaiza-Ganem and Cunningham, *Invertible Gaussian Reparameterization: Revisiting
    the Gumbel-Softmax*, NeurIPS 2020. Burda, Grosse and Salakhutdinov, *Importance Weighted
    Autoencoders*, ICLR 2016.

Example:
    >>> vae = DiscreteVAE(16, num_variables=3, num_categories=4, relaxation="igr_i", net="linear")
    >>> x = torch.rand(5, 16).round()
    >>> loss, logs = vae.loss(x, temperature=0.5)
    >>> vae.iw_bound(x, num_samples=8).shape
    torch.Size([5])
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    Normal,
    OneHotCategorical,
)

from simplexity._checks import check_int
from simplexity.distributions import (
    NoClosedFormKLError,
    RunningMean,
    igr_zero_temperature_probs,
    monte_carlo_kl,
    relaxations,
    score_function_surrogate,
    zero_temperature_limit,
)
from simplexity.distributions.gumbel_softmax import GumbelSoftmax
from simplexity.distributions.igr import IGR
from simplexity.nn import MLP
from simplexity_lab.models.networks import NETS

__all__ = ["ESTIMATORS", "ONE_HOT_RELAXATIONS", "DiscreteVAE", "check_estimator"]

ESTIMATORS: tuple[str, ...] = ("pathwise", "rloo", "reinforce")
"""How the encoder's gradient is estimated: through the relaxation's ``rsample`` (``"pathwise"``),
or by the score function of ``score_samples`` categorical samples with the leave-one-out baseline
(``"rloo"``) or a running-mean baseline (``"reinforce"``)."""

ONE_HOT_RELAXATIONS: tuple[str, ...] = (
    "straight_through", "st_gumbel", "gumbel_rao", "reinmax", "decoupled_st",
)  # fmt: skip
"""The relaxations whose samples are categorical one-hot vectors with the categorical ``log_prob``:
the posteriors the score-function estimators can use."""


def check_estimator(estimator: str, relaxation: str, score_samples: int) -> None:
    """Raise ``ValueError`` unless ``estimator`` can train with ``relaxation`` and ``score_samples``."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if estimator != "pathwise" and relaxation not in ONE_HOT_RELAXATIONS:
        raise ValueError(
            f"estimator={estimator!r} draws categorical samples: relaxation must be one of "
            f"{', '.join(ONE_HOT_RELAXATIONS)}, got {relaxation!r}"
        )
    check_int("score_samples", score_samples, min=2 if estimator == "rloo" else 1)


class DiscreteVAE(nn.Module):
    r"""Discrete-latent VAE with a relaxation chosen by name.

    Args:
        input_dim: size of the (flattened) input.
        num_variables: N, the number of categorical variables.
        num_categories: K, the categories of each.
        relaxation: a name in ``simplexity.distributions.relaxations.names()``.
        net: ``"linear"`` or ``"nonlinear"`` (:data:`~simplexity_lab.models.networks.NETS`).
        likelihood: ``"bernoulli"`` (inputs in [0, 1]) or ``"gaussian"`` (learned per-pixel scale).
        kl: ``"auto"`` (closed form where it exists, else Monte Carlo), ``"analytic"`` (error if
            none) or ``"mc"``.
        kl_samples: samples of the Monte Carlo KL.
        relaxation_options: keyword options of the relaxation (e.g. ``delta``, ``num_flows``).
        estimator: the encoder's gradient (:data:`ESTIMATORS`): ``"pathwise"`` through the
            relaxation's ``rsample``; ``"rloo"`` or ``"reinforce"``: the score function of
            ``score_samples`` categorical samples
            (:func:`~simplexity.distributions.score_function_surrogate`), for a relaxation of
            :data:`ONE_HOT_RELAXATIONS` (only its categorical ``sample`` and ``log_prob`` are used).
        score_samples: S of the score-function estimators (``"rloo"`` needs S >= 2).
    """

    def __init__(
        self,
        input_dim: int,
        *,
        num_variables: int = 20,
        num_categories: int = 10,
        relaxation: str = "igr_i",
        net: Literal["linear", "nonlinear"] = "nonlinear",
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        kl: Literal["auto", "analytic", "mc"] = "auto",
        kl_samples: int = 1,
        relaxation_options: dict[str, Any] | None = None,
        estimator: Literal["pathwise", "rloo", "reinforce"] = "pathwise",
        score_samples: int = 4,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("input_dim", input_dim, 1),
            ("num_variables", num_variables, 1),
            ("num_categories", num_categories, 2),
            ("kl_samples", kl_samples, 1),
        ):
            check_int(name, value, min=low)
        check_estimator(estimator, relaxation, score_samples)
        self.estimator = estimator
        self.score_samples = score_samples
        # a buffer of the model: saved and restored with its state_dict
        self.baseline = RunningMean() if estimator == "reinforce" else None
        if net not in NETS:
            raise ValueError(f"net must be one of {sorted(NETS)}, got {net!r}")
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        if kl not in ("auto", "analytic", "mc"):
            raise ValueError(f"kl must be 'auto', 'analytic' or 'mc', got {kl!r}")
        self.input_dim = input_dim
        self.num_variables = num_variables
        self.num_categories = num_categories
        self.likelihood_name = likelihood
        self.kl_mode = kl
        self.kl_samples = kl_samples
        self.relaxation = relaxations.get(
            relaxation, num_categories=num_categories, **(relaxation_options or {})
        )
        self.num_params = self.relaxation.num_params(num_categories)
        enc, dec = NETS[net]
        self.encoder = MLP(input_dim, num_variables * self.num_params, enc, activation=nn.ReLU)
        self.decoder = MLP(num_variables * num_categories, input_dim, dec, activation=nn.ReLU)
        if likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(input_dim))
        self._analytic_kl: bool | None = None if kl == "auto" else kl == "analytic"

    # ------------------------------------------------------------------ distributions

    def posterior(self, x: Tensor, temperature: float | Tensor) -> Distribution:
        r""":math:`q(z \mid x)`, batch shape ``(B, N)``, event shape ``(K,)``."""
        raw = self.encoder(x).view(*x.shape[:-1], self.num_variables, self.num_params)
        return self.relaxation(raw, _as_tensor(temperature, raw))

    def prior(self, temperature: float | Tensor, like: Tensor) -> Distribution:
        r"""The relaxed prior :math:`p(z)` (batch shape ``()``; it broadcasts)."""
        t = _as_tensor(temperature, like)
        return self.relaxation.prior(self.num_categories, t, dtype=like.dtype, device=like.device)

    def likelihood(self, z: Tensor) -> Distribution:
        r""":math:`p(x \mid z)` for latents ``z`` of shape ``(..., N, K)``."""
        out = self.decoder(z.flatten(-2))
        if self.likelihood_name == "bernoulli":
            return Independent(Bernoulli(logits=out, validate_args=False), 1)
        scale = nn.functional.softplus(self.log_scale) + 1e-3
        return Independent(Normal(out, scale), 1)

    def mean(self, z: Tensor) -> Tensor:
        """The decoder's mean for latents ``z`` (pixel intensities)."""
        out = self.decoder(z.flatten(-2))
        return torch.sigmoid(out) if self.likelihood_name == "bernoulli" else out

    def kl(self, q: Distribution, p: Distribution) -> Tensor:
        """KL(q || p) per variable, closed form where it exists (see ``kl``)."""
        if self._analytic_kl is None:
            try:
                value = torch.distributions.kl_divergence(q, p)
                self._analytic_kl = True
                return value
            except NoClosedFormKLError:
                self._analytic_kl = False
        if self._analytic_kl:
            return torch.distributions.kl_divergence(q, p)
        return monte_carlo_kl(q, p, self.kl_samples)

    @property
    def analytic_kl(self) -> bool | None:
        """Whether the KL is in closed form (``None`` until the first loss)."""
        return self._analytic_kl

    # ------------------------------------------------------------------------ training

    def loss(
        self, x: Tensor, temperature: float | Tensor, beta: float = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Negative relaxed ELBO (β-weighted KL), averaged over the batch, and its parts."""
        q = self.posterior(x, temperature)
        if self.estimator != "pathwise":
            return self._score_function_loss(x, q, temperature, beta)
        z = q.rsample()
        rec = -self.likelihood(z).log_prob(x)
        kl = self.kl(q, self.prior(temperature, z)).sum(-1)
        loss = (rec + beta * kl).mean()
        elbo = -(rec + kl).mean()
        return loss, {"loss": loss.detach(), "rec": rec.mean().detach(), "kl": kl.mean().detach(),
                      "elbo": elbo.detach()}  # fmt: skip

    def _score_function_loss(
        self, x: Tensor, q: Distribution, temperature: float | Tensor, beta: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        r"""The score-function surrogate of the reconstruction term plus the categorical KL.

        The reconstruction :math:`f_s = -\log p(x \mid h_s)` of S samples :math:`h_s \sim q`
        (drawn without gradient) gives the decoder its ordinary gradient and the encoder the score
        function's, with the leave-one-out or the running-mean baseline; the KL to the uniform
        prior is in closed form. Without gradient (evaluation) no baseline is used or updated:
        the value is the same.
        """
        h = q.sample((self.score_samples,))  # (S, B, N, K) one-hot
        log_q = q.log_prob(h).sum(-1)  # (S, B)
        rec = -self.likelihood(h).log_prob(x)  # (S, B)
        baseline: str | RunningMean | None = "rloo" if self.estimator == "rloo" else self.baseline
        if not torch.is_grad_enabled():
            baseline = None
        surrogate = score_function_surrogate(rec, log_q, baseline)
        kl = self.kl(q, self.prior(temperature, h)).sum(-1)
        loss = (surrogate + beta * kl).mean()
        rec_mean = rec.detach().mean()
        return loss, {"loss": loss.detach(), "rec": rec_mean, "kl": kl.mean().detach(),
                      "elbo": -(rec_mean + kl.mean()).detach()}  # fmt: skip

    # ---------------------------------------------------------------------- evaluation

    def discrete_posterior(self, q: Distribution, num_samples: int = 1000) -> Tensor:
        r"""Probabilities ``(B, N, K)`` of the zero-temperature limit of ``q`` (see module doc)."""
        if isinstance(q, GumbelSoftmax):
            return torch.softmax(q.logits, -1)
        if isinstance(q, OneHotCategorical):  # the straight-through family: already discrete
            return q.probs
        if type(q) is IGR:
            rows = q.loc.reshape(-1, q.loc.shape[-1])
            scales = q.scale.reshape(-1, q.loc.shape[-1])
            parts = [
                igr_zero_temperature_probs(a, b, num_nodes=24)
                for a, b in zip(rows.split(512), scales.split(512))
            ]
            return torch.cat(parts).reshape(*q.loc.shape[:-1], self.num_categories)
        return zero_temperature_limit(q, num_samples=num_samples).probs

    def discrete_prior(self, like: Tensor, num_samples: int = 100_000) -> Tensor:
        r"""Probabilities ``(K,)`` of :math:`p(h)`, the zero-temperature limit of the prior."""
        p = self.prior(1.0, like)
        if isinstance(p, OneHotCategorical):
            return p.probs.reshape(-1)
        return zero_temperature_limit(p, num_samples=num_samples).probs.reshape(-1)

    @torch.no_grad()
    def iw_bound(
        self,
        x: Tensor,
        num_samples: int = 100,
        *,
        chunk: int = 50,
        mix: float = 1e-3,
        prior_probs: Tensor | None = None,
        limit_samples: int = 1000,
    ) -> Tensor:
        r"""The importance-weighted bound on :math:`\log p(x)` of the discrete model, per example.

        Args:
            x: inputs ``(B, D)``.
            num_samples: S.
            chunk: samples decoded at once.
            mix: weight of the uniform distribution in the proposal.
            prior_probs: :math:`p(h)` (``(K,)``), else :meth:`discrete_prior`.
            limit_samples: samples for the zero-temperature limit of IGR-Planar / IGR-SB.
        """
        q = self.posterior(x, 1.0)
        k = self.num_categories
        proposal = (1 - mix) * self.discrete_posterior(q, limit_samples) + mix / k
        proposal = proposal / proposal.sum(-1, keepdim=True)
        log_proposal = proposal.log()
        if prior_probs is None:
            prior_probs = self.discrete_prior(x)
        log_prior = prior_probs.clamp_min(torch.finfo(x.dtype).tiny).log()
        dist = Categorical(probs=proposal)
        terms = []
        remaining = num_samples
        while remaining > 0:
            s = min(chunk, remaining)
            remaining -= s
            h = dist.sample((s,))  # (s, B, N)
            one_hot = nn.functional.one_hot(h, k).to(x.dtype)
            log_px = self.likelihood(one_hot).log_prob(x)  # (s, B)
            log_ph = log_prior[h].sum(-1)
            log_qh = log_proposal.gather(-1, h.movedim(0, -1)).movedim(-1, 0).sum(-1)
            terms.append(log_px + log_ph - log_qh)
        log_w = torch.cat(terms)
        return torch.logsumexp(log_w, 0) - math.log(num_samples)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoder means at the discretized mode ``one_hot(argmax π(h | x))``."""
        probs = self.discrete_posterior(self.posterior(x, 1.0))
        h = nn.functional.one_hot(probs.argmax(-1), self.num_categories).to(x.dtype)
        return self.mean(h)

    @torch.no_grad()
    def sample(self, num: int, like: Tensor) -> Tensor:
        """Decoder means for ``num`` draws of ``h`` from the discrete prior."""
        probs = self.discrete_prior(like)
        h = Categorical(probs=probs).sample((num, self.num_variables))
        return self.mean(nn.functional.one_hot(h, self.num_categories).to(like.dtype))


def _as_tensor(temperature: float | Tensor, like: Tensor) -> Tensor:
    if isinstance(temperature, Tensor):
        return temperature.to(dtype=like.dtype, device=like.device)
    return torch.tensor(float(temperature), dtype=like.dtype, device=like.device)
