"""The VAE network presets of the IGR paper: hidden sizes of the encoder and the decoder by name.

The networks themselves are :class:`simplexity.nn.MLP` with ReLU activations.

References:
    Potapczynski, Loaiza-Ganem, Cunningham. "Invertible Gaussian Reparameterization: Revisiting the
    Gumbel-Softmax", NeurIPS 2020 (the linear and nonlinear networks of its VAE experiments).
"""

from __future__ import annotations

__all__ = ["NETS"]

NETS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "linear": ((), ()),
    "nonlinear": ((512, 256), (256, 512)),
}
"""Hidden sizes ``(encoder, decoder)``: ``linear`` is one dense layer each way, ``nonlinear`` a
512-256 ReLU encoder and a 256-512 ReLU decoder."""
