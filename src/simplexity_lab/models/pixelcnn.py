r"""A class-conditional gated PixelCNN over a grid of discrete codes, normalized by name.

Vertical and horizontal stacks of gated masked convolutions (van den Oord et al. 2016) with no
blind spot: the vertical stack sees the rows above, the horizontal stack the pixels to the left
in the current row (and the vertical stack shifted down by one row). Each layer computes
:math:`\tanh(W_f * x + V_f h_y) \odot \sigma(W_g * x + V_g h_y)` with a class embedding
:math:`h_y`. The output logits ``(B, K, H, W)`` go through the chosen normalizer: trained with its
loss (ev-softmax's ε-NLL, the Fenchel–Young losses of sparsemax and entmax, cross-entropy) and
sampled with the exact map, one position at a time in raster order.

References:
    van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves and Kavukcuoglu, *Conditional Image
    Generation with PixelCNN Decoders*, NeurIPS 2016.

Example:
    >>> prior = GatedPixelCNN(16, num_classes=10, hidden=8, layers=2, normalizer="ev_softmax")
    >>> codes, labels = torch.randint(16, (2, 5, 5)), torch.tensor([3, 7])
    >>> prior.loss(codes, labels).shape
    torch.Size([])
    >>> samples, support = prior.sample(labels, (5, 5))
    >>> samples.shape, bool(1 <= support <= 16)
    (torch.Size([2, 5, 5]), True)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from simplexity import normalizers

__all__ = ["GatedPixelCNN"]


class _GatedLayer(nn.Module):
    def __init__(self, hidden: int, kernel: int, num_classes: int, first: bool) -> None:
        super().__init__()
        self.first, self.kernel = first, kernel
        half = kernel // 2
        # vertical: (half + 1) rows ending at the current row, shifted down below
        self.vertical = nn.Conv2d(hidden, 2 * hidden, (half + 1, kernel), padding=(half, half))
        self.vertical_to_horizontal = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.horizontal = nn.Conv2d(hidden, 2 * hidden, (1, half + 1), padding=(0, half))
        self.horizontal_out = nn.Conv2d(hidden, hidden, 1)
        self.condition = nn.Embedding(num_classes, 2 * hidden)
        # mask 'A' (first layer): the current pixel is not visible to itself
        mask = torch.ones_like(self.horizontal.weight)
        if first:
            mask[..., -1] = 0.0
        self.register_buffer("mask", mask, persistent=False)

    @staticmethod
    def _gate(x: Tensor) -> Tensor:
        f, g = x.chunk(2, 1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, v: Tensor, h: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        height, width = v.shape[-2:]
        cond = self.condition(y)[:, :, None, None]
        v_conv = self.vertical(v)[:, :, :height, :]  # rows above and the current row
        # shifting down one row makes the vertical stack see only rows strictly above
        v_shift = nn.functional.pad(v_conv, (0, 0, 1, 0))[:, :, :height, :]
        h_conv = nn.functional.conv2d(
            h,
            self.horizontal.weight * self.mask,
            self.horizontal.bias,
            padding=(0, self.kernel // 2),
        )[:, :, :, :width]
        v_out = self._gate(v_conv + cond)
        h_gate = self._gate(h_conv + self.vertical_to_horizontal(v_shift) + cond)
        h_out = self.horizontal_out(h_gate)
        return v_out, h_out if self.first else h + h_out


class GatedPixelCNN(nn.Module):
    """Class-conditional gated PixelCNN over ``K`` codes with the chosen normalizer.

    Args:
        num_codes: K.
        num_classes: number of conditioning classes.
        hidden: channels.
        layers: gated layers (the first uses mask 'A').
        kernel: odd kernel width.
        normalizer: a name in ``simplexity.normalizers.names()``.
    """

    def __init__(
        self,
        num_codes: int,
        *,
        num_classes: int = 10,
        hidden: int = 64,
        layers: int = 10,
        kernel: int = 7,
        normalizer: str = "ev_softmax",
    ) -> None:
        super().__init__()
        if kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and >= 3, got {kernel}")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.num_codes = num_codes
        self.normalizer = normalizers.get(normalizer)
        if self.normalizer.posthoc_evidential:
            raise ValueError(
                f"normalizer {normalizer!r} filters a linear layer by its weights; the PixelCNN "
                "normalizes bare logits (use NormalizedOutput for the post-hoc evidential filter)"
            )
        self.embed = nn.Embedding(num_codes, hidden)
        self.layers = nn.ModuleList(
            [_GatedLayer(hidden, kernel, num_classes, first=i == 0) for i in range(layers)]
        )
        self.head = nn.Sequential(
            nn.Conv2d(hidden, 512, 1), nn.ReLU(), nn.Conv2d(512, num_codes, 1)
        )

    def logits(self, codes: Tensor, labels: Tensor) -> Tensor:
        """Logits ``(B, K, H, W)``; position ``(i, j)`` depends only on codes before it in raster order."""
        x = self.embed(codes).permute(0, 3, 1, 2)
        v, h = x, x
        for layer in self.layers:
            v, h = layer(v, h, labels)
        return self.head(h)

    def loss(self, codes: Tensor, labels: Tensor) -> Tensor:
        """Mean per-position training loss of the normalizer."""
        return self.normalizer.loss(self.logits(codes, labels), codes)

    @torch.no_grad()
    def sample(
        self, labels: Tensor, shape: tuple[int, int], generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Code grids ``(B, H, W)`` sampled in raster order with the exact normalizer, and the mean
        number of nonzero probabilities per sampling step."""
        codes = torch.zeros(len(labels), *shape, dtype=torch.long, device=labels.device)
        nonzero = torch.zeros((), dtype=torch.float64)
        for i in range(shape[0]):
            for j in range(shape[1]):
                probs = self.normalizer(self.logits(codes, labels)[:, :, i, j], -1)
                nonzero += (probs > 0).sum(-1).double().mean()
                codes[:, i, j] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return codes, nonzero / (shape[0] * shape[1])
