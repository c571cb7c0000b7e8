"""The registry of normalizers by name: the map, its log-space form and its training loss.

Models pick a normalizer by name (``"softmax"``, ``"sparsemax"``, ``"entmax15"``, ``"entmax_bisect"``,
``"ev_softmax"``) and call the returned :class:`Normalizer` the same way whichever it is.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from simplexity._checks import check_nonnegative
from simplexity.normalizers import baselines
from simplexity.normalizers.ev_softmax import ev_softmax, ev_softmax_loss, log_ev_softmax

__all__ = ["Normalizer", "NormalizerModule", "check_name", "get", "names", "register"]

Mapping = Callable[..., Tensor]


def _log_of_output(
    mapping: Mapping, x: Tensor, dim: int = -1, *, mask: Tensor | None = None
) -> Tensor:
    """Log of a sparse map's output: ``-inf`` (with zero gradient) where the probability is 0."""
    p = mapping(x, dim, mask=mask)
    return torch.where(p > 0, p.clamp_min(torch.finfo(p.dtype).tiny).log(), -math.inf)


def _log_of(mapping: Mapping) -> Mapping:
    # a partial of module-level functions, so normalizers pickle (torch.save, spawned workers)
    return functools.partial(_log_of_output, mapping)


def _log_softmax(x: Tensor, dim: int = -1, *, mask: Tensor | None = None) -> Tensor:
    if mask is None:
        return baselines.masked(torch.log_softmax, x, dim, None)
    return _log_of_output(baselines.softmax, x, dim, mask=mask)


@dataclass(frozen=True)
class Normalizer:
    """A named normalization onto the simplex.

    Attributes:
        name: registry name.
        sparse: whether the map can return exact zeros.
        native_log: whether :meth:`log` is computed in log space (else it is the log of the output).
        options: the options it was built with.
    """

    name: str
    mapping: Mapping = field(repr=False)
    log_mapping: Mapping = field(repr=False)
    loss_fn: Callable[..., Tensor] = field(repr=False)
    sparse: bool
    native_log: bool
    options: dict[str, Any] = field(default_factory=dict)
    train_mapping: Mapping | None = field(default=None, repr=False)
    train_log_mapping: Mapping | None = field(default=None, repr=False)

    def __call__(
        self, x: Tensor, dim: int = -1, *, mask: Tensor | None = None, training: bool = False
    ) -> Tensor:
        """Probabilities; ``training=True`` selects the training form where one exists (ev-softmax's eps)."""
        fn = self.train_mapping if training and self.train_mapping is not None else self.mapping
        return fn(x, dim, mask=mask)

    def log(
        self, x: Tensor, dim: int = -1, *, mask: Tensor | None = None, training: bool = False
    ) -> Tensor:
        """Log-probabilities (``-inf`` off the support)."""
        fn = (
            self.train_log_mapping
            if training and self.train_log_mapping is not None
            else self.log_mapping
        )
        return fn(x, dim, mask=mask)

    def loss(
        self,
        input: Tensor,
        target: Tensor,
        *,
        reduction: str = "mean",
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
    ) -> Tensor:
        """The training loss, in ``CrossEntropyLoss``'s layout (classes on dim 1, index targets).

        ``label_smoothing`` is supported by the likelihood losses (softmax, ev-softmax); the
        Fenchel–Young losses of the sparse maps reject it rather than ignore it.
        """
        if label_smoothing:
            if self.name not in ("softmax", "ev_softmax"):
                raise ValueError(f"label_smoothing is not supported by the {self.name} loss")
            return self.loss_fn(
                input,
                target,
                reduction=reduction,
                ignore_index=ignore_index,
                label_smoothing=label_smoothing,
            )
        return self.loss_fn(input, target, reduction=reduction, ignore_index=ignore_index)

    def module(self, dim: int = -1) -> NormalizerModule:
        """An ``nn.Module`` applying this normalizer (training form in training mode)."""
        return NormalizerModule(self, dim)


class NormalizerModule(nn.Module):
    """Thin module around a :class:`Normalizer`: the training form in training mode."""

    def __init__(self, normalizer: Normalizer, dim: int = -1) -> None:
        super().__init__()
        self.normalizer = normalizer
        self.dim = dim

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.normalizer(x, self.dim, mask=mask, training=self.training)

    def extra_repr(self) -> str:
        return f"{self.normalizer.name}, dim={self.dim}"


_FACTORIES: dict[str, Callable[..., Normalizer]] = {}


def register(name: str) -> Callable[[Callable[..., Normalizer]], Callable[..., Normalizer]]:
    """Decorator registering a factory ``(**options) -> Normalizer`` under ``name``."""

    def decorate(factory: Callable[..., Normalizer]) -> Callable[..., Normalizer]:
        if name in _FACTORIES:
            raise ValueError(f"a normalizer named {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return decorate


def names() -> list[str]:
    """The registered normalizer names."""
    return sorted(_FACTORIES)


def check_name(name: str) -> str:
    """Return ``name`` if a normalizer is registered under it, else raise a ``ValueError`` listing them."""
    if not isinstance(name, str) or name not in _FACTORIES:
        raise ValueError(f"unknown normalizer {name!r}; expected one of {', '.join(names())}")
    return name


def get(name: str, **options: Any) -> Normalizer:
    """Build the normalizer registered as ``name`` with ``options``.

    Example:
        >>> get("ev_softmax")(torch.tensor([1.0, 0.0, -1.0]))
        tensor([0.7311, 0.2689, 0.0000])
    """
    check_name(name)
    try:
        return _FACTORIES[name](**options)
    except TypeError as error:
        raise TypeError(f"bad options for normalizer {name!r}: {error}") from None


@register("softmax")
def _softmax() -> Normalizer:
    return Normalizer(
        "softmax",
        baselines.softmax,
        _log_softmax,
        baselines.softmax_loss,
        sparse=False,
        native_log=True,
    )


@register("sparsemax")
def _sparsemax() -> Normalizer:
    return Normalizer(
        "sparsemax",
        baselines.sparsemax,
        _log_of(baselines.sparsemax),
        baselines.sparsemax_loss,
        sparse=True,
        native_log=False,
    )


@register("entmax15")
def _entmax15() -> Normalizer:
    return Normalizer(
        "entmax15",
        baselines.entmax15,
        _log_of(baselines.entmax15),
        baselines.entmax15_loss,
        sparse=True,
        native_log=False,
    )


@register("entmax_bisect")
def _entmax_bisect(alpha: float = 1.5, n_iter: int = 50) -> Normalizer:
    if not alpha > 1:
        raise ValueError(f"alpha must be > 1 for entmax_bisect, got {alpha}")
    mapping = functools.partial(baselines.entmax_bisect, alpha=alpha, n_iter=n_iter)
    loss = functools.partial(baselines.entmax_bisect_loss, alpha=alpha, n_iter=n_iter)
    return Normalizer(
        "entmax_bisect",
        mapping,
        _log_of(mapping),
        loss,
        sparse=True,
        native_log=False,
        options={"alpha": alpha, "n_iter": n_iter},
    )


@register("ev_softmax")
def _ev_softmax(eps: float = 1e-6) -> Normalizer:
    eps = check_nonnegative("eps", eps)
    return Normalizer(
        "ev_softmax",
        ev_softmax,
        log_ev_softmax,
        functools.partial(ev_softmax_loss, eps=eps),
        sparse=True,
        native_log=True,
        options={"eps": eps},
        train_mapping=functools.partial(ev_softmax, eps=eps),
        train_log_mapping=functools.partial(log_ev_softmax, eps=eps),
    )
