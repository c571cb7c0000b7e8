r"""Invertible Gaussian reparameterizations (IGR) of categorical distributions.

Each distribution pushes a diagonal Gaussian :math:`\kappa \sim \mathcal{N}(\mu, \sigma^2)` on
:math:`\mathbb{R}^{K-1}` through an invertible map :math:`h` and softmax++ onto the interior of the
simplex :math:`\Delta^{K-1} \subset \mathbb{R}^K`:

- :class:`IGR` (IGR-I): :math:`h = \mathrm{id}`;
- :class:`IGRPlanar`: :math:`h` = planar flows
  (:class:`~simplexity.distributions.transforms.PlanarTransform`);
- :class:`IGRStickBreaking`: :math:`h` = sigmoid stick-breaking, with a truncation policy for
  countably infinite support.

They are :class:`~torch.distributions.TransformedDistribution` objects over
``Independent(Normal(loc, scale), 1)``. All transforms cache their last ``(x, y)``, so
:meth:`~torch.distributions.Distribution.log_prob` of a value that ``rsample`` just returned is
evaluated at its exact pre-image: finite and exact even at :math:`\tau = 0.01` in float32, where
entries of the value underflow to 0. For values that did not come from ``rsample`` use the log-space
pair :meth:`IGRBase.rsample_log` / :meth:`IGRBase.log_prob_from_log`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Independent, Normal, constraints
from torch.distributions.transformed_distribution import TransformedDistribution
from torch.distributions.transforms import Transform

from simplexity._checks import check_floating
from simplexity.distributions.transforms import (
    PlanarTransform,
    SoftmaxPlusPlusTransform,
    StickBreakingTransform,
    _as_tensor,
    _beside,
    _validate_log_value,
)

__all__ = [
    "IGR",
    "IGRBase",
    "IGRPlanar",
    "IGRStickBreaking",
    "Truncation",
    "stick_breaking_truncation",
]

_SizeLike = torch.Size | tuple[int, ...] | list[int]


class IGRBase(TransformedDistribution):
    r"""Base of the IGR family: ``Independent(Normal(loc, scale), 1)`` through ``h``, softmax++.

    The density on the simplex (w.r.t. Lebesgue measure on the first :math:`K-1` coordinates) is

    .. math::
        \log q(z) = \log\mathcal{N}(\kappa; \mu, \sigma^2)
            - \log\left|\det \frac{\partial h}{\partial\kappa}\right|
            + (K-1)\log\tau - \sum_{k=1}^K \log z_k,\qquad \kappa = h^{-1}(\lambda(z)).

    Subclasses choose :math:`h`; use :class:`IGR`, :class:`IGRPlanar` or :class:`IGRStickBreaking`.
    """

    arg_constraints = {  # noqa: RUF012
        "loc": constraints.real_vector,
        "scale": constraints.independent(constraints.positive, 1),
        "temperature": constraints.positive,
        "delta": constraints.positive,
    }
    support = constraints.simplex
    has_rsample = True
    base_dist: Independent

    def __init__(
        self,
        loc: Tensor,
        scale: Tensor,
        temperature: float | Tensor,
        delta: float | Tensor,
        maps: Sequence[Transform],
        validate_args: bool | None = None,
    ) -> None:
        check_floating("loc", loc)
        check_floating("scale", scale)
        if loc.dim() < 1 or scale.dim() < 1:
            raise ValueError(
                "loc and scale must have shape (..., K-1) (the last axis indexes the K-1 free "
                f"coordinates), got {tuple(loc.shape)} and {tuple(scale.shape)}"
            )
        if loc.shape[-1] != scale.shape[-1]:
            raise ValueError(
                f"loc and scale must have the same last dimension K-1, got loc {tuple(loc.shape)} "
                f"and scale {tuple(scale.shape)}"
            )
        temperature = _beside(_as_tensor("temperature", temperature, loc), loc)
        delta = _beside(_as_tensor("delta", delta, loc), loc)
        for name, value in (("temperature", temperature), ("delta", delta)):
            if value.dtype != loc.dtype:
                raise TypeError(f"{name} has dtype {value.dtype} but loc has dtype {loc.dtype}")
        shapes = {
            "loc": loc.shape[:-1],
            "scale": scale.shape[:-1],
            "temperature": temperature.shape,
            "delta": delta.shape,
        }
        try:
            batch_shape = torch.broadcast_shapes(*shapes.values())
        except RuntimeError:
            desc = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
            raise ValueError(
                "the batch shapes of loc, scale (without their last axis), temperature and delta "
                f"must broadcast, got {desc}"
            ) from None
        event = loc.shape[-1:]
        loc = loc.expand(batch_shape + event)
        scale = scale.expand(batch_shape + event)
        base = Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)
        self._softmax_pp = SoftmaxPlusPlusTransform(temperature, delta)
        self._maps = list(maps)
        super().__init__(base, [*self._maps, self._softmax_pp], validate_args=validate_args)

    def _new_like(self, batch_shape: torch.Size, new: IGRBase) -> IGRBase:
        """Fill ``new`` (from ``_get_checked_instance``) with this distribution expanded."""
        base = self.base_dist.expand(batch_shape)
        new._softmax_pp = self._softmax_pp
        new._maps = self._maps
        TransformedDistribution.__init__(
            new, base, [*self._maps, self._softmax_pp], validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def expand(self, batch_shape: _SizeLike, _instance: IGRBase | None = None) -> IGRBase:
        new = self._get_checked_instance(type(self), _instance)
        return self._new_like(torch.Size(batch_shape), new)

    @property
    def loc(self) -> Tensor:
        """Gaussian mean :math:`\\mu`, shape ``batch_shape + (K-1,)``."""
        return self.base_dist.base_dist.loc

    @property
    def scale(self) -> Tensor:
        """Gaussian standard deviation :math:`\\sigma`, shape ``batch_shape + (K-1,)``."""
        return self.base_dist.base_dist.scale

    @property
    def temperature(self) -> Tensor:
        """Temperature :math:`\\tau` (broadcasts with the batch shape)."""
        return self._softmax_pp.temperature

    @property
    def delta(self) -> Tensor:
        """softmax++ offset :math:`\\delta` (broadcasts with the batch shape)."""
        return self._softmax_pp.delta

    @property
    def gaussian(self) -> Independent:
        """The Gaussian ``Independent(Normal(loc, scale), 1)`` on :math:`\\mathbb{R}^{K-1}`."""
        return self.base_dist

    @property
    def maps(self) -> list[Transform]:
        """The transforms :math:`h` applied before softmax++."""
        return list(self._maps)

    @property
    def softmax_pp(self) -> SoftmaxPlusPlusTransform:
        """The final softmax++ transform."""
        return self._softmax_pp

    @property
    def num_categories(self) -> int:
        """The number of categories K."""
        return self.event_shape[0]

    def same_map(self, other: IGRBase) -> bool:
        """Whether ``other`` pushes its Gaussian through the same map (type, τ, δ and ``h``)."""
        return (
            type(self) is type(other)
            and len(self._maps) == len(other._maps)
            and all(a == b for a, b in zip(self._maps, other._maps))
            and self._softmax_pp == other._softmax_pp
        )

    def rsample_pre_image(self, sample_shape: _SizeLike = ()) -> tuple[Tensor, Tensor]:
        r"""Return ``(z, lambda)``: a sample and its pre-image :math:`\lambda = h(\kappa)`."""
        x = self.base_dist.rsample(sample_shape)
        for t in self._maps:
            x = t(x)
        return self._softmax_pp(x), x

    def rsample_log(self, sample_shape: _SizeLike = ()) -> tuple[Tensor, Tensor]:
        r"""Return ``(z, log z)`` of one sample, :math:`\log z` computed without underflow."""
        z, lam = self.rsample_pre_image(sample_shape)
        return z, self._softmax_pp.log_z(lam)  # the log z that computed z (cached)

    def log_prob_from_log(self, log_value: Tensor) -> Tensor:
        r"""Density of :math:`z` given :math:`\log z` (stable where entries underflow)."""
        if self._validate_args:
            _validate_log_value(log_value, self.num_categories)
        x = self._softmax_pp.inverse_from_log(log_value)
        log_prob = -self._softmax_pp.log_abs_det_jacobian_from_log(log_value)
        for t in reversed(self._maps):
            y = x
            x = t.inv(y)
            log_prob = log_prob - t.log_abs_det_jacobian(x, y)
        return log_prob + self.base_dist.log_prob(x)


class IGR(IGRBase):
    r"""IGR-I: a Gaussian pushed through softmax++.

    .. math::
        \kappa \sim \mathcal{N}(\mu, \operatorname{diag}\sigma^2),\qquad
        z = \operatorname{softmax}^{++}_\tau(\kappa),\qquad
        \log q(z) = \sum_{k<K} \log\mathcal{N}(\lambda_k; \mu_k, \sigma_k)
            + (K-1)\log\tau - \sum_{k=1}^K \log z_k

    with :math:`\lambda_k = \tau(\log z_k - \log z_K + \log\delta)`.

    Args:
        loc: :math:`\mu`, shape ``(..., K-1)``.
        scale: :math:`\sigma > 0`, shape ``(..., K-1)``.
        temperature: :math:`\tau > 0`, a float or a tensor broadcastable with the batch shape
            (or of shape ``(..., 1)`` beside ``loc``: a per-row temperature ``(B, 1)``).
        delta: softmax++ offset :math:`\delta > 0` (1 in the paper).
        validate_args: check arguments and values (torch's convention).

    References:
        Potapczynski, Loaiza-Ganem, Cunningham. Invertible Gaussian Reparameterization: Revisiting
        the Gumbel-Softmax. NeurIPS 2020.

    Example:
        >>> q = IGR(torch.zeros(2, 3), torch.ones(2, 3), temperature=0.1)
        >>> z = q.rsample((5,))
        >>> z.shape, q.event_shape, q.log_prob(z).shape
        (torch.Size([5, 2, 4]), torch.Size([4]), torch.Size([5, 2]))
    """

    def __init__(
        self,
        loc: Tensor,
        scale: Tensor,
        temperature: float | Tensor,
        delta: float | Tensor = 1.0,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(loc, scale, temperature, delta, [], validate_args=validate_args)


class IGRPlanar(IGRBase):
    r"""IGR-Planar: a Gaussian pushed through planar flows, then softmax++.

    .. math::
        \lambda = f_L \circ \dots \circ f_1(\kappa),\quad
        f(x) = x + \hat u \tanh(w^\top x + b),\quad
        \log q(z) = \log\mathcal{N}(\kappa; \mu, \sigma^2)
            - \sum_l \log|1 + (1 - \tanh^2(w_l^\top x_{l-1} + b_l))\, \hat u_l^\top w_l|
            + (K-1)\log\tau - \sum_{k=1}^K \log z_k.

    The density is exact at sampled points (the pre-images are cached); at other points the planar
    flows are inverted numerically (see :class:`PlanarTransform`).

    Args:
        loc: :math:`\mu`, shape ``(..., K-1)``.
        scale: :math:`\sigma > 0`, shape ``(..., K-1)``.
        temperature: :math:`\tau > 0`.
        delta: softmax++ offset :math:`\delta > 0`.
        flows: planar transforms on :math:`\mathbb{R}^{K-1}` (e.g. ``PlanarFlows(K - 1, L)()``,
            :class:`~simplexity.distributions.planar.PlanarFlows`),
            whose parameters may require gradients.
        validate_args: check arguments and values.

    References:
        Potapczynski, Loaiza-Ganem, Cunningham. NeurIPS 2020. Rezende, Mohamed. ICML 2015.

    Example:
        >>> flows = [PlanarTransform(torch.ones(2), torch.ones(2), torch.tensor(0.0))]
        >>> q = IGRPlanar(torch.zeros(2), torch.ones(2), 0.3, flows=flows)
        >>> z = q.rsample((3,))
        >>> bool(q.log_prob(z).isfinite().all())
        True
    """

    def __init__(
        self,
        loc: Tensor,
        scale: Tensor,
        temperature: float | Tensor,
        delta: float | Tensor = 1.0,
        flows: Sequence[PlanarTransform] | PlanarTransform = (),
        validate_args: bool | None = None,
    ) -> None:
        if isinstance(flows, PlanarTransform):
            flows = [flows]
        flows = list(flows)
        for i, f in enumerate(flows):
            if not isinstance(f, PlanarTransform):
                raise TypeError(f"flows[{i}] must be a PlanarTransform, got {type(f).__name__}")
            if f.u.shape[-1] != loc.shape[-1]:
                raise ValueError(
                    f"flows[{i}] acts on dimension {f.u.shape[-1]} but loc has K-1 = "
                    f"{loc.shape[-1]} coordinates"
                )
        super().__init__(loc, scale, temperature, delta, flows, validate_args=validate_args)

    @property
    def flows(self) -> list[PlanarTransform]:
        """The planar transforms, first layer first."""
        return list(self._maps)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Truncation:
    """Result of the stick-breaking truncation policy.

    Attributes:
        num_sticks: number of sticks to keep (the chosen percentile of ``per_sample``, at most the
            maximum number of sticks).
        threshold_met: whether that many sticks reach the threshold; ``False`` means that the
            maximum number of sticks was not enough.
        per_sample: per-sample number of sticks needed (``max + 1`` where the threshold is not met).
    """

    num_sticks: int
    threshold_met: bool
    per_sample: Tensor


def stick_breaking_truncation(
    sticks: Tensor, threshold: float = 0.9, percentile: float = 50.0, warn: bool = True
) -> Truncation:
    r"""Truncation level of stick-breaking weights: how many sticks cover ``threshold`` of the mass.

    Per sample :math:`n = 1 + \max\{k : \sum_{j\le k}\pi_j \le \text{threshold}\}`; the level is the
    ``percentile`` of :math:`n` over all samples, capped at the number of sticks allocated. When the
    threshold is not met with all the sticks, ``threshold_met`` is ``False`` (and a
    ``RuntimeWarning`` is emitted if ``warn``).

    Args:
        sticks: :math:`\pi` of shape ``(..., M)`` (M = maximum number of sticks).
        threshold: mass to cover, in (0, 1).
        percentile: percentile over the samples, in [0, 100].
        warn: warn when the threshold is not met.

    Example:
        >>> stick_breaking_truncation(torch.tensor([[0.5, 0.3, 0.15], [0.95, 0.03, 0.01]]), 0.9)
        Truncation(num_sticks=2, threshold_met=True, per_sample=tensor([3, 1]))
    """
    check_floating("sticks", sticks)
    if sticks.dim() < 1 or sticks.shape[-1] < 1:
        raise ValueError(f"sticks must have shape (..., M) with M >= 1, got {tuple(sticks.shape)}")
    for name, value in (("threshold", threshold), ("percentile", percentile)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    with torch.no_grad():
        m = sticks.shape[-1]
        per_sample = 1 + (sticks.cumsum(-1) <= threshold).sum(-1)
        flat = per_sample.reshape(-1).to(torch.float64)
        level = math.ceil(float(torch.quantile(flat, percentile / 100.0)))
    met = level <= m
    if not met and warn:
        warnings.warn(
            f"stick-breaking truncation: the threshold {threshold} is not met at the maximum "
            f"of {m} sticks (percentile {percentile} of the samples needs more)",
            RuntimeWarning,
            stacklevel=2,
        )
    return Truncation(num_sticks=min(level, m), threshold_met=met, per_sample=per_sample)


class IGRStickBreaking(IGRBase):
    r"""IGR-SB: a Gaussian through sigmoid stick-breaking, then softmax++.

    .. math::
        \eta = \sigma(\kappa),\quad \pi_k = \eta_k\prod_{j<k}(1-\eta_j),\quad
        z = \operatorname{softmax}^{++}_\tau(\pi),

    with :math:`\log|\det\partial\pi/\partial\kappa| = \sum_k[\log\eta_k + \log(1-\eta_k)
    + \sum_{j<k}\log(1-\eta_j)]`. ``K - 1`` is the maximum number of sticks; :meth:`truncation`
    gives how many are needed.

    Args:
        loc: :math:`\mu`, shape ``(..., K-1)``.
        scale: :math:`\sigma > 0`, shape ``(..., K-1)``.
        temperature: :math:`\tau > 0`.
        delta: softmax++ offset :math:`\delta > 0`.
        validate_args: check arguments and values.

    References:
        Potapczynski, Loaiza-Ganem, Cunningham. NeurIPS 2020, section 3.

    Example:
        >>> q = IGRStickBreaking(torch.zeros(9), torch.ones(9), 0.1)
        >>> q.rsample((2,)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        loc: Tensor,
        scale: Tensor,
        temperature: float | Tensor,
        delta: float | Tensor = 1.0,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(
            loc, scale, temperature, delta, [StickBreakingTransform()], validate_args=validate_args
        )

    def _outside_image(self, sticks: Tensor) -> Tensor:
        # The image is {pi > 0, sum(pi) < 1}; the slack absorbs the rounding of sampled sticks.
        slack = 4 * sticks.shape[-1] * torch.finfo(sticks.dtype).eps
        return ~((sticks >= 0).all(-1) & (sticks.sum(-1) <= 1 + slack))

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density; ``-inf`` for points of the simplex outside the image of the map."""
        log_prob = super().log_prob(value)
        # The pre-image that log_prob just used, from the cache: the exact sticks of a sample that
        # rsample returned, the inverse of any other value.
        sticks = self._softmax_pp.inv(value)
        return log_prob.masked_fill(self._outside_image(sticks), float("-inf"))

    def log_prob_from_log(self, log_value: Tensor) -> Tensor:
        log_prob = super().log_prob_from_log(log_value)
        sticks = self._softmax_pp.inverse_from_log(log_value)
        return log_prob.masked_fill(self._outside_image(sticks), float("-inf"))

    def truncation(
        self,
        value: Tensor | None = None,
        sample_shape: _SizeLike = (100,),
        threshold: float = 0.9,
        percentile: float = 50.0,
        warn: bool = True,
    ) -> Truncation:
        """Truncation level from the sticks of ``value`` (or of fresh samples if ``value`` is None).

        See :func:`stick_breaking_truncation`.
        """
        if value is None:
            with torch.no_grad():
                sticks = self._maps[0](self.base_dist.sample(sample_shape))
        else:
            sticks = self._softmax_pp.inv(value)
        return stick_breaking_truncation(sticks, threshold, percentile, warn=warn)
