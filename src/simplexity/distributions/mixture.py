r"""Mixture of diagonal Gaussians with exact and relaxed reparameterizations.

:class:`MixtureOfGaussians` is a trainable mixture to put at the bottom of a normalizing flow (Rezende
& Mohamed 2015) in place of :math:`\mathcal N(0, I)`, so that the flow starts multimodal. Its
``log_prob`` is the exact mixture density; ``rsample`` carries gradients to the weights, means and
scales in one of four ways (exact pathwise gradients, Figurnov et al. 2018; or a Gumbel-softmax,
straight-through or IGR choice of component, Jang et al. 2017, Potapczynski et al. 2020), and
``rsample_and_log_prob`` returns a sample together with one of four density estimates, so that each
combination can be measured against the truth.

:func:`kmeans_plusplus_init` fits initial weights, means and scales to data (k-means++ seeding
followed by a few Lloyd iterations).

References:
    Rezende, Mohamed. "Variational Inference with Normalizing Flows", ICML 2015.
    Figurnov, Mohamed, Mnih. "Implicit Reparameterization Gradients", NeurIPS 2018.
    Jang, Gu, Poole. "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017.
    Potapczynski, Loaiza-Ganem, Cunningham. "Invertible Gaussian Reparameterization: Revisiting the
    Gumbel-Softmax", NeurIPS 2020.
    Arthur, Vassilvitskii. "k-means++: The Advantages of Careful Seeding", SODA 2007.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Categorical, OneHotCategorical, constraints
from torch.distributions.distribution import Distribution

from simplexity._checks import check_floating, check_int, check_positive
from simplexity.distributions.gumbel_softmax import GumbelSoftmax
from simplexity.distributions.igr import IGR
from simplexity.distributions.transforms import _beside

__all__ = [
    "ESTIMATORS",
    "REPARAMS",
    "MixtureOfGaussians",
    "check_reparam",
    "kmeans_plusplus",
    "kmeans_plusplus_init",
]

_SizeLike = torch.Size | Sequence[int]

#: The ways :meth:`MixtureOfGaussians.rsample` carries gradients to the parameters.
REPARAMS = ("pathwise", "gumbel_softmax", "gumbel_straight_through", "igr")
#: The base-density estimators of :meth:`MixtureOfGaussians.rsample_and_log_prob`.
ESTIMATORS = ("exact", "nested", "nested_own", "joint")

_LOG_2PI = math.log(2.0 * math.pi)
# Scale of the IGR noise for reparam="igr": Phi(x / 1.702) approximates the logistic sigmoid to
# within 0.01 (the classic probit-logit constant), so for K = 2 the IGR component law is within 0.01
# of softmax(logits); for K > 2 it is a multinomial probit that differs more (documented).
_IGR_NOISE_SCALE = 1.702


def check_reparam(reparam: str, temperature: float | Tensor | None, num_components: int) -> None:
    """Check a reparameterization name, its temperature and the number of components K.

    The relaxed reparameterizations need a positive temperature and K >= 2 (a relaxed choice
    among one component is undefined); ``"pathwise"`` takes no temperature.
    """
    if reparam not in REPARAMS:
        raise ValueError(f"reparam must be one of {REPARAMS}, got {reparam!r}")
    if reparam == "pathwise":
        if temperature is not None:
            raise ValueError(
                "temperature is only used by the relaxed reparameterizations "
                f"{REPARAMS[1:]}; got temperature={temperature!r} with reparam='pathwise'"
            )
        return
    if num_components < 2:
        raise ValueError(
            f"reparam={reparam!r} relaxes a choice among K >= 2 components, got K = "
            f"{num_components}; use reparam='pathwise' for a single component"
        )
    if temperature is None:
        raise ValueError(f"reparam={reparam!r} needs a positive temperature, got None")
    if isinstance(temperature, Tensor):
        check_positive("temperature", temperature.detach())
    else:
        check_positive("temperature", temperature)


def _diag_normal_log_prob(x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Log density of a diagonal normal, summed over the last dimension."""
    u = (x - loc) / scale
    return (-0.5 * u.square() - scale.log()).sum(-1) - 0.5 * _LOG_2PI * x.shape[-1]


class MixtureOfGaussians(Distribution):
    r"""Mixture of :math:`K` diagonal Gaussians in :math:`\mathbb{R}^D`.

    .. math::
        p(z) = \sum_{k=1}^K \alpha_k \, \mathcal{N}(z; \mu_k, \operatorname{diag}\sigma_k^2),
        \qquad \alpha = \operatorname{softmax}(\text{logits}).

    :meth:`log_prob` is this density, summed over the components in log space. The ``reparam`` argument chooses how :meth:`rsample` makes a sample
    differentiable:

    - ``"pathwise"`` (default): an exact mixture sample with exact reparameterization gradients for
      every parameter, the weights included. The gradient is the implicit one of the
      autoregressive distributional transform (Figurnov et al. 2018): with
      :math:`F_d(z_d \mid z_{<d}) = \sum_k w_k(z_{<d}) \Phi((z_d - \mu_{kd})/\sigma_{kd})`, where
      :math:`w_k(z_{<d}) \propto \alpha_k \prod_{j<d} \mathcal{N}(z_j; \mu_{kj}, \sigma_{kj})`,

      .. math::
          \frac{\mathrm{d} z_d}{\mathrm{d}\theta} = -\frac{\partial_\theta F_d
          + \sum_{j<d} \partial_{z_j} F_d \, \mathrm{d} z_j / \mathrm{d}\theta}
          {p(z_d \mid z_{<d})},

      so :math:`\nabla_\theta \mathbb{E}[f(z)] = \mathbb{E}[\nabla_z f \cdot \mathrm{d}z/
      \mathrm{d}\theta]` exactly, at a cost of :math:`O(KD)` per sample.
    - ``"gumbel_softmax"``: the soft selection :math:`z = c^\top\mu + \epsilon \odot
      c^\top\sigma` with :math:`c \sim \mathrm{GumbelSoftmax}(\alpha, \tau)`. The sample does
      **not** follow :math:`p`: it follows a semi-implicit distribution :math:`q_\tau` that tends to
      :math:`p` only as :math:`\tau \to 0`.
    - ``"gumbel_straight_through"``: the one-hot :math:`c` in the forward pass (an exact mixture
      sample) with the relaxed gradient of the Gumbel-softmax backward (biased gradients).
    - ``"igr"``: the soft selection with :math:`c` drawn from IGR-I (Potapczynski et al. 2020)
      with location :math:`l_{<K} - l_K` and noise scale 1.702. Its :math:`\tau \to 0` component
      law is a multinomial probit, which matches :math:`\alpha` within 0.01 for :math:`K = 2` but
      only approximately for :math:`K > 2`, so these samples are off :math:`p` twice over.

    :meth:`rsample_and_log_prob` returns a sample with one of four base-density estimates;
    see its docstring for which are exact and which way the others are biased.

    Args:
        logits: unnormalized log weights of shape ``(..., K)``.
        loc: component means of shape ``(..., K, D)``.
        scale: positive component standard deviations of shape ``(..., K, D)``.
        reparam: one of :data:`REPARAMS`.
        temperature: positive temperature :math:`\tau` of the relaxed reparameterizations (float or
            tensor broadcasting to the batch shape, or of shape ``(..., 1)`` beside the logits);
            required by the relaxed ones (which need K >= 2), not accepted by ``"pathwise"``.
        validate_args: check the parameters and the values passed to :meth:`log_prob` (torch's
            convention).

    References:
        Figurnov, Mohamed, Mnih. Implicit Reparameterization Gradients. NeurIPS 2018.
        Jankowiak, Karaletsos. Pathwise Derivatives for Multivariate Distributions. AISTATS 2019
        (arXiv 1806.01856, 2018).
        Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax. ICLR 2017.
        Potapczynski, Loaiza-Ganem, Cunningham. Invertible Gaussian Reparameterization.
        NeurIPS 2020.

    Example:
        >>> logits = torch.zeros(3, requires_grad=True)
        >>> loc, scale = torch.randn(3, 2), torch.ones(3, 2)
        >>> p = MixtureOfGaussians(logits, loc, scale)
        >>> z = p.rsample((100,))
        >>> z.shape, p.log_prob(z).shape
        (torch.Size([100, 2]), torch.Size([100]))
        >>> z.square().mean().backward()  # exact gradient reaches the weights
        >>> logits.grad.shape
        torch.Size([3])
        >>> z, lp = p.rsample_and_log_prob((10,), estimator="nested_own", num_inner=16)
        >>> lp.shape
        torch.Size([10])
    """

    arg_constraints = {  # noqa: RUF012
        "logits": constraints.real_vector,
        "loc": constraints.independent(constraints.real, 2),
        "scale": constraints.independent(constraints.positive, 2),
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        logits: Tensor,
        loc: Tensor,
        scale: Tensor,
        *,
        reparam: str = "pathwise",
        temperature: float | Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        check_floating("logits", logits)
        check_floating("loc", loc)
        check_floating("scale", scale)
        if logits.dim() < 1:
            raise ValueError(f"logits must have shape (..., K), got {tuple(logits.shape)}")
        if loc.dim() < 2:
            raise ValueError(f"loc must have shape (..., K, D), got {tuple(loc.shape)}")
        if scale.dim() < 2 or scale.shape[-2:] != loc.shape[-2:]:
            raise ValueError(
                f"scale must have shape (..., K, D) = (..., {loc.shape[-2]}, {loc.shape[-1]}) like "
                f"loc, got {tuple(scale.shape)}"
            )
        k = logits.shape[-1]
        if loc.shape[-2] != k:
            raise ValueError(
                f"logits has K={k} components (last dimension) but loc has {loc.shape[-2]} "
                f"(loc must have shape (..., K, D)); got logits {tuple(logits.shape)}, loc "
                f"{tuple(loc.shape)}"
            )
        if not (logits.dtype == loc.dtype == scale.dtype):
            raise TypeError(
                f"logits, loc and scale must share a dtype, got {logits.dtype}, {loc.dtype}, "
                f"{scale.dtype}"
            )
        check_positive("scale", scale.detach())
        check_reparam(reparam, temperature, k)
        try:
            batch_shape = torch.broadcast_shapes(
                logits.shape[:-1], loc.shape[:-2], scale.shape[:-2]
            )
        except RuntimeError:
            raise ValueError(
                f"the batch shapes of logits {tuple(logits.shape[:-1])}, loc "
                f"{tuple(loc.shape[:-2])} and scale {tuple(scale.shape[:-2])} do not broadcast"
            ) from None
        if isinstance(temperature, Tensor):
            if temperature.dtype != logits.dtype:
                raise TypeError(
                    f"temperature has dtype {temperature.dtype} but logits, loc and scale have "
                    f"dtype {logits.dtype}"
                )
            temperature = _beside(temperature, logits)
            try:
                fits = torch.broadcast_shapes(temperature.shape, batch_shape) == batch_shape
            except RuntimeError:
                fits = False
            if not fits:
                raise ValueError(
                    f"temperature of shape {tuple(temperature.shape)} must broadcast to the batch "
                    f"shape {tuple(batch_shape)} (or stand beside the logits with a trailing 1)"
                )
        self.logits = (logits - logits.logsumexp(-1, keepdim=True)).expand((*batch_shape, k))
        self.loc = loc.expand(batch_shape + loc.shape[-2:])
        self.scale = scale.expand(batch_shape + loc.shape[-2:])
        self.reparam = reparam
        self.temperature = temperature
        super().__init__(batch_shape, loc.shape[-1:], validate_args=validate_args)

    # ------------------------------------------------------------------ basic properties
    @property
    def num_components(self) -> int:
        """The number of components K."""
        return self.logits.shape[-1]

    @property
    def probs(self) -> Tensor:
        """The mixture weights :math:`\\alpha`, of shape ``batch_shape + (K,)``."""
        return self.logits.exp()

    @property
    def mean(self) -> Tensor:
        return (self.probs.unsqueeze(-1) * self.loc).sum(-2)

    @property
    def variance(self) -> Tensor:
        second = (self.probs.unsqueeze(-1) * (self.loc.square() + self.scale.square())).sum(-2)
        return second - self.mean.square()

    def expand(self, batch_shape: _SizeLike, _instance: MixtureOfGaussians | None = None):
        new = self._get_checked_instance(MixtureOfGaussians, _instance)
        batch_shape = torch.Size(batch_shape)
        k, d = self.loc.shape[-2:]
        new.logits = self.logits.expand((*batch_shape, k))
        new.loc = self.loc.expand((*batch_shape, k, d))
        new.scale = self.scale.expand((*batch_shape, k, d))
        new.reparam = self.reparam
        new.temperature = self.temperature
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # ------------------------------------------------------------------ densities
    def component_log_prob(self, value: Tensor) -> Tensor:
        r"""Return :math:`\log \alpha_k + \log\mathcal{N}(z; \mu_k, \sigma_k)`, shape (..., K)."""
        if self._validate_args:
            self._validate_sample(value)
        return self.logits + _diag_normal_log_prob(value.unsqueeze(-2), self.loc, self.scale)

    def log_prob(self, value: Tensor) -> Tensor:
        r"""Exact log density :math:`\log \sum_k \alpha_k \mathcal{N}(z; \mu_k, \sigma_k)`."""
        return self.component_log_prob(value).logsumexp(-1)

    def posterior(self, value: Tensor) -> Tensor:
        r"""Responsibilities :math:`p(k \mid z)`, of shape ``(..., K)``."""
        return self.component_log_prob(value).softmax(-1)

    # ------------------------------------------------------------------ sampling
    def choice_distribution(self) -> Distribution:
        r"""The law of the component choice :math:`c` that :meth:`rsample` draws.

        ``OneHotCategorical(logits)`` for ``"pathwise"``; ``GumbelSoftmax(temperature, logits=logits)``
        (straight-through for ``"gumbel_straight_through"``); for ``"igr"``, IGR-I with location
        :math:`l_{<K} - l_K` and scale 1.702.
        """
        if self.reparam == "pathwise":
            return OneHotCategorical(logits=self.logits)
        if self.reparam in ("gumbel_softmax", "gumbel_straight_through"):
            return GumbelSoftmax(
                self.temperature,
                logits=self.logits,
                straight_through=self.reparam == "gumbel_straight_through",
            )
        loc = self.logits[..., :-1] - self.logits[..., -1:]
        scale = torch.full_like(loc, _IGR_NOISE_SCALE)
        return IGR(loc, scale, self.temperature)

    def _draw_choices(self, shape: torch.Size) -> tuple[Tensor, Tensor]:
        r"""Draw choices ``c`` of shape ``shape + batch_shape + (K,)`` and their log density.

        For ``"pathwise"`` they are exact one-hot draws without gradient and the log density is
        the log mass :math:`\log\alpha_k`; for ``"gumbel_straight_through"`` one-hot draws with the
        relaxed gradient and the same log mass; for the soft reparameterizations relaxed draws
        with their density on the simplex, computed from the log-space sample (no underflow).
        """
        if self.reparam == "pathwise":
            with torch.no_grad():
                index = Categorical(logits=self.logits).sample(shape)
                c = torch.nn.functional.one_hot(index, self.num_components).to(self.logits.dtype)
            return c, (c * self.logits).sum(-1)
        relaxation = self.choice_distribution()
        if self.reparam == "gumbel_straight_through":
            c = relaxation.rsample(shape)
            return c, (c * self.logits).sum(-1)
        c, log_c = relaxation.rsample_log(shape)
        if self.reparam == "gumbel_softmax":
            log_density = relaxation.base_dist.log_prob(log_c) - log_c.sum(-1)
        else:
            log_density = relaxation.log_prob_from_log(log_c)
        return c, log_density

    def _select(self, c: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(c^T mu, c^T sigma)`` for choices ``c`` of shape ``(..., K)``."""
        loc = (c.unsqueeze(-1) * self.loc).sum(-2)
        scale = (c.unsqueeze(-1) * self.scale).sum(-2)
        return loc, scale

    def _implicit(self, z: Tensor) -> Tensor:
        """Attach the exact implicit reparameterization gradient to exact samples ``z``."""
        z = z.detach()
        log_w = self.logits
        out = []
        for d in range(z.shape[-1]):
            zd = z[..., d]
            loc_d, scale_d = self.loc[..., d], self.scale[..., d]
            u = (zd.unsqueeze(-1) - loc_d) / scale_d
            weights = log_w.softmax(-1)
            cdf = (weights * torch.special.ndtr(u)).sum(-1)
            log_pdf = (log_w - 0.5 * u.square() - scale_d.log()).logsumexp(-1) - 0.5 * _LOG_2PI
            # Value zd, gradient -(dF/dtheta) / p(zd | z_<d) (implicit function theorem).
            zd_tilde = zd - (cdf - cdf.detach()) / log_pdf.detach().exp()
            out.append(zd_tilde)
            # Condition the next coordinate on this one (through zd_tilde, so that the chain rule
            # adds dF_{d+1}/dz_d * dz_d/dtheta).
            u_tilde = (zd_tilde.unsqueeze(-1) - loc_d) / scale_d
            log_w = log_w - 0.5 * u_tilde.square() - scale_d.log()
            log_w = log_w - log_w.logsumexp(-1, keepdim=True)
        return torch.stack(out, -1)

    def _rsample_with_choice(self, sample_shape: _SizeLike) -> tuple[Tensor, Tensor, Tensor]:
        shape = torch.Size(sample_shape)
        c, log_c = self._draw_choices(shape)
        loc, scale = self._select(c)
        eps = torch.randn_like(loc)
        if self.reparam == "pathwise":
            z = (loc + eps * scale).detach()
            needs_grad = torch.is_grad_enabled() and any(
                t.requires_grad for t in (self.logits, self.loc, self.scale)
            )
            if needs_grad:
                z = self._implicit(z)
            return z, c, log_c
        return loc + eps * scale, c, log_c

    def rsample(self, sample_shape: _SizeLike = ()) -> Tensor:
        """Draw a differentiable sample (see the class docstring for ``reparam``)."""
        return self._rsample_with_choice(sample_shape)[0]

    # ------------------------------------------------------------------ estimators
    def rsample_and_log_prob(
        self,
        sample_shape: _SizeLike = (),
        estimator: str = "exact",
        num_inner: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Draw a sample :math:`z_0` and estimate its log density with one of four rules.

        - ``"exact"`` (the mixture density): :math:`\log p(z_0) = \log\sum_k \alpha_k \mathcal{N}(z_0; \mu_k,
          \sigma_k)`. Exact for the hard reparameterizations (``"pathwise"``,
          ``"gumbel_straight_through"``), whose samples follow :math:`p`. For the soft ones the
          samples follow :math:`q_\tau \neq p`, so :math:`-\mathbb{E}\log p(z_0) = H(q_\tau) +
          \mathrm{KL}(q_\tau \| p)` **over**-estimates the entropy of what was sampled.
        - ``"nested"``: :math:`\log \frac{1}{M}\sum_{j=1}^M \mathcal{N}(z_0; c_j^\top\mu,
          c_j^\top\sigma)` with ``num_inner`` :math:`= M` choices :math:`c_j` drawn like the
          sample's own but independently of it. The average is an unbiased estimate of the density
          of the sampling distribution (:math:`p` for hard choices, :math:`q_\tau` for soft ones),
          so by Jensen :math:`\mathbb{E}\log\hat p \le \log p`: minus it is an **upper** bound on
          the entropy, loose at small :math:`M` — an entropy maximizer can exploit it. With
          ``"pathwise"`` the inner choices are exact categorical draws and carry no gradient.
        - ``"nested_own"``: the same average over :math:`M + 1` terms that include the sample's own
          choice :math:`c_0` (as in semi-implicit variational inference). Then
          :math:`\mathbb{E}\log\hat p \ge \log p` (for the sampling distribution): minus it is a
          **lower** bound on the entropy that tightens as :math:`M` grows — the safe direction
          for maximization.
        - ``"joint"`` (the joint density of choice and sample): :math:`\log p(c, z_0) = \log p(c) + \log\mathcal{N}(z_0; c^\top\mu,
          c^\top\sigma)`. For hard choices :math:`p(c)` is the mass :math:`\alpha_k`, and
          :math:`H(c, z_0) = H(z_0) + H(c \mid z_0) \ge H(z_0)` **over**-estimates the entropy by
          :math:`H(c \mid z_0)`. For relaxed choices :math:`p(c)` is a density on the simplex whose
          differential entropy tends to :math:`-\infty` as :math:`\tau \to 0`: the estimate is no
          bound at all and is dominated by :math:`\tau`.

        Args:
            sample_shape: leading sample shape.
            estimator: one of :data:`ESTIMATORS`.
            num_inner: the number :math:`M \ge 1` of inner choices (``"nested"`` and
                ``"nested_own"`` only).

        Returns:
            ``(z, log_p)`` of shapes ``sample_shape + batch_shape + (D,)`` and
            ``sample_shape + batch_shape``.
        """
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        nested = estimator in ("nested", "nested_own")
        if nested:
            if num_inner is None:
                raise TypeError(f"estimator={estimator!r} needs an int num_inner >= 1")
            check_int("num_inner", num_inner, min=1)
        elif num_inner is not None:
            raise ValueError(
                f"num_inner is only used by the nested estimators, got num_inner={num_inner} with "
                f"estimator={estimator!r}"
            )
        shape = torch.Size(sample_shape)
        z, c, log_c = self._rsample_with_choice(shape)
        if estimator == "exact":
            return z, self.log_prob(z)
        if estimator == "joint":
            loc, scale = self._select(c)
            return z, log_c + _diag_normal_log_prob(z, loc, scale)
        inner, _ = self._draw_choices(torch.Size([num_inner]) + shape)
        if estimator == "nested_own":
            inner = torch.cat([c.unsqueeze(0), inner], 0)
        loc, scale = self._select(inner)
        log_normal = _diag_normal_log_prob(z.unsqueeze(0), loc, scale)
        return z, log_normal.logsumexp(0) - math.log(inner.shape[0])


def kmeans_plusplus(
    data: Tensor, num_clusters: int, *, generator: torch.Generator | None = None
) -> Tensor:
    r"""Choose ``num_clusters`` initial centers from ``data`` (N, D) by k-means++ seeding.

    Each new center is a data point drawn with probability proportional to its squared distance to
    the nearest center chosen so far.

    References:
        Arthur, Vassilvitskii. k-means++: The Advantages of Careful Seeding. SODA 2007.

    Example:
        >>> x = torch.cat([torch.randn(50, 2) - 5, torch.randn(50, 2) + 5])
        >>> kmeans_plusplus(x, 2).shape
        torch.Size([2, 2])
    """
    check_floating("data", data)
    if data.dim() != 2:
        raise ValueError(f"data must have shape (N, D), got {tuple(data.shape)}")
    if not bool(torch.isfinite(data).all()):
        raise ValueError("data must be finite (it holds NaN or infinite values)")
    check_int("num_clusters", num_clusters, min=1)
    if num_clusters > data.shape[0]:
        raise ValueError(
            f"num_clusters={num_clusters} exceeds the number of points {data.shape[0]}"
        )
    data = data.detach()
    first = torch.randint(data.shape[0], (1,), generator=generator, device=data.device)
    centers = [data[first[0]]]
    dist = (data - centers[0]).square().sum(-1)
    for _ in range(num_clusters - 1):
        total = dist.sum()
        weights = dist / total if total > 0 else torch.ones_like(dist)
        index = torch.multinomial(weights, 1, generator=generator)
        centers.append(data[index[0]])
        dist = torch.minimum(dist, (data - centers[-1]).square().sum(-1))
    return torch.stack(centers)


def kmeans_plusplus_init(
    data: Tensor,
    num_components: int,
    *,
    iterations: int = 10,
    min_scale: float = 1e-3,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Initial ``(logits, loc, scale)`` for a :class:`MixtureOfGaussians` fitted to ``data``.

    k-means++ seeding (:func:`kmeans_plusplus`), then ``iterations`` Lloyd steps; the weights are
    the cluster fractions, the means the centers and the scales the per-dimension standard
    deviations within each cluster (at least ``min_scale``; the overall standard deviation for
    clusters with fewer than two points).

    Args:
        data: points of shape ``(N, D)``.
        num_components: the number of components K.
        iterations: Lloyd iterations after seeding.
        min_scale: lower bound on the fitted scales.
        generator: random generator for the seeding.

    Returns:
        ``logits`` (K,), ``loc`` (K, D), ``scale`` (K, D).

    Example:
        >>> x = torch.cat([torch.randn(100, 2) - 5, torch.randn(100, 2) + 5])
        >>> logits, loc, scale = kmeans_plusplus_init(x, 2)
        >>> sorted(loc[:, 0].round().tolist())
        [-5.0, 5.0]
    """
    check_positive("min_scale", min_scale)
    check_int("iterations", iterations, min=0)
    check_floating("data", data)
    if data.dim() != 2:
        raise ValueError(f"data must have shape (N, D), got {tuple(data.shape)}")
    check_int("num_components", num_components, min=1, max=data.shape[0])
    centers = kmeans_plusplus(data, num_components, generator=generator)
    data = data.detach()
    for _ in range(iterations):
        assign = torch.cdist(data, centers).argmin(-1)
        for k in range(num_components):
            members = data[assign == k]
            if members.shape[0] > 0:
                centers[k] = members.mean(0)
    assign = torch.cdist(data, centers).argmin(-1)
    counts = torch.bincount(assign, minlength=num_components).to(data.dtype)
    overall = data.std(0) if data.shape[0] > 1 else torch.ones_like(data[0])
    scale = overall.expand(num_components, -1).clone()
    for k in range(num_components):
        members = data[assign == k]
        if members.shape[0] > 1:
            scale[k] = members.std(0)
    logits = (counts + 1e-3).log()
    return logits - logits.logsumexp(0), centers, scale.clamp_min(min_scale)
