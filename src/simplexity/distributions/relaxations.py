r"""Registry of categorical relaxations by name, built from an encoder's raw output.

========================  ==============================  ==============================
name                      encoder outputs per variable    distribution
========================  ==============================  ==============================
``"gumbel_softmax"``      :math:`K` (logits)              :class:`GumbelSoftmax`
``"gumbel_softmax_st"``   :math:`K` (logits)              straight-through GumbelSoftmax
``"igr_i"``               :math:`2(K-1)` (loc, scale)     :class:`IGR`
``"igr_planar"``          :math:`2(K-1)` (loc, scale)     :class:`IGRPlanar`
``"igr_sb"``              :math:`2(K-1)` (loc, scale)     :class:`IGRStickBreaking`
``"straight_through"``    :math:`K` (logits)              :class:`StraightThrough`
``"st_gumbel"``           :math:`K` (logits)              :class:`GumbelStraightThrough`
``"gumbel_rao"``          :math:`K` (logits)              :class:`GumbelRao`
``"reinmax"``             :math:`K` (logits)              :class:`ReinMax`
``"decoupled_st"``        :math:`K` (logits)              :class:`DecoupledStraightThrough`
========================  ==============================  ==============================

The last five are not relaxations but categoricals with a straight-through gradient
(:mod:`~simplexity.distributions.straight_through`): the samples are exact one-hot vectors, the
prior is the uniform ``OneHotCategorical`` and the KL is the categorical one, in closed form; the
temperature is the estimator's (for ``"decoupled_st"`` the backward one).

Two names give the straight-through Gumbel-softmax (Jang et al. 2017), with the same forward
sample (the one-hot argmax) and the same gradient (the relaxed sample's); they differ in the model
whose bound the loss is. ``"gumbel_softmax_st"`` is the relaxed model: its ``log_prob`` is the
Gumbel-softmax density of the relaxed sample behind the one-hot, its prior the relaxed uniform
one and its KL a Monte Carlo one, as in the relaxation papers' comparisons. ``"st_gumbel"`` is
the discrete model: a ``OneHotCategorical`` whose ``rsample`` carries that gradient, with the
exact categorical KL, so its bound is the discrete model's ELBO and it compares with the other
gradient estimators above.

A relaxation is a small :class:`torch.nn.Module` (it holds the trainable planar flows of
``"igr_planar"``; the others have no parameters): ``relaxation(raw, temperature)`` returns
:math:`q(z \mid x)` and ``relaxation.prior(K, temperature)`` the matching prior :math:`p(z)`, so a
model writes its loss with ``kl_divergence(q, p)`` (closed form for the IGR family) or
:func:`~simplexity.distributions.monte_carlo_kl`, and swapping relaxations is one name.

Example:
    >>> relax = get("igr_i")
    >>> raw = torch.randn(8, 20, relax.num_params(10))  # encoder output: 20 variables, K = 10
    >>> q = relax(raw, temperature=0.1)
    >>> p = relax.prior(10, temperature=0.1)
    >>> relax.kl(q, p).shape  # closed form for IGR, Monte Carlo for Gumbel-softmax
    torch.Size([8, 20])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, OneHotCategorical, kl_divergence

from simplexity._checks import check_floating, check_int, check_positive
from simplexity._registry import Registry
from simplexity.distributions.gumbel_softmax import GumbelSoftmax
from simplexity.distributions.igr import IGR, IGRBase, IGRPlanar, IGRStickBreaking
from simplexity.distributions.kl import NoClosedFormKLError, monte_carlo_kl
from simplexity.distributions.limits import igr_uniform_prior_loc
from simplexity.distributions.planar import PlanarFlows
from simplexity.distributions.straight_through import (
    DecoupledStraightThrough,
    GumbelRao,
    GumbelStraightThrough,
    OneHotSurrogate,
    ReinMax,
    StraightThrough,
)

__all__ = [
    "DecoupledStraightThroughRelaxation",
    "GumbelRaoRelaxation",
    "GumbelSoftmaxRelaxation",
    "GumbelStraightThroughRelaxation",
    "IGRPlanarRelaxation",
    "IGRRelaxation",
    "IGRStickBreakingRelaxation",
    "ReinMaxRelaxation",
    "Relaxation",
    "StraightThroughRelaxation",
    "get",
    "names",
    "register",
]

_REGISTRY: Registry[type[Relaxation]] = Registry("relaxation")


def register(name: str) -> Callable[[type[Relaxation]], type[Relaxation]]:
    """Class decorator that registers a :class:`Relaxation` under ``name`` (and sets its ``name``)."""

    def wrap(cls: type[Relaxation]) -> type[Relaxation]:
        _REGISTRY.add(name, cls)
        cls.name = name
        return cls

    return wrap


def names() -> list[str]:
    """Names of the registered relaxations, in registration order.

    Example:
        >>> names()[:2]
        ['gumbel_softmax', 'gumbel_softmax_st']
    """
    return _REGISTRY.names()


def get(name: str, **kwargs: object) -> Relaxation:
    """Build the relaxation registered as ``name`` (keyword arguments go to its constructor)."""
    return _REGISTRY[name](**kwargs)


def _shape(batch_shape: torch.Size | tuple[int, ...], k: int) -> torch.Size:
    return torch.Size((*batch_shape, k))


class Relaxation(nn.Module):
    """Base class: builds a relaxed categorical distribution from raw encoder outputs."""

    name: str = ""

    def __init__(self, num_categories: int | None = None) -> None:
        super().__init__()
        if num_categories is not None:
            num_categories = check_int("num_categories", num_categories, min=2)
        self.num_categories = num_categories

    def num_params(self, num_categories: int) -> int:
        """Number of raw encoder outputs per categorical variable with ``num_categories``."""
        raise NotImplementedError

    def categories_from_params(self, num_params: int) -> int:
        """Inverse of :meth:`num_params` (``ValueError`` if no K matches)."""
        raise NotImplementedError

    def _categories(self, raw: Tensor) -> int:
        check_floating("raw", raw)
        if raw.dim() < 1:
            raise ValueError("raw must have shape (..., num_params)")
        k = self.categories_from_params(raw.shape[-1])
        if self.num_categories is not None and k != self.num_categories:
            raise ValueError(
                f"raw has {raw.shape[-1]} outputs, i.e. K = {k}, but this {self.name} relaxation "
                f"was built for K = {self.num_categories} "
                f"({self.num_params(self.num_categories)} outputs)"
            )
        return k

    def forward(self, raw: Tensor, temperature: float | Tensor) -> Distribution:
        """Return the relaxed distribution for raw outputs of shape ``(..., num_params(K))``."""
        raise NotImplementedError

    def prior(
        self,
        num_categories: int,
        temperature: float | Tensor,
        batch_shape: torch.Size | tuple[int, ...] = (),
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Distribution:
        """Return the matching prior (uniform in the zero-temperature limit where possible)."""
        raise NotImplementedError

    def kl(self, q: Distribution, p: Distribution, num_samples: int = 1) -> Tensor:
        """``kl_divergence(q, p)`` where it has a closed form, else ``monte_carlo_kl``."""
        try:
            return kl_divergence(q, p)
        except NoClosedFormKLError:
            return monte_carlo_kl(q, p, num_samples)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_categories={self.num_categories}"


@register("gumbel_softmax")
class GumbelSoftmaxRelaxation(Relaxation):
    """Gumbel-softmax: the raw outputs are the K logits; the prior has uniform logits."""

    straight_through = False

    def num_params(self, num_categories: int) -> int:
        return num_categories

    def categories_from_params(self, num_params: int) -> int:
        if num_params < 2:
            raise ValueError(f"{self.name} needs K >= 2 raw outputs (logits), got {num_params}")
        return num_params

    def forward(self, raw: Tensor, temperature: float | Tensor) -> GumbelSoftmax:
        self._categories(raw)
        return GumbelSoftmax(temperature, logits=raw, straight_through=self.straight_through)

    def prior(
        self,
        num_categories: int,
        temperature: float | Tensor,
        batch_shape: torch.Size | tuple[int, ...] = (),
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> GumbelSoftmax:
        num_categories = check_int("num_categories", num_categories, min=2)
        dtype, device = _dtype_device(temperature, dtype, device)
        logits = torch.zeros(_shape(batch_shape, num_categories), dtype=dtype, device=device)
        return GumbelSoftmax(temperature, logits=logits, straight_through=self.straight_through)


@register("gumbel_softmax_st")
class StraightThroughGumbelSoftmaxRelaxation(GumbelSoftmaxRelaxation):
    """Straight-through Gumbel-softmax: one-hot samples, relaxed gradients."""

    straight_through = True


def _dtype_device(
    temperature: float | Tensor, dtype: torch.dtype | None, device: torch.device | str | None
) -> tuple[torch.dtype, torch.device | str | None]:
    if isinstance(temperature, Tensor):
        return dtype or temperature.dtype, device or temperature.device
    return dtype or torch.get_default_dtype(), device


class _IGRRelaxationBase(Relaxation):
    """Raw outputs ``(loc, pre)``, ``2(K-1)`` entries; ``scale = softplus(pre) + min_scale``."""

    def __init__(
        self,
        num_categories: int | None = None,
        delta: float = 1.0,
        prior_scale: float = 1.0,
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__(num_categories)
        self.delta = check_positive("delta", delta)
        self.prior_scale = check_positive("prior_scale", prior_scale)
        self.min_scale = float(min_scale)

    def num_params(self, num_categories: int) -> int:
        return 2 * (num_categories - 1)

    def categories_from_params(self, num_params: int) -> int:
        if num_params < 2 or num_params % 2:
            raise ValueError(
                f"{self.name} needs 2(K-1) raw outputs (loc and scale), got {num_params}"
            )
        return num_params // 2 + 1

    def _loc_scale(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        k = self._categories(raw)
        loc, pre = raw.split(k - 1, dim=-1)
        return loc, F.softplus(pre) + self.min_scale

    def _prior_loc(self, num_categories: int) -> float:
        return 0.0

    def _build(
        self, loc: Tensor, scale: Tensor, temperature: float | Tensor
    ) -> IGRBase:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, raw: Tensor, temperature: float | Tensor) -> IGRBase:
        loc, scale = self._loc_scale(raw)
        return self._build(loc, scale, temperature)

    def prior(
        self,
        num_categories: int,
        temperature: float | Tensor,
        batch_shape: torch.Size | tuple[int, ...] = (),
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> IGRBase:
        num_categories = check_int("num_categories", num_categories, min=2)
        dtype, device = _dtype_device(temperature, dtype, device)
        shape = _shape(batch_shape, num_categories - 1)
        loc = torch.full(shape, self._prior_loc(num_categories), dtype=dtype, device=device)
        scale = torch.full(shape, self.prior_scale, dtype=dtype, device=device)
        return self._build(loc, scale, temperature)


@register("igr_i")
class IGRRelaxation(_IGRRelaxationBase):
    """IGR-I; the prior is the closed-form uniform-limit prior (:func:`igr_uniform_prior_loc`)."""

    def _prior_loc(self, num_categories: int) -> float:
        return float(igr_uniform_prior_loc(num_categories, self.prior_scale))

    def _build(self, loc: Tensor, scale: Tensor, temperature: float | Tensor) -> IGR:
        return IGR(loc, scale, temperature, self.delta)


@register("igr_planar")
class IGRPlanarRelaxation(_IGRRelaxationBase):
    """IGR-Planar with ``num_flows`` trainable planar flows (this module's parameters).

    The prior pushes ``N(mu_0, sigma_0^2)`` (the IGR-I uniform-limit values) through the *same*
    flows, so ``kl_divergence(q, prior)`` has its closed form.
    """

    def __init__(
        self,
        num_categories: int | None = None,
        num_flows: int = 1,
        delta: float = 1.0,
        prior_scale: float = 1.0,
        min_scale: float = 1e-4,
    ) -> None:
        if num_categories is None:
            raise ValueError("igr_planar needs num_categories (the flows act on K-1 coordinates)")
        super().__init__(num_categories, delta, prior_scale, min_scale)
        self.flows = PlanarFlows(num_categories - 1, num_flows)

    def _prior_loc(self, num_categories: int) -> float:
        return float(igr_uniform_prior_loc(num_categories, self.prior_scale))

    def _build(self, loc: Tensor, scale: Tensor, temperature: float | Tensor) -> IGRPlanar:
        return IGRPlanar(loc, scale, temperature, self.delta, flows=self.flows())


@register("igr_sb")
class IGRStickBreakingRelaxation(_IGRRelaxationBase):
    """IGR-SB (K-1 = maximum number of sticks); prior ``N(0, prior_scale^2)`` before the sticks."""

    def _build(self, loc: Tensor, scale: Tensor, temperature: float | Tensor) -> IGRStickBreaking:
        return IGRStickBreaking(loc, scale, temperature, self.delta)


class _StraightThroughRelaxation(Relaxation):
    """Raw outputs: the K logits of a categorical sampled exactly, with a straight-through gradient.

    The prior is the uniform :class:`~torch.distributions.OneHotCategorical` (whatever the
    temperature), so ``kl(q, prior)`` is the closed-form categorical KL.
    """

    def num_params(self, num_categories: int) -> int:
        return num_categories

    def categories_from_params(self, num_params: int) -> int:
        if num_params < 2:
            raise ValueError(f"{self.name} needs K >= 2 raw outputs (logits), got {num_params}")
        return num_params

    def _build(self, logits: Tensor, temperature: float | Tensor) -> OneHotSurrogate:
        raise NotImplementedError  # pragma: no cover - abstract

    def forward(self, raw: Tensor, temperature: float | Tensor) -> OneHotSurrogate:
        self._categories(raw)
        return self._build(raw, temperature)

    def prior(
        self,
        num_categories: int,
        temperature: float | Tensor,
        batch_shape: torch.Size | tuple[int, ...] = (),
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> OneHotCategorical:
        num_categories = check_int("num_categories", num_categories, min=2)
        dtype, device = _dtype_device(temperature, dtype, device)
        logits = torch.zeros(_shape(batch_shape, num_categories), dtype=dtype, device=device)
        return OneHotCategorical(logits=logits)


@register("straight_through")
class StraightThroughRelaxation(_StraightThroughRelaxation):
    """Straight-through (Bengio et al. 2013); the temperature is that of the backward softmax."""

    def _build(self, logits: Tensor, temperature: float | Tensor) -> StraightThrough:
        return StraightThrough(logits=logits, temperature=temperature)


@register("st_gumbel")
class GumbelStraightThroughRelaxation(_StraightThroughRelaxation):
    """Straight-through Gumbel-softmax (Jang et al. 2017) as a categorical (categorical KL)."""

    def _build(self, logits: Tensor, temperature: float | Tensor) -> GumbelStraightThrough:
        return GumbelStraightThrough(temperature, logits=logits)


@register("gumbel_rao")
class GumbelRaoRelaxation(_StraightThroughRelaxation):
    """Gumbel-Rao (Paulus et al. 2021) with ``num_draws`` conditional Gumbel draws."""

    def __init__(self, num_categories: int | None = None, num_draws: int = 10) -> None:
        super().__init__(num_categories)
        self.num_draws = check_int("num_draws", num_draws, min=1)

    def _build(self, logits: Tensor, temperature: float | Tensor) -> GumbelRao:
        return GumbelRao(temperature, logits=logits, num_draws=self.num_draws)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_draws={self.num_draws}"


@register("reinmax")
class ReinMaxRelaxation(_StraightThroughRelaxation):
    """ReinMax (Liu et al. 2023); its authors recommend temperatures >= 1."""

    def _build(self, logits: Tensor, temperature: float | Tensor) -> ReinMax:
        return ReinMax(logits=logits, temperature=temperature)


@register("decoupled_st")
class DecoupledStraightThroughRelaxation(_StraightThroughRelaxation):
    """Decoupled straight-through (Shah et al. 2024): ``forward_temperature`` fixed here, the
    temperature passed at each call is the backward one."""

    def __init__(self, num_categories: int | None = None, forward_temperature: float = 1.0) -> None:
        super().__init__(num_categories)
        self.forward_temperature = float(check_positive("forward_temperature", forward_temperature))

    def _build(self, logits: Tensor, temperature: float | Tensor) -> DecoupledStraightThrough:
        tau_f: float | Tensor = self.forward_temperature
        if isinstance(temperature, Tensor):
            tau_f = torch.tensor(tau_f, dtype=temperature.dtype, device=temperature.device)
        return DecoupledStraightThrough(tau_f, temperature, logits=logits)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, forward_temperature={self.forward_temperature}"
