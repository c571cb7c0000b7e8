"""Tests of the relaxation registry."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Distribution, kl_divergence

from simplexity.distributions import (
    IGR,
    DecoupledStraightThrough,
    GumbelRao,
    GumbelSoftmax,
    GumbelStraightThrough,
    IGRPlanar,
    IGRStickBreaking,
    ReinMax,
    StraightThrough,
    monte_carlo_kl,
    relaxations,
    zero_temperature_limit,
)

K = 6
EXPECTED = {
    "gumbel_softmax": (GumbelSoftmax, K),
    "gumbel_softmax_st": (GumbelSoftmax, K),
    "igr_i": (IGR, 2 * (K - 1)),
    "igr_planar": (IGRPlanar, 2 * (K - 1)),
    "igr_sb": (IGRStickBreaking, 2 * (K - 1)),
    # the straight-through family (tested in test_estimators.py)
    "straight_through": (StraightThrough, K),
    "st_gumbel": (GumbelStraightThrough, K),
    "gumbel_rao": (GumbelRao, K),
    "reinmax": (ReinMax, K),
    "decoupled_st": (DecoupledStraightThrough, K),
}


def _get(name: str) -> relaxations.Relaxation:
    return relaxations.get(name, num_categories=K)


def test_names() -> None:
    assert set(relaxations.names()) == set(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_build_sample_and_loss(name: str) -> None:
    torch.manual_seed(0)
    relax = _get(name)
    cls, n = EXPECTED[name]
    assert relax.num_params(K) == n
    raw = torch.randn(4, 3, n, requires_grad=True)
    q = relax(raw, temperature=0.3)
    assert isinstance(q, cls) and isinstance(q, Distribution)
    assert q.batch_shape == (4, 3) and q.event_shape == (K,)
    p = relax.prior(K, temperature=0.3)
    assert p.event_shape == (K,)
    z = q.rsample()
    if name.startswith("igr"):
        kl = kl_divergence(q, p)  # closed form: same map for q and its prior
        torch.testing.assert_close(relax.kl(q, p), kl)
    else:
        kl = monte_carlo_kl(q, p, num_samples=4)
        assert relax.kl(q, p, num_samples=2).shape == (4, 3)
    assert kl.shape == (4, 3) and bool(kl.isfinite().all())
    (kl.sum() + z[..., 0].sum()).backward()
    assert raw.grad is not None and bool(raw.grad.abs().sum() > 0)
    if name == "gumbel_softmax_st":
        assert q.straight_through and set(z.detach().unique().tolist()) <= {0.0, 1.0}


def test_planar_relaxation_owns_trainable_flows() -> None:
    relax = relaxations.get("igr_planar", num_categories=K, num_flows=2)
    params = list(relax.parameters())
    assert len(params) == 3
    q = relax(torch.randn(5, 2 * (K - 1)), temperature=0.5)
    z = q.rsample()
    (q.log_prob(z).sum() + z[..., 0].sum()).backward()
    assert all(p.grad is not None for p in params)


def test_igr_i_prior_is_uniform_in_the_limit() -> None:
    p = _get("igr_i").prior(K, temperature=0.1, dtype=torch.float64)
    limit = zero_temperature_limit(p)
    torch.testing.assert_close(limit.probs, torch.full((K,), 1 / K, dtype=torch.float64))
    gs = _get("gumbel_softmax").prior(K, temperature=0.1, batch_shape=(2,))
    assert gs.batch_shape == (2,)
    torch.testing.assert_close(zero_temperature_limit(gs).probs, torch.full((2, K), 1 / K))


def test_swap_is_one_name() -> None:
    # the README's three lines: the same model code for any relaxation
    for name in relaxations.names():
        relax = relaxations.get(name, num_categories=K)
        q = relax(torch.randn(2, relax.num_params(K)), temperature=0.5)
        assert q.rsample().shape == (2, K)


def test_bad_names_and_sizes() -> None:
    with pytest.raises(ValueError, match="unknown relaxation"):
        relaxations.get("gumbel")
    with pytest.raises(ValueError, match="2\\(K-1\\)"):
        relaxations.get("igr_i")(torch.randn(3, 7), temperature=0.5)
    with pytest.raises(ValueError, match="K = 6"):
        relaxations.get("igr_i", num_categories=6)(torch.randn(3, 8), temperature=0.5)
    with pytest.raises(ValueError, match="num_categories"):
        relaxations.get("gumbel_softmax", num_categories=1)
    with pytest.raises(ValueError, match="temperature"):
        relaxations.get("igr_sb")(torch.randn(3, 4), temperature=-1.0)
    with pytest.raises(ValueError, match="already registered"):
        relaxations.register("igr_i")(relaxations.IGRRelaxation)


def test_the_two_straight_through_gumbel_softmax_names_differ_only_in_the_kl() -> None:
    """gumbel_softmax_st (relaxed model) and st_gumbel (discrete model): same one-hot samples and
    gradients for the same seed; the KL is the relaxed Monte Carlo one or the exact categorical one."""
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    weights = torch.linspace(-1, 2, 20, dtype=torch.float64).reshape(4, 5)
    out = {}
    for name in ("gumbel_softmax_st", "st_gumbel"):
        relax = relaxations.get(name)
        raw = logits.clone().requires_grad_()
        torch.manual_seed(3)
        q = relax(raw, 0.5)
        z = q.rsample()
        (grad,) = torch.autograd.grad((z * weights).sum(), raw)
        out[name] = (z.detach(), grad, relax.kl(q, relax.prior(5, 0.5)).detach(), q)
    (za, ga, kla, _), (zb, gb, klb, qb) = out["gumbel_softmax_st"], out["st_gumbel"]
    assert ((za == 0) | (za == 1)).all() and torch.equal(za, zb)
    torch.testing.assert_close(ga, gb)
    probs = qb.probs
    torch.testing.assert_close(klb, (probs * (probs * 5).log()).sum(-1))  # KL to uniform, exact
    assert not torch.allclose(kla, klb)
