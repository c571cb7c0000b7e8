"""Tests of simplexity.flows: transforms, the Flow distribution, bases and lazy modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal, TransformedDistribution
from torch.distributions.transforms import (
    AffineTransform,
    ExpTransform,
    IndependentTransform,
    StickBreakingTransform,
)

from default_dtype import default_dtype
from exact_error import raises_exactly
from simplexity.distributions import PlanarFlows
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
from simplexity.nn import MLP

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
    # the shapes' edge cases: one axis, two coordinates, the batch axes kept in order
    assert t.forward_shape((1,)) == (2,) and t.inverse_shape((2,)) == (1,)
    assert t.forward_shape((5, 2, 3)) == (5, 2, 4) and t.inverse_shape((5, 2, 4)) == (5, 2, 3)
    for shape in ((1,), (3, 1), ()):
        with raises_exactly(ValueError, "the simplex needs at least 2 coordinates"):
            t.inverse_shape(shape)
    with pytest.raises(ValueError, match=r"^too few dimensions on the input$"):
        t.forward_shape(())


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
    with pytest.raises(ValueError, match=r"^features"):
        Planar(0)
    with pytest.raises(ValueError, match=r"^features"):
        AffineCoupling(1)
    with pytest.raises(ValueError, match=r"^reparam"):
        MixtureBase(2, 3, reparam="straight")
    with pytest.raises(ValueError, match=r"^num_components"):
        MixtureBase(2, 0)
    with pytest.raises(TypeError, match=r"^base"):
        Flow("normal", [])
    with pytest.raises(TypeError, match=r"^transforms"):
        Flow(GaussianBase(2)(), [lambda x: x])
    with pytest.raises(TypeError, match="estimator"):
        Flow(GaussianBase(2)(), []).rsample_and_log_prob((3,), estimator="exact")
    with pytest.raises(ValueError, match=r"^u and w"):
        PlanarTransform(torch.zeros(2), torch.zeros(3), torch.tensor(0.0))
    assert isinstance(MLP(2, 2, ()), torch.nn.Sequential)
    assert math.isfinite(float(Flow(GaussianBase(2)(), []).log_prob(torch.zeros(2))))


def test_one_mlp_for_the_flows_and_the_lab():
    torch.manual_seed(0)
    net = MLP(3, 2, (5, 4))
    assert [type(m) for m in net] == [
        torch.nn.Linear, torch.nn.SiLU, torch.nn.Linear, torch.nn.SiLU, torch.nn.Linear
    ]  # fmt: skip
    # the state dict of the same layers written as a plain nn.Sequential loads (old checkpoints)
    plain = torch.nn.Sequential(
        torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4), torch.nn.ReLU(),
        torch.nn.Linear(4, 2),
    )  # fmt: skip
    relu = MLP(3, 2, [5, 4], activation=torch.nn.ReLU)
    relu.load_state_dict(plain.state_dict())
    x = torch.randn(7, 3)
    torch.testing.assert_close(relu(x), plain(x))
    zero = MLP(3, 2, (5,), zero_last=True)
    assert bool((zero(x) == 0).all())
    assert bool((MLP(3, 2, (5,))[-1].weight != 0).all())  # zero_last is off by default
    assert MLP(1, 1, (1,))(torch.ones(2, 1)).shape == (2, 1)  # the smallest sizes
    with pytest.raises(TypeError, match=r"^hidden must be a sequence of ints, got int$"):
        MLP(3, 2, 8)
    with pytest.raises(TypeError, match=r"^activation must be .*, got str$"):
        MLP(3, 2, activation="relu")
    assert len(MLP(3, 2, ())) == 1
    for bad, error in (
        (lambda: MLP(0, 2), ValueError),
        (lambda: MLP(3, 2, (4, 0)), ValueError),
        (lambda: MLP(3, 2.0), TypeError),
        (lambda: MLP(3, 2, 8), TypeError),
        (lambda: MLP(3, 2, activation="relu"), TypeError),
    ):
        with pytest.raises(error, match=r"^in_features|out_features|hidden|activation"):
            bad()
    # the coupling layers and RAD use this MLP
    assert isinstance(AffineCoupling(2).net, MLP)


def test_one_trainable_planar_flow():
    # flows.Planar is PlanarFlows with a single layer: same parameters, same initial values
    torch.manual_seed(4)
    layer = Planar(3)
    torch.manual_seed(4)
    single = PlanarFlows(3, None)
    assert isinstance(layer, PlanarFlows)
    for a, b in zip(layer.parameters(), single.parameters(), strict=True):
        assert torch.equal(a, b)
    assert layer.u.shape == (3,) and layer.b.shape == ()
    t = layer()
    assert isinstance(t, PlanarTransform) and t._cache_size == 0
    # a stack of L layers: (L, D) parameters, one transform per layer, cached for IGR-Planar
    stack = PlanarFlows(3, 2)
    transforms = stack()
    assert len(transforms) == 2 and all(f._cache_size == 1 for f in transforms)
    x = torch.randn(4, 3)
    torch.testing.assert_close(
        transforms[1](transforms[0](x)),
        PlanarTransform(stack.u[1], stack.w[1], stack.b[1])(
            PlanarTransform(stack.u[0], stack.w[0], stack.b[0])(x)
        ),
    )
    with pytest.raises(ValueError, match=r"^num_flows"):
        PlanarFlows(3, -1)
    with pytest.raises(TypeError, match=r"^dim"):
        PlanarFlows(3.0)


def test_planar_flows_defaults_bounds_and_initialization():
    # one layer by default, as a list (IGRPlanar's form); the smallest sizes are accepted
    assert len(PlanarFlows(3)()) == 1 and PlanarFlows(3, 0)() == []
    assert PlanarFlows(1, None)().u.shape == (1,) and Planar(1).u.shape == (1,)
    for cache_size in (0, 1):  # the stack's transforms carry the cache size asked for
        assert all(t._cache_size == cache_size for t in PlanarFlows(3, 2, cache_size=cache_size)())
        assert PlanarFlows(3, None, cache_size=cache_size)()._cache_size == cache_size
    # u and w ~ N(0, init_scale^2), b = 0; Planar passes its init_scale on
    torch.manual_seed(0)
    stack = PlanarFlows(40, 50, init_scale=0.3)
    for p in (stack.u.detach(), stack.w.detach()):
        assert abs(float(p.mean())) < 0.03 and float(p.std()) == pytest.approx(0.3, rel=0.05)
    assert bool((stack.b == 0).all()) and stack.b.shape == (50,)
    assert bool((Planar(3, init_scale=0.0).u == 0).all())
    assert float(Planar(400, init_scale=2.0).w.detach().std()) == pytest.approx(2.0, rel=0.15)


# ---------------------------------------------------------------- torch's and zuko's conventions
def _planar_flow(batch=(), validate_args=None) -> Flow:
    torch.manual_seed(0)
    loc, scale = torch.zeros(*batch, 2, dtype=DT), torch.ones(*batch, 2, dtype=DT)
    base = Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)
    planar = _randomize(Planar(2).double(), 4)()
    return Flow(base, [planar, SimplexTransform()], validate_args=validate_args)


def test_flow_validates_values_when_asked():
    flow = _planar_flow(validate_args=True)
    with pytest.raises(ValueError, match="value"):
        flow.log_prob(torch.tensor([0.5, 0.7, -0.2], dtype=DT))  # off the simplex
    assert math.isfinite(float(flow.log_prob(torch.tensor([0.2, 0.3, 0.5], dtype=DT)).detach()))
    off = torch.tensor([0.5, 0.7, -0.2], dtype=DT)
    assert _planar_flow(validate_args=False).log_prob(off).isnan()


def test_flow_log_prob_of_the_wrong_event_size_names_value():
    flow = _planar_flow()
    with pytest.raises(ValueError, match=r"^value.*\(\.\.\., 3\)"):
        flow.log_prob(torch.full((4, 2), 0.5, dtype=DT))


def test_flow_expand():
    flow = _planar_flow(batch=(2,))
    e = flow.expand((5, 2))
    assert type(e) is Flow and e.batch_shape == (5, 2) and e.event_shape == (3,)
    z = e.sample((3,))
    assert z.shape == (3, 5, 2, 3)
    torch.testing.assert_close(e.log_prob(z), flow.log_prob(z))


def test_mixture_base_rejects_a_relaxed_reparam_without_temperature():
    with pytest.raises(ValueError, match="temperature"):
        MixtureBase(2, 3, reparam="gumbel_softmax")
    with pytest.raises(ValueError, match=r"^temperature"):
        MixtureBase(2, 3, reparam="igr", temperature=-1.0)
    with pytest.raises(ValueError, match="K >= 2"):
        MixtureBase(2, 1, reparam="igr", temperature=0.5)
    with pytest.raises(ValueError, match=r"^temperature"):
        MixtureBase(2, 3, temperature=0.5)  # pathwise takes none


def test_mixture_base_scale_stays_positive_and_finite_whatever_the_parameters():
    base = MixtureBase(2, 3)
    with torch.no_grad():
        base.log_scale.copy_(torch.tensor([[-200.0, 0.0], [300.0, 1.0], [0.0, -1e4]]))
    p = base()
    assert bool((p.scale > 0).all() & p.scale.isfinite().all())
    assert bool(p.log_prob(torch.zeros(4, 2)).isfinite().all())


def test_lazy_modules_take_zuko_s_context_argument():
    c = torch.randn(3)
    for module in (GaussianBase(2), MixtureBase(2, 3), Planar(2), Radial(2), AffineCoupling(2)):
        assert type(module(c)) is type(module()) and type(module(None)) is type(module())
    flow = LazyFlow(MixtureBase(2, 3), [Planar(2), AffineCoupling(2)])
    assert isinstance(flow(c), Flow) and isinstance(flow(None), Flow)


def test_zuko_flow_takes_a_mixture_base_directly_and_trains():
    zuko = pytest.importorskip("zuko")
    torch.manual_seed(0)
    data = torch.cat([torch.randn(256, 2) * 0.3 + 2, torch.randn(256, 2) * 0.3 - 2])
    base = MixtureBase(2, 8)
    flow = zuko.flows.Flow(zuko.flows.MAF(2, transforms=1, hidden_features=(16,)).transform, base)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    first = float(-flow().log_prob(data).mean().detach())
    for _ in range(60):
        loss = -flow().log_prob(data).mean()
        opt.zero_grad()
        loss.backward()
        assert base.logits.grad is not None and base.log_scale.grad is not None
        opt.step()
    assert float(loss.detach()) < first - 0.5
    assert flow().sample((5,)).shape == (5, 2)
    # with a context the base is expanded to the context's batch shape
    cflow = zuko.flows.Flow(zuko.flows.MAF(2, 1, transforms=1).transform, MixtureBase(2, 4))
    assert cflow(torch.randn(7, 1)).log_prob(torch.randn(7, 2)).shape == (7,)


def test_argument_checks_after_importing_zuko(monkeypatch):
    """zuko switches torch's validate_args default off process-wide when imported: numbers are
    still checked by simplexity, tensors as torch checks them (with validate_args=True)."""
    pytest.importorskip("zuko")
    import subprocess
    import sys

    from torch.distributions import Distribution

    from simplexity.distributions import IGR, GumbelSoftmax

    code = "import torch.distributions as d, zuko; print(d.Distribution._validate_args)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # what importing zuko leaves; the conftest fixture undoes it for each test
    assert out.stdout.split() == ["False"]
    monkeypatch.setattr(Distribution, "_validate_args", False)
    with pytest.raises(ValueError, match=r"^temperature"):
        GumbelSoftmax(0.0, logits=torch.zeros(3))
    with pytest.raises(ValueError, match=r"^delta"):
        IGR(torch.zeros(2), torch.ones(2), 0.5, delta=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        GumbelSoftmax(torch.tensor(0.0), logits=torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError, match="scale"):
        IGR(torch.zeros(2), -torch.ones(2), 0.5, validate_args=True)
    GumbelSoftmax(torch.tensor(0.0), logits=torch.zeros(3))  # torch's convention: not checked


def test_mixture_base_start_scale_formula_and_repr():
    torch.manual_seed(0)
    base = MixtureBase(3, 200, spread=2.5, min_scale=0.01)
    assert bool((base.logits == 0).all()) and bool((base.log_scale == 0).all())
    assert float(base.loc.detach().std()) == pytest.approx(2.5, rel=0.05)
    torch.testing.assert_close(base.scale, torch.full((200, 3), 1.01))
    assert repr(base) == "MixtureBase(features=3, num_components=200, reparam='pathwise')"
    relaxed = MixtureBase(2, 3, reparam="gumbel_softmax", temperature=0.5)
    assert relaxed.extra_repr() == "features=2, num_components=3, reparam='gumbel_softmax', " + (
        "temperature=0.5"
    )
    assert relaxed().temperature == 0.5 and relaxed().reparam == "gumbel_softmax"
    # exp(min(s, s_max)) + floor, s_max = log(finfo.max) / 2 in the parameter's dtype
    for dtype in (torch.float32, torch.float64):
        base = MixtureBase(1, 3, min_scale=0.5).to(dtype)
        with torch.no_grad():
            base.log_scale.copy_(torch.tensor([[-3.0], [2.0], [1e6]]))
        s_max = 0.5 * math.log(torch.finfo(dtype).max)
        expected = [[math.exp(-3) + 0.5], [math.exp(2) + 0.5], [math.exp(s_max) + 0.5]]
        torch.testing.assert_close(base.scale, torch.tensor(expected, dtype=dtype))
    with raises_exactly(
        TypeError,
        "temperature must be a float here (the module stores it), got a tensor",
    ):
        MixtureBase(2, 3, reparam="gumbel_softmax", temperature=torch.tensor(0.5))
    gaussian = GaussianBase(3)()
    torch.testing.assert_close(gaussian.mean, torch.zeros(3))
    torch.testing.assert_close(gaussian.stddev, torch.ones(3))


def test_mixture_base_initialization_is_the_kmeans_fit():
    from simplexity.distributions.mixture import kmeans_plusplus_init

    data = torch.randn(60, 2, dtype=DT, generator=torch.Generator().manual_seed(3))
    for iterations in (0, 4):
        base = (
            MixtureBase(2, 3, min_scale=1e-3)
            .double()
            .initialize_from_data(
                data, generator=torch.Generator().manual_seed(9), iterations=iterations
            )
        )
        logits, loc, scale = kmeans_plusplus_init(
            data, 3, iterations=iterations, generator=torch.Generator().manual_seed(9)
        )
        torch.testing.assert_close(base.logits.detach(), logits)
        torch.testing.assert_close(base.loc.detach(), loc)
        torch.testing.assert_close(base.scale.detach(), scale)
    # a float32 base takes float64 data in its own dtype
    assert MixtureBase(2, 3).initialize_from_data(data).loc.dtype == torch.float32


def test_affine_coupling_against_its_formula():
    from simplexity.flows import AffineCouplingTransform

    g = torch.Generator().manual_seed(4)
    weight = torch.randn(6, 3, generator=g, dtype=DT) * 3  # large: the clamp matters
    mask = torch.tensor([True, False, False])

    def conditioner(h):
        return h @ weight.T

    t = AffineCouplingTransform(mask, conditioner, bound=1.5)
    x = torch.randn(4, 2, 3, generator=g, dtype=DT)  # a (sample, batch) of points
    raw = (x * mask) @ weight.T
    s = 1.5 * torch.tanh(raw[..., :3] / 1.5) * ~mask
    shift = raw[..., 3:] * ~mask
    y = torch.where(mask, x, x * s.exp() + shift)
    torch.testing.assert_close(t(x), y)
    torch.testing.assert_close(t.log_abs_det_jacobian(x, y), s.sum(-1))
    torch.testing.assert_close(t.inv(y), x)
    # the log-determinant is that of the Jacobian
    jac = torch.autograd.functional.jacobian(t, x[0, 0])
    torch.testing.assert_close(t.log_abs_det_jacobian(x[0, 0], y[0, 0]), jac.det().abs().log())
    # the default bound is 3
    assert AffineCouplingTransform(mask, conditioner).bound == 3.0
    with raises_exactly(TypeError, "mask must be a boolean tensor of shape (D,)"):
        AffineCouplingTransform(torch.tensor([1, 0]), conditioner)


def test_affine_coupling_layer_mask_bound_and_identity_start():
    layer = AffineCoupling(5, hidden=(4,))
    assert layer.mask.tolist() == [True, False, True, False, True]  # parity 0 by default
    assert AffineCoupling(2, parity=1).mask.tolist() == [False, True]
    assert layer().bound == 3.0 and AffineCoupling(2, bound=0.7)().bound == 0.7
    x = torch.randn(3, 5)
    assert torch.equal(layer()(x), x)  # the conditioner's last layer starts at zero
    mask = torch.tensor([False, True, True])
    assert torch.equal(AffineCoupling(3, mask=mask).mask, mask)
    for bad, message in (
        (torch.tensor([True, False]), "mask must be a boolean tensor of shape (3,)"),
        (torch.tensor([1, 0, 1]), "mask must be a boolean tensor of shape (3,)"),
        (torch.ones(3, dtype=torch.bool), "mask must keep at least one entry and transform at "
         "least one"),
        (torch.zeros(3, dtype=torch.bool), "mask must keep at least one entry and transform at "
         "least one"),
    ):  # fmt: skip
        with raises_exactly(ValueError, message):
            AffineCoupling(3, mask=bad)
    assert AffineCoupling(2, hidden=(3,)).net[0].out_features == 3


def test_flow_with_elementwise_transforms_against_torch():
    """Elementwise (event_dim 0) transforms: the density sums their log-determinants over the
    event, as torch's TransformedDistribution does; the support is per coordinate."""
    from torch.distributions import ExpTransform

    base = Independent(Normal(torch.zeros(2, 3, dtype=DT), torch.ones(2, 3, dtype=DT)), 1)
    transforms = [AffineTransform(0.5, 2.0), ExpTransform()]
    ours = Flow(base, transforms)
    theirs = TransformedDistribution(base, transforms)
    assert ours.batch_shape == (2,) and ours.event_shape == (3,)
    x = torch.rand(4, 2, 3, dtype=DT) + 0.1
    torch.testing.assert_close(ours.log_prob(x), theirs.log_prob(x))
    torch.manual_seed(0)
    z, lp = ours.rsample_and_log_prob((4,))
    torch.testing.assert_close(lp, theirs.log_prob(z))
    assert bool(ours.support.check(x).all()) and not bool(ours.support.check(-x).any())
    assert ours.support.event_dim == 1
    assert bool(Flow(base, []).support.check(-x).all())  # the base's: real vectors
    with raises_exactly(
        TypeError, "the base Independent takes no estimator arguments, got ['estimator']"
    ):
        ours.rsample_and_log_prob((2,), estimator="exact")


def test_flow_and_lazy_flow_messages_and_order():
    base = GaussianBase(2)()
    cases = [
        (lambda: Flow("normal", []), TypeError, "base must be a torch Distribution, got str"),
        (lambda: Flow(base, [AffineTransform(0.0, 1.0), 3]), TypeError,
         "transforms[1] must be a torch Transform, got int"),
        (lambda: LazyFlow(base, []), TypeError,
         "base must be a module whose forward() returns a distribution, got Independent"),
        (lambda: LazyFlow(GaussianBase(2), [Planar(2), "x"]), TypeError,
         "transforms[1] must be a module returning a Transform or a Transform, got str"),
    ]  # fmt: skip
    for make, error, message in cases:
        with raises_exactly(error, message):
            make()
    # fixed transforms keep their place among the modules
    shift = AffineTransform(torch.tensor([1.0, -1.0]), 2.0, event_dim=1)
    planar, radial = Planar(2), Radial(2)
    flow = LazyFlow(GaussianBase(2), [planar, shift, radial])()
    assert flow.transforms[1] is shift
    assert isinstance(flow.transforms[0], PlanarTransform)
    assert type(flow.transforms[2]).__name__ == "RadialTransform"
    assert list(LazyFlow(GaussianBase(2), [planar, shift, radial]).transforms) == [planar, radial]


def test_radial_against_its_formula():
    from simplexity.flows import RadialTransform

    center = torch.tensor([0.3, -0.7, 1.1], dtype=DT)
    a, b = torch.tensor(0.4, dtype=DT), torch.tensor(-0.2, dtype=DT)
    t = RadialTransform(center, a, b)
    alpha = math.log1p(math.exp(0.4))
    beta = -alpha + math.log1p(math.exp(-0.2))
    assert float(t.alpha) == pytest.approx(alpha) and float(t.beta) == pytest.approx(beta)
    x = torch.randn(4, 2, 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    r = (x - center).norm(dim=-1, keepdim=True)
    y = x + beta / (alpha + r) * (x - center)
    torch.testing.assert_close(t(x), y)
    torch.testing.assert_close(t.with_cache(0).inv(y), x)
    jac = torch.autograd.functional.jacobian(t, x[1, 0])
    torch.testing.assert_close(t.log_abs_det_jacobian(x[1, 0], y[1, 0]), jac.det().abs().log())
    assert t.log_abs_det_jacobian(x, y).shape == (4, 2)
    # the center itself: finite value and gradient
    c = center.clone().requires_grad_()
    out = t(c)
    torch.testing.assert_close(out, center)
    (grad,) = torch.autograd.grad(out.sum(), c)
    assert bool(grad.isfinite().all())
    with raises_exactly(
        ValueError,
        "center must have shape (D,) and alpha_raw, beta_raw be scalars, got (3,), (1,), ()",
    ):
        RadialTransform(center, a.reshape(1), b)
    with pytest.raises(TypeError, match=r"^beta_raw must be a floating-point tensor"):
        RadialTransform(center, a, torch.tensor(1))


def test_radial_layer_start():
    torch.manual_seed(0)
    layer = Radial(300, init_scale=2.0)
    assert float(layer.center.detach().std()) == pytest.approx(2.0, rel=0.15)
    assert layer.alpha_raw.item() == 0.0 and layer.beta_raw.item() == 0.5
    t = layer()
    assert t.center is layer.center and t._cache_size == 0
    assert float(Radial(2).center.detach().abs().max()) > 0  # a random start by default


def test_flow_layer_defaults():
    from simplexity.flows import AffineCouplingTransform, RadialTransform

    torch.manual_seed(0)
    assert float(MixtureBase(2, 2000).loc.detach().std()) == pytest.approx(1.0, rel=0.05)
    assert float(Radial(2000).center.detach().std()) == pytest.approx(1.0, rel=0.1)
    assert isinstance(Radial(1)(), RadialTransform)  # one feature is allowed
    mask = torch.tensor([True, False])
    assert AffineCouplingTransform(mask, MLP(2, 4, (3,)))._cache_size == 0


def test_flow_log_prob_hands_each_transform_its_output_too():
    """torch's StickBreakingTransform computes its log-determinant from y as well as x: the
    flow's density is TransformedDistribution's, exactly."""
    base = Independent(
        Normal(torch.tensor([0.3, -0.8, 1.1], dtype=torch.float64),
               torch.tensor([0.7, 1.4, 0.5], dtype=torch.float64)), 1)  # fmt: skip
    flow = Flow(base, [StickBreakingTransform()])
    reference = TransformedDistribution(base, [StickBreakingTransform()])
    value = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.55, 0.05, 0.25, 0.15]], dtype=torch.float64)
    torch.testing.assert_close(flow.log_prob(value), reference.log_prob(value), rtol=1e-12, atol=0)


def test_flow_log_prob_keeps_the_value_dtype_and_device():
    """With no transforms the density is the base's, in its dtype (a float64 default dtype must not
    promote an unbatched float32 value) and on its device (a default device of "meta" must not leak
    into the result)."""
    base = Independent(Normal(torch.tensor([0.3, -0.8]), torch.tensor([0.7, 1.4])), 1)
    flow, value = Flow(base, []), torch.tensor([0.25, -1.5])
    with default_dtype(torch.float64):
        log_p = flow.log_prob(value)
    assert log_p.dtype == torch.float32 and torch.equal(log_p, base.log_prob(value))
    with torch.device("meta"):
        log_p = Flow(base, [AffineTransform(0.5, 2.0, event_dim=1)]).log_prob(value)
    assert log_p.device.type == "cpu"
    expected = base.log_prob((value - 0.5) / 2.0) - 2 * math.log(2.0)
    torch.testing.assert_close(log_p, expected)


def test_flow_refuses_a_transform_on_matrices_with_its_event_dim():
    base = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    matrix_map = IndependentTransform(ExpTransform(), 2)
    with raises_exactly(ValueError, "transforms[1] has event_dim 2 > 1"):
        Flow(base, [AffineTransform(0.0, 2.0), matrix_map])


def test_flow_sample_and_log_prob_hands_each_transform_its_output_and_the_base_its_settings():
    """The forward pass's density equals TransformedDistribution's at the drawn sample (torch's
    StickBreakingTransform reads y); a mixture base gets the estimator settings (same seed, same
    estimate as the base's own)."""
    base = Independent(
        Normal(torch.tensor([0.3, -0.8, 1.1], dtype=torch.float64),
               torch.tensor([0.7, 1.4, 0.5], dtype=torch.float64)), 1)  # fmt: skip
    flow = Flow(base, [StickBreakingTransform()])
    z, log_p = flow.rsample_and_log_prob((5,))
    reference = TransformedDistribution(base, [StickBreakingTransform()])
    torch.testing.assert_close(log_p, reference.log_prob(z), rtol=1e-10, atol=1e-12)
    torch.manual_seed(0)
    mixture = MixtureBase(2, 3)()
    kwargs = {"estimator": "nested_own", "num_inner": 3}
    torch.manual_seed(1)
    z, log_p = Flow(mixture, []).rsample_and_log_prob((6,), **kwargs)
    torch.manual_seed(1)
    z_ref, log_p_ref = mixture.rsample_and_log_prob((6,), **kwargs)
    assert torch.equal(z, z_ref) and torch.equal(log_p, log_p_ref)
    torch.manual_seed(1)
    assert not torch.equal(mixture.rsample_and_log_prob((6,))[1], log_p)  # the settings matter


class _ContextShift(torch.nn.Module):
    """A transform module that shifts by its context (by 0 without one)."""

    def forward(self, c=None):
        return AffineTransform(torch.zeros(2) if c is None else c, 1.0, event_dim=1)


def test_lazy_flow_passes_the_context_to_every_module_when_given():
    model = LazyFlow(GaussianBase(2), [_ContextShift()])
    c = torch.tensor([0.5, -2.0])
    assert torch.equal(model(c).transforms[0].loc, c)
    assert torch.equal(model().transforms[0].loc, torch.zeros(2))
