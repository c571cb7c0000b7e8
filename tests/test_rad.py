"""Tests of simplexity.flows.rad: exact density and exact sampling of RAD in 1-D and 2-D."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from default_dtype import default_dtype
from exact_error import raises_exactly
from simplexity.flows import (
    RAD,
    AffineCoupling,
    GaussianBase,
    LazyFlow,
    RADDistribution,
    RADLayer,
)

DT = torch.float64


def _randomize(module: torch.nn.Module, seed: int, scale: float = 0.5) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def rad_1d(num_pieces: int, seed: int) -> RAD:
    torch.manual_seed(seed)
    return _randomize(RAD(GaussianBase(1), [RADLayer(1, num_pieces)]), seed).double()


@pytest.mark.parametrize("num_pieces", [2, 3, 5])
def test_density_integrates_to_one_1d(num_pieces):
    model = rad_1d(num_pieces, num_pieces)
    x = torch.linspace(-40, 40, 400001, dtype=DT).unsqueeze(-1)
    dens = model().log_prob(x).exp()
    assert torch.trapezoid(dens, x[:, 0]).item() == pytest.approx(1.0, abs=1e-4)


def test_map_is_a_zig_zag_onto_the_line():
    model = rad_1d(5, 0)
    layer = model.layers[0]
    y = torch.linspace(-30, 30, 20001, dtype=DT).unsqueeze(-1)
    z, _ = layer.transform(y)
    # Continuous (no jumps bigger than the grid allows) and onto a range that covers the base.
    assert (z[1:] - z[:-1]).abs().max() < 0.1
    assert z.min() < -5 and z.max() > 5


def test_sampling_is_exact_1d():
    model = rad_1d(3, 1)
    torch.manual_seed(5)
    samples = model().sample((4000,))[:, 0].numpy()
    grid = torch.linspace(-40, 40, 200001, dtype=DT)
    dens = model().log_prob(grid.unsqueeze(-1)).exp()
    cdf = torch.cumulative_trapezoid(dens, grid)
    cdf = torch.cat([torch.zeros(1, dtype=DT), cdf]).detach().numpy()
    u = np.interp(samples, grid.numpy(), cdf)
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_inverse_sample_maps_back():
    model = rad_1d(5, 2)
    layer = model.layers[0]
    z = torch.randn(200, 1, dtype=DT)
    y = layer.inverse_sample(z)
    z_back, _ = layer.transform(y)
    assert torch.allclose(z_back, z, atol=1e-9)


def rad_2d(seed: int) -> RAD:
    torch.manual_seed(seed)
    base = LazyFlow(GaussianBase(2), [AffineCoupling(2, 0, hidden=(8,))])
    layers = [RADLayer(2, 3, dim=1, hidden=(8,)), RADLayer(2, 3, dim=0, hidden=(8,))]
    return _randomize(RAD(base, layers), seed, 0.15).double()


def test_density_integrates_to_one_2d():
    model = rad_2d(0)
    grid = torch.linspace(-10, 10, 501, dtype=DT)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    with torch.no_grad():
        dens = model().log_prob(torch.stack([xx, yy], -1).reshape(-1, 2)).exp()
    total = torch.trapezoid(torch.trapezoid(dens.reshape(501, 501), grid), grid)
    assert total.item() == pytest.approx(1.0, abs=2e-3)


def test_sampling_agrees_with_density_2d():
    # Mean of the samples vs the mean of the density on a grid (a moment test of exactness).
    model = rad_2d(1)
    torch.manual_seed(3)
    samples = model().sample((20000,))
    grid = torch.linspace(-12, 12, 401, dtype=DT)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([xx, yy], -1).reshape(-1, 2)
    with torch.no_grad():
        w = model().log_prob(points).exp()
    w = w / w.sum()
    mean = (w.unsqueeze(-1) * points).sum(0)
    se = samples.std(0) / np.sqrt(samples.shape[0])
    assert torch.all((samples.mean(0) - mean).abs() < 4 * se + 0.01)


def test_gradients_reach_every_parameter():
    model = rad_2d(2).float()
    model().log_prob(torch.randn(64, 2) * 2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"^features"):
        RADLayer(3, 3)
    with pytest.raises(ValueError, match=r"^num_pieces"):
        RADLayer(1, 1)
    with pytest.raises(ValueError, match=r"^dim"):
        RADLayer(1, 3, dim=1)
    with pytest.raises(ValueError, match="features"):
        RAD(GaussianBase(2), [RADLayer(1, 3)])()
    with pytest.raises(ValueError, match="last dimension"):
        RADLayer(2, 3).transform(torch.zeros(4, 1))


def test_rad_distribution_validates_and_expands():
    from simplexity.flows import RADDistribution

    model = rad_1d(3, 0)
    layers = list(model.layers)
    base = model.base()
    d = RADDistribution(base, layers, validate_args=True)
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.tensor([float("nan")], dtype=DT))
    with pytest.raises(ValueError, match=r"^value"):
        d.log_prob(torch.zeros(4, 2, dtype=DT))
    e = RADDistribution(base, layers).expand((4,))
    assert type(e) is RADDistribution and e.batch_shape == (4,)
    y = e.sample((3,))
    assert y.shape == (3, 4, 1)
    torch.testing.assert_close(e.log_prob(y), model().log_prob(y))
    assert isinstance(model(torch.randn(2)), RADDistribution)  # zuko's context argument


def test_layer_start_geometry():
    """Boundaries evenly over [-spread, spread], unit slopes of alternating sign (the last one
    positive), h(b_1) = b_1; in 2-D the same whatever the other coordinate (zero last layer)."""
    for k, signs in ((5, [1.0, -1.0, 1.0, -1.0, 1.0]), (4, [1.0, -1.0, 1.0, 1.0])):
        layer = RADLayer(1, k, spread=2.0)
        assert layer.signs.tolist() == signs
        geo = layer._geometry(torch.zeros(3, 1))
        torch.testing.assert_close(geo["b"][0], torch.linspace(-2.0, 2.0, k - 1))
        torch.testing.assert_close(geo["slope"][0], torch.tensor(signs))
        torch.testing.assert_close(geo["anchor_h"][0, 0], torch.tensor(-2.0))
        two = RADLayer(2, k, dim=1, spread=2.0)
        for other in (-3.0, 0.0, 5.0):
            geo2 = two._geometry(torch.tensor([[other, 0.0]]))
            torch.testing.assert_close(geo2["b"][0], torch.linspace(-2.0, 2.0, k - 1))
    # two pieces: one boundary at 0, slopes + and + (the last is forced positive)
    layer = RADLayer(1, 2)
    geo = layer._geometry(torch.zeros(1, 1))
    assert geo["b"].tolist() == [[0.0]] and layer.signs.tolist() == [1.0, 1.0]
    # h: b = (-1, 1), slopes (1, -1, 1), h(-1) = -1, h(1) = -3; the gate starts uniform over
    # the pieces whose image holds z: all three at z = -2, only the last at z = 1
    layer = RADLayer(1, 3, spread=1.0)
    z, out = layer.transform(torch.tensor([[-2.0], [0.0], [5.0]]))
    torch.testing.assert_close(z, torch.tensor([[-2.0], [-2.0], [1.0]]))
    torch.testing.assert_close(out, torch.tensor([-math.log(3.0), -math.log(3.0), 0.0]))


def test_rad_messages():
    base = GaussianBase(2)()
    cases = [
        (lambda: RADDistribution("normal", []), TypeError,
         "base must be a torch Distribution, got str"),
        (lambda: RADDistribution(base, [RADLayer(2, 3), 1]), TypeError,
         "layers[1] must be a RADLayer, got int"),
        (lambda: RADDistribution(base, [RADLayer(1, 3)]), ValueError,
         "layers[0] has 1 features but the base has event shape (2,)"),
        (lambda: RAD(base, []), TypeError,
         "base must be a module whose forward() returns a distribution, got Independent"),
        (lambda: RAD(GaussianBase(2), [RADLayer(2, 3), 1.5]), TypeError,
         "layers[1] must be a RADLayer, got float"),
        (lambda: RADLayer(1, 3).transform(torch.zeros(4, 2)), ValueError,
         "expected a last dimension of 1, got 2"),
    ]  # fmt: skip
    for make, error, message in cases:
        with raises_exactly(error, message):
            make()


class _ShiftedBase(torch.nn.Module):
    """A conditional base: a unit Gaussian at the context (at 0 without one)."""

    def forward(self, c=None):
        loc = torch.zeros(2, dtype=DT) if c is None else c
        return torch.distributions.Independent(torch.distributions.Normal(loc, 1.0), 1)


class _NoContextBase(torch.nn.Module):
    """A base module whose forward takes no argument at all."""

    def forward(self):
        return torch.distributions.Independent(
            torch.distributions.Normal(torch.full((2,), 0.4, dtype=DT), 1.0), 1
        )


def test_context_is_passed_to_the_base_only_when_given():
    """RAD(c) builds the base from c; RAD() calls the base without an argument, so a base whose
    forward takes none works too."""
    layers = [RADLayer(2, 3).double()]
    c = torch.tensor([0.7, -1.2], dtype=DT)
    assert torch.equal(RAD(_ShiftedBase(), layers)(c).base.mean, c)
    assert torch.equal(RAD(_ShiftedBase(), layers)().base.mean, torch.zeros(2, dtype=DT))
    assert torch.equal(RAD(_NoContextBase(), layers)().base.mean, torch.full((2,), 0.4, dtype=DT))


def _exact_layer(num_pieces: int, gate_seed: int | None = None) -> RADLayer:
    """A float64 1-D layer with first boundary -1, unit |slopes| and offset h(b_1) = -1 (the
    defaults of spread = 1); the gate uniform (zero) or randomized."""
    layer = RADLayer(1, num_pieces).double()
    with torch.no_grad():
        layer.params[num_pieces - 1 : 2 * num_pieces - 1] = 0.0  # log |slope| = 0
    if gate_seed is not None:
        _randomize(layer.gate, gate_seed)
    return layer


def test_gate_allows_every_piece_whose_closed_image_holds_the_point():
    """K = 3, slopes (+1, -1, +1), b = (-1, b_2): the images are (-inf, -1], [h(b_2), -1] and
    [h(b_2), inf). A point on a boundary of an image belongs to it: at y = b_1 (z = -1) and at
    y = b_2 (z = h(b_2)) all three pieces are allowed, so with a uniform gate log p(k|z) = -log 3;
    with a nonuniform gate the piece of y = b_1 is the lower one (y > b counts the boundaries)."""
    layer = _exact_layer(3)
    b1 = torch.tensor([[-1.0]], dtype=DT)
    b2 = b1 + torch.nn.functional.softplus(layer.params[1:2].detach()).view(1, 1)
    for y in (b1, b2):
        z, log_det = layer.transform(y)
        assert log_det.item() == pytest.approx(-math.log(3), rel=1e-15)
    assert layer.transform(b1)[0].item() == -1.0
    gated = _exact_layer(3, gate_seed=4)
    z, log_det = gated.transform(b1)
    expected = gated.gate(z).log_softmax(-1)[0, 0]  # piece 0, all three allowed
    assert log_det.item() == pytest.approx(expected.item(), rel=1e-12)


def test_gate_excludes_the_pieces_whose_image_misses_the_point():
    """K = 4, slopes (+1, -1, +1, +1), b = (-1, 0, 1) (up to rounding), h(b) = (-1, -2, -1): the
    images are (-inf, -1], [-2, -1], [-2, -1], [-1, inf). At y = -0.5 (piece 1, z = -1.5) the
    pieces 0, 1 and 2 are allowed, not 3."""
    layer = _exact_layer(4, gate_seed=2)
    with torch.no_grad():  # widths softplus(raw) = 1
        layer.params[1:3] = math.log(math.e - 1)
    z, log_det = layer.transform(torch.tensor([[-0.5]], dtype=DT))
    assert z.item() == pytest.approx(-1.5, abs=1e-12)
    logits = layer.gate(z)[0]
    expected = logits[1] - torch.logsumexp(logits[:3], -1)
    assert log_det.item() == pytest.approx(expected.item(), rel=1e-12)


def test_a_point_on_a_boundary_keeps_its_own_piece_despite_rounding():
    """float32 parameters for which z computed from y = b_3 rounds just outside the image interval
    of its own piece: the density there stays finite (the piece the point came from is always
    allowed)."""
    layer = RADLayer(1, 4)
    params = [2.407771110534668, -1.4221081733703613, 1.1625356674194336, -1.6876543760299683,
              1.30116605758667, -0.8713817000389099, 2.4066741466522217, -0.08604492992162704]  # fmt: skip
    with torch.no_grad():
        layer.params.copy_(torch.tensor(params))
        widths = torch.nn.functional.softplus(layer.params[1:3])
        b3 = (layer.params[:1] + widths.cumsum(-1)[-1:]).view(1, 1)  # as the layer computes it
        z, log_det = layer.transform(b3)
    assert torch.isfinite(log_det).all() and torch.isfinite(z).all()


def test_two_dimensional_layers_have_a_conditioner_and_no_shared_parameters():
    layer = RADLayer(2, 3)
    assert layer.params is None and layer.conditioner is not None
    assert (
        isinstance(RADLayer(1, 3).params, torch.nn.Parameter) and RADLayer(1, 3).conditioner is None
    )


def test_rad_distribution_messages_name_the_shapes():
    with raises_exactly(ValueError, "base must have a vector event shape (D,), got (2, 2)"):
        RADDistribution(torch.distributions.Independent(torch.distributions.Normal(
            torch.zeros(2, 2), 1.0), 2), [])  # fmt: skip
    with raises_exactly(ValueError, "expected a last dimension of 1, got 2"):
        RADLayer(1, 3).transform(torch.zeros(4, 3, 2))


def test_rad_log_prob_keeps_the_value_dtype_and_device():
    """Without layers the density is the base's, in the value's dtype (a float64 default dtype must
    not promote an unbatched float32 value) and on its device (not a default device of "meta")."""
    base = torch.distributions.Independent(
        torch.distributions.Normal(torch.tensor([0.3, -0.8]), torch.tensor([0.7, 1.4])), 1
    )
    dist, value = RADDistribution(base, []), torch.tensor([0.25, -1.5])
    with default_dtype(torch.float64):
        log_p = dist.log_prob(value)
    assert log_p.dtype == torch.float32 and torch.equal(log_p, base.log_prob(value))
    with torch.device("meta"):
        log_p = dist.log_prob(value)
    assert log_p.device.type == "cpu" and torch.equal(log_p, base.log_prob(value))


def test_shared_parameters_follow_the_input_dtype_under_autocast():
    """A float32 layer under CPU autocast with bfloat16 data: its shared parameters are read in the
    data's dtype, so the log-det (gate log-probability plus log-slope) stays bfloat16."""
    layer = RADLayer(1, 3)
    y = torch.tensor([[0.3], [-1.2]]).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, log_det = layer.transform(y)
    assert log_det.dtype == torch.bfloat16
    assert torch.equal(log_det, torch.full((2,), -math.log(3)).bfloat16())  # uniform gate, slopes 1
