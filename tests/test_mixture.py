"""Tests of simplexity.distributions.mixture: exact density, reparameterizations, estimators."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from exact_error import raises_exactly
from simplexity.distributions import GumbelSoftmax, MixtureOfGaussians
from simplexity.distributions.mixture import (
    ESTIMATORS,
    REPARAMS,
    kmeans_plusplus,
    kmeans_plusplus_init,
)

DT = torch.float64


def ring(k: int = 8, radius: float = 2.0, sigma: float = 0.3, dtype=DT):
    angle = torch.arange(k, dtype=dtype) * 2 * math.pi / k
    loc = radius * torch.stack([angle.cos(), angle.sin()], -1)
    return torch.zeros(k, dtype=dtype), loc, torch.full((k, 2), sigma, dtype=dtype)


def mixture_1d(dtype=DT, requires_grad: bool = False):
    logits = torch.tensor([0.3, -0.5, 0.1], dtype=dtype, requires_grad=requires_grad)
    loc = torch.tensor([[-2.0], [0.5], [3.0]], dtype=dtype, requires_grad=requires_grad)
    scale = torch.tensor([[0.5], [1.0], [0.7]], dtype=dtype, requires_grad=requires_grad)
    return logits, loc, scale


def mixture_cdf_1d(x: np.ndarray, logits, loc, scale) -> np.ndarray:
    w = logits.softmax(-1).detach().numpy()
    m, s = loc[:, 0].detach().numpy(), scale[:, 0].detach().numpy()
    return (w * stats.norm.cdf((x[:, None] - m) / s)).sum(-1)


# ---------------------------------------------------------------- exact density
def test_log_prob_matches_scipy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, generator=g, dtype=DT)
    loc = torch.randn(2, 4, 3, generator=g, dtype=DT)
    scale = torch.rand(2, 4, 3, generator=g, dtype=DT) + 0.2
    p = MixtureOfGaussians(logits, loc, scale)
    x = torch.randn(5, 2, 3, generator=g, dtype=DT)
    got = p.log_prob(x)
    assert got.shape == (5, 2)
    w = logits.softmax(-1).numpy()
    for n in range(5):
        for b in range(2):
            dens = sum(
                w[b, k]
                * stats.multivariate_normal.pdf(
                    x[n, b].numpy(), loc[b, k].numpy(), np.diag(scale[b, k].numpy() ** 2)
                )
                for k in range(4)
            )
            assert got[n, b].item() == pytest.approx(math.log(dens), rel=1e-10, abs=1e-10)


def test_log_prob_integrates_to_one_1d():
    logits, loc, scale = mixture_1d()
    p = MixtureOfGaussians(logits, loc, scale)
    x = torch.linspace(-12, 14, 20001, dtype=DT).unsqueeze(-1)
    total = torch.trapezoid(p.log_prob(x).exp(), x[:, 0])
    assert total.item() == pytest.approx(1.0, abs=1e-8)


def test_mean_variance_and_expand():
    logits, loc, scale = mixture_1d()
    p = MixtureOfGaussians(logits, loc, scale)
    z = p.sample((200000,))
    assert torch.allclose(z.mean(0), p.mean, atol=0.03)
    assert torch.allclose(z.var(0), p.variance, rtol=0.02)
    q = p.expand((4,))
    assert q.batch_shape == (4,) and q.sample((3,)).shape == (3, 4, 1)
    x = torch.randn(3, 4, 1, dtype=DT)
    assert torch.allclose(q.log_prob(x), p.log_prob(x))


# ---------------------------------------------------------------- pathwise gradients
def _batched_gradients(make, f, batches: int = 20, size: int = 10000):
    grads = []
    for i in range(batches):
        torch.manual_seed(100 + i)
        params = make()
        z = MixtureOfGaussians(*params).rsample((size,))
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(f(z).mean(), params)]))
    grads = torch.stack(grads)
    return grads.mean(0), grads.std(0) / math.sqrt(batches)


def test_pathwise_gradient_of_moments_1d():
    def f(z):
        return z[..., 0] ** 2 + 0.1 * z[..., 0] ** 3

    mean, se = _batched_gradients(lambda: mixture_1d(requires_grad=True), f)
    logits, loc, scale = mixture_1d(requires_grad=True)
    a, m, s = logits.softmax(-1), loc[:, 0], scale[:, 0]
    exact = (a * (m**2 + s**2 + 0.1 * (m**3 + 3 * m * s**2))).sum()
    truth = torch.cat([g.flatten() for g in torch.autograd.grad(exact, (logits, loc, scale))])
    assert torch.all((mean - truth).abs() <= 4 * se + 1e-3), (mean, truth, se)
    assert torch.all(se < 0.05)  # the test has power


def test_pathwise_gradient_2d_cross_moment():
    def make():
        g = torch.Generator().manual_seed(3)
        return (
            torch.randn(3, generator=g, dtype=DT).requires_grad_(),
            torch.randn(3, 2, generator=g, dtype=DT).requires_grad_(),
            (torch.rand(3, 2, generator=g, dtype=DT) + 0.3).requires_grad_(),
        )

    def f(z):
        return z[..., 0] * z[..., 1] ** 2

    mean, se = _batched_gradients(make, f)
    logits, loc, scale = make()
    a = logits.softmax(-1)
    exact = (a * loc[:, 0] * (loc[:, 1] ** 2 + scale[:, 1] ** 2)).sum()
    truth = torch.cat([g.flatten() for g in torch.autograd.grad(exact, (logits, loc, scale))])
    assert torch.all((mean - truth).abs() <= 4 * se + 1e-3), (mean, truth, se)


@pytest.mark.parametrize("reparam", REPARAMS)
def test_gradients_reach_every_parameter(reparam):
    torch.manual_seed(0)
    logits, loc, scale = (t.clone().requires_grad_() for t in ring())
    temperature = None if reparam == "pathwise" else 0.5
    p = MixtureOfGaussians(logits, loc, scale, reparam=reparam, temperature=temperature)
    z = p.rsample((256,))
    (z[:, 0] ** 3 + z[:, 1]).mean().backward()
    for t in (logits, loc, scale):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


# ---------------------------------------------------------------- exactness of samples
@pytest.mark.parametrize("reparam", ["pathwise", "gumbel_straight_through"])
def test_hard_reparameterizations_give_exact_samples(reparam):
    torch.manual_seed(1)
    logits, loc, scale = mixture_1d()
    temperature = None if reparam == "pathwise" else 1.0
    z = MixtureOfGaussians(logits, loc, scale, reparam=reparam, temperature=temperature).rsample(
        (5000,)
    )
    cdf = mixture_cdf_1d(z[:, 0].detach().numpy(), logits, loc, scale)
    # Probability integral transform: uniform iff the samples follow the mixture.
    assert stats.kstest(cdf, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("reparam", ["gumbel_softmax", "igr"])
def test_soft_reparameterizations_do_not_give_mixture_samples(reparam):
    torch.manual_seed(1)
    logits, loc, scale = mixture_1d()
    z = MixtureOfGaussians(logits, loc, scale, reparam=reparam, temperature=1.0).rsample((5000,))
    cdf = mixture_cdf_1d(z[:, 0].detach().numpy(), logits, loc, scale)
    assert stats.kstest(cdf, "uniform").pvalue < 1e-6


def test_two_sample_against_torch_mixture_2d():
    torch.manual_seed(2)
    logits, loc, scale = ring(4, 1.0, 0.5)
    ours = MixtureOfGaussians(logits, loc, scale).rsample((4000,))
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits),
        torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1),
    ).sample((4000,))
    for direction in (torch.tensor([1.0, 0.0]), torch.tensor([0.6, 0.8])):
        a = (ours @ direction.to(DT)).numpy()
        b = (reference @ direction.to(DT)).numpy()
        assert stats.ks_2samp(a, b).pvalue > 1e-3


# ---------------------------------------------------------------- estimators
def _entropy_estimates(reparam, temperature, estimator, num_inner, n=4000, seed=0):
    torch.manual_seed(seed)  # same seed: the same z for every estimator
    p = MixtureOfGaussians(*ring(), reparam=reparam, temperature=temperature)
    z, lp = p.rsample_and_log_prob((n,), estimator, num_inner)
    return z, -lp


@pytest.mark.parametrize("num_inner", [1, 4])
def test_estimator_bias_signs_hard(num_inner):
    z0, exact = _entropy_estimates("pathwise", None, "exact", None)
    z1, upper = _entropy_estimates("pathwise", None, "nested", num_inner)
    z2, lower = _entropy_estimates("pathwise", None, "nested_own", num_inner)
    assert torch.equal(z0, z1) and torch.equal(z0, z2)
    n = exact.shape[0]
    for diff in (upper - exact, exact - lower):
        se = diff.std() / math.sqrt(n)
        assert diff.mean() > 4 * se, (diff.mean(), se)
    _, joint = _entropy_estimates("pathwise", None, "joint", None)
    assert (joint - exact).mean() > 0  # H(c, z) >= H(z)


def test_nested_bounds_tighten_and_exact_is_exact_for_hard():
    gaps = []
    for m in (1, 16, 128):
        _, up = _entropy_estimates("pathwise", None, "nested", m)
        _, lo = _entropy_estimates("pathwise", None, "nested_own", m)
        gaps.append((up - lo).mean().item())
    assert gaps[0] > gaps[1] > gaps[2] > 0
    assert gaps[2] < 0.3
    p = MixtureOfGaussians(*ring())
    z, lp = p.rsample_and_log_prob((10,))
    assert torch.allclose(lp, p.log_prob(z))


def test_soft_samples_make_eq1_overestimate_the_entropy():
    # For tau = 1 the samples follow q_tau: the bracket [nested_own, nested] at large M pins
    # H(q_tau), and eq. (1) (a cross-entropy) lies far above it.
    _, ce = _entropy_estimates("gumbel_softmax", 1.0, "exact", None, n=2000)
    _, up = _entropy_estimates("gumbel_softmax", 1.0, "nested", 256, n=2000)
    _, lo = _entropy_estimates("gumbel_softmax", 1.0, "nested_own", 256, n=2000)
    assert (up - lo).mean() >= -0.01
    assert ce.mean() - up.mean() > 3.0
    _, joint = _entropy_estimates("gumbel_softmax", 0.1, "joint", None, n=2000)
    assert joint.mean() < -50  # dominated by the differential entropy of c


@pytest.mark.parametrize("reparam", REPARAMS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimator_shapes_and_finiteness(reparam, estimator):
    torch.manual_seed(0)
    logits, loc, scale = ring(dtype=torch.float32)
    temperature = None if reparam == "pathwise" else 0.1
    p = MixtureOfGaussians(
        logits.expand(3, -1), loc, scale, reparam=reparam, temperature=temperature
    )
    num_inner = 3 if estimator.startswith("nested") else None
    z, lp = p.rsample_and_log_prob((5,), estimator, num_inner)
    assert z.shape == (5, 3, 2) and lp.shape == (5, 3)
    assert torch.isfinite(lp).all()


# ---------------------------------------------------------------- k-means++
def test_kmeans_plusplus_init_recovers_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [0.0, 6.0]])
    x = torch.cat([c + 0.5 * torch.randn(200, 2, generator=g) for c in centers])
    logits, loc, scale = kmeans_plusplus_init(x, 3, generator=g)
    order = loc[:, 0].argsort()
    assert torch.allclose(loc[order], centers[[0, 2, 1]], atol=0.15)
    assert torch.allclose(logits.exp(), torch.full((3,), 1 / 3), atol=0.01)
    assert torch.allclose(scale, torch.full((3, 2), 0.5), atol=0.1)
    assert kmeans_plusplus(x, 5, generator=g).shape == (5, 2)
    with pytest.raises(ValueError, match=r"^num_clusters"):
        kmeans_plusplus(x, 0)


# ---------------------------------------------------------------- bad input
def test_bad_arguments():
    logits, loc, scale = ring()
    with pytest.raises(ValueError, match=r"^scale"):
        MixtureOfGaussians(logits, loc, scale[:, :1])
    with pytest.raises(ValueError, match=r"^logits"):
        MixtureOfGaussians(logits[:5], loc, scale)
    with pytest.raises(ValueError, match=r"^loc"):
        MixtureOfGaussians(logits, loc[0], scale)
    with pytest.raises(ValueError, match=r"^scale"):
        MixtureOfGaussians(logits, loc, -scale)
    with pytest.raises(ValueError, match=r"^scale"):
        MixtureOfGaussians(logits, loc, scale * 0)
    with pytest.raises(TypeError, match=r"^logits"):
        MixtureOfGaussians(logits.tolist(), loc, scale)
    with pytest.raises(ValueError, match=r"^reparam"):
        MixtureOfGaussians(logits, loc, scale, reparam="reinforce")
    with pytest.raises(ValueError, match="temperature"):
        MixtureOfGaussians(logits, loc, scale, reparam="gumbel_softmax")
    with pytest.raises(ValueError, match=r"^temperature"):
        MixtureOfGaussians(logits, loc, scale, reparam="igr", temperature=0.0)
    with pytest.raises(ValueError, match=r"^temperature"):
        MixtureOfGaussians(logits, loc, scale, reparam="igr", temperature=torch.tensor(-1.0))
    with pytest.raises(ValueError, match=r"^temperature"):
        MixtureOfGaussians(logits, loc, scale, temperature=0.5)
    p = MixtureOfGaussians(logits, loc, scale)
    with pytest.raises(ValueError, match=r"^num_inner"):
        p.rsample_and_log_prob((2,), "nested", 0)
    with pytest.raises(TypeError, match="num_inner"):
        p.rsample_and_log_prob((2,), "nested_own")
    with pytest.raises(ValueError, match=r"^num_inner"):
        p.rsample_and_log_prob((2,), "exact", 4)
    with pytest.raises(ValueError, match=r"^estimator"):
        p.rsample_and_log_prob((2,), "sivi", 4)


# ---------------------------------------------------------------- exact values
def asymmetric_2d(dtype=DT):
    logits = torch.tensor([1.2, -0.7, 0.1], dtype=dtype)
    loc = torch.tensor([[-3.0, 2.0], [0.5, -1.5], [4.0, 3.0]], dtype=dtype)
    scale = torch.tensor([[0.4, 1.1], [0.9, 0.3], [1.7, 0.6]], dtype=dtype)
    return logits, loc, scale


def test_mean_and_variance_are_the_exact_moments():
    logits, loc, scale = asymmetric_2d()
    p = MixtureOfGaussians(logits, loc, scale)
    w = logits.softmax(-1)
    mean = sum(w[k] * loc[k] for k in range(3))
    second = sum(w[k] * (loc[k] ** 2 + scale[k] ** 2) for k in range(3))
    torch.testing.assert_close(p.mean, mean)
    torch.testing.assert_close(p.variance, second - mean**2)
    torch.testing.assert_close(p.probs, w)


@pytest.mark.parametrize("estimator", ["nested", "nested_own"])
@pytest.mark.parametrize("num_inner", [1, 5])
def test_nested_estimates_are_exact_when_every_choice_gives_the_same_normal(estimator, num_inner):
    # identical components: every inner term is log N(z; mu, sigma), so the average over the
    # M (or M + 1) terms is that value exactly
    logits = torch.tensor([0.4, -1.0, 0.2], dtype=DT)
    loc = torch.tensor([[0.5, -1.0]], dtype=DT).expand(3, 2)
    scale = torch.tensor([[0.7, 1.9]], dtype=DT).expand(3, 2)
    p = MixtureOfGaussians(logits, loc, scale)
    z, lp = p.rsample_and_log_prob((6,), estimator, num_inner)
    torch.testing.assert_close(lp, p.log_prob(z))


def test_joint_estimate_is_the_log_joint_of_the_drawn_component():
    torch.manual_seed(0)
    logits, loc, scale = asymmetric_2d()
    p = MixtureOfGaussians(logits, loc, scale)
    z, lp = p.rsample_and_log_prob((200,), "joint")
    joint = p.component_log_prob(z)  # log alpha_k + log N(z; mu_k, sigma_k), one per k
    assert float((joint - lp.unsqueeze(-1)).abs().min(-1).values.max()) < 1e-12
    # the drawn component is the most responsible one for these separated components (mostly)
    own = (joint - lp.unsqueeze(-1)).abs().argmin(-1)
    assert float((own == p.posterior(z).argmax(-1)).double().mean()) > 0.9


def test_igr_choice_location_is_the_logit_differences():
    logits = torch.tensor([0.9, -0.4, 0.3], dtype=DT)
    _, loc, scale = asymmetric_2d()
    p = MixtureOfGaussians(logits, loc, scale, reparam="igr", temperature=0.5)
    c = p.choice_distribution()
    log_alpha = logits.log_softmax(-1)
    torch.testing.assert_close(c.loc, log_alpha[:-1] - log_alpha[-1])
    torch.testing.assert_close(c.scale, torch.full((2,), 1.702, dtype=DT))
    # K = 2: the zero-temperature law of the IGR choice is within 0.01 of the weights
    from simplexity.distributions import zero_temperature_limit

    two = torch.tensor([0.8, -0.6], dtype=DT)
    q = MixtureOfGaussians(two, loc[:2], scale[:2], reparam="igr", temperature=0.5)
    limit = zero_temperature_limit(q.choice_distribution()).probs
    assert float((limit - two.softmax(-1)).abs().max()) < 0.01


@pytest.mark.parametrize("reparam", REPARAMS)
def test_choice_distribution_follows_the_reparameterization(reparam):
    logits, loc, scale = asymmetric_2d()
    temperature = None if reparam == "pathwise" else 0.3
    p = MixtureOfGaussians(logits, loc, scale, reparam=reparam, temperature=temperature)
    c = p.choice_distribution()
    assert c.event_shape == (3,) and c.batch_shape == ()
    if reparam in ("pathwise", "gumbel_softmax", "gumbel_straight_through"):
        torch.testing.assert_close(c.logits, logits.log_softmax(-1))


# ---------------------------------------------------------------- argument checks
@pytest.mark.parametrize("reparam", ["gumbel_softmax", "gumbel_straight_through", "igr"])
def test_one_component_with_a_relaxed_choice_is_rejected_at_construction(reparam):
    with pytest.raises(ValueError, match=r"^reparam.*K >= 2|K >= 2.*reparam"):
        MixtureOfGaussians(
            torch.zeros(1), torch.zeros(1, 2), torch.ones(1, 2), reparam=reparam, temperature=0.5
        )
    p = MixtureOfGaussians(torch.zeros(1), torch.zeros(1, 2), torch.ones(1, 2))  # pathwise: fine
    assert p.rsample((3,)).shape == (3, 2)


@pytest.mark.parametrize("reparam", ["gumbel_softmax", "igr"])
def test_per_row_temperature_of_shape_b_by_1_stands_beside_the_logits(reparam):
    torch.manual_seed(1)
    logits, loc, scale = asymmetric_2d()
    logits = logits + torch.randn(6, 1, dtype=DT)
    tau = torch.rand(6, 1, dtype=DT) + 0.2
    p = MixtureOfGaussians(logits, loc, scale, reparam=reparam, temperature=tau)
    assert p.batch_shape == (6,)
    z, lp = p.rsample_and_log_prob((4,), "joint")
    assert z.shape == (4, 6, 2) and lp.shape == (4, 6)
    with pytest.raises(ValueError, match=r"^temperature"):
        MixtureOfGaussians(
            logits, loc, scale, reparam=reparam, temperature=torch.ones(5, 1, 1, dtype=DT)
        )
    with pytest.raises(TypeError, match=r"^temperature"):
        MixtureOfGaussians(logits, loc, scale, reparam=reparam, temperature=tau.float())


def test_kmeans_rejects_data_that_is_not_finite():
    x = torch.randn(10, 2)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"^data"):
        kmeans_plusplus_init(x, 2)
    x[3, 1] = float("inf")
    with pytest.raises(ValueError, match=r"^data"):
        kmeans_plusplus(x, 2)


# ---------------------------------------------------------------- k-means++ against enumeration
def _seeding_probabilities(points: np.ndarray, k: int) -> dict[tuple[int, ...], float]:
    """The exact law of k-means++'s ordered choice of k indices, by enumeration."""
    n = len(points)
    law: dict[tuple[int, ...], float] = {}

    def walk(chosen: tuple[int, ...], p: float) -> None:
        if len(chosen) == k:
            law[chosen] = law.get(chosen, 0.0) + p
            return
        d2 = np.min([((points - points[c]) ** 2).sum(-1) for c in chosen], axis=0)
        weights = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        for j in range(n):
            if weights[j] > 0:
                walk((*chosen, j), p * weights[j])

    for i in range(n):
        walk((i,), 1.0 / n)
    return law


def test_kmeans_plusplus_draws_with_the_squared_distance_law():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 1.0], [0.5, 4.0]])
    data = torch.tensor(points, dtype=DT)
    law = _seeding_probabilities(points, 3)
    g = torch.Generator().manual_seed(0)
    draws = 3000
    counts = dict.fromkeys(law, 0)
    for _ in range(draws):
        centers = kmeans_plusplus(data, 3, generator=g)
        index = tuple(int((data == c).all(-1).nonzero()[0, 0]) for c in centers)
        counts[index] += 1  # a KeyError here is an order of probability zero
    observed = np.array([counts[key] for key in law])
    expected = np.array([law[key] for key in law]) * draws
    assert stats.chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.parametrize("scale", [1e-2, 1e100])
def test_kmeans_plusplus_law_of_the_last_center_at_any_scale(scale: float):
    """Four centers of five points: the law of the point left out, which depends on every
    distance update; the same at tiny scales (all distances below 1) and huge ones (squared
    distances near overflow)."""
    points = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 1.0], [0.5, 4.0], [2.0, 2.5]])
    law = _seeding_probabilities(points, 4)
    left_out = np.zeros(5)
    for order, p in law.items():
        left_out[({0, 1, 2, 3, 4} - set(order)).pop()] += p
    data = torch.tensor(points * scale, dtype=DT)
    g = torch.Generator().manual_seed(1)
    draws = 2000
    observed = np.zeros(5)
    for _ in range(draws):
        centers = kmeans_plusplus(data, 4, generator=g)
        chosen = {int((data == c).all(-1).nonzero()[0, 0]) for c in centers}
        assert len(chosen) == 4
        observed[({0, 1, 2, 3, 4} - chosen).pop()] += 1
    assert stats.chisquare(observed, left_out * draws).pvalue > 1e-3


def test_kmeans_is_reproducible_with_a_generator():
    data = torch.randn(30, 2, dtype=DT, generator=torch.Generator().manual_seed(2))
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)  # the global state must not matter
        g = torch.Generator().manual_seed(5)
        runs.append((kmeans_plusplus(data, 4, generator=g),
                     kmeans_plusplus_init(data, 4, iterations=0, generator=g)[1]))  # fmt: skip
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_kmeans_plusplus_init_runs_ten_lloyd_steps_by_default():
    data = torch.linspace(0, 1, 400, dtype=DT).unsqueeze(-1) ** 3  # slow to converge
    fits = {
        n: kmeans_plusplus_init(
            data,
            12,
            generator=torch.Generator().manual_seed(0),
            **({} if n is None else {"iterations": n}),
        )[1]
        for n in (None, 10, 11)
    }
    assert torch.equal(fits[None], fits[10]) and not torch.equal(fits[10], fits[11])


def test_kmeans_plusplus_edge_cases():
    one = torch.tensor([[2.0, -1.0]], dtype=DT)
    assert torch.equal(kmeans_plusplus(one, 1), one)  # as many clusters as points
    same = torch.ones(4, 2, dtype=DT)  # no distance left: uniform choice, no NaN
    assert torch.equal(kmeans_plusplus(same, 3), torch.ones(3, 2, dtype=DT))
    with pytest.raises(ValueError, match=r"^num_clusters=3 exceeds the number of points 2$"):
        kmeans_plusplus(torch.zeros(2, 1, dtype=DT), 3)
    with pytest.raises(ValueError, match=r"^data must have shape \(N, D\), got \(4,\)$"):
        kmeans_plusplus(torch.zeros(4, dtype=DT), 2)
    with raises_exactly(ValueError, "data must be finite (it holds NaN or infinite values)"):
        kmeans_plusplus(torch.tensor([[0.0], [math.nan]], dtype=DT), 1)
    two = torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=DT)  # the last draw has one candidate
    assert sorted(kmeans_plusplus(two, 2)[:, 0].tolist()) == [0.0, 2.0]


def test_kmeans_plusplus_init_exact_fit_of_separated_clusters():
    a = torch.tensor([[-10.0, 0.0], [-11.0, 1.0], [-9.0, 2.0]], dtype=DT)
    b = torch.tensor([[10.0, 0.0], [12.0, 0.0], [11.0, 3.0], [10.0, 1.0], [9.0, 0.5]], dtype=DT)
    data = torch.cat([a, b])
    logits, loc, scale = kmeans_plusplus_init(data, 2, generator=torch.Generator().manual_seed(1))
    order = loc[:, 0].argsort()
    counts = torch.tensor([3.0, 5.0], dtype=DT) + 1e-3
    torch.testing.assert_close(logits[order], (counts / counts.sum()).log())
    torch.testing.assert_close(loc[order], torch.stack([a.mean(0), b.mean(0)]))
    torch.testing.assert_close(scale[order], torch.stack([a.std(0), b.std(0)]))
    # no Lloyd step: the centers are the seeded data points
    _, seeded, _ = kmeans_plusplus_init(data, 2, iterations=0)
    assert all(bool((data == c).all(-1).any()) for c in seeded)


def test_kmeans_plusplus_init_singletons_empty_clusters_and_the_floor():
    # a one-point cluster takes the overall standard deviation; a flat dimension the floor
    data = torch.tensor([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [100.0, 7.0]], dtype=DT)
    logits, loc, scale = kmeans_plusplus_init(data, 2, min_scale=0.01)
    far = int(loc[:, 0].argmax())
    torch.testing.assert_close(loc[far], data[3])
    torch.testing.assert_close(scale[far], data.std(0))
    torch.testing.assert_close(scale[1 - far], torch.tensor([1.0, 0.01], dtype=DT))
    torch.testing.assert_close(logits.exp().sum(), torch.tensor(1.0, dtype=DT))
    # identical points: the second cluster stays empty, every scale is the floor
    same = torch.full((3, 2), 4.0, dtype=DT)
    logits, loc, scale = kmeans_plusplus_init(same, 2, min_scale=0.05)
    assert torch.equal(loc, same[:2]) and bool((scale == 0.05).all())
    weights = torch.tensor([3.0 + 1e-3, 1e-3], dtype=DT)
    torch.testing.assert_close(logits.sort(descending=True).values, (weights / weights.sum()).log())
    # two points in two clusters: each takes the standard deviation of both; a pair its own
    two = torch.tensor([[0.0, 1.0], [2.0, 5.0]], dtype=DT)
    torch.testing.assert_close(kmeans_plusplus_init(two, 2)[2], two.std(0).expand(2, 2))
    pair = torch.tensor(
        [[0.0, 0.0], [1.0, 2.0], [50.0, 50.0], [51.0, 52.0], [52.0, 51.0]], dtype=DT
    )
    _, loc, scale = kmeans_plusplus_init(pair, 2)
    near = int(loc[:, 0].argmin())
    torch.testing.assert_close(scale[near], pair[:2].std(0))
    # a single point: unit scales
    logits, loc, scale = kmeans_plusplus_init(torch.tensor([[2.0, 3.0]], dtype=DT), 1)
    assert logits.tolist() == [0.0] and loc.tolist() == [[2.0, 3.0]] and scale.tolist() == [[1, 1]]
    for bad, message in (
        ({"min_scale": 0.0}, r"^min_scale must be"),
        ({"iterations": -1}, r"^iterations must be"),
        ({"num_components": 4}, r"^num_components must be"),
    ):
        with pytest.raises(ValueError, match=message):
            kmeans_plusplus_init(same, **({"num_components": 2} | bad))


def test_posterior_is_bayes_rule_on_a_batch():
    """Responsibilities p(k | z) against Bayes' rule with torch's Normal, for values of shape
    (sample, batch, D): the normalization is over the components."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, generator=g, dtype=DT)
    loc = torch.randn(2, 3, 4, generator=g, dtype=DT)
    scale = torch.rand(2, 3, 4, generator=g, dtype=DT) + 0.5
    p = MixtureOfGaussians(logits, loc, scale)
    z = torch.randn(5, 2, 4, generator=g, dtype=DT)
    joint = logits.log_softmax(-1) + torch.distributions.Normal(loc, scale).log_prob(
        z.unsqueeze(-2)
    ).sum(-1)
    torch.testing.assert_close(p.posterior(z), joint.softmax(-1))


def test_expand_keeps_validation_off():
    """expand never validates (torch's convention): a mixture built with validate_args=False
    expands even when its parameters were since changed in place to values validation rejects."""
    scale = torch.ones(3, 2, dtype=DT)
    p = MixtureOfGaussians(torch.zeros(3, dtype=DT), torch.zeros(3, 2, dtype=DT), scale,
                           validate_args=False)  # fmt: skip
    scale.fill_(-1.0)
    q = p.expand((4,))
    assert q.batch_shape == (4,) and q._validate_args is False


def test_kmeans_plusplus_init_lloyd_steps_match_a_reference():
    """From the same seeding (``iterations=0`` with the same generator seed), the Lloyd steps agree
    with a plain NumPy implementation (empty clusters keep their center)."""
    data = torch.randn(40, 2, dtype=DT, generator=torch.Generator().manual_seed(1)) ** 3
    x = data.numpy()
    for seed in range(10):  # seeds 5, 7, 8 leave a cluster with one point that is not its center
        seeded = kmeans_plusplus_init(data, 8, iterations=0,
                                      generator=torch.Generator().manual_seed(seed))[1]  # fmt: skip
        centers = seeded.numpy().copy()
        for _ in range(10):
            assign = ((x[:, None] - centers[None]) ** 2).sum(-1).argmin(-1)
            for k in range(8):
                if (assign == k).any():
                    centers[k] = x[assign == k].mean(0)
        fitted = kmeans_plusplus_init(data, 8, generator=torch.Generator().manual_seed(seed))[1]
        np.testing.assert_allclose(fitted.numpy(), centers, rtol=1e-12, atol=1e-12)


def test_constructor_messages_name_the_shapes():
    k3 = torch.zeros(3, dtype=DT)
    loc, scale = torch.zeros(3, 2, dtype=DT), torch.ones(3, 2, dtype=DT)
    cases = [
        (lambda: MixtureOfGaussians(torch.tensor(0.0, dtype=DT), loc, scale), ValueError,
         "logits must have shape (..., K), got ()"),
        (lambda: MixtureOfGaussians(k3, loc.expand(4, 3, 2), torch.ones(3, 1, dtype=DT)),
         ValueError, "scale must have shape (..., K, D) = (..., 3, 2) like loc, got (3, 1)"),
        (lambda: MixtureOfGaussians(k3, loc, scale.float()), TypeError,
         "logits, loc and scale must share a dtype, got torch.float64, torch.float64, "
         "torch.float32"),
        (lambda: MixtureOfGaussians(torch.zeros(2, 3, dtype=DT), loc.expand(4, 3, 2), scale),
         ValueError, "the batch shapes of logits (2,), loc (4,) and scale () do not broadcast"),
        (lambda: MixtureOfGaussians(torch.zeros(2, 3, dtype=DT), loc, scale.expand(4, 3, 2)),
         ValueError, "the batch shapes of logits (2,), loc () and scale (4,) do not broadcast"),
    ]  # fmt: skip
    for make, error, message in cases:
        with raises_exactly(error, message):
            make()


def test_joint_estimator_is_the_mass_times_the_component_density():
    """With separated components each sample's component is known: the joint log density is
    log alpha_k + log N(z; mu_k, sigma_k), for one-hot draws (and a component never drawn)."""
    logits = torch.tensor([[0.5, -0.2, 1.0, -60.0], [0.0, 0.3, -0.3, -60.0]], dtype=DT)
    loc = torch.tensor([[-10.0, 0.0], [0.0, 0.0], [10.0, 5.0], [30.0, 30.0]], dtype=DT)
    scale = torch.full((4, 2), 0.1, dtype=DT)
    for reparam in ("pathwise", "gumbel_straight_through"):
        options = {"temperature": 0.5} if reparam != "pathwise" else {}
        p = MixtureOfGaussians(logits, loc, scale, reparam=reparam, **options)
        torch.manual_seed(0)
        z, lp = p.rsample_and_log_prob((50,), estimator="joint")
        assert z.shape == (50, 2, 2) and lp.shape == (50, 2)
        k = (z.unsqueeze(-2) - loc).norm(dim=-1).argmin(-1)  # (50, 2)
        log_alpha = logits.log_softmax(-1).expand(50, 2, 4).gather(-1, k.unsqueeze(-1)).squeeze(-1)
        normal = torch.distributions.Normal(loc[k], scale[k]).log_prob(z).sum(-1)
        torch.testing.assert_close(lp, log_alpha + normal)


def test_soft_choices_joint_density_on_a_batch():
    """gumbel_softmax choices: log q_tau(c) + log N(z; c^T mu, c^T sigma) per batch element."""
    logits = torch.randn(3, 4, dtype=DT, generator=torch.Generator().manual_seed(1))
    loc = torch.randn(4, 2, dtype=DT, generator=torch.Generator().manual_seed(2))
    scale = torch.full((4, 2), 0.5, dtype=DT)
    p = MixtureOfGaussians(logits, loc, scale, reparam="gumbel_softmax", temperature=0.7)
    torch.manual_seed(3)
    z, lp = p.rsample_and_log_prob((5,), estimator="joint")
    torch.manual_seed(3)
    c = p.choice_distribution().rsample((5,))
    q = GumbelSoftmax(0.7, logits=logits)
    mu, sigma = c @ loc, c @ scale
    expected = q.log_prob(c) + torch.distributions.Normal(mu, sigma).log_prob(z).sum(-1)
    assert lp.shape == (5, 3)
    torch.testing.assert_close(lp, expected, rtol=1e-6, atol=1e-6)


def test_implicit_gradients_on_sample_and_batch_axes():
    """Exact implicit reparameterization on (sample, batch, D) draws: a one-component mixture has
    dz/dmu = 1 and dz/dsigma = (z - mu) / sigma per coordinate; a one-dimensional mixture has
    dz/dmu_k = p(k | z)."""
    loc = torch.tensor([[[0.3, -1.0, 2.0]], [[1.0, 0.5, -0.5]]], dtype=DT, requires_grad=True)
    scale = torch.tensor([[[0.5, 1.5, 0.8]], [[1.2, 0.3, 0.9]]], dtype=DT, requires_grad=True)
    p = MixtureOfGaussians(torch.zeros(2, 1, dtype=DT), loc, scale)
    z = p.rsample((4,))  # (4, 2, 3)
    grad_loc, grad_scale = torch.autograd.grad(z.sum(), (loc, scale))
    torch.testing.assert_close(grad_loc, torch.full((2, 1, 3), 4.0, dtype=DT))
    expected = ((z.detach() - loc.detach().squeeze(-2)) / scale.detach().squeeze(-2)).sum(0)
    torch.testing.assert_close(grad_scale.squeeze(-2), expected)
    mus = torch.tensor([[[-1.0], [0.5], [2.0]]] * 2, dtype=DT, requires_grad=True)  # (2, 3, 1)
    logits = torch.tensor([[0.2, -0.4, 0.1], [1.0, 0.0, -1.0]], dtype=DT)
    q = MixtureOfGaussians(logits, mus, torch.full((2, 3, 1), 0.7, dtype=DT))
    z = q.rsample((6,))  # (6, 2, 1)
    for s in range(6):
        (g,) = torch.autograd.grad(z[s].sum(), mus, retain_graph=True)
        torch.testing.assert_close(g.squeeze(-1), q.posterior(z[s].detach()))


def test_temperature_shapes_and_messages():
    logits = torch.zeros(2, 1, 3, dtype=DT)  # batch (2, 1)
    loc, scale = torch.zeros(3, 2, dtype=DT), torch.ones(3, 2, dtype=DT)
    tau = torch.tensor(0.5, dtype=DT)  # a scalar tensor broadcasts to any batch
    p = MixtureOfGaussians(logits, loc, scale, reparam="igr", temperature=tau)
    assert p.batch_shape == (2, 1) and p.rsample((4,)).shape == (4, 2, 1, 2)
    cases = [
        (lambda: MixtureOfGaussians(logits, loc, scale, reparam="igr",
                                    temperature=torch.ones(3, 4, dtype=DT)),
         "temperature of shape (3, 4) must broadcast to the batch shape (2, 1) (or stand beside "
         "the logits with a trailing 1)"),
        (lambda: MixtureOfGaussians(logits, loc.expand(5, 1, 3, 2), scale),
         "the batch shapes of logits (2, 1), loc (5, 1) and scale () do not broadcast"),
        (lambda: MixtureOfGaussians(torch.zeros(3, dtype=DT), loc, scale, temperature=0.5),
         "temperature is only used by the relaxed reparameterizations ('gumbel_softmax', "
         "'gumbel_straight_through', 'igr'); got temperature=0.5 with reparam='pathwise'"),
    ]  # fmt: skip
    for make, message in cases:
        with raises_exactly(ValueError, message):
            make()
