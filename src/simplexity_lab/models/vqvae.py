r"""A small VQ-VAE for 28×28 images: a 7×7 grid of codes from a codebook of K vectors.

Encoder: two stride-2 4×4 convolutions (28 → 14 → 7) and a 1×1 projection to the code dimension;
decoder: the mirror image with transposed convolutions, Bernoulli logits. Vector quantization with
the straight-through gradient, the codebook loss and the commitment loss (β = 0.25):

.. math::
    \mathcal L = -\log p(x \mid e_{k(x)}) + \|\mathrm{sg}[z_e] - e\|^2 + \beta \|z_e - \mathrm{sg}[e]\|^2.

The grid and codebook are scaled down from the ev-softmax paper's 16×16 grid and K = 512 on
64×64 tinyImageNet in proportion to MNIST's size (Chen et al., NeurIPS 2021).

References:
    van den Oord, Vinyals and Kavukcuoglu, *Neural Discrete Representation Learning*, NeurIPS 2017.

Example:
    >>> vq = VQVAE(num_codes=16, code_dim=8, hidden=16)
    >>> x = torch.rand(2, 1, 28, 28)
    >>> vq.encode(x).shape
    torch.Size([2, 7, 7])
    >>> vq.decode_codes(vq.encode(x)).shape
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["VQVAE"]


class VQVAE(nn.Module):
    """VQ-VAE with a ``7×7`` code grid for ``1×28×28`` images.

    Args:
        num_codes: codebook size K.
        code_dim: dimension of each code vector.
        hidden: channels of the convolutions.
        commitment: β of the commitment loss.
    """

    def __init__(
        self, num_codes: int = 64, code_dim: int = 16, hidden: int = 64, commitment: float = 0.25
    ) -> None:
        super().__init__()
        if num_codes < 2 or code_dim < 1 or hidden < 1:
            raise ValueError(
                f"need num_codes >= 2, code_dim >= 1, hidden >= 1; got {num_codes}, {code_dim}, {hidden}"
            )
        self.num_codes, self.commitment = num_codes, float(commitment)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, hidden, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(hidden, code_dim, 1),
        )  # fmt: skip
        self.codebook = nn.Embedding(num_codes, code_dim)
        self.codebook.weight.data.uniform_(-1.0 / num_codes, 1.0 / num_codes)
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, hidden, 3, 1, 1), nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(hidden, 1, 4, 2, 1),
        )  # fmt: skip

    def _nearest(self, z: Tensor) -> Tensor:
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        distance = (
            flat.square().sum(1, keepdim=True)
            - 2 * flat @ self.codebook.weight.T
            + self.codebook.weight.square().sum(1)
        )
        return distance.argmin(1).reshape(z.shape[0], z.shape[2], z.shape[3])

    def encode(self, x: Tensor) -> Tensor:
        """Code indices ``(B, 7, 7)`` of images ``(B, 1, 28, 28)``."""
        return self._nearest(self.encoder(x))

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Pixel probabilities ``(B, 1, 28, 28)`` of code grids ``(B, 7, 7)``."""
        return torch.sigmoid(self.decoder(self.codebook(codes).permute(0, 3, 1, 2)))

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean over the batch of reconstruction + codebook + commitment losses."""
        z = self.encoder(x)
        e = self.codebook(self._nearest(z)).permute(0, 3, 1, 2)
        codebook = (e - z.detach()).square().sum((1, 2, 3)).mean()
        commit = (z - e.detach()).square().sum((1, 2, 3)).mean()
        quantized = z + (e - z).detach()  # straight-through
        rec = (
            nn.functional.binary_cross_entropy_with_logits(
                self.decoder(quantized), x, reduction="none"
            )
            .sum((1, 2, 3))
            .mean()
        )
        loss = rec + codebook + self.commitment * commit
        return loss, {"rec": rec.detach(), "codebook": codebook.detach()}
