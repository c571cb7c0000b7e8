"""Tests of the straight-through family (simplexity.distributions.straight_through).

Truth is independent of the code under test: expectations by enumeration over the categories,
one-dimensional quadrature (scipy) for the Gumbel estimators at K = 2, hand-worked numbers,
rejection sampling for the conditional Gumbels, chi-square goodness of fit for the samples.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Categorical, OneHotCategorical, kl_divergence

from default_dtype import default_dtype
from exact_error import raises_exactly
from simplexity.distributions import (
    DecoupledStraightThrough,
    GumbelRao,
    GumbelStraightThrough,
    OneHotSurrogate,
    ReinMax,
    StraightThrough,
    conditional_gumbel,
)
from simplexity.distributions.straight_through import softmax_jacobian_product

LOGITS = torch.tensor([0.7, -0.4, 0.1, -1.2, 0.3], dtype=torch.float64)


@pytest.fixture(autouse=True)
def _float64():
    """Every tensor of these tests in float64 (restored afterwards: other tests keep float32)."""
    with default_dtype(torch.float64):
        yield


K = len(LOGITS)


def _make(name: str, logits: torch.Tensor, temperature: float = 0.7):
    """Every estimator from the same logits (the sampled distribution is Cat(softmax(logits)))."""
    if name == "st":
        return StraightThrough(logits=logits, temperature=temperature)
    if name == "st_gumbel":
        return GumbelStraightThrough(temperature, logits=logits)
    if name == "gumbel_rao":
        return GumbelRao(temperature, logits=logits, num_draws=5)
    if name == "reinmax":
        return ReinMax(logits=logits, temperature=temperature)
    if name == "decoupled_st":  # τ_f = 1: the same forward distribution as the others
        return DecoupledStraightThrough(1.0, temperature, logits=logits)
    raise AssertionError(name)


NAMES = ["st", "st_gumbel", "gumbel_rao", "reinmax", "decoupled_st"]


def _jacobian_product(p: np.ndarray, v: np.ndarray) -> np.ndarray:
    return p * v - p * (p @ v)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


# ------------------------------------------------------------------------------ the distribution


@pytest.mark.parametrize("name", NAMES)
def test_is_a_categorical(name: str) -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 2, K)
    q = _make(name, logits)
    ref = OneHotCategorical(logits=logits)
    assert isinstance(q, OneHotCategorical) and isinstance(q, OneHotSurrogate)
    assert q.has_rsample and q.batch_shape == (3, 2) and q.event_shape == (K,)
    assert q.support is ref.support
    d = q.rsample((4,))
    assert d.shape == (4, 3, 2, K)
    assert set(d.unique().tolist()) == {0.0, 1.0} and bool(d.sum(-1).eq(1).all())
    torch.testing.assert_close(q.log_prob(d), ref.log_prob(d))
    torch.testing.assert_close(q.entropy(), ref.entropy())
    torch.testing.assert_close(q.probs, ref.probs)
    assert q.sample((2,)).shape == (2, 3, 2, K)


@pytest.mark.parametrize("name", NAMES)
def test_samples_have_the_categorical_frequencies(name: str) -> None:
    torch.manual_seed(1)
    logits = LOGITS.clone().requires_grad_()
    q = _make(name, logits)
    n = 20_000
    d = q.rsample((n,))
    counts = d.detach().sum(0).numpy()
    expected = n * torch.softmax(LOGITS, -1).numpy()
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    # a wrong distribution is rejected by the same test (it can fail)
    wrong = n * torch.softmax(LOGITS * 1.2, -1).numpy()
    assert stats.chisquare(counts, wrong).pvalue < 1e-6


def test_decoupled_forward_distribution_is_tempered() -> None:
    torch.manual_seed(2)
    q = DecoupledStraightThrough(2.5, 0.5, logits=LOGITS)
    tempered = torch.softmax(LOGITS / 2.5, -1)
    torch.testing.assert_close(q.probs, tempered)
    n = 20_000
    counts = q.rsample((n,)).sum(0).numpy()
    assert stats.chisquare(counts, n * tempered.numpy()).pvalue > 1e-3
    # probs give the untempered distribution softmax(θ): the same object
    p = DecoupledStraightThrough(2.5, 0.5, probs=torch.softmax(LOGITS, -1))
    torch.testing.assert_close(p.probs, tempered)


@pytest.mark.parametrize("name", NAMES)
def test_expand_and_pickle(name: str) -> None:
    torch.manual_seed(3)
    q = _make(name, torch.randn(2, K))
    e = q.expand((4, 2))
    assert type(e) is type(q) and e.batch_shape == (4, 2)
    torch.testing.assert_close(e.probs, q.probs.expand(4, 2, K))
    assert e.rsample((3,)).shape == (3, 4, 2, K)
    for key in q._temperatures:
        assert getattr(e, key).shape == (4, 2)
    if isinstance(q, GumbelRao):
        assert e.num_draws == q.num_draws
    r = pickle.loads(pickle.dumps(q))
    torch.testing.assert_close(r.probs, q.probs)


def test_batch_of_temperatures() -> None:
    torch.manual_seed(4)
    tau = torch.tensor([0.5, 1.0, 2.0])
    q = StraightThrough(logits=torch.randn(K), temperature=tau)
    assert q.batch_shape == (3,)
    logits = torch.randn(2, 3, K, requires_grad=True)
    q = GumbelStraightThrough(tau, logits=logits)
    assert q.batch_shape == (2, 3) and q.rsample().shape == (2, 3, K)
    with pytest.raises(ValueError, match="broadcast"):
        GumbelStraightThrough(torch.ones(4), logits=torch.randn(3, K))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        StraightThrough()
    with pytest.raises(ValueError, match="exactly one"):
        ReinMax(probs=torch.ones(3) / 3, logits=torch.zeros(3))
    with pytest.raises(ValueError, match="K >= 2"):
        GumbelStraightThrough(1.0, logits=torch.zeros(1))
    with pytest.raises(TypeError, match="floating"):
        StraightThrough(logits=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^temperature"):
        GumbelStraightThrough(-1.0, logits=torch.zeros(3))
    with pytest.raises(ValueError, match=r"^temperature"):
        ReinMax(logits=torch.zeros(3), temperature=0.0)
    with pytest.raises(ValueError, match=r"^backward_temperature"):
        DecoupledStraightThrough(1.0, float("inf"), logits=torch.zeros(3))
    with pytest.raises(ValueError, match=r"^num_draws"):
        GumbelRao(1.0, logits=torch.zeros(3), num_draws=0)
    with pytest.raises(TypeError, match=r"^num_draws"):
        GumbelRao(1.0, logits=torch.zeros(3), num_draws=2.0)
    with pytest.raises(ValueError):  # a tensor temperature is checked by validate_args
        StraightThrough(logits=torch.zeros(3), temperature=torch.tensor(-1.0), validate_args=True)
    with pytest.raises(ValueError, match="non-negative"):
        DecoupledStraightThrough(1.0, 1.0, probs=torch.tensor([-0.5, 0.7]), validate_args=True)
    with pytest.raises(ValueError):
        StraightThrough(probs=torch.tensor([-0.5, 0.7]), validate_args=True)
    with pytest.raises(TypeError, match="dtype"):
        StraightThrough(logits=torch.zeros(3), temperature=torch.tensor(1.0, dtype=torch.float32))


# ----------------------------------------------------------------------------------------- KL


@pytest.mark.parametrize("name", NAMES)
def test_kl_is_the_categorical_kl(name: str) -> None:
    torch.manual_seed(5)
    logits = torch.randn(3, K)
    q = _make(name, logits)
    prior_logits = torch.randn(K)
    p = OneHotCategorical(logits=prior_logits)
    qp, pp = q.probs, torch.softmax(prior_logits, -1)
    brute = (qp * (qp.log() - pp.log())).sum(-1)  # enumeration over the K categories
    torch.testing.assert_close(kl_divergence(q, p), brute)
    torch.testing.assert_close(kl_divergence(q, Categorical(logits=prior_logits)), brute)
    torch.testing.assert_close(kl_divergence(q, OneHotCategorical(logits=logits)), 0 * brute)
    with pytest.raises(ValueError, match="categories"):
        kl_divergence(q, Categorical(logits=torch.zeros(K + 1)))


def test_kl_zero_probabilities_and_gradcheck() -> None:
    q = StraightThrough(probs=torch.tensor([0.5, 0.5, 0.0]))
    p = OneHotCategorical(probs=torch.tensor([0.25, 0.25, 0.5]))
    torch.testing.assert_close(kl_divergence(q, p), torch.tensor(math.log(2.0)))
    logits = torch.tensor([0.0, 0.0, -math.inf], requires_grad=True)
    kl = kl_divergence(ReinMax(logits=logits), p)
    kl.backward()
    assert bool(logits.grad.isfinite().all())
    assert kl_divergence(p, OneHotCategorical(probs=torch.tensor([1.0, 0.0, 0.0]))).isinf()

    def kl_fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return kl_divergence(GumbelRao(0.5, logits=a), OneHotCategorical(logits=b))

    a = torch.randn(2, 4, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    assert torch.autograd.gradcheck(kl_fn, (a, b))


# ---------------------------------------------------------------------- gradients: exact cases


def _per_sample_gradients(q_fn, logits: torch.Tensor, upstream: torch.Tensor, n: int):
    """One sample per row of a batch of n copies of ``logits``: (samples, gradients)."""
    batch = logits.expand(n, -1).clone().requires_grad_()
    d = q_fn(batch).rsample()
    (d * upstream).sum().backward()
    return d.detach(), batch.grad


def test_straight_through_backward_formula() -> None:
    torch.manual_seed(6)
    g = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0])
    for tau in (0.3, 1.0, 2.0):
        _, grads = _per_sample_gradients(
            lambda t, tau=tau: StraightThrough(logits=t, temperature=tau), LOGITS, g, 8
        )
        expected = _jacobian_product(_softmax(LOGITS.numpy() / tau), g.numpy()) / tau
        for row in grads:
            np.testing.assert_allclose(row.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_straight_through_is_exact_for_linear_f() -> None:
    r"""At τ = 1 and f(D) = cᵀD, every single-sample straight-through gradient equals
    ∇_θ E[f(D)] = ∇_θ Σ_k softmax(θ)_k c_k (enumeration), for logits and for probs."""
    torch.manual_seed(7)
    c = torch.tensor([2.0, -1.0, 0.5, 0.0, 4.0])
    theta = LOGITS.clone().requires_grad_()
    (exact,) = torch.autograd.grad((torch.softmax(theta, -1) * c).sum(), theta)
    _, grads = _per_sample_gradients(lambda t: StraightThrough(logits=t), LOGITS, c, 50)
    torch.testing.assert_close(grads, exact.expand(50, -1))
    # the same through a probs parameterization: E[f] = Σ_k (p_k / Σp) c_k
    probs = torch.softmax(LOGITS, -1)
    p = probs.clone().requires_grad_()
    (exact_p,) = torch.autograd.grad((p / p.sum() * c).sum(), p)
    _, grads_p = _per_sample_gradients(lambda t: StraightThrough(probs=t), probs, c, 50)
    torch.testing.assert_close(grads_p, exact_p.expand(50, -1))
    # at τ ≠ 1 it is not (the test can tell)
    _, grads_tau = _per_sample_gradients(
        lambda t: StraightThrough(logits=t, temperature=0.5), LOGITS, c, 4
    )
    assert (grads_tau - exact).abs().max() > 1e-2


def test_reinmax_hand_worked() -> None:
    r"""π = (0.8, 0.2), τ = 1, g = (1, 0): p̄ = (π + D)/2,
    D = e_0: p̄ = (0.9, 0.1), 2J(p̄)g = (0.18, -0.18), ½J(π)g = (0.08, -0.08) -> (0.10, -0.10);
    D = e_1: p̄ = (0.4, 0.6), 2J(p̄)g = (0.48, -0.48) -> (0.40, -0.40).
    Mean 0.8 (0.10) + 0.2 (0.40) = 0.16 = J(π)g, the exact gradient of E[D_0]."""
    torch.manual_seed(8)
    logits = torch.tensor([0.8, 0.2]).log()
    d, grads = _per_sample_gradients(
        lambda t: ReinMax(logits=t), logits, torch.tensor([1.0, 0.0]), 64
    )
    first = d[:, 0].bool()
    assert first.any() and (~first).any()
    torch.testing.assert_close(
        grads[first], torch.tensor([0.10, -0.10]).expand(int(first.sum()), 2)
    )
    torch.testing.assert_close(
        grads[~first], torch.tensor([0.40, -0.40]).expand(int((~first).sum()), 2)
    )


def test_reinmax_backward_formula() -> None:
    torch.manual_seed(9)
    g = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0])
    pi = _softmax(LOGITS.numpy())
    for tau in (0.5, 1.0, 1.7):
        d, grads = _per_sample_gradients(
            lambda t, tau=tau: ReinMax(logits=t, temperature=tau), LOGITS, g, 16
        )
        pt = _softmax(LOGITS.numpy() / tau)
        for row, sample in zip(grads, d):
            half = 0.5 * (pt + sample.numpy())
            expected = 2 * _jacobian_product(half, g.numpy()) - 0.5 * _jacobian_product(
                pi, g.numpy()
            )
            np.testing.assert_allclose(row.numpy(), expected, rtol=1e-10, atol=1e-12)


def _expectation_by_enumeration(make, logits: torch.Tensor, f) -> torch.Tensor:
    """E_D[gradient of f at rsample] = Σ_d π_d gradient(d), each d forced through surrogate()."""
    pi = torch.softmax(logits, -1)
    total = torch.zeros_like(logits)
    for k in range(len(logits)):
        theta = logits.clone().requires_grad_()
        q = make(theta)
        d = torch.nn.functional.one_hot(torch.tensor(k), len(logits)).to(logits)
        s = q.surrogate(d)
        (grad_f,) = torch.autograd.grad(f(d.requires_grad_()), d)
        (g,) = torch.autograd.grad((s * grad_f).sum(), theta)
        total += pi[k] * g
    return total


def test_reinmax_is_exact_in_expectation_for_quadratic_f() -> None:
    r"""Heun's method: at τ = 1, E_D[ReinMax] = ∇_θ E[f(D)] for f(D) = DᵀAD + bᵀD, while the
    straight-through (Euler) estimator is off by a second-order term."""
    torch.manual_seed(10)
    a, b = torch.randn(K, K), torch.randn(K)

    def f(d: torch.Tensor) -> torch.Tensor:
        return d @ a @ d + b @ d

    theta = LOGITS.clone().requires_grad_()
    values = torch.stack([f(e) for e in torch.eye(K)])
    (exact,) = torch.autograd.grad((torch.softmax(theta, -1) * values).sum(), theta)
    reinmax = _expectation_by_enumeration(lambda t: ReinMax(logits=t), LOGITS, f)
    torch.testing.assert_close(reinmax, exact, rtol=1e-10, atol=1e-12)
    st = _expectation_by_enumeration(lambda t: StraightThrough(logits=t), LOGITS, f)
    assert (st - exact).abs().max() > 1e-2
    # the Monte Carlo mean of rsample agrees with the enumeration (rsample uses surrogate())
    n = 40_000
    batch = LOGITS.expand(n, -1).clone().requires_grad_()
    d = ReinMax(logits=batch).rsample()
    f_batch = torch.einsum("nk,kl,nl->n", d, a, d) + d @ b
    f_batch.sum().backward()
    mean, se = batch.grad.mean(0), batch.grad.std(0) / math.sqrt(n)
    assert bool(((mean - exact).abs() <= 4 * se + 1e-12).all())


# -------------------------------------------------------- Gumbel estimators: quadrature at K = 2


def _logistic_expectation(delta: float, scale: float, lower: float | None) -> float:
    """E[σ(X s)σ(-X s)] for X ~ Logistic(δ, 1), optionally conditioned on X > lower."""
    pdf = stats.logistic(loc=delta).pdf

    def integrand(x: float) -> float:
        return pdf(x) * stats.logistic.cdf(x * scale) * stats.logistic.sf(x * scale)

    if lower is None:
        return integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-12)[0]
    mass = stats.logistic(loc=delta).sf(lower)
    return integrate.quad(integrand, lower, np.inf, epsabs=1e-12)[0] / mass


def _mean_and_se(grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return grads.mean(0), grads.std(0) / math.sqrt(len(grads))


def test_gumbel_straight_through_expectation_at_k2() -> None:
    r"""K = 2, f(D) = cᵀD: the gradient is (c_0 - c_1)/τ · y_0 y_1 · (1, -1) with y_0 = σ(X/τ),
    X = θ_0 - θ_1 + L, L ~ Logistic(0, 1); its mean is a one-dimensional integral."""
    torch.manual_seed(11)
    logits = torch.tensor([0.9, -0.3])
    c = torch.tensor([1.5, -0.5])
    n = 40_000
    for tau in (0.5, 1.0):
        _, grads = _per_sample_gradients(
            lambda t, tau=tau: GumbelStraightThrough(tau, logits=t), logits, c, n
        )
        mean, se = _mean_and_se(grads)
        value = 2.0 / tau * _logistic_expectation(1.2, 1 / tau, None)
        expected = torch.tensor([value, -value])
        assert bool(((mean - expected).abs() <= 4 * se).all()), (mean, expected, se)


def test_decoupled_expectation_at_k2() -> None:
    r"""K = 2: D ~ Cat(softmax(θ/τ_f)); the gradient (c_0 - c_1)/τ_b · y_0 y_1 with
    y_0 = σ((θ_0 - θ_1)/τ_b + L), L ~ Logistic(0, 1), independent of τ_f."""
    torch.manual_seed(12)
    logits = torch.tensor([0.9, -0.3])
    c = torch.tensor([1.5, -0.5])
    n = 40_000
    tau_b = 0.6
    for tau_f in (0.5, 2.0):
        d, grads = _per_sample_gradients(
            lambda t, tau_f=tau_f: DecoupledStraightThrough(tau_f, tau_b, logits=t), logits, c, n
        )
        mean, se = _mean_and_se(grads)
        value = 2.0 / tau_b * _logistic_expectation(1.2 / tau_b, 1.0, None)
        expected = torch.tensor([value, -value])
        assert bool(((mean - expected).abs() <= 4 * se).all()), (tau_f, mean, expected, se)
        # and the forward frequencies are those of softmax(θ/τ_f)
        p0 = float(torch.sigmoid(torch.tensor(1.2 / tau_f)))
        assert stats.binomtest(int(d[:, 0].sum()), n, p0).pvalue > 1e-3


def test_gumbel_rao_conditional_expectation_at_k2() -> None:
    r"""Given D = e_0, Gumbel-Rao with many draws is E[ST-GS | D = e_0]
    = (c_0 - c_1)/τ · E[y_0 y_1 | X > 0] · (1, -1) (quadrature of the truncated logistic)."""
    torch.manual_seed(13)
    logits = torch.tensor([0.9, -0.3])
    c = torch.tensor([1.5, -0.5])
    tau = 0.5
    for k, lower_sign in ((0, 1.0), (1, -1.0)):
        d = torch.nn.functional.one_hot(torch.tensor(k), 2).to(logits)
        theta = logits.clone().requires_grad_()
        q = GumbelRao(tau, logits=theta, num_draws=200_000)
        noise = conditional_gumbel(theta, d, q.num_draws)
        s = q.surrogate(d, noise)
        (grad,) = torch.autograd.grad((s * c).sum(), theta)
        # E[y_0 y_1 | D] with X = θ_0 - θ_1 + L conditioned on X > 0 (D = e_0) or X < 0 (e_1)
        if lower_sign > 0:
            value = _logistic_expectation(1.2, 1 / tau, 0.0)
        else:  # X < 0  <=>  -X > 0 with -X ~ Logistic(-δ); y_0 y_1 is symmetric in X
            value = _logistic_expectation(-1.2, 1 / tau, 0.0)
        expected = 2.0 / tau * value
        torch.testing.assert_close(grad, torch.tensor([expected, -expected]), rtol=5e-3, atol=1e-4)


def test_conditional_gumbel_matches_rejection_sampling() -> None:
    torch.manual_seed(14)
    logits = torch.tensor([1.0, 0.2, -0.5, 0.0])
    d = torch.tensor([0.0, 0.0, 1.0, 0.0])  # the least likely category but one
    draws = conditional_gumbel(logits, d, num_draws=4000)
    assert draws.shape == (4000, 4)
    assert bool((logits + draws).argmax(-1).eq(2).all())
    # rejection sampling: unconditional Gumbels kept when their argmax is 2
    gumbels = -torch.log(-torch.log(torch.rand(200_000, 4)))
    kept = gumbels[(logits + gumbels).argmax(-1) == 2][:4000]
    assert len(kept) > 1000
    for j in range(4):
        assert stats.ks_2samp(draws[:, j].numpy(), kept[:, j].numpy()).pvalue > 1e-3
    # the test can fail: conditioning on another category is told apart
    other = conditional_gumbel(logits, torch.tensor([1.0, 0.0, 0.0, 0.0]), num_draws=4000)
    assert stats.ks_2samp(other[:, 2].numpy(), kept[:, 2].numpy()).pvalue < 1e-6


def test_gumbel_rao_has_the_straight_through_gumbel_mean_and_less_variance() -> None:
    """Rao-Blackwellization: the same expectation as ST-GS, a smaller variance (K = 5, f non-linear)."""
    torch.manual_seed(15)
    a = torch.randn(K, K)
    n = 20_000

    def grads(make) -> torch.Tensor:
        batch = LOGITS.expand(n, -1).clone().requires_grad_()
        d = make(batch).rsample()
        torch.einsum("nk,kl,nl->n", d, a, d).sum().backward()
        return batch.grad

    st_gumbel = grads(lambda t: GumbelStraightThrough(0.5, logits=t))
    rao = grads(lambda t: GumbelRao(0.5, logits=t, num_draws=20))
    diff = st_gumbel.mean(0) - rao.mean(0)
    se = (st_gumbel.var(0) / n + rao.var(0) / n).sqrt()
    assert bool((diff.abs() <= 4 * se).all())
    assert float(rao.var(0).sum()) < 0.8 * float(st_gumbel.var(0).sum())


# ------------------------------------------------------------------------ gradcheck-able pieces


def test_softmax_jacobian_product_is_the_softmax_vjp() -> None:
    theta = torch.randn(3, K, requires_grad=True)
    v = torch.randn(3, K)
    (vjp,) = torch.autograd.grad((torch.softmax(theta, -1) * v).sum(), theta)
    torch.testing.assert_close(softmax_jacobian_product(torch.softmax(theta, -1), v), vjp)
    p = torch.softmax(torch.randn(K), -1).requires_grad_()
    assert torch.autograd.gradcheck(softmax_jacobian_product, (p, v[0].requires_grad_()))


@pytest.mark.parametrize("name", ["st", "st_gumbel", "gumbel_rao", "decoupled_st"])
def test_surrogates_are_smooth_functions_of_the_logits(name: str) -> None:
    """With the sample and the noise fixed, the surrogate is a differentiable function (gradcheck)."""
    torch.manual_seed(16)
    base = _make(name, LOGITS)
    d, noise = base._draw(torch.Size((3,)))

    def surrogate(theta: torch.Tensor) -> torch.Tensor:
        return _make(name, theta).surrogate(d, noise)

    assert torch.autograd.gradcheck(surrogate, (LOGITS.clone().requires_grad_(),))


def test_gradient_reaches_a_tensor_temperature() -> None:
    """A learnable temperature gets a gradient through the backward surrogate."""
    tau = torch.tensor(0.8, requires_grad=True)
    d = GumbelStraightThrough(tau, logits=torch.randn(4, K)).rsample()
    (d * torch.randn(K)).sum().backward()
    assert tau.grad is not None and bool(tau.grad.isfinite())


def test_float32_works() -> None:
    logits = torch.randn(2, K, dtype=torch.float32, requires_grad=True)
    for name in NAMES:
        q = _make(name, logits)
        d = q.rsample((3,))
        assert d.dtype == torch.float32
        (d * torch.arange(K, dtype=torch.float32)).sum().backward()
    assert logits.grad is not None and bool(logits.grad.isfinite().all())


# ------------------------------------------------------------------------------ the registry


@pytest.mark.parametrize(
    "name, cls",
    [
        ("straight_through", StraightThrough),
        ("st_gumbel", GumbelStraightThrough),
        ("gumbel_rao", GumbelRao),
        ("reinmax", ReinMax),
        ("decoupled_st", DecoupledStraightThrough),
    ],
)
def test_relaxation_registry(name: str, cls: type) -> None:
    from simplexity.distributions import relaxations

    torch.manual_seed(17)
    relax = relaxations.get(name, num_categories=K)
    assert relax.num_params(K) == K and relax.categories_from_params(K) == K
    raw = torch.randn(4, 3, K, requires_grad=True)
    q = relax(raw, torch.tensor(1.5))
    assert isinstance(q, cls) and q.batch_shape == (4, 3)
    p = relax.prior(K, torch.tensor(1.5))
    assert isinstance(p, OneHotCategorical)
    torch.testing.assert_close(p.probs, torch.full((K,), 1 / K))
    kl = relax.kl(q, p)  # the closed form, not a Monte Carlo estimate
    torch.testing.assert_close(kl, (q.probs * (q.probs * K).log()).sum(-1))
    (kl.sum() + (q.rsample() * torch.arange(float(K))).sum()).backward()
    assert bool(raw.grad.abs().sum() > 0)
    with pytest.raises(ValueError, match="K = 5"):
        relax(torch.randn(2, K - 1), 1.0)


def test_relaxation_options() -> None:
    from simplexity.distributions import relaxations

    rao = relaxations.get("gumbel_rao", num_draws=7)
    assert rao(torch.randn(2, K), 0.5).num_draws == 7
    decoupled = relaxations.get("decoupled_st", forward_temperature=2.0)
    q = decoupled(LOGITS, 0.3)
    torch.testing.assert_close(q.probs, torch.softmax(LOGITS / 2.0, -1))
    assert float(q.backward_temperature) == 0.3
    with pytest.raises(ValueError, match=r"^num_draws"):
        relaxations.get("gumbel_rao", num_draws=0)
    with pytest.raises(ValueError, match=r"^forward_temperature"):
        relaxations.get("decoupled_st", forward_temperature=-1.0)


_ST_BUILD = {
    "StraightThrough": lambda **kw: StraightThrough(**kw),
    "GumbelStraightThrough": lambda **kw: GumbelStraightThrough(0.7, **kw),
    "GumbelRao": lambda **kw: GumbelRao(0.7, **kw),
    "ReinMax": lambda **kw: ReinMax(**kw),
    "DecoupledStraightThrough": lambda **kw: DecoupledStraightThrough(1.5, 0.7, **kw),
}


@pytest.mark.parametrize("name", list(_ST_BUILD))
def test_straight_through_family_argument_errors_are_exact(name: str) -> None:
    build = _ST_BUILD[name]
    floating = "must be a floating-point tensor (float16, bfloat16, float32 or float64), got "
    cases = [
        ({}, ValueError, "give exactly one of probs or logits"),
        ({"probs": torch.ones(3) / 3, "logits": torch.zeros(3)}, ValueError,
         "give exactly one of probs or logits"),
        ({"probs": torch.ones(1)}, ValueError,
         "probs must have shape (..., K) with K >= 2 categories, got (1,)"),
        ({"logits": torch.zeros(2, 1)}, ValueError,
         "logits must have shape (..., K) with K >= 2 categories, got (2, 1)"),
        ({"logits": torch.zeros(())}, ValueError,
         "logits must have shape (..., K) with K >= 2 categories, got ()"),
        ({"probs": torch.ones(3, dtype=torch.long)}, TypeError, f"probs {floating}dtype torch.int64"),
        ({"logits": torch.ones(3, dtype=torch.long)}, TypeError,
         f"logits {floating}dtype torch.int64"),
    ]  # fmt: skip
    for kwargs, error, message in cases:
        with raises_exactly(error, message):
            build(**kwargs)


def test_straight_through_family_normalizes_batched_probs_per_row() -> None:
    probs = torch.tensor([[1.0, 3.0], [2.0, 2.0], [9.0, 1.0]], dtype=torch.float64)
    expected = probs / probs.sum(-1, keepdim=True)
    for name, build in _ST_BUILD.items():
        d = build(probs=probs)
        target = expected
        if name == "DecoupledStraightThrough":  # the forward distribution is softmax(θ/τ_f)
            target = (expected.log() / 1.5).softmax(-1)
        torch.testing.assert_close(d.probs, target, msg=name)
        assert d.batch_shape == (3,), name


def test_decoupled_straight_through_temperature_errors_are_exact() -> None:
    logits = torch.zeros(2, 3, dtype=torch.float32)
    cases = [
        ((torch.ones(4, dtype=torch.float32), 0.7), ValueError,
         "forward_temperature of shape (4,) does not broadcast with the batch shape (2,) of the "
         "logits"),
        ((-1.0, 0.7), ValueError, "forward_temperature must be finite and > 0, got -1.0"),
        ((1.0, 0.0), ValueError, "backward_temperature must be finite and > 0, got 0.0"),
        ((torch.tensor(1.0, dtype=torch.float64), 0.7), TypeError,
         "forward_temperature has dtype torch.float64 but the logits have torch.float32"),
        ((torch.tensor(1), 0.7), TypeError, "forward_temperature must be a floating-point tensor "
         "(float16, bfloat16, float32 or float64), got dtype torch.int64"),
    ]  # fmt: skip
    for (tau_f, tau_b), error, message in cases:
        with raises_exactly(error, message):
            DecoupledStraightThrough(tau_f, tau_b, logits=logits)
    with pytest.raises(ValueError) as info:
        DecoupledStraightThrough(torch.ones(4), 0.7, probs=torch.ones(2, 3))
    assert str(info.value).endswith("of the probs")
    # probs are checked (after normalization) when validating, as torch's Categorical does
    bad = torch.tensor([-1.0, 2.0])
    with raises_exactly(ValueError, "probs must be non-negative with a positive finite sum"):
        DecoupledStraightThrough(1.0, 0.7, probs=bad, validate_args=True)
    DecoupledStraightThrough(1.0, 0.7, probs=bad, validate_args=False)  # not checked


def test_straight_through_family_temperature_broadcast_errors_name_the_batch_shape() -> None:
    logits = torch.zeros(2, 5, 3, dtype=torch.float32)
    tau = torch.ones(4, dtype=torch.float32)
    with raises_exactly(
        ValueError,
        "the temperatures of shapes [(4,)] do not broadcast with the batch shape (2, 5) of the "
        "logits (the category axis is the last one and is not broadcast against a temperature)",
    ):
        StraightThrough(logits=logits, temperature=tau)
    with raises_exactly(
        ValueError,
        "forward_temperature of shape (4,) does not broadcast with the batch shape (2, 5) of the "
        "logits",
    ):
        DecoupledStraightThrough(tau, 0.7, logits=logits)
    # probs are checked under torch's default validation too (validate_args=None)
    with pytest.raises(
        ValueError, match=r"^probs must be non-negative with a positive finite sum$"
    ):
        DecoupledStraightThrough(1.0, 0.7, probs=torch.tensor([-1.0, 2.0]))


# ------------------------------------------------------------------ surrogates, noise, defaults
def test_surrogates_by_formula_on_a_three_dimensional_batch() -> None:
    """Each surrogate against its formula in the raw logits θ, on (sample, batch, K) tensors (the
    softmax is over the last axis, not the second)."""
    g = torch.Generator().manual_seed(21)
    theta = torch.randn(2, 3, 4, generator=g)
    noise = torch.randn(5, 2, 3, 4, generator=g)
    sample = torch.nn.functional.one_hot(torch.randint(4, (5, 2, 3), generator=g), 4).double()
    log_p = theta.log_softmax(-1)
    st_gumbel = GumbelStraightThrough(0.6, logits=theta).surrogate(sample, noise)
    torch.testing.assert_close(st_gumbel, torch.softmax((log_p + noise) / 0.6, -1))
    decoupled = DecoupledStraightThrough(1.5, 0.4, logits=theta).surrogate(sample, noise)
    torch.testing.assert_close(decoupled, torch.softmax(theta / 0.4 + noise, -1))
    draws = torch.randn(7, 5, 2, 3, 4, generator=g)  # (num_draws, sample, batch, K)
    rao = GumbelRao(0.6, logits=theta, num_draws=7).surrogate(sample, draws)
    torch.testing.assert_close(rao, torch.softmax((log_p + draws) / 0.6, -1).mean(0))


def test_surrogates_that_need_noise_say_so() -> None:
    sample = torch.tensor([0.0, 1.0, 0.0])
    cases = [
        (GumbelStraightThrough(0.5, logits=LOGITS[:3]),
         "GumbelStraightThrough.surrogate needs the Gumbel noise of the sample"),
        (GumbelRao(0.5, logits=LOGITS[:3]), "GumbelRao.surrogate needs the conditional Gumbel draws"),
        (DecoupledStraightThrough(1.0, 0.5, logits=LOGITS[:3]),
         "DecoupledStraightThrough.surrogate needs the Gumbel noise"),
    ]  # fmt: skip
    for q, message in cases:
        with raises_exactly(ValueError, message):
            q.surrogate(sample)


def test_gumbel_rao_draws_ten_by_default_and_accepts_one() -> None:
    assert GumbelRao(0.5, logits=LOGITS).num_draws == 10
    one = GumbelRao(0.5, logits=LOGITS, num_draws=1)
    assert one.num_draws == 1 and one.rsample((3,)).shape == (3, K)
    with pytest.raises(ValueError, match=r"^num_draws must be"):
        GumbelRao(0.5, logits=LOGITS, num_draws=0)


def test_uniforms_at_zero_and_one_give_finite_noise(monkeypatch) -> None:
    """The Gumbel and exponential draws clamp u = 0 and u = 1 to (tiny, 1 - eps): finite noise, with
    the logits' dtype and device."""
    calls = []

    def rand(shape, *, dtype=None, device=None):
        calls.append((dtype, device))
        u = torch.zeros(shape, dtype=dtype)
        u.view(-1)[1::2] = 1.0
        return u

    monkeypatch.setattr(torch, "rand", rand)
    logits = LOGITS.float()
    f32 = torch.finfo(torch.float32)
    st_gumbel = GumbelStraightThrough(0.5, logits=logits)
    _, gumbels = st_gumbel._draw(torch.Size((2,)))
    expected = torch.tensor([f32.tiny, 1 - f32.eps] * 5, dtype=torch.float32).reshape(2, K)
    torch.testing.assert_close(gumbels, -(-expected.log()).log())
    assert bool(gumbels.isfinite().all()) and bool(st_gumbel.rsample().isfinite().all())
    d = torch.nn.functional.one_hot(torch.tensor(2), K).float()
    draws = conditional_gumbel(logits, d, num_draws=4)
    perturbed = logits + draws  # the sampled category stays the maximum (ties: float32 rounding)
    assert bool(draws.isfinite().all()) and bool((perturbed[:, 2] >= perturbed.amax(-1)).all())
    assert calls and all(c == (torch.float32, logits.device) for c in calls)


def test_conditional_gumbel_shapes_dtypes_and_messages() -> None:
    d = torch.tensor([0.0, 1.0, 0.0])
    with pytest.raises(TypeError, match=r"^logits must be a floating-point tensor"):
        conditional_gumbel(torch.arange(3), d)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=r"^num_draws must be"):
            conditional_gumbel(LOGITS[:3], d, num_draws=bad)
    assert conditional_gumbel(LOGITS[:3], d).shape == (1, 3)  # one draw by default, and allowed
    # a batch of logits with one sample: independent draws per row, in the logits' dtype
    logits = torch.zeros(2, 3, dtype=torch.float32)
    draws = conditional_gumbel(logits, d, num_draws=5)
    assert draws.shape == (5, 2, 3) and draws.dtype == torch.float32
    assert not torch.equal(draws[:, 0], draws[:, 1])


def test_a_float_temperature_follows_the_logits_device(monkeypatch) -> None:
    # the meta device computes nothing; torch's OneHotCategorical builds its Categorical with the
    # default validation, which would read values: off for this test
    monkeypatch.setattr(torch.distributions.Distribution, "_validate_args", False)
    logits = torch.zeros(2, 3, device="meta")
    for q in (
        GumbelStraightThrough(0.5, logits=logits, validate_args=False),
        ReinMax(logits=logits, temperature=1.5, validate_args=False),
    ):
        assert q.temperature.device.type == "meta" and q.temperature.dtype == logits.dtype
