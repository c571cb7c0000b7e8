r"""Normalizing flows over any base: the :class:`Flow` distribution and its lazy module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints
from torch.distributions.transforms import Transform
from torch.distributions.utils import _sum_rightmost

from simplexity._checks import check_event

__all__ = ["Flow", "LazyFlow"]

_SizeLike = torch.Size | Sequence[int]


class Flow(Distribution):
    r"""Push a base distribution through transforms: :math:`z_L = g_L \circ \dots \circ g_1(z_0)`.

    .. math::
        \log p(z_L) = \log p_0(z_0) - \sum_{l=1}^L \log\bigl|\det \partial g_l/\partial
        z_{l-1}\bigr| .

    :meth:`log_prob` inverts the transforms (so it needs their inverses);
    :meth:`rsample_and_log_prob` runs forward only and always works, with the base density given
    by the base's own ``rsample_and_log_prob`` when it has one (forwarding ``estimator`` and
    ``num_inner`` to a :class:`~simplexity.distributions.mixture.MixtureOfGaussians`), else by its
    ``log_prob``.

    Transforms may have ``event_dim`` 0 (elementwise) or 1, and may change the event size (e.g.
    :class:`~simplexity.flows.bijections.SimplexTransform`).

    Args:
        base: a distribution with ``event_shape`` of length 1.
        transforms: torch transforms applied in order.
        validate_args: check values given to :meth:`log_prob` against the support (torch's
            convention).

    Example:
        >>> from simplexity.flows import Planar, GaussianBase
        >>> flow = Flow(GaussianBase(2)(), [Planar(2)(), Planar(2)()])
        >>> z, lp = flow.rsample_and_log_prob((5,))
        >>> torch.allclose(lp, flow.log_prob(z), atol=1e-4)
        True
    """

    arg_constraints: dict[str, constraints.Constraint] = {}  # noqa: RUF012

    def __init__(
        self,
        base: Distribution,
        transforms: Sequence[Transform],
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(base, Distribution):
            raise TypeError(f"base must be a torch Distribution, got {type(base).__name__}")
        if len(base.event_shape) != 1:
            raise ValueError(f"base must have a vector event shape (D,), got {base.event_shape}")
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not isinstance(t, Transform):
                raise TypeError(
                    f"transforms[{i}] must be a torch Transform, got {type(t).__name__}"
                )
            if t.domain.event_dim > 1:
                raise ValueError(f"transforms[{i}] has event_dim {t.domain.event_dim} > 1")
        self.base = base
        self.transforms = transforms
        shape = base.batch_shape + base.event_shape
        for t in transforms:
            shape = t.forward_shape(shape)
        super().__init__(shape[:-1], shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape: _SizeLike, _instance: Flow | None = None) -> Flow:
        new = self._get_checked_instance(Flow, _instance)
        batch_shape = torch.Size(batch_shape)
        new.base = self.base.expand(batch_shape)
        new.transforms = list(self.transforms)
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def has_rsample(self) -> bool:
        return bool(self.base.has_rsample)

    @property
    def support(self) -> constraints.Constraint:
        if not self.transforms:
            return self.base.support
        codomain = self.transforms[-1].codomain
        if codomain.event_dim < 1:  # an elementwise last transform: its codomain per coordinate
            return constraints.independent(codomain, 1 - codomain.event_dim)
        return codomain

    def _forward(self, z: Tensor, log_p: Tensor) -> tuple[Tensor, Tensor]:
        for t in self.transforms:
            y = t(z)
            log_det = _sum_rightmost(t.log_abs_det_jacobian(z, y), 1 - t.domain.event_dim)
            z, log_p = y, log_p - log_det
        return z, log_p

    def rsample(self, sample_shape: _SizeLike = ()) -> Tensor:
        z = self.base.rsample(sample_shape)
        for t in self.transforms:
            z = t(z)
        return z

    def sample(self, sample_shape: _SizeLike = ()) -> Tensor:
        with torch.no_grad():
            z = self.base.sample(sample_shape)
            for t in self.transforms:
                z = t(z)
            return z

    def rsample_and_log_prob(
        self, sample_shape: _SizeLike = (), **base_kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        """Return a sample and its log density (or the base's estimate of it), forward only.

        Args:
            sample_shape: leading sample shape.
            **base_kwargs: passed to the base's ``rsample_and_log_prob`` (``estimator``,
                ``num_inner`` for a mixture base).
        """
        if hasattr(self.base, "rsample_and_log_prob"):
            z, log_p = self.base.rsample_and_log_prob(sample_shape, **base_kwargs)
        else:
            if base_kwargs:
                raise TypeError(
                    f"the base {type(self.base).__name__} takes no estimator arguments, got "
                    f"{sorted(base_kwargs)}"
                )
            z = self.base.rsample(sample_shape)
            log_p = self.base.log_prob(z)
        return self._forward(z, log_p)

    def log_prob(self, value: Tensor) -> Tensor:
        check_event("value", value, self.event_shape)
        if self._validate_args:
            self._validate_sample(value)
        log_det = torch.zeros((), dtype=value.dtype, device=value.device)
        y = value
        for t in reversed(self.transforms):
            x = t.inv(y)
            log_det = log_det + _sum_rightmost(t.log_abs_det_jacobian(x, y), 1 - t.domain.event_dim)
            y = x
        return self.base.log_prob(y) - log_det


class LazyFlow(nn.Module):
    r"""A trainable flow: ``forward(c)`` returns ``Flow(base(c), [t(c) for t in transforms])``.

    It speaks zuko's lazy protocol (``forward(c=None)`` builds and returns a distribution), and so do
    the bases and layers of :mod:`simplexity.flows`: they ignore the context ``c`` (they are
    unconditional), so a zuko ``Flow`` takes them directly. ``LazyFlow()`` calls each module without
    an argument, so modules whose ``forward()`` takes none work too.

    Args:
        base: a module whose ``forward()`` returns the base distribution (e.g.
            :class:`~simplexity.flows.bases.GaussianBase`,
            :class:`~simplexity.flows.bases.MixtureBase`).
        transforms: modules whose ``forward()`` returns a torch ``Transform`` (e.g.
            :class:`~simplexity.flows.planar.Planar`), or fixed ``Transform`` objects.

    Example:
        >>> from simplexity.flows import AffineCoupling, MixtureBase
        >>> model = LazyFlow(MixtureBase(2, 4), [AffineCoupling(2, 0), AffineCoupling(2, 1)])
        >>> x = torch.randn(8, 2)
        >>> model().log_prob(x).shape
        torch.Size([8])
    """

    def __init__(self, base: nn.Module, transforms: Sequence[nn.Module | Transform]) -> None:
        super().__init__()
        if not isinstance(base, nn.Module):
            raise TypeError(
                f"base must be a module whose forward() returns a distribution, got "
                f"{type(base).__name__}"
            )
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not isinstance(t, nn.Module | Transform):
                raise TypeError(
                    f"transforms[{i}] must be a module returning a Transform or a Transform, got "
                    f"{type(t).__name__}"
                )
        self.base = base
        self.fixed = {i: t for i, t in enumerate(transforms) if isinstance(t, Transform)}
        self.transforms = nn.ModuleList(t for t in transforms if not isinstance(t, Transform))
        self.length = len(transforms)

    def forward(self, c: Tensor | None = None) -> Flow:
        """Build the flow; the context ``c`` is passed on to the modules when given."""

        def build(module: nn.Module) -> Any:
            return module() if c is None else module(c)

        modules = iter(self.transforms)
        built = [
            self.fixed[i] if i in self.fixed else build(next(modules)) for i in range(self.length)
        ]
        return Flow(build(self.base), built)
