r"""One-hot categoricals whose ``rsample`` returns exact one-hot samples carrying a surrogate gradient.

Each distribution here is a :class:`torch.distributions.OneHotCategorical` (its ``log_prob``,
support, ``entropy`` and closed-form KL are the categorical's) whose :meth:`rsample` returns an
exact sample :math:`D` of the categorical in the forward pass and, in the backward pass, one of
the straight-through family of gradient estimators, as torch's
:class:`~torch.distributions.OneHotCategoricalStraightThrough` does for the plain estimator.

Notation: :math:`\theta` the logits, :math:`\pi = \operatorname{softmax}(\theta)`,
:math:`\pi_\tau = \operatorname{softmax}(\theta/\tau)`, :math:`g = \partial f/\partial D` the
upstream gradient at the sample, :math:`G_k` i.i.d. standard Gumbel and
:math:`J(p)v = p \odot v - p\,(p^\top v)` the softmax Jacobian at :math:`p` applied to :math:`v`.
The estimate of :math:`\nabla_\theta \mathbb{E}_{D}[f(D)]` that ``rsample`` backpropagates is

=================================  ===========================================  =========================================================
class                              forward sample :math:`D`                     gradient with respect to :math:`\theta`
=================================  ===========================================  =========================================================
:class:`StraightThrough`           :math:`\mathrm{Cat}(\pi)`                    :math:`J(\pi_\tau)\,g/\tau`
:class:`GumbelStraightThrough`     :math:`e_{\arg\max(\theta + G)}`             :math:`J(y)\,g/\tau`, :math:`y = \operatorname{softmax}((\theta+G)/\tau)`
:class:`GumbelRao`                 :math:`\mathrm{Cat}(\pi)`                    :math:`\frac1n\sum_i J(y_i)\,g/\tau`, :math:`y_i` at :math:`G_i \sim G \mid D`
:class:`ReinMax`                   :math:`\mathrm{Cat}(\pi)`                    :math:`2J(\tfrac12(\pi_\tau + D))\,g - \tfrac12 J(\pi)\,g`
:class:`DecoupledStraightThrough`  :math:`e_{\arg\max(\theta/\tau_f + G)}`      :math:`J(y)\,g/\tau_b`, :math:`y = \operatorname{softmax}(\theta/\tau_b + G)`
=================================  ===========================================  =========================================================

Each is implemented as ``D + s - s.detach()`` with a surrogate :math:`s(\theta)` whose Jacobian is
the estimator's (for ReinMax the linear surrogate :math:`s = 2J(\bar p)\theta - \frac12 J(\bar\pi)\theta`
with the bars stopped, since :math:`J(p)` is symmetric), so the forward value is exactly
:math:`D`, and ``log_prob`` of it is the categorical's. None of these gradients is unbiased in
general; :func:`~simplexity.distributions.score_function.score_function_surrogate` gives the
unbiased score-function estimators.

References:
    Bengio, Léonard, Courville. Estimating or Propagating Gradients Through Stochastic Neurons for
    Conditional Computation. arXiv:1308.3432, 2013.
    Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax. ICLR 2017.
    Paulus, Maddison, Krause. Rao-Blackwellizing the Straight-Through Gumbel-Softmax Gradient
    Estimator. ICLR 2021.
    Liu, Zhao, Chen, Gao, Pang, Lee, Hu. Bridging Discrete and Backpropagation: Straight-Through and
    Beyond. NeurIPS 2023.
    Shah, Yan, Mozer, Liu. Improving Discrete Optimisation Via Decoupled Straight-Through
    Gumbel-Softmax. arXiv:2410.13331, 2024.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.one_hot_categorical import OneHotCategorical

from simplexity._checks import check_floating, check_int, check_positive

__all__ = [
    "DecoupledStraightThrough",
    "GumbelRao",
    "GumbelStraightThrough",
    "OneHotSurrogate",
    "ReinMax",
    "StraightThrough",
    "conditional_gumbel",
    "softmax_jacobian_product",
]

_SizeLike = torch.Size | tuple[int, ...] | list[int]


def softmax_jacobian_product(p: Tensor, v: Tensor) -> Tensor:
    r""":math:`J(p)\,v = p \odot v - p\,(p^\top v)` over the last dimension.

    For :math:`p = \operatorname{softmax}(\theta)` this is the vector-Jacobian product of the softmax
    at :math:`\theta` (the Jacobian is symmetric). Used by :class:`ReinMax` at points :math:`p` that
    are not the softmax of the logits.

    Example:
        >>> p = torch.tensor([0.5, 0.5])
        >>> softmax_jacobian_product(p, torch.tensor([1.0, 0.0]))
        tensor([ 0.2500, -0.2500])
    """
    return p * v - p * (p * v).sum(-1, keepdim=True)


def _gumbel(shape: torch.Size, like: Tensor) -> Tensor:
    finfo = torch.finfo(like.dtype)
    u = torch.rand(shape, dtype=like.dtype, device=like.device)
    return u.clamp_(finfo.tiny, 1 - finfo.eps).log_().neg_().log_().neg_()


def _exponential(shape: torch.Size, like: Tensor) -> Tensor:
    finfo = torch.finfo(like.dtype)
    u = torch.rand(shape, dtype=like.dtype, device=like.device)
    return u.clamp_(finfo.tiny, 1 - finfo.eps).log_().neg_()


def _one_hot_argmax(scores: Tensor) -> Tensor:
    index = scores.argmax(-1, keepdim=True)
    return torch.zeros_like(scores).scatter_(-1, index, 1.0)


def conditional_gumbel(logits: Tensor, sample: Tensor, num_draws: int = 1) -> Tensor:
    r"""Gumbel noise :math:`G` drawn conditionally on :math:`\arg\max_k(\theta_k + G_k) = d`.

    With :math:`\theta` normalized (:math:`\log Z = \operatorname{logsumexp}\theta`) and
    :math:`E_k` i.i.d. standard exponential, the perturbed logits :math:`X = \theta + G` given the
    argmax :math:`d` are

    .. math::
        X_d = \log Z - \log E_d,\qquad
        X_j = -\log\big(E_d/Z + E_j e^{-\theta_j}\big)\quad (j \ne d),

    the maximum being :math:`\mathrm{Gumbel}(\log Z)` independent of the argmax and the others
    Gumbels truncated below it (Maddison, Tarlow, Minka, NeurIPS 2014; Paulus et al., ICLR 2021,
    appendix). Computed in log space, without gradient.

    Args:
        logits: :math:`\theta`, shape ``(..., K)``.
        sample: one-hot :math:`e_d`, shape broadcastable to ``(..., K)`` on the left of ``logits``
            (e.g. ``sample_shape + logits.shape``).
        num_draws: the number :math:`n` of independent draws.

    Returns:
        :math:`G` of shape ``(num_draws, *sample.shape)``; ``argmax(logits + G) == argmax(sample)``.

    Example:
        >>> logits = torch.tensor([1.0, 0.0, -1.0])
        >>> d = torch.tensor([0.0, 0.0, 1.0])
        >>> g = conditional_gumbel(logits, d, num_draws=100)
        >>> bool((logits + g).argmax(-1).eq(2).all())
        True
    """
    check_floating("logits", logits)
    check_int("num_draws", num_draws, min=1)
    with torch.no_grad():
        logits = logits.detach()
        sample = sample.detach().to(logits.dtype)
        shape = torch.Size((num_draws, *torch.broadcast_shapes(sample.shape, logits.shape)))
        log_z = logits.logsumexp(-1, keepdim=True)
        log_e = _exponential(shape, logits).log()
        log_e_top = (log_e * sample).sum(-1, keepdim=True)  # log E_d
        top = log_z - log_e_top
        rest = -torch.logaddexp(log_e_top - log_z, log_e - logits)
        perturbed = torch.where(sample.bool(), top, rest)
        return perturbed - logits


def _temperature(name: str, value: float | Tensor, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        check_floating(name, value)
        if value.dtype != like.dtype:
            raise TypeError(f"{name} has dtype {value.dtype} but the logits have {like.dtype}")
        return value
    check_positive(name, value)
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


class OneHotSurrogate(OneHotCategorical):
    """Base class: a :class:`OneHotCategorical` whose ``rsample`` is ``D + s - stop(s)``.

    Subclasses define :meth:`surrogate` (and :meth:`_draw` where the sample needs noise that the
    surrogate reuses). The KL of any subclass to a categorical prior is registered in
    :mod:`simplexity.distributions.kl`.
    """

    has_rsample = True
    _temperatures: tuple[str, ...] = ()

    def __init__(
        self,
        probs: Tensor | None,
        logits: Tensor | None,
        temperatures: dict[str, float | Tensor],
        validate_args: bool | None,
    ) -> None:
        if (probs is None) == (logits is None):
            raise ValueError("give exactly one of probs or logits")
        name = "probs" if probs is not None else "logits"
        param = probs if probs is not None else logits
        check_floating(name, param)
        if param.dim() < 1 or param.shape[-1] < 2:
            raise ValueError(
                f"{name} must have shape (..., K) with K >= 2 categories, got {tuple(param.shape)}"
            )
        values = {key: _temperature(key, value, param) for key, value in temperatures.items()}
        try:
            batch = torch.broadcast_shapes(param.shape[:-1], *(t.shape for t in values.values()))
        except RuntimeError:
            raise ValueError(
                f"the temperatures of shapes {[tuple(t.shape) for t in values.values()]} do not "
                f"broadcast with the batch shape {tuple(param.shape[:-1])} of the {name} (the "
                "category axis is the last one and is not broadcast against a temperature)"
            ) from None
        param = param.expand(*batch, param.shape[-1])
        for key, value in values.items():
            setattr(self, key, value)
        super().__init__(
            probs=param if probs is not None else None,
            logits=param if logits is not None else None,
            validate_args=validate_args,
        )

    @property
    def num_categories(self) -> int:
        """The number of categories K."""
        return self.event_shape[0]

    def expand(self, batch_shape: _SizeLike, _instance: OneHotSurrogate | None = None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        for key in self._temperatures:
            setattr(new, key, getattr(self, key).expand(batch_shape))
        self._copy_options(new)
        return super().expand(batch_shape, _instance=new)

    def _copy_options(self, new: OneHotSurrogate) -> None:
        """Copy the non-tensor options (``num_draws``) to an expanded copy."""

    def _tau(self, key: str) -> Tensor:
        return getattr(self, key).unsqueeze(-1)

    def _logits(self, sample_shape: _SizeLike) -> Tensor:
        return self.logits.expand(self._extended_shape(sample_shape))

    def surrogate(self, sample: Tensor, noise: Tensor | None = None) -> Tensor:
        r"""The differentiable surrogate :math:`s(\theta)` for a given ``sample`` (and ``noise``).

        ``rsample`` returns ``sample + s - s.detach()``, so the gradient it carries is the
        vector-Jacobian product of :math:`s` (the table of the module doc).
        """
        raise NotImplementedError

    def _draw(self, sample_shape: _SizeLike) -> tuple[Tensor, Tensor | None]:
        """A one-hot sample and the noise the surrogate needs (``None`` if none)."""
        return self.sample(sample_shape), None

    def rsample(self, sample_shape: _SizeLike = ()) -> Tensor:
        sample, noise = self._draw(torch.Size(sample_shape))
        s = self.surrogate(sample, noise)
        return sample + (s - s.detach())


class StraightThrough(OneHotSurrogate):
    r"""Straight-through categorical: exact one-hot samples, gradient through a tempered softmax.

    The forward sample is :math:`D \sim \mathrm{Cat}(\pi)`; the backward pass treats it as
    :math:`\pi_\tau = \operatorname{softmax}(\theta/\tau)`, so the gradient with respect to the
    logits is :math:`J(\pi_\tau)\,g/\tau`. At :math:`\tau = 1` this is torch's
    :class:`~torch.distributions.OneHotCategoricalStraightThrough`, and for a linear
    :math:`f(D) = c^\top D` every single-sample estimate equals the exact gradient
    :math:`J(\pi)c` of :math:`\mathbb{E}[f(D)]`.

    Args:
        probs: probabilities of shape ``(..., K)`` (give exactly one of ``probs`` and ``logits``).
        logits: unnormalized log probabilities :math:`\theta` of shape ``(..., K)``.
        temperature: :math:`\tau > 0` of the backward softmax, a float or a tensor broadcasting
            with the batch shape.
        validate_args: check arguments and values (torch's convention).

    References:
        Bengio, Léonard, Courville. Estimating or Propagating Gradients Through Stochastic Neurons
        for Conditional Computation. arXiv:1308.3432, 2013.

    Example:
        >>> logits = torch.zeros(2, 4, requires_grad=True)
        >>> q = StraightThrough(logits=logits)
        >>> d = q.rsample((3,))
        >>> d.shape, bool(d.sum(-1).eq(1).all()), q.log_prob(d).shape
        (torch.Size([3, 2, 4]), True, torch.Size([3, 2]))
        >>> (d * torch.arange(4.0)).sum().backward()
        >>> logits.grad.shape
        torch.Size([2, 4])
    """

    arg_constraints = {  # noqa: RUF012
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
        "temperature": constraints.positive,
    }
    _temperatures = ("temperature",)

    def __init__(
        self,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        *,
        temperature: float | Tensor = 1.0,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(probs, logits, {"temperature": temperature}, validate_args)

    def surrogate(self, sample: Tensor, noise: Tensor | None = None) -> Tensor:
        logits = self.logits.expand(sample.shape)
        return torch.softmax(logits / self._tau("temperature"), -1)


class GumbelStraightThrough(OneHotSurrogate):
    r"""Straight-through Gumbel-softmax: one-hot Gumbel-max samples, Gumbel-softmax gradient.

    With :math:`G_k` i.i.d. standard Gumbel, the forward sample is
    :math:`D = e_{\arg\max_k(\theta_k + G_k)}` (an exact sample of :math:`\mathrm{Cat}(\pi)`) and the
    backward pass differentiates :math:`y = \operatorname{softmax}((\theta + G)/\tau)` at the same
    :math:`G`: gradient :math:`J(y)\,g/\tau`.

    Unlike :class:`~simplexity.distributions.GumbelSoftmax` with ``straight_through=True`` (whose
    ``log_prob`` is the relaxed density), this is a categorical: ``log_prob``, entropy and KL are
    those of the discrete distribution.

    Args:
        temperature: :math:`\tau > 0`, a float or a tensor broadcasting with the batch shape.
        probs: probabilities of shape ``(..., K)`` (give exactly one of ``probs`` and ``logits``).
        logits: unnormalized log probabilities :math:`\theta` of shape ``(..., K)``.
        validate_args: check arguments and values (torch's convention).

    References:
        Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax. ICLR 2017, section 2.2.

    Example:
        >>> q = GumbelStraightThrough(0.5, logits=torch.randn(2, 4))
        >>> d = q.rsample((3,))
        >>> d.shape, sorted(d.unique().tolist())
        (torch.Size([3, 2, 4]), [0.0, 1.0])
    """

    arg_constraints = {  # noqa: RUF012
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
        "temperature": constraints.positive,
    }
    _temperatures = ("temperature",)

    def __init__(
        self,
        temperature: float | Tensor,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(probs, logits, {"temperature": temperature}, validate_args)

    def _draw(self, sample_shape: _SizeLike) -> tuple[Tensor, Tensor]:
        logits = self._logits(sample_shape)
        gumbels = _gumbel(logits.shape, logits)
        return _one_hot_argmax(logits.detach() + gumbels), gumbels

    def surrogate(self, sample: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            raise ValueError("GumbelStraightThrough.surrogate needs the Gumbel noise of the sample")
        logits = self.logits.expand(sample.shape)
        return torch.softmax((logits + noise) / self._tau("temperature"), -1)


class GumbelRao(OneHotSurrogate):
    r"""Gumbel-Rao: the straight-through Gumbel-softmax gradient averaged over :math:`G \mid D`.

    The forward sample is :math:`D \sim \mathrm{Cat}(\pi)`. The backward pass averages the
    straight-through Gumbel-softmax gradient over ``num_draws`` draws :math:`G_i` of the Gumbel
    noise conditioned on producing :math:`D` (:func:`conditional_gumbel`):

    .. math::
        \hat\nabla = \frac1n \sum_{i=1}^n J(y_i)\,g/\tau,\qquad
        y_i = \operatorname{softmax}((\theta + G_i)/\tau),

    a Monte Carlo Rao-Blackwellization of :class:`GumbelStraightThrough`: the same expectation,
    :math:`\mathbb{E}[\hat\nabla \mid D]` that of the straight-through Gumbel-softmax, and less
    variance. The draws are treated as constants (no derivative through :math:`G_i(\theta)`), as in
    the ReinMax authors' and nshepperd's public implementations; with ``num_draws=1`` the estimator
    has the distribution of the straight-through Gumbel-softmax's.

    Args:
        temperature: :math:`\tau > 0`, a float or a tensor broadcasting with the batch shape.
        probs: probabilities of shape ``(..., K)`` (give exactly one of ``probs`` and ``logits``).
        logits: unnormalized log probabilities :math:`\theta` of shape ``(..., K)``.
        num_draws: the number :math:`n` of conditional Gumbel draws (the paper's "MC K").
        validate_args: check arguments and values (torch's convention).

    References:
        Paulus, Maddison, Krause. Rao-Blackwellizing the Straight-Through Gumbel-Softmax Gradient
        Estimator. ICLR 2021.

    Example:
        >>> q = GumbelRao(0.5, logits=torch.randn(2, 4), num_draws=10)
        >>> q.rsample((3,)).shape
        torch.Size([3, 2, 4])
    """

    arg_constraints = {  # noqa: RUF012
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
        "temperature": constraints.positive,
    }
    _temperatures = ("temperature",)

    def __init__(
        self,
        temperature: float | Tensor,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        *,
        num_draws: int = 10,
        validate_args: bool | None = None,
    ) -> None:
        self.num_draws = check_int("num_draws", num_draws, min=1)
        super().__init__(probs, logits, {"temperature": temperature}, validate_args)

    def _copy_options(self, new: OneHotSurrogate) -> None:
        new.num_draws = self.num_draws  # type: ignore[attr-defined]

    def _draw(self, sample_shape: _SizeLike) -> tuple[Tensor, Tensor]:
        sample = self.sample(sample_shape)
        return sample, conditional_gumbel(self.logits, sample, self.num_draws)

    def surrogate(self, sample: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            raise ValueError("GumbelRao.surrogate needs the conditional Gumbel draws")
        logits = self.logits.expand(sample.shape)
        return torch.softmax((logits + noise) / self._tau("temperature"), -1).mean(0)


class ReinMax(OneHotSurrogate):
    r"""ReinMax: a second-order (Heun's method) straight-through gradient.

    The forward sample is :math:`D \sim \mathrm{Cat}(\pi)`. With
    :math:`\bar p = \frac12(\pi_\tau + D)`, the backward pass returns

    .. math::
        \hat\nabla = 2\,J(\bar p)\,g - \tfrac12\,J(\pi)\,g,

    the authors' update rule (their code also subtracts the mean over categories, which is zero
    here up to rounding because :math:`\bar p` sums to one). Where straight-through is Euler's
    method on the integral :math:`f(e_i) - f(e_j)`, ReinMax is Heun's: at :math:`\tau = 1` its
    expectation over :math:`D` is the exact gradient of :math:`\mathbb{E}[f(D)]` for every
    quadratic :math:`f`. The authors recommend :math:`\tau \ge 1` (their package refuses
    :math:`\tau < 1`); any :math:`\tau > 0` is accepted here.

    Args:
        probs: probabilities of shape ``(..., K)`` (give exactly one of ``probs`` and ``logits``).
        logits: unnormalized log probabilities :math:`\theta` of shape ``(..., K)``.
        temperature: :math:`\tau > 0` of :math:`\pi_\tau`.
        validate_args: check arguments and values (torch's convention).

    References:
        Liu, Zhao, Chen, Gao, Pang, Lee, Hu. Bridging Discrete and Backpropagation: Straight-Through
        and Beyond. NeurIPS 2023 (code: microsoft/ReinMax).

    Example:
        >>> q = ReinMax(logits=torch.randn(2, 4), temperature=1.3)
        >>> q.rsample((3,)).shape
        torch.Size([3, 2, 4])
    """

    arg_constraints = {  # noqa: RUF012
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
        "temperature": constraints.positive,
    }
    _temperatures = ("temperature",)

    def __init__(
        self,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        *,
        temperature: float | Tensor = 1.0,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(probs, logits, {"temperature": temperature}, validate_args)

    def surrogate(self, sample: Tensor, noise: Tensor | None = None) -> Tensor:
        logits = self.logits.expand(sample.shape)
        with torch.no_grad():
            pi = torch.softmax(logits, -1)
            half = 0.5 * (torch.softmax(logits / self._tau("temperature"), -1) + sample)
        # J(p) is symmetric, so s = J(p) θ with p stopped has vector-Jacobian product J(p) g;
        # θ - stop(θ) keeps the value of s at zero
        delta = logits - logits.detach()
        return 2 * softmax_jacobian_product(half, delta) - 0.5 * softmax_jacobian_product(pi, delta)


class DecoupledStraightThrough(OneHotSurrogate):
    r"""Decoupled straight-through Gumbel-softmax: one temperature forward, another backward.

    The logits :math:`\theta` are tempered differently in the two passes. Forward, the sample is
    :math:`D = e_{\arg\max(\theta/\tau_f + G)}`, an exact sample of
    :math:`\mathrm{Cat}(\operatorname{softmax}(\theta/\tau_f))` — *this* is the distribution
    (``probs``, ``logits``, ``log_prob``, KL) —; backward, the pass differentiates
    :math:`y = \operatorname{softmax}(\theta/\tau_b + G)` at the same :math:`G`, giving
    :math:`J(y)\,g/\tau_b` with respect to :math:`\theta`. The temperatures scale the logits, not the
    noise, as in the paper (the :math:`\theta/\tau + G` form); :math:`\tau_f` sets how random the
    forward samples are, :math:`\tau_b` how the gradient spreads over categories.

    Args:
        forward_temperature: :math:`\tau_f > 0`.
        backward_temperature: :math:`\tau_b > 0`.
        probs: untempered probabilities :math:`\operatorname{softmax}(\theta)` of shape ``(..., K)``
            (give exactly one of ``probs`` and ``logits``).
        logits: untempered logits :math:`\theta` of shape ``(..., K)``.
        validate_args: check arguments and values (torch's convention).

    References:
        Shah, Yan, Mozer, Liu. Improving Discrete Optimisation Via Decoupled Straight-Through
        Gumbel-Softmax. arXiv:2410.13331, 2024.

    Example:
        >>> q = DecoupledStraightThrough(2.0, 0.5, logits=torch.tensor([2.0, 0.0]))
        >>> q.probs  # the forward distribution: softmax(θ / 2)
        tensor([0.7311, 0.2689])
        >>> q.rsample((3,)).shape
        torch.Size([3, 2])
    """

    arg_constraints = {  # noqa: RUF012
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
        "forward_temperature": constraints.positive,
        "backward_temperature": constraints.positive,
    }
    _temperatures = ("forward_temperature", "backward_temperature")

    def __init__(
        self,
        forward_temperature: float | Tensor,
        backward_temperature: float | Tensor,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if (probs is None) == (logits is None):
            raise ValueError("give exactly one of probs or logits")
        name = "probs" if probs is not None else "logits"
        theta = check_floating(name, probs if probs is not None else logits)
        if theta.dim() < 1 or theta.shape[-1] < 2:
            raise ValueError(
                f"{name} must have shape (..., K) with K >= 2 categories, got {tuple(theta.shape)}"
            )
        if probs is not None:
            validate = Distribution._validate_args if validate_args is None else validate_args
            probs = probs / probs.sum(-1, keepdim=True)  # normalized, as torch's Categorical
            if validate and not bool(constraints.simplex.check(probs).all()):
                raise ValueError("probs must be non-negative with a positive finite sum")
            theta = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
        tau_f = _temperature("forward_temperature", forward_temperature, theta)
        try:
            tempered = theta / tau_f.unsqueeze(-1)
        except RuntimeError:
            raise ValueError(
                f"forward_temperature of shape {tuple(tau_f.shape)} does not broadcast with the "
                f"batch shape {tuple(theta.shape[:-1])} of the {name}"
            ) from None
        super().__init__(
            None,
            tempered,
            {"forward_temperature": tau_f, "backward_temperature": backward_temperature},
            validate_args,
        )

    def _draw(self, sample_shape: _SizeLike) -> tuple[Tensor, Tensor]:
        logits = self._logits(sample_shape)
        gumbels = _gumbel(logits.shape, logits)
        return _one_hot_argmax(logits.detach() + gumbels), gumbels

    def surrogate(self, sample: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            raise ValueError("DecoupledStraightThrough.surrogate needs the Gumbel noise")
        # self.logits = θ/τ_f - c, so θ/τ_b = (τ_f/τ_b) self.logits + const
        ratio = self._tau("forward_temperature") / self._tau("backward_temperature")
        logits = self.logits.expand(sample.shape)
        return torch.softmax(ratio * logits + noise, -1)
