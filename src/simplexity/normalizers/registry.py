"""The registry of normalizers by name: the map, its log-space form, its training loss, what it can do.

Models pick a normalizer by name (``"softmax"``, ``"sparsemax"``, ``"entmax15"``, ``"entmax_bisect"``,
``"ev_softmax"``, and ``"posthoc_evidential"``, the post-hoc evidential filter of a softmax layer) and
call the returned :class:`Normalizer` the same way whichever it is; what differs between them is read
from its attributes, never from its name.

References:
    Chen, Itkina, Senanayake, Kochenderfer. "Evidential Softmax for Sparse Multimodal Distributions in
    Deep Generative Models", NeurIPS 2021 (arXiv:2110.14182).
    Itkina, Ivanovic, Senanayake, Kochenderfer, Pavone. "Evidential Sparsification of Multimodal Latent
    Spaces in Conditional Variational Autoencoders", NeurIPS 2020.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from simplexity._checks import check_nonnegative
from simplexity._registry import Registry
from simplexity.normalizers import baselines
from simplexity.normalizers.ev_softmax import ev_softmax, ev_softmax_loss, log_ev_softmax

__all__ = ["Normalizer", "NormalizerModule", "check_name", "get", "names", "register", "resolve"]

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
    r"""A named normalization onto the simplex, and what it can do.

    The capabilities are attributes, so that layers and models ask the normalizer rather than compare
    its name:

    - the exact map: ``normalizer(x, dim, mask=...)``;
    - :attr:`has_training_form`: a full-support training family (ev-softmax's
      :math:`\operatorname{evsoftmax}_\epsilon`), used with ``training=True``;
    - :attr:`native_log`: whether :meth:`log` is computed in log space (else it is the log of the map);
    - :meth:`loss`: its training loss, in ``CrossEntropyLoss``'s layout, with ``label_smoothing``;
    - :attr:`sparse`: whether the map can return exact zeros;
    - :attr:`posthoc_evidential`: whether its eval form is the softmax restricted to the classes that
      the post-hoc evidential filter of Itkina et al. (2020) keeps. That filter reads the weights of
      the linear layer that computes the logits, so only a layer that owns them applies it
      (:class:`~simplexity.nn.NormalizedOutput`, attention); on bare logits the map is the softmax.

    Attributes:
        name: registry name.
        sparse: whether the map can return exact zeros.
        native_log: whether :meth:`log` is computed in log space (else it is the log of the output).
        options: the options it was built with.
        posthoc_evidential: whether a layer evaluates it with the post-hoc evidential filter.
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
    posthoc_evidential: bool = False

    @property
    def has_training_form(self) -> bool:
        """Whether ``training=True`` selects a training form (a full-support family) of the map."""
        return self.train_mapping is not None

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
        r"""The training loss, in ``CrossEntropyLoss``'s layout (classes on dim 1, index targets).

        Cross-entropy for softmax, the negative log-likelihood of the training form for ev-softmax,
        the Fenchel–Young loss for the sparse maps. ``label_smoothing`` :math:`\lambda` gives
        :math:`(1-\lambda) L(y) + \frac{\lambda}{K}\sum_k L(k)` for every one of them (see
        :func:`~simplexity.normalizers.baselines.fenchel_young_loss`).

        Example:
            >>> x, y = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
            >>> get("sparsemax").loss(x, y)
            tensor(0.)
            >>> get("sparsemax").loss(x, y, label_smoothing=0.3)
            tensor(0.5000)
        """
        return self.loss_fn(
            input,
            target,
            reduction=reduction,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
        )

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


_REGISTRY: Registry[Callable[..., Normalizer]] = Registry("normalizer")


def register(name: str) -> Callable[[Callable[..., Normalizer]], Callable[..., Normalizer]]:
    """Decorator registering a factory ``(**options) -> Normalizer`` under ``name``."""
    return _REGISTRY.register(name)


def names() -> list[str]:
    """The registered normalizer names, in registration order.

    Example:
        >>> names()[:2]
        ['softmax', 'sparsemax']
    """
    return _REGISTRY.names()


def check_name(name: str) -> str:
    """Return ``name`` if a normalizer is registered under it, else raise a ``ValueError`` listing them."""
    return _REGISTRY.check(name)


def get(name: str, **options: Any) -> Normalizer:
    """Build the normalizer registered as ``name`` with ``options``.

    Example:
        >>> get("ev_softmax")(torch.tensor([1.0, 0.0, -1.0]))
        tensor([0.7311, 0.2689, 0.0000])
    """
    factory = _REGISTRY[name]
    try:
        return factory(**options)
    except TypeError as error:
        raise TypeError(f"bad options for normalizer {name!r}: {error}") from None


def resolve(normalizer: str | Normalizer, options: dict[str, Any] | None = None) -> Normalizer:
    """A :class:`Normalizer` from a registry name (built with ``options``) or as given.

    Example:
        >>> resolve("ev_softmax", {"eps": 1e-3}).options
        {'eps': 0.001}
        >>> resolve(get("sparsemax")).name
        'sparsemax'
    """
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"normalizer_options must be a dict or None, got {type(options).__name__}")
    if isinstance(normalizer, str):
        return get(normalizer, **(options or {}))
    if isinstance(normalizer, Normalizer):
        if options:
            raise ValueError(
                "normalizer_options can only be given with a normalizer name, not a Normalizer"
            )
        return normalizer
    raise TypeError(
        "normalizer must be a registry name (str) or a simplexity.normalizers.Normalizer, "
        f"got {type(normalizer).__name__}"
    )


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


@register("posthoc_evidential")
def _posthoc_evidential() -> Normalizer:
    """Softmax in training; in eval, the softmax on the post-hoc evidential support of the layer."""
    return dataclasses.replace(
        _softmax(), name="posthoc_evidential", sparse=True, posthoc_evidential=True
    )
