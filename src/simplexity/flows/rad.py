r"""RAD: real and discrete mixtures by piecewise-invertible maps (Dinh et al. 2019), in 1-D and 2-D.

A RAD layer is a piecewise-affine map :math:`h` of one coordinate with :math:`K` pieces
:math:`A_k` and a gating network :math:`p(k \mid z)`. The map is continuous with slopes of
alternating sign (a "zig-zag"; the first and last slopes are positive), so it is onto
:math:`\mathbb{R}` and a point :math:`z` has one preimage in every piece whose image contains it.
The gate is a softmax over exactly those pieces. Then

.. math::
    \log p(y) = \log p_Z(h(y)) + \log p(\varphi(y) \mid h(y)) + \log |h'(y)|,

where :math:`\varphi(y)` is the piece containing :math:`y` — read off the data point, so nothing is
summed or sampled over :math:`k`, and the likelihood is exact. Sampling is exact too:
:math:`z \sim p_Z`, :math:`k \sim p(k \mid z)`, :math:`y = (h|_{A_k})^{-1}(z)`.

In 2-D the piece boundaries, slopes and offset of the map of coordinate ``dim`` are functions of the
other coordinate (a coupling), and the gate sees both coordinates of :math:`z`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, constraints

from simplexity._checks import check_event, check_int
from simplexity.nn.mlp import MLP

__all__ = ["RAD", "RADDistribution", "RADLayer"]

_SizeLike = torch.Size | Sequence[int]


def _inverse_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


class RADLayer(nn.Module):
    r"""One piecewise-affine RAD layer on coordinate ``dim`` of a 1-D or 2-D variable.

    The map :math:`h` has boundaries :math:`b_1 < \dots < b_{K-1}`, slopes :math:`s_k` with signs
    :math:`+, -, +, \dots` (the last one forced to :math:`+`; use an odd :math:`K` for a fold at
    every boundary) and value :math:`t` at :math:`b_1`; it is continuous, so each piece's image is
    an interval and the union of the images is :math:`\mathbb{R}`.

    Args:
        features: the dimension D of the variable, 1 or 2.
        num_pieces: the number of pieces :math:`K \ge 2`.
        dim: the coordinate that is transformed (``0`` or ``1``; ``0`` when ``features == 1``).
        hidden: hidden sizes of the conditioner MLP (2-D) — the map's parameters as a function of
            the other coordinate.
        gate_hidden: hidden sizes of the gating MLP :math:`z \mapsto` logits of :math:`p(k\mid z)`.
        spread: the initial boundaries are spread evenly over ``[-spread, spread]``.

    Example:
        >>> layer = RADLayer(1, 3)
        >>> z, log_det = layer.transform(torch.randn(5, 1))
        >>> y = layer.inverse_sample(z)
        >>> z.shape, log_det.shape, y.shape
        (torch.Size([5, 1]), torch.Size([5]), torch.Size([5, 1]))
    """

    def __init__(
        self,
        features: int,
        num_pieces: int,
        *,
        dim: int = 0,
        hidden: Sequence[int] = (32, 32),
        gate_hidden: Sequence[int] = (32, 32),
        spread: float = 1.0,
    ) -> None:
        super().__init__()
        features = check_int("features", features, min=1, max=2)
        num_pieces = check_int("num_pieces", num_pieces, min=2)
        dim = check_int("dim", dim, min=0, max=features - 1)
        k = num_pieces
        self.features, self.num_pieces, self.dim = features, k, dim
        signs = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(k)])
        signs[-1] = 1.0
        self.register_buffer("signs", signs)
        # Raw parameters: first boundary, K-2 raw widths, K log-slopes, offset t = h(b_1).
        init = torch.zeros(2 * k)
        if k > 2:
            init[0] = -spread
            init[1 : k - 1] = _inverse_softplus(2.0 * spread / (k - 2))
        init[-1] = init[0]
        if features == 1:
            self.params = nn.Parameter(init)
            self.conditioner = None
        else:
            self.params = None
            self.conditioner = MLP(1, 2 * k, hidden, zero_last=True)
            with torch.no_grad():
                self.conditioner[-1].bias.copy_(init)
        self.gate = MLP(features, k, gate_hidden, zero_last=True)

    # ------------------------------------------------------------------ the piecewise map
    def _raw(self, v: Tensor) -> Tensor:
        if self.conditioner is None:
            return self.params.to(v.dtype).expand((*v.shape[:-1], 2 * self.num_pieces))
        return self.conditioner(v[..., 1 - self.dim : 2 - self.dim])

    def _geometry(self, v: Tensor) -> dict[str, Tensor]:
        """Boundaries, anchors, slopes and image intervals of the map, batched like ``v``."""
        k = self.num_pieces
        raw = self._raw(v)
        first = raw[..., :1]
        widths = nn.functional.softplus(raw[..., 1 : k - 1])
        b = torch.cat([first, first + widths.cumsum(-1)], -1)  # (..., K-1)
        log_abs_slope = raw[..., k - 1 : 2 * k - 1]
        slope = self.signs * log_abs_slope.exp()  # (..., K)
        t = raw[..., -1:]
        steps = slope[..., 1 : k - 1] * (b[..., 1:] - b[..., :-1])
        hb = torch.cat([t, t + steps.cumsum(-1)], -1)  # h at the boundaries, (..., K-1)
        inf = torch.full_like(t, math.inf)
        lo = torch.cat([-inf, torch.minimum(hb[..., :-1], hb[..., 1:]), hb[..., -1:]], -1)
        hi = torch.cat([hb[..., :1], torch.maximum(hb[..., :-1], hb[..., 1:]), inf], -1)
        return {
            "b": b,
            "anchor_y": torch.cat([b[..., :1], b], -1),
            "anchor_h": torch.cat([hb[..., :1], hb], -1),
            "slope": slope,
            "log_abs_slope": log_abs_slope,
            "lo": lo,
            "hi": hi,
        }

    def _log_gate(self, z: Tensor, geo: dict[str, Tensor], piece: Tensor | None) -> Tensor:
        zd = z[..., self.dim : self.dim + 1]
        allowed = (zd >= geo["lo"]) & (zd <= geo["hi"])
        if piece is not None:  # rounding must never exclude the piece the point came from
            allowed = allowed | nn.functional.one_hot(piece, self.num_pieces).bool()
        logits = self.gate(z).masked_fill(~allowed, -math.inf)
        return logits.log_softmax(-1)

    def transform(self, y: Tensor) -> tuple[Tensor, Tensor]:
        r"""Map data to the latent side: ``(z, log p(phi(y) | z) + log|h'(y)|)``."""
        if y.shape[-1] != self.features:
            raise ValueError(f"expected a last dimension of {self.features}, got {y.shape[-1]}")
        geo = self._geometry(y)
        yd = y[..., self.dim : self.dim + 1]
        piece = (yd > geo["b"]).sum(-1)  # (...,), in 0..K-1
        idx = piece.unsqueeze(-1)
        zd = geo["anchor_h"].gather(-1, idx) + geo["slope"].gather(-1, idx) * (
            yd - geo["anchor_y"].gather(-1, idx)
        )
        z = torch.cat([y[..., : self.dim], zd, y[..., self.dim + 1 :]], -1)
        log_gate = self._log_gate(z, geo, piece).gather(-1, idx).squeeze(-1)
        log_det = geo["log_abs_slope"].gather(-1, idx).squeeze(-1)
        return z, log_gate + log_det

    @torch.no_grad()
    def inverse_sample(self, z: Tensor) -> Tensor:
        r"""Draw :math:`k \sim p(k \mid z)` and return :math:`(h|_{A_k})^{-1}(z)`."""
        geo = self._geometry(z)  # the conditioning coordinate is the same on both sides
        piece = Categorical(logits=self._log_gate(z, geo, None)).sample()
        idx = piece.unsqueeze(-1)
        zd = z[..., self.dim : self.dim + 1]
        yd = geo["anchor_y"].gather(-1, idx) + (zd - geo["anchor_h"].gather(-1, idx)) / geo[
            "slope"
        ].gather(-1, idx)
        return torch.cat([z[..., : self.dim], yd, z[..., self.dim + 1 :]], -1)


class RADDistribution(Distribution):
    r"""The RAD model: data :math:`\to` RAD layers (in order) :math:`\to` a base distribution.

    :meth:`log_prob` is exact (each layer adds its gate log-probability and log-slope);
    :meth:`sample` is exact (base sample, then each layer's gate and piece inverse, in reverse
    order). Samples are not reparameterized (the piece choice is discrete).

    Args:
        base: distribution of the latent variable, event shape ``(D,)``, e.g. a
            :class:`~simplexity.flows.flow.Flow`.
        layers: :class:`RADLayer` modules, applied to the data in order.
        validate_args: check values given to :meth:`log_prob` (torch's convention).
    """

    arg_constraints: dict[str, constraints.Constraint] = {}  # noqa: RUF012
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self, base: Distribution, layers: Sequence[RADLayer], validate_args: bool | None = None
    ) -> None:
        if not isinstance(base, Distribution):
            raise TypeError(f"base must be a torch Distribution, got {type(base).__name__}")
        if len(base.event_shape) != 1:
            raise ValueError(
                f"base must have a vector event shape (D,), got {tuple(base.event_shape)}"
            )
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, RADLayer):
                raise TypeError(f"layers[{i}] must be a RADLayer, got {type(layer).__name__}")
            if layer.features != base.event_shape[0]:
                raise ValueError(
                    f"layers[{i}] has {layer.features} features but the base has event shape "
                    f"{tuple(base.event_shape)}"
                )
        self.base = base
        self.layers = layers
        super().__init__(base.batch_shape, base.event_shape, validate_args=validate_args)

    def expand(
        self, batch_shape: _SizeLike, _instance: RADDistribution | None = None
    ) -> RADDistribution:
        new = self._get_checked_instance(RADDistribution, _instance)
        batch_shape = torch.Size(batch_shape)
        new.base = self.base.expand(batch_shape)
        new.layers = list(self.layers)
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: Tensor) -> Tensor:
        check_event("value", value, self.event_shape)
        if self._validate_args:
            self._validate_sample(value)
        total = torch.zeros((), dtype=value.dtype, device=value.device)
        x = value
        for layer in self.layers:
            x, log_det = layer.transform(x)
            total = total + log_det
        return self.base.log_prob(x) + total

    def sample(self, sample_shape: _SizeLike = ()) -> Tensor:
        with torch.no_grad():
            z = self.base.sample(sample_shape)
            for layer in reversed(self.layers):
                z = layer.inverse_sample(z)
            return z


class RAD(nn.Module):
    r"""Trainable RAD model: ``forward()`` returns a :class:`RADDistribution`.

    Args:
        base: a module whose ``forward()`` returns the latent distribution (e.g. a
            :class:`~simplexity.flows.flow.LazyFlow` or
            :class:`~simplexity.flows.bases.GaussianBase`).
        layers: the :class:`RADLayer` modules, applied to the data in order.

    References:
        Dinh, Sohl-Dickstein, Pascanu, Larochelle. A RAD Approach to Deep Mixture Models.
        ICLR 2019 workshop (arXiv 1903.07714).

    Example:
        >>> from simplexity.flows import GaussianBase
        >>> model = RAD(GaussianBase(2), [RADLayer(2, 3, dim=1), RADLayer(2, 3, dim=0)])
        >>> y = model().sample((4,))
        >>> model().log_prob(y).shape
        torch.Size([4])
    """

    def __init__(self, base: nn.Module, layers: Sequence[RADLayer]) -> None:
        super().__init__()
        if not isinstance(base, nn.Module):
            raise TypeError(
                f"base must be a module whose forward() returns a distribution, got "
                f"{type(base).__name__}"
            )
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, RADLayer):
                raise TypeError(f"layers[{i}] must be a RADLayer, got {type(layer).__name__}")
        self.base = base
        self.layers = nn.ModuleList(layers)

    def forward(self, c: Tensor | None = None) -> RADDistribution:
        """Build the distribution; the context ``c`` is passed to the base module when given."""
        base = self.base() if c is None else self.base(c)
        return RADDistribution(base, list(self.layers))
