r"""Gumbel-softmax (Concrete) distributions on the simplex, in log space.

:class:`ExpGumbelSoftmax` is the ExpConcrete distribution of the log of a Gumbel-softmax sample;
:class:`GumbelSoftmax` pushes it through an exponential (a cached
:class:`~torch.distributions.transforms.ExpTransform`), exactly as torch composes
``RelaxedOneHotCategorical``, but

- the density of a value that :meth:`GumbelSoftmax.rsample` just returned is computed from the
  cached log-space sample, so it stays finite and exact at low temperature even where entries of the
  value underflow to 0 (torch returns NaN there: pytorch #18254, pyro #3304);
- the temperature may have any shape that broadcasts with the batch shape of the logits, and a
  per-row temperature of shape ``(B, 1)`` beside logits ``(B, K)`` is read as torch users mean it
  (torch broadcasts it against the category axis in ``log_prob``: pytorch #37162);
- an optional straight-through mode returns one-hot samples with the relaxed gradient.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.distribution import Distribution
from torch.distributions.transformed_distribution import TransformedDistribution
from torch.distributions.transforms import ExpTransform
from torch.distributions.utils import lazy_property, logits_to_probs, probs_to_logits

from simplexity._checks import check_floating, check_positive
from simplexity.distributions.transforms import _beside, _validate_log_value, log_simplex

__all__ = ["ExpGumbelSoftmax", "GumbelSoftmax"]

_SizeLike = torch.Size | tuple[int, ...] | list[int]


def _temperature_tensor(temperature: float | Tensor, like: Tensor) -> Tensor:
    """Return the temperature as a floating tensor with the dtype and device of ``like``.

    A tensor with as many axes as ``like`` and a trailing singleton stands beside it: the
    singleton faces the category axis and is dropped.
    """
    if isinstance(temperature, Tensor):
        check_floating("temperature", temperature)
        if temperature.dtype != like.dtype:
            raise TypeError(
                f"temperature has dtype {temperature.dtype} but the logits have dtype {like.dtype}"
            )
        return _beside(temperature, like)
    check_positive("temperature", temperature)
    return torch.tensor(float(temperature), dtype=like.dtype, device=like.device)


def _broadcast_batch(temperature: Tensor, param_batch: torch.Size) -> torch.Size:
    try:
        return torch.broadcast_shapes(temperature.shape, param_batch)
    except RuntimeError:
        raise ValueError(
            f"temperature of shape {tuple(temperature.shape)} does not broadcast with the batch "
            f"shape {tuple(param_batch)} of the logits: give one temperature per batch entry, of "
            f"a shape that broadcasts with {tuple(param_batch)} (or with a trailing 1 beside the "
            f"category axis), not one per category"
        ) from None


class ExpGumbelSoftmax(Distribution):
    r"""The log of a Gumbel-softmax sample (the ExpConcrete distribution).

    A sample is :math:`x = \log\operatorname{softmax}((l + g)/\tau)` with :math:`g_k` i.i.d.
    standard Gumbel; it lies on the manifold :math:`\operatorname{logsumexp}_k x_k = 0`. Its density
    with respect to Lebesgue measure on the :math:`K-1` log-ratio coordinates
    :math:`u_k = x_k - x_K` (:math:`k < K`), which determine :math:`x = \log\operatorname{softmax}
    (u_1, \dots, u_{K-1}, 0)`, is

    .. math::
        \log p(x) = \log\Gamma(K) + (K-1)\log\tau + \sum_{k=1}^K (l_k - \tau x_k)
            - K \operatorname{logsumexp}_k (l_k - \tau x_k).

    Everything stays in log space, so this is the form to use for Monte Carlo KL estimates at
    low temperature. (Over the first :math:`K-1` coordinates of :math:`x` this function is not a
    density: it integrates to :math:`\mathbb{E}[y_K] < 1` there.)

    Args:
        temperature: positive temperature :math:`\tau`, a float or a tensor whose shape broadcasts
            with ``logits.shape[:-1]``, or of shape ``(..., 1)`` beside the logits.
        probs: probabilities of shape ``(..., K)`` (give exactly one of ``probs`` and ``logits``;
            torch's order, as in ``ExpRelaxedCategorical(temperature, probs, logits)``).
        logits: unnormalized log probabilities of shape ``(..., K)``.
        validate_args: check arguments and values (torch's convention).

    References:
        Maddison, Mnih, Teh. The Concrete Distribution: A Continuous Relaxation of Discrete
        Random Variables. ICLR 2017.

    Example:
        >>> d = ExpGumbelSoftmax(0.5, logits=torch.zeros(3))
        >>> x = d.rsample((2,))
        >>> x.logsumexp(-1).abs().max() < 1e-5
        tensor(True)
        >>> d.log_prob(x).shape
        torch.Size([2])
    """

    arg_constraints = {  # noqa: RUF012
        "temperature": constraints.positive,
        "logits": constraints.real_vector,
        "probs": constraints.simplex,
    }
    support = log_simplex
    has_rsample = True

    def __init__(
        self,
        temperature: float | Tensor,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if (logits is None) == (probs is None):
            raise ValueError("give exactly one of logits or probs")
        param = logits if logits is not None else probs
        name = "logits" if logits is not None else "probs"
        check_floating(name, param)
        if param.dim() < 1 or param.shape[-1] < 2:
            raise ValueError(
                f"{name} must have shape (..., K) with K >= 2 categories, got {tuple(param.shape)}"
            )
        if logits is not None:
            self.logits = logits - logits.logsumexp(dim=-1, keepdim=True)
        else:
            self.probs = probs / probs.sum(-1, keepdim=True)
        self.temperature = _temperature_tensor(temperature, param)
        batch_shape = _broadcast_batch(self.temperature, param.shape[:-1])
        super().__init__(batch_shape, param.shape[-1:], validate_args=validate_args)

    @lazy_property
    def logits(self) -> Tensor:
        return probs_to_logits(self.probs)

    @lazy_property
    def probs(self) -> Tensor:
        return logits_to_probs(self.logits)

    @property
    def num_categories(self) -> int:
        """The number of categories K."""
        return self.event_shape[0]

    def expand(self, batch_shape: _SizeLike, _instance: ExpGumbelSoftmax | None = None):
        new = self._get_checked_instance(ExpGumbelSoftmax, _instance)
        batch_shape = torch.Size(batch_shape)
        new.temperature = self.temperature.expand(batch_shape)
        if "logits" in self.__dict__:
            new.logits = self.logits.expand(batch_shape + self.event_shape)
        if "probs" in self.__dict__:
            new.probs = self.probs.expand(batch_shape + self.event_shape)
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape: _SizeLike = ()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        logits = self.logits
        finfo = torch.finfo(logits.dtype)
        u = torch.rand(shape, dtype=logits.dtype, device=logits.device)
        gumbels = u.clamp_(finfo.tiny, 1 - finfo.eps).log_().neg_().log_().neg_()
        scores = (logits + gumbels) / self.temperature.unsqueeze(-1)
        return scores.log_softmax(dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        k = self.num_categories
        tau = self.temperature
        score = self.logits - value * tau.unsqueeze(-1)
        log_scale = math.lgamma(k) + (k - 1) * tau.log()
        return score.sum(-1) - k * score.logsumexp(dim=-1) + log_scale


class GumbelSoftmax(TransformedDistribution):
    r"""Gumbel-softmax / Concrete distribution on the simplex, optionally straight-through.

    A sample is :math:`y = \operatorname{softmax}((l + g)/\tau)`, :math:`g_k` i.i.d. standard
    Gumbel, with density (w.r.t. Lebesgue measure on the first :math:`K-1` coordinates)

    .. math::
        \log p(y) = \log\Gamma(K) + (K-1)\log\tau + \sum_{k=1}^K (l_k - (\tau+1)\log y_k)
            - K \operatorname{logsumexp}_k (l_k - \tau \log y_k).

    It is :class:`ExpGumbelSoftmax` pushed through a cached exponential, so the density is computed
    in log space; for a value just returned by :meth:`rsample` the log-space sample is reused, which
    keeps :meth:`log_prob` finite and exact even when entries of the value underflow to 0.

    With ``straight_through=True``, :meth:`rsample` returns ``one_hot(argmax y)`` in the forward
    pass with the gradient of ``y`` (Jang et al. 2017, section 2.2); :meth:`log_prob` of such a
    sample is the relaxed density of the ``y`` that produced it.

    Args:
        temperature: positive temperature :math:`\tau`, a float or a tensor whose shape broadcasts
            with ``logits.shape[:-1]`` (a batch of temperatures is broadcast against the batch,
            never against the categories), or of shape ``(..., 1)`` beside the logits (a per-row
            temperature ``(B, 1)`` for logits ``(B, K)``, as torch users write it).
        probs: probabilities of shape ``(..., K)`` (give exactly one of ``probs`` and ``logits``;
            torch's order, as in ``RelaxedOneHotCategorical(temperature, probs, logits)``).
        logits: unnormalized log probabilities :math:`l` of shape ``(..., K)``.
        straight_through: return one-hot samples with the relaxed gradient.
        validate_args: check arguments and values (torch's convention).

    References:
        Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax. ICLR 2017.
        Maddison, Mnih, Teh. The Concrete Distribution. ICLR 2017.

    Example:
        >>> q = GumbelSoftmax(torch.tensor([0.1, 1.0]), logits=torch.randn(2, 4))
        >>> y = q.rsample((5,))
        >>> y.shape, q.log_prob(y).shape
        (torch.Size([5, 2, 4]), torch.Size([5, 2]))
        >>> bool(q.log_prob(y).isfinite().all())
        True
    """

    arg_constraints = {  # noqa: RUF012
        "temperature": constraints.positive,
        "logits": constraints.real_vector,
        "probs": constraints.simplex,
    }
    support = constraints.simplex
    has_rsample = True
    base_dist: ExpGumbelSoftmax

    def __init__(
        self,
        temperature: float | Tensor,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        *,
        straight_through: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        base = ExpGumbelSoftmax(
            temperature, logits=logits, probs=probs, validate_args=validate_args
        )
        self.straight_through = bool(straight_through)
        self._st_cache: tuple[Tensor, Tensor] | None = None
        super().__init__(base, ExpTransform(cache_size=1), validate_args=validate_args)

    def expand(self, batch_shape: _SizeLike, _instance: GumbelSoftmax | None = None):
        new = self._get_checked_instance(GumbelSoftmax, _instance)
        new.straight_through = self.straight_through
        new._st_cache = None
        batch_shape = torch.Size(batch_shape)
        base = self.base_dist.expand(batch_shape)
        TransformedDistribution.__init__(new, base, ExpTransform(cache_size=1), validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def temperature(self) -> Tensor:
        """The temperature, of a shape that broadcasts with the batch shape."""
        return self.base_dist.temperature

    @property
    def logits(self) -> Tensor:
        """Normalized logits (log probabilities) of shape ``batch_shape + (K,)``."""
        return self.base_dist.logits

    @property
    def probs(self) -> Tensor:
        """Probabilities of shape ``batch_shape + (K,)``."""
        return self.base_dist.probs

    @property
    def num_categories(self) -> int:
        """The number of categories K."""
        return self.event_shape[0]

    def rsample(self, sample_shape: _SizeLike = ()) -> Tensor:
        x = self.base_dist.rsample(sample_shape)
        y = self.transforms[0](x)  # cached: log_prob(y) reuses x
        if not self.straight_through:
            return y
        index = x.argmax(dim=-1, keepdim=True)
        hard = torch.zeros_like(y).scatter_(-1, index, 1.0)
        out = hard + (y - y.detach())
        self._st_cache = (out, x)
        return out

    def sample(self, sample_shape: _SizeLike = ()) -> Tensor:
        """Draw a sample without gradient: one-hot in straight-through mode, as :meth:`rsample`."""
        with torch.no_grad():
            return self.rsample(sample_shape)

    def rsample_log(self, sample_shape: _SizeLike = ()) -> tuple[Tensor, Tensor]:
        """Return ``(y, log y)`` of one relaxed sample, ``log y`` computed without underflow."""
        x = self.base_dist.rsample(sample_shape)
        return self.transforms[0](x), x

    def log_prob_from_log(self, log_value: Tensor) -> Tensor:
        r"""Density of :math:`y` given :math:`\log y` (stable where entries underflow)."""
        if self._validate_args:
            _validate_log_value(log_value, self.num_categories)
        return self.base_dist.log_prob(log_value) - log_value.sum(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        cache = self._st_cache
        if cache is not None and value is cache[0]:
            x = cache[1]
            return self.base_dist.log_prob(x) - x.sum(-1)
        return super().log_prob(value)
