"""Tests the zero-temperature limits and IGR uniform priors of simplexity.distributions.limits against exact values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Normal

from exact_error import raises_exactly
from simplexity.distributions import (
    IGRBase,
    IGRStickBreaking,
    igr_uniform_prior,
    igr_uniform_prior_loc,
    igr_zero_temperature_probs,
    zero_temperature_limit,
)

D64 = torch.float64

# IGR-I parameters of batch shape (2,), K = 5; two narrow scales make the integrands sharp, so that
# the quadrature error depends on the number of nodes
LOC = torch.tensor([[0.7, -0.4, 1.3, -1.1], [-0.2, 0.5, -0.9, 0.25]], dtype=D64)
SCALE = torch.tensor([[0.9, 0.02, 1.6, 0.3], [0.4, 1.2, 0.7, 0.05]], dtype=D64)


def quad_pmf(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The tau -> 0 pmf of IGR-I from its definition, by scipy's adaptive quadrature in t."""
    k1 = len(mu)
    upper = float(np.max(mu + 12 * sigma))
    out = []
    for k in range(k1):

        def f(t: float, k: int = k) -> float:
            others = [stats.norm.cdf((t - mu[j]) / sigma[j]) for j in range(k1) if j != k]
            return stats.norm.pdf(t, mu[k], sigma[k]) * float(np.prod(others))

        points = [m for m in mu if 0 < m < upper]
        out.append(integrate.quad(f, 0, upper, points=points, epsabs=1e-13, limit=400)[0])
    out.append(float(np.prod(stats.norm.cdf(-mu / sigma))))
    return np.array(out)


def test_default_quadrature_has_256_nodes_and_matches_scipy() -> None:
    """The default is ``num_nodes=256`` (bit for bit), within 1e-7 of scipy's adaptive quadrature."""
    p = igr_zero_temperature_probs(LOC, SCALE)
    assert torch.equal(p, igr_zero_temperature_probs(LOC, SCALE, num_nodes=256))
    # the fixture tells node counts apart: 257 nodes give other values
    assert not torch.equal(p, igr_zero_temperature_probs(LOC, SCALE, num_nodes=257))
    for i in range(2):
        ref = quad_pmf(LOC[i].numpy(), SCALE[i].numpy())
        np.testing.assert_allclose(p[i].numpy(), ref, rtol=0, atol=1e-7)


def test_float32_gradients_are_the_float64_gradients_rounded_once() -> None:
    """The pmf is computed in float64: float32 inputs get the float64 gradients, cast to float32 once."""
    loc32 = LOC.float().requires_grad_()  # mu/sigma = -20 in one place: far-tail gradients too
    scale32 = SCALE.float().requires_grad_()
    loc64 = loc32.detach().double().requires_grad_()
    scale64 = scale32.detach().double().requires_grad_()
    weights = torch.tensor([[0.3, -1.7, 2.9, 0.45, -0.8], [1.1, 0.6, -2.3, 0.15, 3.7]])
    p32 = igr_zero_temperature_probs(loc32, scale32)
    p64 = igr_zero_temperature_probs(loc64, scale64)
    assert p32.dtype == torch.float32 and torch.equal(p32, p64.float())
    (p32 * weights).sum().backward()
    (p64 * weights.double()).sum().backward()
    assert torch.equal(loc32.grad, loc64.grad.float())
    assert torch.equal(scale32.grad, scale64.grad.float())


def test_every_result_is_made_on_the_device_of_its_inputs(monkeypatch) -> None:
    """On the meta device (which computes nothing) a tensor made elsewhere cannot be mixed in."""
    monkeypatch.setattr(torch.distributions.Distribution, "_validate_args", False)
    loc, scale = LOC.to("meta"), SCALE.to("meta")
    p = igr_zero_temperature_probs(loc, scale)
    assert p.device.type == "meta" and p.shape == (2, 5)
    limit = zero_temperature_limit(IGRStickBreaking(loc, scale, 0.5), num_samples=300)
    assert limit.probs.device.type == "meta" and limit.probs.shape == (2, 5)
    # igr_uniform_prior: the device of a tensor temperature, unless a device is given
    temperature = torch.tensor(0.5, device="meta")
    prior = igr_uniform_prior(4, temperature, batch_shape=(3,))
    assert prior.loc.device.type == "meta" and prior.scale.device.type == "meta"
    prior = igr_uniform_prior(4, temperature, batch_shape=(3,), device="cpu")
    assert prior.loc.device.type == "cpu" and prior.scale.device.type == "cpu"


def test_a_default_device_does_not_move_the_monte_carlo_counts() -> None:
    """With another default device (meta here, as cuda for a user) a CPU distribution's estimate is
    made on the CPU and equals the one made without it, draw for draw (same seed)."""
    loc = torch.tensor([[0.3, -0.2, 0.5], [-0.7, 0.1, 0.9]], dtype=D64)
    scale = torch.tensor([[1.0, 0.5, 2.0], [0.6, 1.3, 0.8]], dtype=D64)
    dist = IGRStickBreaking(loc, scale, 0.5)
    torch.manual_seed(5)
    expected = zero_temperature_limit(dist, num_samples=300).probs
    torch.manual_seed(5)
    with torch.device("meta"):
        got = zero_temperature_limit(dist, num_samples=300).probs
    assert got.device.type == "cpu" and torch.equal(got, expected)


@pytest.mark.parametrize("k", [2, 3, 7, 10])
def test_uniform_prior_loc_is_the_float64_normal_quantile(k: int) -> None:
    """mu_0 = -sigma_0 Phi^{-1}(K^{-1/(K-1)}) to float64 precision (scipy's norm.ppf)."""
    quantile = stats.norm.ppf(k ** (-1.0 / (k - 1)))
    assert igr_uniform_prior_loc(k) == pytest.approx(-quantile, rel=1e-14, abs=0)
    assert igr_uniform_prior_loc(k, 2.5) == pytest.approx(-2.5 * quantile, rel=1e-14, abs=0)
    scale = torch.tensor([0.5, 3.0], dtype=D64)
    got = igr_uniform_prior_loc(k, scale)
    torch.testing.assert_close(got, -scale * quantile, rtol=1e-14, atol=0)


def test_uniform_prior_has_unit_scale_by_default() -> None:
    """scale defaults to 1: every sigma is 1 and every mu is -Phi^{-1}(K^{-1/(K-1)}) (scipy)."""
    prior = igr_uniform_prior(6, 0.4, batch_shape=(2, 3), dtype=D64)
    assert prior.loc.shape == (2, 3, 5) and prior.scale.shape == (2, 3, 5)
    assert torch.equal(prior.scale, torch.ones(2, 3, 5, dtype=D64))
    quantile = stats.norm.ppf(6 ** (-1.0 / 5))
    torch.testing.assert_close(prior.loc, torch.full((2, 3, 5), -quantile, dtype=D64))


def test_limit_is_the_last_category_when_the_largest_lambda_is_exactly_zero() -> None:
    """The rule: e_argmax if max lambda > 0, e_K otherwise. At loc = -200 every float32 stick
    sigmoid(kappa) underflows to 0, so lambda = 0 exactly and all the mass is on category K; the
    second row (narrow scale, sticks ~ (0.88, 0.03, 0.05)) always picks category 1."""
    loc = torch.tensor([[-200.0, -200.0, -200.0], [2.0, -1.0, 0.5]])
    scale = torch.tensor([[1.0, 0.5, 2.0], [1e-3, 1e-3, 1e-3]])
    limit = zero_temperature_limit(IGRStickBreaking(loc, scale, 0.5), num_samples=300)
    assert torch.equal(limit.probs, torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))


def test_monte_carlo_limit_is_the_frequency_over_exactly_num_samples_draws() -> None:
    """IGRBase without maps is IGR-I estimated by Monte Carlo: each probability is a count over
    exactly ``num_samples`` draws (10000 by default), within 5 standard errors of the quadrature."""
    torch.manual_seed(3)
    loc = torch.tensor([[0.4, -0.3, 0.9], [-0.6, 0.2, 0.05]], dtype=D64)
    scale = torch.tensor([[1.1, 0.7, 0.5], [0.8, 1.5, 0.35]], dtype=D64)
    dist = IGRBase(loc, scale, 0.3, 1.0, [])
    exact = igr_zero_temperature_probs(loc, scale)
    for n in (5, 300, None):
        limit = zero_temperature_limit(dist) if n is None else zero_temperature_limit(dist, n)
        n = n or 10000
        counts = limit.probs * n
        torch.testing.assert_close(counts, counts.round(), rtol=0, atol=1e-9)
        assert float(counts.round().sum(-1).sub(n).abs().max()) == 0
        if n == 10000:
            se = (exact * (1 - exact) / n).sqrt()
            assert bool(((limit.probs - exact).abs() <= 5 * se + 1e-12).all())


def test_half_precision_point_mass_is_exact() -> None:
    """In float16 a limit concentrated on one category (narrow scale, sticks ~ (0.88, 0.03, 0.05))
    is exactly that vertex: the counts over 300 draws are normalized without overflowing."""
    loc = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float16)
    scale = torch.full((3,), 1e-3, dtype=torch.float16)
    limit = zero_temperature_limit(IGRStickBreaking(loc, scale, 0.5), num_samples=300)
    assert limit.probs.dtype == torch.float16
    assert torch.equal(limit.probs, torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float16))


def test_other_distributions_are_rejected_with_the_whole_message() -> None:
    """A distribution outside the Gumbel-softmax and IGR families: TypeError naming its type."""
    message = (
        "dist must be a GumbelSoftmax, ExpGumbelSoftmax or IGR-family distribution "
        "(zero_temperature_limit), got Normal"
    )
    with raises_exactly(TypeError, message):
        zero_temperature_limit(Normal(torch.zeros(3), torch.ones(3)))


@pytest.mark.parametrize("ratio", [0.3, -5.0, -10.0, -20.0, -37.0])
def test_far_negative_locations_keep_their_tail_probability_and_gradient(ratio: float) -> None:
    """K = 2: P(H = 1) = Phi(mu/sigma) and dP/dmu = phi(mu/sigma)/sigma, exactly, even where
    Phi(mu/sigma) is far below machine epsilon (the nodes once collapsed onto u = 1 there, giving
    a zero probability and NaN gradients)."""
    sigma = 0.7
    loc = torch.tensor([ratio * sigma], dtype=D64, requires_grad=True)
    p = igr_zero_temperature_probs(loc, torch.tensor([sigma], dtype=D64))
    (grad,) = torch.autograd.grad(p[0], loc)
    assert p[0].item() == pytest.approx(stats.norm.cdf(ratio), rel=1e-10)
    assert p[1].item() == pytest.approx(stats.norm.cdf(-ratio), rel=1e-10)
    assert grad.item() == pytest.approx(stats.norm.pdf(ratio) / sigma, rel=1e-10)


def test_gradients_in_the_far_tail_pass_gradcheck() -> None:
    """float64 gradcheck of the pmf with one location eight and one twelve scales below zero."""
    loc = torch.tensor([-8.0, 0.3, -24.0], dtype=D64, requires_grad=True)
    scale = torch.tensor([1.0, 0.5, 2.0], dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(igr_zero_temperature_probs, (loc, scale))
