"""Tests of simplexity.flows: transforms, the Flow distribution, bases and lazy modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal, TransformedDistribution
from torch.distributions.transforms import AffineTransform

from simplexity.flows import (
    AffineCoupling,
    Flow,
    GaussianBase,
    LazyFlow,
    MixtureBase,
    Planar,
    PlanarTransform,
    Radial,
    SimplexTransform,
)
from simplexity.flows.coupling import MLP

DT = torch.float64


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def transforms_to_check():
    torch.manual_seed(0)
    return {
        "planar": _randomize(Planar(3).double(), 1)(),
        "planar_contracting": PlanarTransform(
            torch.tensor([-3.0, 1.0, 0.5], dtype=DT),
            torch.tensor([1.0, 0.2, -0.4], dtype=DT),
            torch.tensor(0.3, dtype=DT),
        ),
        "radial": _randomize(Radial(3).double(), 2)(),
        "coupling": _randomize(AffineCoupling(3, parity=1, hidden=(16,)).double(), 3)(),
    }


@pytest.mark.parametrize("name", list(transforms_to_check()))
def test_inverse_round_trip_and_log_det(name):
    t = transforms_to_check()[name]
    x = torch.randn(6, 3, dtype=DT, generator=torch.Generator().manual_seed(4)) * 2
    y = t(x)
    assert torch.allclose(t.inv(y), x, atol=1e-9)
    log_det = t.log_abs_det_jacobian(x, y)
    assert log_det.shape == (6,)
    for i in range(6):
        jac = torch.autograd.functional.jacobian(lambda v: t(v), x[i])
        assert log_det[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-9)


def test_simplex_transform_log_det_and_inverse():
    t = SimplexTransform()
    x = torch.randn(5, 3, dtype=DT)
    z = t(x)
    assert torch.allclose(z.sum(-1), torch.ones(5, dtype=DT))
    assert torch.allclose(t.inv(z), x, atol=1e-10)
    ld = t.log_abs_det_jacobian(x, z)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda v: t(v)[:-1], x[i])
        assert ld[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-10)
    assert t.forward_shape((4, 3)) == (4, 4) and t.inverse_shape((4, 4)) == (4, 3)


def test_planar_inverse_gradient_is_exact():
    u = torch.tensor([1.5, -0.5], dtype=DT, requires_grad=True)
    w = torch.tensor([0.7, 0.4], dtype=DT, requires_grad=True)
    b = torch.tensor(0.2, dtype=DT, requires_grad=True)
    y = torch.randn(4, 2, dtype=DT)
    assert torch.autograd.gradcheck(lambda u, w, b: PlanarTransform(u, w, b).inv(y), (u, w, b))


def make_flows():
    torch.manual_seed(0)
    mix = MixtureBase(2, 4)
    return {
        "gaussian+planar+radial": LazyFlow(GaussianBase(2), [Planar(2), Radial(2), Planar(2)]),
        "mixture+coupling": LazyFlow(
            mix, [_randomize(AffineCoupling(2, p, hidden=(8,)), p) for p in (0, 1)]
        ),
        "mixture+planar": LazyFlow(MixtureBase(2, 3), [Planar(2), Planar(2)]),
    }


@pytest.mark.parametrize("name", list(make_flows()))
def test_flow_log_prob_agrees_with_forward_density(name):
    model = make_flows()[name].double()
    flow = model()
    z, lp = flow.rsample_and_log_prob((50,))
    assert z.shape == (50, 2) and lp.shape == (50,)
    assert torch.allclose(flow.log_prob(z), lp, atol=1e-8)


def test_flow_density_integrates_to_one():
    model = make_flows()["gaussian+planar+radial"].double()
    _randomize(model, 7)
    flow = model()
    grid = torch.linspace(-9, 9, 361, dtype=DT)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    dens = flow.log_prob(torch.stack([xx, yy], -1).reshape(-1, 2)).exp().reshape(361, 361)
    total = torch.trapezoid(torch.trapezoid(dens, grid), grid)
    assert total.item() == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize(
    "reparam", ["pathwise", "gumbel_softmax", "gumbel_straight_through", "igr"]
)
@pytest.mark.parametrize("estimator", ["exact", "nested_own", "joint"])
def test_gradients_reach_every_parameter(reparam, estimator):
    torch.manual_seed(0)
    temperature = None if reparam == "pathwise" else 0.5
    base = MixtureBase(2, 3, reparam=reparam, temperature=temperature)
    model = LazyFlow(base, [_randomize(AffineCoupling(2, 0, hidden=(8,)), 1), Planar(2), Radial(2)])
    num_inner = 4 if estimator == "nested_own" else None
    z, lp = model().rsample_and_log_prob((64,), estimator=estimator, num_inner=num_inner)
    (lp.mean() + z.square().mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_gradients_reach_every_parameter_through_log_prob():
    torch.manual_seed(0)
    model = LazyFlow(MixtureBase(2, 3), [AffineCoupling(2, 0, hidden=(8,)), Radial(2), Planar(2)])
    _randomize(model.transforms[0], 2)
    model().log_prob(torch.randn(32, 2)).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_simplex_flow_is_logistic_normal():
    mu = torch.tensor([0.3, -0.2], dtype=DT)
    sigma = torch.tensor([0.5, 1.5], dtype=DT)
    base = Independent(Normal(mu, sigma), 1)
    flow = Flow(base, [SimplexTransform()])
    assert flow.event_shape == (3,)
    z, lp = flow.rsample_and_log_prob((20,))
    assert torch.allclose(z.sum(-1), torch.ones(20, dtype=DT))
    alr = z[:, :2].log() - z[:, 2:].log()
    expected = base.log_prob(alr) - z.log().sum(-1)
    assert torch.allclose(lp, expected) and torch.allclose(flow.log_prob(z), expected)


def test_interoperates_with_torch_distributions():
    # torch's own transforms (elementwise, event_dim 0) inside our Flow, and ours inside torch's
    # TransformedDistribution.
    torch.manual_seed(0)
    base = Independent(Normal(torch.zeros(2, dtype=DT), torch.ones(2, dtype=DT)), 1)
    planar = _randomize(Planar(2).double(), 3)()
    ours = Flow(base, [AffineTransform(1.0, 2.0), planar])
    theirs = TransformedDistribution(base, [AffineTransform(1.0, 2.0, event_dim=1), planar])
    x = torch.randn(7, 2, dtype=DT)
    assert torch.allclose(ours.log_prob(x), theirs.log_prob(x))
    z, lp = ours.rsample_and_log_prob((7,))
    assert torch.allclose(lp, theirs.log_prob(z))


def test_mixture_base_initialization_from_data():
    g = torch.Generator().manual_seed(0)
    data = torch.cat([torch.randn(100, 2, generator=g) + 4, torch.randn(100, 2, generator=g) - 4])
    base = MixtureBase(2, 2).initialize_from_data(data, generator=g)
    assert sorted(base.loc[:, 0].round().tolist()) == [-4.0, 4.0]
    assert torch.allclose(base.log_scale.exp(), torch.ones(2, 2), atol=0.25)
    lp_fit = base().log_prob(data).mean()
    assert lp_fit > MixtureBase(2, 2)().log_prob(data).mean()


def test_bad_arguments():
    with pytest.raises(ValueError, match="features"):
        Planar(0)
    with pytest.raises(ValueError, match="features"):
        AffineCoupling(1)
    with pytest.raises(ValueError, match="reparam"):
        MixtureBase(2, 3, reparam="straight")
    with pytest.raises(ValueError, match="num_components"):
        MixtureBase(2, 0)
    with pytest.raises(TypeError, match="base"):
        Flow("normal", [])
    with pytest.raises(TypeError, match="transforms"):
        Flow(GaussianBase(2)(), [lambda x: x])
    with pytest.raises(TypeError, match="estimator"):
        Flow(GaussianBase(2)(), []).rsample_and_log_prob((3,), estimator="exact")
    with pytest.raises(ValueError, match="u and w"):
        PlanarTransform(torch.zeros(2), torch.zeros(3), torch.tensor(0.0))
    assert isinstance(MLP(2, 2, ()), torch.nn.Sequential)
    assert math.isfinite(float(Flow(GaussianBase(2)(), []).log_prob(torch.zeros(2))))
