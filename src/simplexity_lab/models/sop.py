r"""Structured output prediction with layers of relaxed binary units (the IGR paper's experiment).

Predict the lower half of a binarized image from its upper half through stochastic layers of
binary units in :math:`\{-1, 1\}`:

.. math::
    u_1 \sim q(u_1 \mid x_\uparrow),\quad u_2 \sim q(u_2 \mid u_1),\quad
    p(x_\downarrow \mid u_2) = \mathrm{Bernoulli}(\mathrm{sigmoid}(W u_2 + b)),

each unit a two-category relaxation from the registry (``"gumbel_softmax"``: binary concrete;
``"igr_i"``: binary IGR, :math:`u = 2\,\mathrm{sigmoid}(\kappa/\tau) - 1` for :math:`\delta = 1`;
``"igr_planar"``), unit value :math:`2 z_1 - 1`. Trained on
:math:`-\log\frac1S\sum_s p(x_\downarrow \mid u_s)` with relaxed units; tested with *rounded* units
(the zero-temperature limit: :math:`z_1 > \frac12`), where :math:`\log\frac1S\sum_s
p(x_\downarrow\mid h_s)` is, in expectation, a lower bound on :math:`\log p(x_\downarrow \mid
x_\uparrow)` of the discrete model that tightens as S grows.

References:
    Potapczynski, Loaiza-Ganem and Cunningham, NeurIPS 2020; Jang, Gu and Poole, *Categorical
    Reparameterization with Gumbel-Softmax*, ICLR 2017 (section 4.2); Raiko et al., *Techniques for
    Learning Binary Stochastic Feedforward Neural Networks*, ICLR 2015.

Example:
    >>> model = StructuredOutputPredictor(6, 4, hidden=(3, 2), relaxation="igr_i")
    >>> x_up, x_low = torch.rand(5, 6).round(), torch.rand(5, 4).round()
    >>> model.log_likelihood(x_up, x_low, 0.1, num_samples=7, discrete=True).shape
    torch.Size([5])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent

from simplexity._checks import check_int
from simplexity.distributions import relaxations, zero_temperature_limit

__all__ = ["BINARY_RELAXATIONS", "StructuredOutputPredictor"]

BINARY_RELAXATIONS: tuple[str, ...] = ("gumbel_softmax", "igr_i", "igr_planar")
"""Relaxations usable for binary units (IGR-SB with one stick always rounds to the same unit)."""


class StructuredOutputPredictor(nn.Module):
    r"""Layers of relaxed binary units between an input and a Bernoulli output.

    Args:
        input_dim: size of the conditioning input (392 for the upper half of MNIST).
        output_dim: size of the predicted output (392).
        hidden: units of each stochastic layer ((240, 240) in the paper).
        relaxation: a name in :data:`BINARY_RELAXATIONS`.
        relaxation_options: keyword options of the relaxation (e.g. ``delta``).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        *,
        hidden: Sequence[int] = (240, 240),
        relaxation: str = "gumbel_softmax",
        relaxation_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_int("input_dim", input_dim, min=1)
        check_int("output_dim", output_dim, min=1)
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("hidden must be a non-empty list of ints >= 1, got ()")
        for h in hidden:
            check_int("hidden", h, min=1)
        if relaxation not in BINARY_RELAXATIONS:
            raise ValueError(
                f"relaxation must be one of {', '.join(BINARY_RELAXATIONS)} for binary units, "
                f"got {relaxation!r}"
            )
        self.hidden = hidden
        self.relaxation = relaxations.get(
            relaxation, num_categories=2, **(relaxation_options or {})
        )
        self.num_params = self.relaxation.num_params(2)
        sizes = (input_dim, *hidden)
        self.layers = nn.ModuleList(
            nn.Linear(a, b * self.num_params) for a, b in itertools.pairwise(sizes)
        )
        self.output = nn.Linear(hidden[-1], output_dim)

    def unit_distribution(self, layer: int, inputs: Tensor, temperature: float | Tensor):
        """The relaxed two-category distribution of layer ``layer``'s units, batch ``(..., H)``."""
        raw = self.layers[layer](inputs)
        raw = raw.view(*raw.shape[:-1], self.hidden[layer], self.num_params)
        return self.relaxation(raw, _as_tensor(temperature, raw))

    def units(
        self,
        x: Tensor,
        temperature: float | Tensor,
        discrete: bool = False,
        num_samples: int | None = None,
    ) -> Tensor:
        """Sample the last layer's units in [-1, 1] (``discrete``: rounded to {-1, 1}).

        Args:
            x: inputs ``(..., input_dim)``.
            temperature: τ.
            discrete: round the units (the zero-temperature limit).
            num_samples: draw this many samples per input (a new leading dimension ``S``). The
                first layer's distribution is computed once per input, not once per sample; the
                draws are those of ``units(x.expand(S, ...))`` with the same random state.
        """
        h = x
        for layer in range(len(self.layers)):
            dist = self.unit_distribution(layer, h, temperature)
            z = dist.rsample((num_samples,) if layer == 0 and num_samples is not None else ())
            first = (z.argmax(-1) == 0).to(x.dtype) if discrete else z[..., 0]
            h = 2 * first - 1
        return h

    def likelihood(self, units: Tensor) -> Independent:
        r""":math:`p(x_\downarrow \mid u)`."""
        return Independent(Bernoulli(logits=self.output(units), validate_args=False), 1)

    def log_likelihood(
        self,
        x_up: Tensor,
        x_low: Tensor,
        temperature: float | Tensor,
        num_samples: int = 1,
        discrete: bool = False,
    ) -> Tensor:
        r""":math:`\log\frac1S\sum_s p(x_\downarrow \mid u_s)` per example, ``u_s`` sampled given ``x_up``."""
        check_int("num_samples", num_samples, min=1)
        units = self.units(x_up, temperature, discrete=discrete, num_samples=num_samples)
        log_p = self.likelihood(units).log_prob(x_low)  # (S, B)
        return torch.logsumexp(log_p, 0) - math.log(num_samples)

    @torch.no_grad()
    def exact_log_likelihood(self, x_up: Tensor, x_low: Tensor) -> Tensor:
        r"""Exact :math:`\log p(x_\downarrow\mid x_\uparrow)` of the discrete (rounded) model by
        enumerating every configuration of the units (only for a few units: tests)."""
        if sum(self.hidden) > 16:
            raise ValueError(
                f"exact_log_likelihood enumerates 2^{sum(self.hidden)} states: too many"
            )
        # log-probabilities of every state of layer 0 given x, then propagate layer by layer
        states = [_all_states(h, x_up.dtype) for h in self.hidden]
        log_w = self._log_pmf(0, x_up, states[0])  # (B, S0)
        for layer in range(1, len(self.hidden)):
            step = self._log_pmf(layer, states[layer - 1], states[layer])  # (S_prev, S)
            log_w = torch.logsumexp(log_w.unsqueeze(-1) + step, -2)
        log_px = self.likelihood(states[-1]).log_prob(x_low.unsqueeze(-2))  # (B, S_last)
        return torch.logsumexp(log_w + log_px, -1)

    def _log_pmf(self, layer: int, inputs: Tensor, states: Tensor) -> Tensor:
        probs = zero_temperature_limit(self.unit_distribution(layer, inputs, 1.0)).probs[..., 0]
        up = (states > 0).to(probs.dtype)  # (S, H)
        log_p = probs.clamp_min(1e-300).log().unsqueeze(-2)
        log_q = (1 - probs).clamp_min(1e-300).log().unsqueeze(-2)
        return (up * log_p + (1 - up) * log_q).sum(-1)


def _all_states(h: int, dtype: torch.dtype) -> Tensor:
    bits = torch.tensor(list(itertools.product((0.0, 1.0), repeat=h)), dtype=dtype)
    return 2 * bits - 1


def _as_tensor(temperature: float | Tensor, like: Tensor) -> Tensor:
    if isinstance(temperature, Tensor):
        return temperature.to(dtype=like.dtype, device=like.device)
    return torch.tensor(float(temperature), dtype=like.dtype, device=like.device)
