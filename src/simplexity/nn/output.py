r"""An output layer whose distribution and training loss come from a normalizer picked by name.

:class:`NormalizedOutput` is a linear layer :math:`v = W h + b` followed by a normalizer :math:`\rho`
of :mod:`simplexity.normalizers`: ``forward`` returns the logits, :meth:`~NormalizedOutput.probs` the
distribution (the training form in training mode, e.g. ev-softmax with ``eps``, and the exact map in
eval mode), and :meth:`~NormalizedOutput.loss` the normalizer's own training loss (NLL of
:math:`\operatorname{evsoftmax}_\epsilon`, cross-entropy, or a Fenchel–Young loss).

Post-hoc evidential sparsification (Itkina et al. 2020), the baseline of the ev-softmax paper, is the
name ``"posthoc_evidential"``: the layer is trained as a softmax layer, and in eval mode its
probabilities are the softmax restricted to the classes with nonzero evidential singleton mass,
computed from this layer's own weight, bias and the running mean of its input features (a buffer
tracked during training like BatchNorm's running mean):

.. math::

    p_k \propto \mathbb 1\{m(\{\theta_k\}) > 0\}\; \operatorname{softmax}(W h + b)_k .

References:
    Chen, Itkina, Senanayake, Kochenderfer. "Evidential Softmax for Sparse Multimodal Distributions in
    Deep Generative Models", NeurIPS 2021 (arXiv:2110.14182).
    Itkina, Ivanovic, Senanayake, Kochenderfer, Pavone. "Evidential Sparsification of Multimodal Latent
    Spaces in Conditional Variational Autoencoders", NeurIPS 2020.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simplexity._checks import check_floating, check_tensor
from simplexity.nn.attention import _PicklableNormalizer
from simplexity.normalizers import (
    Normalizer,
    ev_softmax_loss,
    evidential_support,
    get,
    names,
)

__all__ = ["POSTHOC_EVIDENTIAL", "NormalizedOutput", "output_layer", "output_names"]

POSTHOC_EVIDENTIAL = "posthoc_evidential"

# Fenchel–Young losses of the sparse maps (entmax's convention Omega(e_y) = 0): L(x; e_k) = L(x; e_y)
# + x_y - x_k, so label smoothing has a closed form (see NormalizedOutput.loss).
_FENCHEL_YOUNG = ("sparsemax", "entmax15", "entmax_bisect")


def output_names() -> list[str]:
    """Names accepted by :func:`output_layer`: the normalizers and ``"posthoc_evidential"``.

    Example:
        >>> "posthoc_evidential" in output_names() and "ev_softmax" in output_names()
        True
    """
    return sorted([*names(), POSTHOC_EVIDENTIAL])


def output_layer(name: str, in_features: int, num_classes: int, **options: Any) -> NormalizedOutput:
    """Build a :class:`NormalizedOutput` from a config name (``"posthoc_evidential"`` included).

    ``options`` are passed to :class:`NormalizedOutput` (e.g. ``normalizer_options``, ``bias``).

    Example:
        >>> layer = output_layer("posthoc_evidential", 4, 3)
        >>> layer.normalizer.name, layer.posthoc_evidential
        ('softmax', True)
    """
    return NormalizedOutput(in_features, num_classes, normalizer=name, **options)


def _check_momentum(momentum: float | None) -> float | None:
    if momentum is None:
        return None
    if (
        isinstance(momentum, bool)
        or not isinstance(momentum, (int, float))
        or not 0 < momentum <= 1
    ):
        raise ValueError(f"momentum must be a number in (0, 1] or None, got {momentum!r}")
    return float(momentum)


class NormalizedOutput(_PicklableNormalizer, nn.Linear):
    r"""Linear output layer with a named normalizer, its distribution and its training loss.

    Layout: features ``h`` are (..., F) with features last; logits and probabilities are (..., K)
    with classes last. :meth:`loss` takes features (N, ..., F) and integer targets (N, ...), and moves
    the classes to dim 1 for the loss (``CrossEntropyLoss``'s layout: (N, K, ...)).

    Args:
        in_features: F.
        num_classes: K.
        normalizer: registry name (``"softmax"``, ``"sparsemax"``, ``"entmax15"``, ``"entmax_bisect"``,
            ``"ev_softmax"``), ``"posthoc_evidential"`` (softmax with ``posthoc_evidential=True``), or a
            :class:`~simplexity.normalizers.Normalizer`.
        normalizer_options: options for the registry (e.g. ``{"eps": 1e-6}`` for ev-softmax).
        bias: learn a bias.
        posthoc_evidential: evaluate with the post-hoc evidential filter (requires softmax).
        momentum: weight of the current batch in the running feature mean; None for the cumulative
            average over all training batches (as ``nn.BatchNorm1d``).

    Attributes:
        feature_mean: buffer (F,), the running mean of the (valid) input features seen in training
            mode; ``num_batches_tracked`` counts the updates.

    Example:
        >>> layer = NormalizedOutput(4, 6).eval()  # ev-softmax
        >>> h = torch.randn(2, 4)
        >>> layer(h).shape
        torch.Size([2, 6])
        >>> p = layer.probs(h)
        >>> bool(torch.allclose(p.sum(-1), torch.ones(2))) and bool((p == 0).any())
        True
        >>> layer.loss(h, torch.tensor([0, 5])).shape
        torch.Size([])
    """

    feature_mean: Tensor
    num_batches_tracked: Tensor

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        normalizer: str | Normalizer = "ev_softmax",
        normalizer_options: dict[str, Any] | None = None,
        bias: bool = True,
        posthoc_evidential: bool = False,
        momentum: float | None = 0.1,
    ) -> None:
        for arg, value in (("in_features", in_features), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        super().__init__(in_features, num_classes, bias=bias)
        if normalizer == POSTHOC_EVIDENTIAL:
            normalizer, posthoc_evidential = "softmax", True
        if isinstance(normalizer, Normalizer):
            if normalizer_options:
                raise ValueError(
                    "normalizer_options can only be given with a normalizer name, not a Normalizer"
                )
            self.normalizer = normalizer
        elif isinstance(normalizer, str):
            if normalizer not in names():
                raise ValueError(
                    f"unknown normalizer {normalizer!r}; expected one of {', '.join(output_names())}"
                )
            self.normalizer = get(normalizer, **(normalizer_options or {}))
        else:
            raise TypeError(
                "normalizer must be a name (str) or a simplexity.normalizers.Normalizer, "
                f"got {type(normalizer).__name__}"
            )
        self.posthoc_evidential = bool(posthoc_evidential)
        if self.posthoc_evidential and self.normalizer.name != "softmax":
            raise ValueError(
                "posthoc_evidential=True filters a softmax layer: normalizer must be 'softmax', "
                f"got {self.normalizer.name!r}"
            )
        self.momentum = _check_momentum(momentum)
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    @property
    def num_classes(self) -> int:
        return self.out_features

    def extra_repr(self) -> str:
        text = f"{super().extra_repr()}, normalizer={self.normalizer.name!r}"
        return text + (", posthoc_evidential=True" if self.posthoc_evidential else "")

    def _check_features(self, h: Tensor) -> None:
        check_floating("h", h)
        if h.dim() < 1 or h.shape[-1] != self.in_features:
            raise ValueError(
                f"h must have shape (..., F) with F = {self.in_features}, got {tuple(h.shape)}"
            )

    @torch.no_grad()
    def _track(self, h: Tensor, valid: Tensor | None) -> None:
        flat = h.detach().reshape(-1, self.in_features)
        if valid is not None:
            flat = flat[valid.reshape(-1)]
        if flat.shape[0] == 0:
            return
        self.num_batches_tracked += 1
        momentum = self.momentum
        if momentum is None:
            momentum = 1.0 / float(self.num_batches_tracked)
        batch_mean = flat.mean(0).to(self.feature_mean.dtype)
        self.feature_mean.lerp_(batch_mean, momentum)

    def forward(self, h: Tensor, valid: Tensor | None = None) -> Tensor:
        """Logits (..., K). In training mode the running feature mean is updated.

        Args:
            h: features (..., F).
            valid: optional boolean (...), True where ``h`` is a real position (padding is left out of
                the running mean).
        """
        self._check_features(h)
        if valid is not None:
            check_tensor("valid", valid)
            if valid.dtype != torch.bool or valid.shape != h.shape[:-1]:
                raise ValueError(
                    f"valid must be a boolean tensor of shape {tuple(h.shape[:-1])}, "
                    f"got {tuple(valid.shape)} {valid.dtype}"
                )
        if self.training:
            self._track(h, valid)
        return F.linear(h, self.weight, self.bias)

    def _class_mask(self, h: Tensor, logits: Tensor, mask: Tensor | None) -> Tensor | None:
        """The normalizer's class mask: the caller's, and the evidential support in post-hoc eval."""
        if mask is not None:
            check_tensor("mask", mask)
            if mask.dtype != torch.bool:
                raise TypeError(
                    f"mask must be a boolean tensor (True = allowed class), got {mask.dtype}"
                )
        if not self.posthoc_evidential or self.training:
            return mask
        keep = evidential_support(
            h.to(self.weight.dtype),
            self.weight,
            self.bias,
            self.feature_mean.to(self.weight.dtype),
        )
        return keep if mask is None else keep & mask

    def probs(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        """The distribution over classes (..., K); ``mask`` (broadcastable, True = allowed class).

        Training mode: the normalizer's training form. Eval mode: the exact map, or the post-hoc
        evidential filter of the softmax.
        """
        logits = self(h)
        return self.normalizer(
            logits, -1, mask=self._class_mask(h, logits, mask), training=self.training
        )

    def log_probs(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        """Log of :meth:`probs` (``-inf`` off the support)."""
        logits = self(h)
        return self.normalizer.log(
            logits, -1, mask=self._class_mask(h, logits, mask), training=self.training
        )

    def loss(
        self,
        h: Tensor,
        target: Tensor,
        *,
        reduction: str = "mean",
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
    ) -> Tensor:
        r"""The normalizer's training loss on this layer's logits (in training and in eval mode).

        ``h`` is (N, ..., F) and ``target`` (N, ...) holds class indices (or ``ignore_index``). The
        logits (N, ..., K) are moved to ``CrossEntropyLoss``'s layout (N, K, ...). Positions whose target
        is ``ignore_index`` contribute 0, are left out of the mean and of the running feature mean.
        ``post-hoc evidential`` trains with the softmax cross-entropy.

        ``label_smoothing`` :math:`\lambda` gives :math:`(1-\lambda) L(y) + \frac{\lambda}{K}\sum_k L(k)`, as
        ``torch.nn.functional.cross_entropy``: for softmax and ev-softmax (its :math:`\epsilon`-NLL) the
        cross-entropy with the smoothed target; for the Fenchel–Young losses of sparsemax / entmax, whose
        :math:`L(k) = L(y) + v_y - v_k`, it is :math:`L(y) + \lambda (v_y - \bar v)` — the Fenchel–Young
        loss of the smoothed target up to a constant.

        Example:
            >>> layer = NormalizedOutput(3, 5, normalizer="sparsemax")
            >>> h, y = torch.randn(4, 7, 3), torch.randint(5, (4, 7))
            >>> layer.loss(h, y, reduction="none").shape
            torch.Size([4, 7])
        """
        self._check_features(h)
        check_tensor("target", target)
        if target.is_floating_point() or target.dtype == torch.bool or target.shape != h.shape[:-1]:
            raise ValueError(
                f"target must hold integer class indices of shape {tuple(h.shape[:-1])} "
                f"(h's shape without F), got {tuple(target.shape)} {target.dtype}"
            )
        if h.dim() < 2:
            raise ValueError(f"h must have shape (N, ..., F), got {tuple(h.shape)}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if isinstance(label_smoothing, bool) or not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
        keep = target != ignore_index
        real = target[keep]
        if real.numel() and bool(((real < 0) | (real >= self.num_classes)).any()):
            raise ValueError(
                f"target class indices must be in [0, {self.num_classes}) or equal "
                f"ignore_index={ignore_index}"
            )
        logits = self(h, keep).movedim(-1, 1)
        name = self.normalizer.name
        if label_smoothing == 0.0:
            return self.normalizer.loss(
                logits, target, reduction=reduction, ignore_index=ignore_index
            )
        if name == "softmax":
            # the registry's softmax loss does not take label_smoothing: torch's cross-entropy does
            return F.cross_entropy(
                logits,
                target,
                reduction=reduction,
                ignore_index=ignore_index,
                label_smoothing=label_smoothing,
            )
        if name == "ev_softmax":
            return ev_softmax_loss(
                logits,
                target,
                eps=self.normalizer.options.get("eps", 1e-6),
                reduction=reduction,
                ignore_index=ignore_index,
                label_smoothing=label_smoothing,
            )
        if name not in _FENCHEL_YOUNG:
            raise ValueError(
                f"label_smoothing is not supported for normalizer {name!r} (supported: softmax, "
                f"ev_softmax, {', '.join(_FENCHEL_YOUNG)})"
            )
        losses = self.normalizer.loss(logits, target, reduction="none", ignore_index=ignore_index)
        safe = target.masked_fill(~keep, 0).unsqueeze(1)
        gap = logits.gather(1, safe).squeeze(1) - logits.mean(1)
        losses = losses + label_smoothing * torch.where(keep, gap, 0.0)
        if reduction == "none":
            return losses
        if reduction == "sum":
            return losses.sum()
        return losses.sum() / keep.sum().clamp_min(1)
