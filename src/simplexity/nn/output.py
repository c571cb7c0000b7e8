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

from simplexity._checks import check_floating, check_int, check_tensor
from simplexity.normalizers import Normalizer, evidential_support, resolve

__all__ = ["NormalizedOutput", "output_layer"]


def output_layer(name: str, in_features: int, num_classes: int, **options: Any) -> NormalizedOutput:
    """Build a :class:`NormalizedOutput` from a config name (``"posthoc_evidential"`` included).

    ``options`` are passed to :class:`NormalizedOutput` (e.g. ``normalizer_options``, ``bias``).

    Example:
        >>> layer = output_layer("posthoc_evidential", 4, 3)
        >>> layer.normalizer.name, layer.posthoc_evidential
        ('posthoc_evidential', True)
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


class NormalizedOutput(nn.Linear):
    r"""Linear output layer with a named normalizer, its distribution and its training loss.

    Layout: features ``h`` are (..., F) with features last; logits and probabilities are (..., K)
    with classes last. :meth:`loss` takes features (N, ..., F) and integer targets (N, ...), and moves
    the classes to dim 1 for the loss (``CrossEntropyLoss``'s layout: (N, K, ...)).

    Args:
        in_features: F.
        num_classes: K.
        normalizer: a registry name (``"softmax"``, ``"sparsemax"``, ``"entmax15"``,
            ``"entmax_bisect"``, ``"ev_softmax"``, ``"posthoc_evidential"``) or a
            :class:`~simplexity.normalizers.Normalizer`.
        normalizer_options: options for the registry (e.g. ``{"eps": 1e-6}`` for ev-softmax).
        bias: learn a bias.
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
        momentum: float | None = 0.1,
    ) -> None:
        check_int("in_features", in_features, min=1)
        check_int("num_classes", num_classes, min=1)
        super().__init__(in_features, num_classes, bias=bias)
        self.normalizer = resolve(normalizer, normalizer_options)
        self.momentum = _check_momentum(momentum)
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    @property
    def posthoc_evidential(self) -> bool:
        """Whether eval mode applies the post-hoc evidential filter (the normalizer says so)."""
        return self.normalizer.posthoc_evidential

    @property
    def num_classes(self) -> int:
        return self.out_features

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, normalizer={self.normalizer.name!r}"

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

    def _class_mask(self, h: Tensor, mask: Tensor | None) -> Tensor | None:
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
        return self.normalizer(logits, -1, mask=self._class_mask(h, mask), training=self.training)

    def log_probs(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        """Log of :meth:`probs` (``-inf`` off the support)."""
        logits = self(h)
        return self.normalizer.log(
            logits, -1, mask=self._class_mask(h, mask), training=self.training
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
        if h.dim() < 2:
            raise ValueError(f"h must have shape (N, ..., F), got {tuple(h.shape)}")
        if target.is_floating_point() or target.dtype == torch.bool or target.shape != h.shape[:-1]:
            raise ValueError(
                f"target must hold integer class indices of shape {tuple(h.shape[:-1])} "
                f"(h's shape without F), got {tuple(target.shape)} {target.dtype}"
            )
        # the logits without the running-mean update, which waits for the loss's argument checks
        logits = F.linear(h, self.weight, self.bias)
        loss = self.normalizer.loss(
            logits.movedim(-1, 1),
            target,
            reduction=reduction,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
        )
        if self.training:
            self._track(h, target != ignore_index)
        return loss
