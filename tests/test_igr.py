"""Tests of the IGR family (IGR-I, IGR-Planar, IGR-SB) against independent references."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Categorical, Normal

from simplexity.distributions import (
    IGR,
    ExpGumbelSoftmax,
    GumbelSoftmax,
    IGRPlanar,
    IGRStickBreaking,
    PlanarFlows,
    PlanarTransform,
    igr_uniform_prior,
    igr_uniform_prior_loc,
    igr_zero_temperature_probs,
    stick_breaking_truncation,
    zero_temperature_limit,
)

D64 = torch.float64


def t64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=D64)


def simplex_integral(log_prob, n: int = 200) -> float:
    """Integral of exp(log_prob) over the 2-simplex: Gauss-Legendre in Duffy coordinates."""
    x, w = np.polynomial.legendre.leggauss(n)
    u = torch.tensor((x + 1) / 2, dtype=D64)
    w = torch.tensor(w / 2, dtype=D64)
    uu, vv = torch.meshgrid(u, u, indexing="ij")
    weight = w[:, None] * w[None, :] * (1 - uu)
    y1, y2 = uu, (1 - uu) * vv
    y = torch.stack([y1, y2, 1 - y1 - y2], -1)
    with torch.no_grad():
        return float((log_prob(y).exp() * weight).sum())


def line_integral(log_prob, lo: float = 0.0, hi: float = 1.0) -> float:
    def f(t: float) -> float:
        with torch.no_grad():
            return float(log_prob(t64(t, 1 - t)).exp())

    return integrate.quad(f, lo, hi, limit=200)[0]


def _planar_flows() -> list[PlanarTransform]:
    return [
        PlanarTransform(t64(1.0, -2.0), t64(2.0, 1.0), torch.tensor(0.3, dtype=D64)),
        PlanarTransform(t64(-0.5, 0.7), t64(0.4, -1.5), torch.tensor(-0.2, dtype=D64)),
    ]


# ----------------------------------------------------------------------------- densities
@pytest.mark.parametrize(("tau", "delta"), [(1.0, 1.0), (0.5, 2.0), (0.2, 0.5)])
def test_igr_i_density_integrates_to_one_k2(tau: float, delta: float) -> None:
    d = IGR(t64(0.4), t64(0.7), tau, delta)
    assert line_integral(d.log_prob) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("tau", "delta"), [(1.0, 1.0), (0.5, 2.0)])
def test_igr_i_density_integrates_to_one_k3(tau: float, delta: float) -> None:
    d = IGR(t64(0.3, -0.5), t64(0.8, 1.2), tau, delta, validate_args=False)
    assert simplex_integral(d.log_prob, 400) == pytest.approx(1.0, abs=1e-5)


def test_igr_planar_density_integrates_to_one() -> None:
    d2 = IGRPlanar(
        t64(0.2), t64(0.9), 0.7, flows=[PlanarTransform(t64(1.5), t64(2.0), t64(0.1)[0])]
    )
    assert line_integral(d2.log_prob) == pytest.approx(1.0, abs=1e-6)
    d3 = IGRPlanar(t64(0.3, -0.5), t64(0.8, 1.2), 1.0, flows=_planar_flows(), validate_args=False)
    assert simplex_integral(d3.log_prob) == pytest.approx(1.0, abs=1e-5)


def test_igr_sb_density_integrates_to_one_over_its_image() -> None:
    tau, delta = 0.5, 1.0
    d = IGRStickBreaking(t64(0.3), t64(1.1), tau, delta)
    # one stick pi in (0, 1): z_1 = e^{pi/tau} / (e^{pi/tau} + delta) ranges over this interval
    lo = 1 / (1 + delta)
    hi = math.exp(1 / tau) / (math.exp(1 / tau) + delta)
    assert line_integral(d.log_prob, lo, hi) == pytest.approx(1.0, abs=1e-6)


def test_igr_i_matches_closed_form_k2_and_samples_fit() -> None:
    # K = 2: z_1 <= t  iff  lambda <= tau (logit t + log delta), lambda ~ N(mu, sigma^2)
    mu, sigma, tau, delta = 0.3, 0.8, 0.4, 1.5
    d = IGR(t64(mu), t64(sigma), tau, delta)
    t = torch.linspace(0.05, 0.95, 19, dtype=D64).requires_grad_()
    cdf = Normal(mu, sigma).cdf(tau * (torch.logit(t) + math.log(delta)))
    (pdf,) = torch.autograd.grad(cdf.sum(), t)
    z = torch.stack([t.detach(), 1 - t.detach()], -1)
    torch.testing.assert_close(d.log_prob(z), pdf.log())
    torch.manual_seed(0)
    sample = d.sample((3000,))[:, 0]

    def cdf_np(x):
        x = torch.as_tensor(x)
        return Normal(mu, sigma).cdf(tau * (torch.logit(x) + math.log(delta))).numpy()

    assert stats.kstest(sample.numpy(), cdf_np).pvalue > 1e-3


def test_goodness_of_fit_k3_binned() -> None:
    # counts of samples in a coarse partition of the simplex vs the integral of the density
    torch.manual_seed(1)
    d = IGR(t64(0.3, -0.2), t64(0.9, 0.6), 0.8, validate_args=False)
    n = 20000
    z = d.sample((n,))
    bins = (z[:, 0] > 0.5).long() * 2 + (z[:, 1] > 0.3).long()
    observed = torch.bincount(bins, minlength=4).double()

    x, w = np.polynomial.legendre.leggauss(300)
    u = torch.tensor((x + 1) / 2, dtype=D64)
    w = torch.tensor(w / 2, dtype=D64)
    uu, vv = torch.meshgrid(u, u, indexing="ij")
    weight = w[:, None] * w[None, :] * (1 - uu)
    y1, y2 = uu, (1 - uu) * vv
    grid = torch.stack([y1, y2, 1 - y1 - y2], -1)
    mass = d.log_prob(grid).exp() * weight
    gbins = (y1 > 0.5).long() * 2 + (y2 > 0.3).long()
    expected = torch.stack([mass[gbins == b].sum() for b in range(4)]) * n
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert stats.chi2.sf(chi2, 3) > 1e-3


# ------------------------------------------------------------------- exactness at low tau
@pytest.mark.parametrize("family", ["igr_i", "igr_planar", "igr_sb"])
def test_log_prob_of_rsample_exact_at_low_temperature_float32(family: str) -> None:
    torch.manual_seed(2)
    k, tau = 10, 0.01
    loc, scale = 2 * torch.randn(64, k - 1), torch.rand(64, k - 1) + 0.5
    if family == "igr_i":
        d = IGR(loc, scale, tau)
    elif family == "igr_planar":
        d = IGRPlanar(loc, scale, tau, flows=PlanarFlows(k - 1, 2)())
    else:
        d = IGRStickBreaking(loc, scale, tau)
    torch.manual_seed(3)
    z = d.rsample((8,))
    lp = d.log_prob(z)
    assert not bool(z.isnan().any()) and bool(lp.isfinite().all())
    if family != "igr_sb":  # SB sticks are < 1, so z_k >= e^{-1/tau}/... still underflows sometimes
        assert bool((z == 0).any()), "the test needs underflowed entries"
    # float64 reference from the same Gaussian draw
    torch.manual_seed(3)
    kappa = d.gaussian.rsample((8,)).double()
    log_det = torch.zeros(kappa.shape[:-1], dtype=D64)
    x = kappa
    for t in d.maps:
        t64_ = _to64(t)
        y = t64_(x)
        log_det = log_det + t64_.log_abs_det_jacobian(x, y)
        x = y
    lam = x / tau
    log_z = torch.cat([lam, torch.zeros_like(lam[..., :1])], -1).log_softmax(-1)
    gauss = Normal(loc.double(), scale.double()).log_prob(kappa).sum(-1)
    ref = gauss - log_det + (k - 1) * math.log(tau) - log_z.sum(-1)
    torch.testing.assert_close(lp.double(), ref, rtol=1e-4, atol=1e-2)


def _to64(t):
    if isinstance(t, PlanarTransform):
        return PlanarTransform(t.u.double(), t.w.double(), t.b.double(), cache_size=0)
    return type(t)(cache_size=0)


def test_log_space_pair_matches_log_prob() -> None:
    torch.manual_seed(4)
    d = IGR(torch.randn(5, 3), torch.rand(5, 3) + 0.3, 0.02)
    z, log_z = d.rsample_log((4,))
    torch.testing.assert_close(d.log_prob_from_log(log_z), d.log_prob(z))
    torch.testing.assert_close(log_z.exp(), z)


# ----------------------------------------------------------------- relaxit's defects
def test_not_relaxit_inverse_event_shape_sum_and_temperature_gradient() -> None:
    torch.manual_seed(5)
    tau = torch.tensor(0.5, dtype=D64, requires_grad=True)
    loc = torch.randn(3, 4, dtype=D64, requires_grad=True)
    d = IGR(loc, torch.ones(3, 4, dtype=D64), tau)
    assert d.event_shape == (5,) and d.batch_shape == (3,)
    z = d.rsample((2,))
    lp_fresh = d.log_prob(z.detach().clone())  # no cache: goes through the inverse
    torch.testing.assert_close(lp_fresh, d.log_prob(z))
    assert lp_fresh.shape == (2, 3)  # summed over the event
    lam = d.softmax_pp.inv(z.detach().clone())
    torch.testing.assert_close(lam, d.softmax_pp.inv(z))
    wrong = tau.detach() * z.detach()[..., :-1].log()  # relaxit's inverse
    assert float((wrong - lam.detach()).abs().max()) > 0.1
    (g,) = torch.autograd.grad(d.log_prob(z).sum(), tau)
    assert float(g.abs()) > 0  # the temperature is not cut from the graph


# ------------------------------------------------------------------------ gradcheck
def test_gradcheck_igr_i_log_prob() -> None:
    torch.manual_seed(6)
    z = torch.distributions.Dirichlet(torch.ones(4, dtype=D64)).sample((2,)).requires_grad_()
    loc = torch.randn(2, 3, dtype=D64, requires_grad=True)
    scale = (torch.rand(2, 3, dtype=D64) + 0.5).requires_grad_()
    tau = torch.tensor([0.3, 0.9], dtype=D64, requires_grad=True)
    delta = torch.tensor(1.3, dtype=D64, requires_grad=True)

    def f(z, loc, scale, tau, delta):
        return IGR(loc, scale, tau, delta, validate_args=False).log_prob(z)

    assert torch.autograd.gradcheck(f, (z, loc, scale, tau, delta))


def test_gradcheck_planar_and_stick_breaking_log_prob() -> None:
    torch.manual_seed(7)
    z = torch.distributions.Dirichlet(torch.ones(3, dtype=D64)).sample((2,)).requires_grad_()
    loc = torch.randn(2, dtype=D64, requires_grad=True)
    scale = torch.tensor([0.8, 1.3], dtype=D64, requires_grad=True)
    u, w, b = t64(0.5, -0.4), t64(1.2, 0.3), t64(0.1)[0]
    for p in (u, w, b):
        p.requires_grad_()

    def planar(z, loc, scale, u, w, b):
        flows = [PlanarTransform(u, w, b)]
        return IGRPlanar(loc, scale, 0.7, flows=flows, validate_args=False).log_prob(z)

    assert torch.autograd.gradcheck(planar, (z, loc, scale, u, w, b))
    # stick-breaking: values in its image (softmax++ of sticks)
    d = IGRStickBreaking(loc.detach(), scale.detach(), 0.7)
    zs = d.sample((2,)).requires_grad_()

    def sb(z, loc, scale):
        return IGRStickBreaking(loc, scale, 0.7, validate_args=False).log_prob(z)

    assert torch.autograd.gradcheck(sb, (zs, loc, scale))


def test_gradcheck_through_rsample() -> None:
    loc = torch.randn(3, dtype=D64, requires_grad=True)
    scale = torch.tensor([0.5, 1.0, 1.5], dtype=D64, requires_grad=True)
    tau = torch.tensor(0.4, dtype=D64, requires_grad=True)

    def f(loc, scale, tau):
        torch.manual_seed(8)
        d = IGR(loc, scale, tau, validate_args=False)
        z = d.rsample((2,))
        return torch.cat([z.flatten(), d.log_prob(z)])

    assert torch.autograd.gradcheck(f, (loc, scale, tau))


# --------------------------------------------------------------- shapes, batches, expand
@pytest.mark.parametrize("cls", [IGR, IGRStickBreaking, IGRPlanar])
def test_batched_temperatures_and_expand(cls) -> None:
    torch.manual_seed(9)
    loc, scale = torch.randn(3, 4, dtype=D64), torch.rand(3, 4, dtype=D64) + 0.5
    taus = t64(0.1, 0.5, 2.0)
    kw = {"flows": _planar_flows_4()} if cls is IGRPlanar else {}
    d = cls(loc, scale, taus, **kw)
    assert d.batch_shape == (3,) and d.event_shape == (5,)
    z = d.rsample((2,))
    lp = d.log_prob(z.clone())
    for i in range(3):
        di = cls(loc[i], scale[i], taus[i], **kw)
        torch.testing.assert_close(lp[:, i], di.log_prob(z[:, i].clone()))
    e = d.expand((6, 3))
    assert type(e) is cls and e.batch_shape == (6, 3)
    ze = e.rsample()
    assert ze.shape == (6, 3, 5) and e.log_prob(ze).shape == (6, 3)
    # a temperature with its own batch axis broadcasts with loc's
    d2 = cls(loc, scale, t64(0.3, 1.0).reshape(2, 1, 1), **kw)
    assert d2.batch_shape == (2, 3) and d2.rsample().shape == (2, 3, 5)


def _planar_flows_4() -> list[PlanarTransform]:
    g = torch.Generator().manual_seed(0)
    return [
        PlanarTransform(
            torch.randn(4, generator=g, dtype=D64),
            torch.randn(4, generator=g, dtype=D64),
            torch.tensor(0.1, dtype=D64),
        )
    ]


def test_planar_flow_parameters_are_trainable() -> None:
    flows = PlanarFlows(3, 2)
    d = IGRPlanar(torch.zeros(3), torch.ones(3), 0.5, flows=flows())
    z = d.rsample((5,))
    (d.log_prob(z).sum() + z[..., 0].sum()).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in flows.parameters())


# ----------------------------------------------------------------------- limits
def test_zero_temperature_pmf_by_quadrature_against_monte_carlo() -> None:
    torch.manual_seed(10)
    loc, scale = t64(0.5, -0.3, 0.1, -1.0), t64(1.0, 0.5, 2.0, 0.8)
    p = igr_zero_temperature_probs(loc, scale)
    assert p.shape == (5,) and float(p.sum()) == pytest.approx(1.0, abs=1e-6)
    # argmax of a sample at small tau (delta = 1 makes it exactly the limit category)
    d = IGR(loc, scale, 0.01)
    n = 40000
    freq = torch.bincount(d.sample((n,)).argmax(-1), minlength=5).double() / n
    assert float((freq - p).abs().max()) < 4 * math.sqrt(0.25 / n)
    # closed form of the last category
    last = torch.distributions.Normal(0.0, 1.0).cdf(-loc / scale).prod()
    torch.testing.assert_close(p[-1], last)
    limit = zero_temperature_limit(d)
    assert isinstance(limit, Categorical)
    torch.testing.assert_close(limit.probs, p)


def test_zero_temperature_limit_of_other_variants_is_monte_carlo() -> None:
    torch.manual_seed(11)
    loc, scale = torch.randn(3), torch.rand(3) + 0.5
    for d in (
        IGRStickBreaking(loc, scale, 0.01),
        IGRPlanar(loc, scale, 0.01, flows=PlanarFlows(3)()),
    ):
        limit = zero_temperature_limit(d, num_samples=20000)
        n = 20000
        freq = torch.bincount(d.sample((n,)).argmax(-1), minlength=4).float() / n
        assert float((limit.probs - freq).abs().max()) < 0.03


def test_uniform_prior_closed_form() -> None:
    assert igr_uniform_prior_loc(10) == pytest.approx(-0.753, abs=5e-4)
    assert igr_uniform_prior_loc(10, 2.0) == pytest.approx(2 * igr_uniform_prior_loc(10))
    for k in (2, 3, 10):
        p = igr_uniform_prior(k, temperature=0.1, scale=1.5, dtype=D64)
        torch.testing.assert_close(
            zero_temperature_limit(p).probs, torch.full((k,), 1.0 / k, dtype=D64)
        )
    torch.manual_seed(12)
    p = igr_uniform_prior(10, temperature=0.05)
    n = 20000
    freq = torch.bincount(p.sample((n,)).argmax(-1), minlength=10).float() / n
    assert float((freq - 0.1).abs().max()) < 4 * math.sqrt(0.09 / n)


# ------------------------------------------------------------------ stick-breaking policy
def test_stick_breaking_truncation_policy() -> None:
    sticks = torch.tensor([[0.5, 0.3, 0.15], [0.95, 0.03, 0.01], [0.2, 0.2, 0.2]])
    res = stick_breaking_truncation(sticks, threshold=0.9, percentile=50)
    assert res.per_sample.tolist() == [3, 1, 4] and res.num_sticks == 3 and res.threshold_met
    with pytest.warns(RuntimeWarning, match="not met"):
        res = stick_breaking_truncation(sticks, threshold=0.9, percentile=75)
    assert not res.threshold_met and res.num_sticks == 3
    with pytest.raises(ValueError, match=r"^threshold"):
        stick_breaking_truncation(sticks, threshold=1.5)


def test_stick_breaking_truncation_exact_levels_ties_and_messages() -> None:
    # cumulative sums 0.25, 0.5, 0.75, 1.0: a sum equal to the threshold counts as covered
    sticks = torch.tensor(
        [[0.25, 0.25, 0.25, 0.25], [0.5, 0.25, 0.125, 0.0625], [0.9, 0.05, 0.03, 0.01]]
    )
    res = stick_breaking_truncation(sticks, threshold=0.75, percentile=0)
    assert res.per_sample.tolist() == [4, 3, 1] and res.num_sticks == 1 and res.threshold_met
    # percentiles interpolate between samples (1, 3, 4) and the level is the ceiling
    for percentile, level in ((25, 2), (50, 3), (60, 4), (100, 4)):
        assert stick_breaking_truncation(sticks, 0.75, percentile).num_sticks == level
    # exactly M sticks needed is still met; one more is not, and is capped at M
    assert stick_breaking_truncation(sticks[:1], 0.75).threshold_met
    with pytest.warns(RuntimeWarning) as caught:  # the sticks sum to 0.9375 < 0.95
        res = stick_breaking_truncation(sticks[1:2], 0.95)
    assert res.per_sample.tolist() == [5] and res.num_sticks == 4 and not res.threshold_met
    assert str(caught[0].message) == (
        "stick-breaking truncation: the threshold 0.95 is not met at the maximum of 4 sticks "
        "(percentile 50.0 of the samples needs more)"
    )
    # attributed to the caller (under mutmut, to the trampoline that calls the mutated function)
    in_mutmut = "mutants" in Path(__file__).parts  # mutmut runs a copy of the tests there
    caller = "mutmut/mutation/trampoline.py" if in_mutmut else __file__
    assert caught[0].filename.endswith(caller)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not stick_breaking_truncation(sticks[1:2], 0.95, warn=False).threshold_met
    # any batch shape: the percentile is over every sample
    assert stick_breaking_truncation(sticks.reshape(3, 1, 4), 0.75, 100).per_sample.shape == (3, 1)
    for bad, message in (
        (
            {"sticks": torch.tensor(0.5)},
            r"sticks must have shape \(\.\.\., M\) with M >= 1, got \(\)$",
        ),
        (
            {"sticks": torch.ones(2, 0)},
            r"sticks must have shape \(\.\.\., M\) with M >= 1, got \(2, 0\)$",
        ),
        ({"threshold": 0.0}, r"^threshold must be in \(0, 1\), got 0.0$"),
        ({"threshold": 1.0}, r"^threshold must be in \(0, 1\), got 1.0$"),
        ({"percentile": -0.5}, r"^percentile must be in \[0, 100\], got -0.5$"),
        ({"percentile": 100.5}, r"^percentile must be in \[0, 100\], got 100.5$"),
    ):
        with pytest.raises(ValueError, match=message):
            stick_breaking_truncation(**{"sticks": sticks, **bad})
    for bad, message in (
        ({"threshold": True}, "^threshold must be a real number, got bool$"),
        ({"percentile": "50"}, "^percentile must be a real number, got str$"),
    ):
        with pytest.raises(TypeError, match=message):
            stick_breaking_truncation(**{"sticks": sticks, **bad})


def test_stick_breaking_truncation_from_distribution() -> None:
    torch.manual_seed(13)
    d = IGRStickBreaking(torch.full((19,), 1.0), torch.full((19,), 0.5), 0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = d.truncation(threshold=0.9, percentile=50)
    assert res.threshold_met and 1 <= res.num_sticks <= 5
    z = d.rsample((50,))
    assert d.truncation(z, threshold=0.9).threshold_met
    short = IGRStickBreaking(torch.full((2,), -3.0), torch.full((2,), 0.1), 0.1)
    with pytest.warns(RuntimeWarning):
        assert not short.truncation(threshold=0.99).threshold_met


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": torch.tensor(-1.0)}, "temperature"),
        ({"delta": -2.0}, "delta"),
        ({"delta": torch.tensor(0.0)}, "delta"),
        ({"scale": torch.tensor([1.0, -1.0])}, "scale"),
        ({"scale": torch.ones(3)}, "loc and scale"),
        ({"loc": torch.zeros(3, 2), "temperature": torch.ones(4)}, "temperature"),
    ],
)
@pytest.mark.parametrize("cls", [IGR, IGRStickBreaking])
def test_bad_arguments(cls, kwargs: dict, match: str) -> None:
    args = {"loc": torch.zeros(2), "scale": torch.ones(2), "temperature": 0.5, "delta": 1.0}
    args.update(kwargs)
    if args["loc"].dim() > 1:
        args["scale"] = torch.ones(args["loc"].shape)
    with pytest.raises(ValueError, match=match):
        cls(**args, validate_args=True)


def test_value_off_simplex_and_bad_flows() -> None:
    d = IGR(torch.zeros(2), torch.ones(2), 0.5, validate_args=True)
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.tensor([0.5, 0.6, 0.1]))
    with pytest.raises(ValueError, match=r"^flows"):
        IGRPlanar(torch.zeros(2), torch.ones(2), 0.5, flows=PlanarFlows(3)())
    with pytest.raises(TypeError, match=r"^flows"):
        IGRPlanar(torch.zeros(2), torch.ones(2), 0.5, flows=["planar"])


# ------------------------------------------------------------- outside the stick-breaking image
def _sb_value(sticks: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """The simplex point whose softmax++ pre-image is ``sticks`` (inside the image or not)."""
    from simplexity.distributions import SoftmaxPlusPlusTransform

    return SoftmaxPlusPlusTransform(torch.tensor(tau, dtype=D64), cache_size=0)(sticks)


@pytest.mark.parametrize(
    ("sticks", "inside"),
    [
        (t64(0.3, 0.4), True),
        (t64(0.6, 0.3999), True),  # sum 1 - 1e-4: inside
        (t64(-0.1, 0.5), False),  # one negative stick (the other fine): outside
        (t64(-0.2, -0.3), False),  # all negative
        (t64(0.7, 0.301), False),  # sum 1 + 1e-3: outside
        (t64(1.3, 0.8), False),
    ],
)
def test_stick_breaking_log_prob_is_minus_inf_outside_the_image(sticks, inside) -> None:
    q = IGRStickBreaking(t64(0.2, -0.4), t64(0.8, 1.3), 0.5)
    q.rsample((3,))  # a sample fills the transforms' caches; log_prob must not trust them
    value = _sb_value(sticks)
    lp, lp_log = q.log_prob(value), q.log_prob_from_log(value.log())
    if inside:
        assert math.isfinite(float(lp))
        torch.testing.assert_close(lp, lp_log)
    else:
        assert float(lp) == -math.inf and float(lp_log) == -math.inf
    # a value that rsample just returned is in the image: its density is finite
    z = q.rsample((4,))
    assert bool(q.log_prob(z).isfinite().all())


def test_stick_breaking_outside_value_stays_minus_inf_when_asked_twice() -> None:
    q = IGRStickBreaking(t64(0.2, -0.4), t64(0.8, 1.3), 0.5)
    value = _sb_value(t64(0.9, 0.5))
    assert float(q.log_prob(value)) == -math.inf
    assert float(q.log_prob(value)) == -math.inf  # the first call's cache must not whitewash it


def test_stick_breaking_samples_are_inside_the_image_in_float32() -> None:
    torch.manual_seed(0)
    loc = torch.tensor([6.0, -3.0, 0.0, 9.0, -8.0, 2.0, 4.0, -1.0, 0.5])
    q = IGRStickBreaking(loc, torch.full((9,), 4.0), 0.05)
    z = q.rsample((4000,))
    assert bool(q.log_prob(z).isfinite().all())


@pytest.mark.parametrize("cls", [IGR, IGRStickBreaking, IGRPlanar])
@pytest.mark.parametrize("k", [2, 4])
def test_per_row_temperature_of_shape_b_by_1_stands_beside_loc(cls, k: int) -> None:
    torch.manual_seed(13)
    loc, scale = torch.randn(6, k - 1, dtype=D64), torch.rand(6, k - 1, dtype=D64) + 0.5
    tau, delta = torch.rand(6, 1, dtype=D64) + 0.1, torch.rand(6, 1, dtype=D64) + 0.5
    kw = {}
    if cls is IGRPlanar:
        kw["flows"] = [PlanarTransform(torch.ones(k - 1, dtype=D64), torch.ones(k - 1, dtype=D64),
                                       torch.tensor(0.1, dtype=D64))]  # fmt: skip
    d = cls(loc, scale, tau, delta, **kw)
    assert d.batch_shape == (6,)
    _, log_z = d.rsample_log((3,))
    lp = d.log_prob_from_log(log_z)
    assert lp.shape == (3, 6)
    for i in range(6):
        di = cls(loc[i], scale[i], tau[i, 0], delta[i, 0], **kw)
        torch.testing.assert_close(lp[:, i], di.log_prob_from_log(log_z[:, i]))


def test_log_prob_from_log_rejects_values_of_the_wrong_size() -> None:
    d = IGR(torch.zeros(2), torch.ones(2), 0.5, validate_args=True)
    with pytest.raises(ValueError, match=r"^log_value"):
        d.log_prob_from_log(torch.tensor([0.5, 0.5]).log())


def test_igr_planar_log_prob_from_log_is_the_change_of_variables() -> None:
    # independent truth: log N(kappa) - log|det d lambda/d kappa| (autograd) - log|det dz/d lambda|
    torch.manual_seed(14)
    flows = _planar_flows()
    loc, scale = t64(0.4, -0.9), t64(0.7, 1.3)
    q = IGRPlanar(loc, scale, 0.6, 1.4, flows=flows)
    z, log_z = q.rsample_log((5,))
    kappa = q.base_dist.rsample((5,))  # any points: compare at their images
    lam = kappa
    for f in flows:
        lam = f.with_cache(0)(lam)
    from simplexity.distributions import SoftmaxPlusPlusTransform

    spp = SoftmaxPlusPlusTransform(torch.tensor(0.6, dtype=D64), torch.tensor(1.4, dtype=D64))
    log_zk = spp.log_z(lam)
    expected = []
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda k: _compose(flows, k), kappa[i])
        expected.append(
            Normal(loc, scale).log_prob(kappa[i]).sum()
            - torch.linalg.slogdet(jac)[1]
            - spp.log_abs_det_jacobian_from_log(log_zk[i])
        )
    torch.testing.assert_close(q.log_prob_from_log(log_zk), torch.stack(expected))
    torch.testing.assert_close(q.log_prob_from_log(log_z), q.log_prob(z))  # the sampled pair


def _compose(flows, x):
    for f in flows:
        x = f.with_cache(0)(x)
    return x


def test_rsample_log_returns_the_log_of_each_new_sample() -> None:
    torch.manual_seed(15)
    q = IGR(t64(0.5, -1.0, 0.2), t64(1.0, 0.5, 2.0), 0.05)
    for _ in range(3):
        z, log_z = q.rsample_log((4,))
        torch.testing.assert_close(log_z.exp(), z)
        torch.testing.assert_close(log_z, q.softmax_pp.log_z(q.softmax_pp.inv(z).clone()))


# ------------------------------------------------------- exact values the mutation run asked for
def test_igr_names_the_bad_argument_at_the_start_of_its_message() -> None:
    with pytest.raises(TypeError, match=r"^loc must be a floating-point tensor"):
        IGR(torch.zeros(3, dtype=torch.long), torch.ones(3), 0.5)
    flow = PlanarTransform(torch.ones(2), torch.ones(2), torch.tensor(0.0))
    with pytest.raises(TypeError, match=r"^flows\[1\] must be a PlanarTransform, got int$"):
        IGRPlanar(torch.zeros(2), torch.ones(2), 0.3, flows=[flow, 3])


def test_igr_planar_takes_one_transform_as_a_list_of_one() -> None:
    flow = PlanarTransform(torch.tensor([0.5, -0.3]), torch.tensor([1.0, 2.0]), torch.tensor(0.1))
    one = IGRPlanar(torch.tensor([0.2, -0.1]), torch.ones(2), 0.3, flows=flow)
    listed = IGRPlanar(torch.tensor([0.2, -0.1]), torch.ones(2), 0.3, flows=[flow])
    assert one.flows == [flow] and one.same_map(listed)
    z = listed.rsample((4,))
    torch.testing.assert_close(one.log_prob(z), listed.log_prob(z))


@pytest.mark.parametrize("kind", ["igr", "planar", "sb"])
def test_expand_keeps_the_map(kind) -> None:
    loc, scale = torch.tensor([0.3, -0.2, 0.1]), torch.tensor([0.9, 1.1, 0.7])
    flow = PlanarTransform(torch.tensor([0.5, -0.3, 0.2]), torch.tensor([1.0, 2.0, -1.0]),
                           torch.tensor(0.1))  # fmt: skip
    make = {"igr": lambda: IGR(loc, scale, 0.4),
            "planar": lambda: IGRPlanar(loc, scale, 0.4, flows=[flow]),
            "sb": lambda: IGRStickBreaking(loc, scale, 0.4)}[kind]  # fmt: skip
    d = make()
    wide = d.expand((2,))
    assert wide.batch_shape == (2,) and wide.maps == d.maps and wide.same_map(d)
    z = d.rsample((3,))
    torch.testing.assert_close(
        wide.log_prob(z.unsqueeze(1)), d.log_prob(z).unsqueeze(1).expand(3, 2)
    )


def test_stick_breaking_image_boundary_is_exact() -> None:
    d = IGRStickBreaking(
        torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), 0.5
    )
    slack = 4 * 3 * torch.finfo(torch.float64).eps
    inside = torch.tensor([[0.5, 0.0, 0.25], [0.5, 0.25, 0.25 + slack]], dtype=torch.float64)
    assert (inside.sum(-1) <= 1 + slack).all() and inside[1].sum() > 1 + 3 * 3 * 2.2e-16
    outside = torch.tensor(
        [[0.5, -1e-300, 0.25], [0.5, 0.25, 0.25 + 1.125 * slack]], dtype=torch.float64
    )
    assert d._outside_image(inside).tolist() == [False, False]
    assert d._outside_image(outside).tolist() == [True, True]  # 1.125 slack: not within it


def test_stick_breaking_truncation_method_defaults_and_arguments() -> None:
    d = IGRStickBreaking(torch.zeros(3), torch.ones(3), 0.5)
    # sticks whose per-sample levels are 1 and 3 at threshold 0.9: the median is 2, the 51st
    # percentile already 3
    sticks = torch.tensor([[0.95, 0.01, 0.01], [0.5, 0.3, 0.15]])
    z = d.softmax_pp(sticks)
    default = d.truncation(z)
    assert default.per_sample.tolist() == [1, 3] and default.num_sticks == 2
    assert d.truncation(z, percentile=51).num_sticks == 3
    assert d.truncation(z, threshold=0.45).per_sample.tolist() == [1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short = d.truncation(z, threshold=0.99, percentile=100, warn=False)
    assert not short.threshold_met


def test_igr_argument_errors_name_the_argument_and_the_expected_form() -> None:
    z3, o3 = torch.zeros(3), torch.ones(3)
    cases = [
        ((z3, o3.long(), 0.5), {}, TypeError, r"^scale must be a floating-point tensor"),
        ((torch.tensor(0.0), torch.tensor(1.0), 0.5), {}, ValueError,
         r"^loc and scale must have shape \(\.\.\., K-1\) \(the last axis indexes the K-1 free "
         r"coordinates\), got \(\) and \(\)$"),
        ((z3, torch.ones(2), 0.5), {}, ValueError,
         r"^loc and scale must have the same last dimension K-1, got loc \(3,\) and scale \(2,\)$"),
        ((z3, o3, -0.5), {}, ValueError, r"^temperature must be "),
        ((z3, o3, 0.5), {"delta": 0.0}, ValueError, r"^delta must be "),
        ((z3, o3, torch.tensor(0.5, dtype=torch.float64)), {}, TypeError,
         r"^temperature has dtype torch.float64 but loc has dtype torch.float32$"),
        ((z3, o3, 0.5), {"delta": torch.tensor(1.0, dtype=torch.float64)}, TypeError,
         r"^delta has dtype torch.float64 but loc has dtype torch.float32$"),
        ((torch.zeros(2, 3), torch.ones(2, 3), torch.full((3,), 0.5)), {}, ValueError,
         r"^the batch shapes of loc, scale \(without their last axis\), temperature and delta "
         r"must broadcast, got loc \(2,\), scale \(2,\), temperature \(3,\), delta \(\)$"),
    ]  # fmt: skip
    for args, kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            IGR(*args, **kwargs)


def test_stick_breaking_truncation_default_percentile_and_any_batch_shape() -> None:
    # per-sample levels 1 and 3: the default percentile (the median) gives 2, any other another
    two = torch.tensor([[0.95, 0.01, 0.01], [0.5, 0.3, 0.15]])
    assert stick_breaking_truncation(two, 0.9).num_sticks == 2
    # levels 1 and 101: the percentile interpolates, 50.3 -> 51.3 -> 52 sticks
    wide = torch.zeros(2, 100)
    wide[0, 0], wide[1] = 0.95, 0.005
    res = stick_breaking_truncation(wide, 0.9, 50.3)
    assert res.per_sample.tolist() == [1, 101] and res.num_sticks == 52 and res.threshold_met
    # a batch of batches: sticks on the last axis, the percentile over every sample
    sticks = torch.tensor(
        [[0.25, 0.25, 0.25, 0.25], [0.5, 0.25, 0.125, 0.0625], [0.9, 0.05, 0.03, 0.01]]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = stick_breaking_truncation(sticks.reshape(3, 1, 4), 0.75, 100)
    assert res.per_sample.tolist() == [[4], [3], [1]] and res.num_sticks == 4 and res.threshold_met
    with pytest.raises(TypeError, match=r"^sticks must be a floating-point tensor"):
        stick_breaking_truncation(torch.ones(2, 3, dtype=torch.long))
    # one sample (1-D sticks) and a single stick are valid input
    one = stick_breaking_truncation(torch.tensor([0.5, 0.3, 0.15]), 0.9)
    assert one.per_sample.tolist() == 3 and one.num_sticks == 3 and one.threshold_met
    with pytest.warns(RuntimeWarning, match="not met at the maximum of 1 sticks"):
        single = stick_breaking_truncation(torch.tensor([[0.95], [0.5]]), 0.9, 100)
    assert single.per_sample.tolist() == [1, 2] and single.num_sticks == 1
    assert not single.threshold_met


def test_igr_without_validation_returns_nan_for_nan_values() -> None:
    # torch's convention: validate_args=False checks nothing, a NaN value gives a NaN density
    d = IGR(torch.tensor([0.3, -0.2]), torch.ones(2), 0.5, validate_args=False)
    assert torch.isnan(d.log_prob(torch.tensor([0.2, float("nan"), 0.3])))


# ------------------------------------------------------------------ limits against independent truth
def test_zero_temperature_pmf_against_scipy_quadrature_on_a_batch() -> None:
    loc = torch.tensor([[0.5, -0.3, 0.1], [1.2, 0.4, -2.0]], dtype=D64)
    scale = torch.tensor([0.7, 1.3, 0.4], dtype=D64)  # broadcast against the batch
    p = igr_zero_temperature_probs(loc, scale)
    assert p.shape == (2, 4) and p.dtype == D64
    for row in range(2):
        mu, sigma = loc[row].numpy(), scale.numpy()
        for k in range(3):
            others = [j for j in range(3) if j != k]

            def integrand(t, k=k, others=others, mu=mu, sigma=sigma):
                value = stats.norm.pdf(t, mu[k], sigma[k])
                return value * np.prod([stats.norm.cdf((t - mu[j]) / sigma[j]) for j in others])

            expected = integrate.quad(integrand, 0, np.inf, epsabs=1e-13)[0]
            assert float(p[row, k]) == pytest.approx(expected, abs=1e-6)
        assert float(p[row, 3]) == pytest.approx(np.prod(stats.norm.cdf(-mu / sigma)), abs=1e-12)
    # float32 in, float32 out; one node is allowed (a crude quadrature)
    p32 = igr_zero_temperature_probs(loc.float(), scale.float())
    assert p32.dtype == torch.float32 and torch.allclose(p32.double(), p, atol=1e-5)
    assert igr_zero_temperature_probs(loc, scale, num_nodes=1).shape == (2, 4)
    # differentiable in loc and scale
    torch.autograd.gradcheck(
        lambda m, s: igr_zero_temperature_probs(m, s, num_nodes=32),
        (loc[0].clone().requires_grad_(), scale.clone().requires_grad_()),
    )


def test_zero_temperature_limit_point_masses_batches_and_chunks() -> None:
    """With a tiny scale the limit is a point mass at argmax(loc), or at K when every loc is
    negative; the Monte Carlo counts add up over chunks of any size."""
    loc = torch.tensor([[0.3, 1.0, -0.5], [-1.0, -0.2, -3.0]], dtype=D64)
    scale = torch.full((2, 3), 1e-9, dtype=D64)
    expected = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=D64)
    for cls in (IGRStickBreaking, IGRPlanar):
        d = cls(loc, scale, 0.1) if cls is IGRStickBreaking else cls(loc, scale, 0.1, flows=[])
        cold = cls(loc, scale, 1e-4) if cls is IGRStickBreaking else cls(loc, scale, 1e-4, flows=[])
        sample = cold.sample()  # nearly one-hot at this temperature
        assert bool((sample.amax(-1) > 0.99).all())
        one_hot = torch.nn.functional.one_hot(sample.argmax(-1), 4).to(D64)
        if cls is IGRPlanar:  # no flows: the IGR-I map, the argmax or K
            torch.testing.assert_close(one_hot, expected)
        for n in (1, 129, 300):
            limit = zero_temperature_limit(d, num_samples=n)
            assert limit.batch_shape == (2,)
            torch.testing.assert_close(limit.probs, one_hot)
    for d in (IGR(loc, scale, 0.1),):
        torch.testing.assert_close(zero_temperature_limit(d).probs, expected, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match=r"^num_samples must be"):
        zero_temperature_limit(IGRStickBreaking(loc, scale, 0.1), num_samples=0)
    # Gumbel-softmax: the categorical of its logits, over its whole batch
    logits = torch.tensor([0.2, -0.1, 0.7], dtype=D64)
    for d in (
        GumbelSoftmax(torch.full((2,), 0.5, dtype=D64), logits=logits),
        ExpGumbelSoftmax(torch.full((2,), 0.5, dtype=D64), logits=logits),
    ):
        limit = zero_temperature_limit(d)
        assert limit.batch_shape == (2,)
        torch.testing.assert_close(limit.probs, logits.softmax(-1).expand(2, 3))


def test_uniform_prior_arguments() -> None:
    assert igr_uniform_prior_loc(2) == 0.0  # Phi^{-1}(1/2)
    scale = torch.tensor([1.0, 2.0], dtype=D64)
    torch.testing.assert_close(igr_uniform_prior_loc(5, scale), scale * igr_uniform_prior_loc(5))
    tau = torch.tensor(0.2, dtype=D64)
    p = igr_uniform_prior(4, tau, scale=1.5, delta=0.5, batch_shape=(2,))
    assert p.loc.dtype == D64 and p.batch_shape == (2,) and p.loc.shape == (2, 3)
    torch.testing.assert_close(p.loc, torch.full((2, 3), igr_uniform_prior_loc(4, 1.5), dtype=D64))
    torch.testing.assert_close(p.scale, torch.full((2, 3), 1.5, dtype=D64))
    assert float(p.delta) == 0.5 and float(p.temperature) == pytest.approx(0.2)
    q = igr_uniform_prior(3, 0.1, dtype=torch.float32, device="cpu")
    assert q.loc.device.type == "cpu" and q.loc.dtype == torch.float32
    assert igr_uniform_prior(3, 0.1).loc.dtype == torch.get_default_dtype()
    for call, message in (
        (lambda: igr_uniform_prior_loc(1), r"^num_categories must be"),
        (lambda: igr_uniform_prior_loc(3, -1.0), r"^scale must be"),
        (lambda: igr_uniform_prior(3, 0.1, scale=0.0), r"^scale must be"),
    ):
        with pytest.raises(ValueError, match=message):
            call()
