"""Tests of the relaxation registry."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Distribution, kl_divergence

from exact_error import raises_exactly
from simplexity._registry import Registry
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
    igr_uniform_prior_loc,
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
    with pytest.raises(ValueError, match=r"^unknown relaxation"):
        relaxations.get("gumbel")
    with pytest.raises(ValueError, match="2\\(K-1\\)"):
        relaxations.get("igr_i")(torch.randn(3, 7), temperature=0.5)
    with pytest.raises(ValueError, match="K = 6"):
        relaxations.get("igr_i", num_categories=6)(torch.randn(3, 8), temperature=0.5)
    with pytest.raises(ValueError, match=r"^num_categories"):
        relaxations.get("gumbel_softmax", num_categories=1)
    with pytest.raises(ValueError, match=r"^temperature"):
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


def test_each_relaxation_builds_exactly_its_parameters() -> None:
    """The raw outputs map to the documented parameters; options reach the distribution."""
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(3, 2 * (K - 1), generator=g, dtype=torch.float64)
    loc, pre = raw[..., : K - 1], raw[..., K - 1 :]
    for name, cls in (("igr_i", IGR), ("igr_sb", IGRStickBreaking)):
        relax = relaxations.get(name, delta=0.7, min_scale=0.01)
        q = relax(raw, 0.4)
        assert type(q) is cls and float(q.delta) == pytest.approx(0.7)
        torch.testing.assert_close(q.loc, loc)
        torch.testing.assert_close(q.scale, torch.nn.functional.softplus(pre) + 0.01)
        assert float(q.temperature) == pytest.approx(0.4)
    planar = relaxations.get("igr_planar", num_categories=K, num_flows=3, delta=0.5)
    q = planar(raw, 0.4)
    assert len(planar.flows()) == 3 and float(q.delta) == pytest.approx(0.5)
    torch.testing.assert_close(q.loc, loc)
    logits = raw[..., :K]
    gs = relaxations.get("gumbel_softmax")(logits, 0.4)
    torch.testing.assert_close(gs.logits, logits.log_softmax(-1))
    assert (
        not gs.straight_through
        and relaxations.get("gumbel_softmax_st")(logits, 0.4).straight_through
    )
    rao = relaxations.get("gumbel_rao", num_draws=3)(logits, 0.4)
    assert rao.num_draws == 3 and relaxations.get("gumbel_rao")(logits, 0.4).num_draws == 10
    dst = relaxations.get("decoupled_st", forward_temperature=2.0)(logits, 0.4)
    assert float(dst.forward_temperature) == 2.0 and float(dst.backward_temperature) == 0.4
    tau = torch.tensor(0.4, dtype=torch.float64)
    dst = relaxations.get("decoupled_st")(logits, tau)  # a tensor temperature: both tensors
    assert dst.forward_temperature.dtype == torch.float64 and float(dst.forward_temperature) == 1.0
    for name, cls in (("straight_through", StraightThrough), ("reinmax", ReinMax),
                      ("st_gumbel", GumbelStraightThrough)):  # fmt: skip
        q = relaxations.get(name)(logits, 1.5)
        assert type(q) is cls
        torch.testing.assert_close(q.logits, logits.log_softmax(-1))


def test_each_prior_exactly() -> None:
    tau = torch.tensor(0.3, dtype=torch.float64)
    for name in ("igr_i", "igr_planar", "igr_sb"):
        relax = relaxations.get(name, num_categories=4, prior_scale=1.7)
        p = relax.prior(4, tau, batch_shape=(2,))
        assert p.batch_shape == (2,) and p.loc.dtype == torch.float64
        mu0 = 0.0 if name == "igr_sb" else float(igr_uniform_prior_loc(4, 1.7))
        torch.testing.assert_close(p.loc, torch.full((2, 3), mu0, dtype=torch.float64))
        torch.testing.assert_close(p.scale, torch.full((2, 3), 1.7, dtype=torch.float64))
    for name in ("gumbel_softmax", "straight_through", "reinmax"):
        p = relaxations.get(name).prior(4, 0.3, batch_shape=(2,), dtype=torch.float64)
        assert p.batch_shape == (2,) and p.logits.dtype == torch.float64
        torch.testing.assert_close(p.probs, torch.full((2, 4), 0.25, dtype=torch.float64))
        assert relaxations.get(name).prior(3, 0.3).logits.dtype == torch.get_default_dtype()
    with pytest.raises(ValueError, match=r"^num_categories must be"):
        relaxations.get("reinmax").prior(1, 0.3)


def test_relaxation_messages_and_repr() -> None:
    cases = [
        (lambda: relaxations.get("igr_i")(torch.randn(3, 7), 0.5),
         "igr_i needs 2(K-1) raw outputs (loc and scale), got 7"),
        (lambda: relaxations.get("igr_i", num_categories=6)(torch.randn(3, 8), 0.5),
         "raw has 8 outputs, i.e. K = 5, but this igr_i relaxation was built for K = 6 "
         "(10 outputs)"),
        (lambda: relaxations.get("gumbel_softmax")(torch.randn(3, 1), 0.5),
         "gumbel_softmax needs K >= 2 raw outputs (logits), got 1"),
        (lambda: relaxations.get("reinmax")(torch.randn(3, 1), 0.5),
         "reinmax needs K >= 2 raw outputs (logits), got 1"),
        (lambda: relaxations.get("igr_sb")(torch.tensor(1.0), 0.5),
         "raw must have shape (..., num_params)"),
        (lambda: relaxations.get("igr_planar"),
         "igr_planar needs num_categories (the flows act on K-1 coordinates)"),
    ]  # fmt: skip
    for call, message in cases:
        with raises_exactly(ValueError, message):
            call()
    assert repr(relaxations.get("gumbel_rao", num_categories=3, num_draws=4)) == (
        "GumbelRaoRelaxation(name='gumbel_rao', num_categories=3, num_draws=4)"
    )
    assert repr(relaxations.get("decoupled_st")) == (
        "DecoupledStraightThroughRelaxation(name='decoupled_st', num_categories=None, "
        "forward_temperature=1.0)"
    )


def test_register_adds_the_class_under_its_name_and_sets_name(monkeypatch) -> None:
    """A class registered at run time is what ``get`` builds, and its ``name`` is the one given."""
    monkeypatch.setattr(relaxations, "_REGISTRY", Registry("relaxation"))

    class Custom(relaxations.StraightThroughRelaxation):
        pass

    assert relaxations.register("custom")(Custom) is Custom
    assert Custom.name == "custom" and relaxations.names() == ["custom"]
    relax = relaxations.get("custom", num_categories=3)
    assert type(relax) is Custom and relax.num_categories == 3 and relax.name == "custom"


def test_two_categories_is_the_smallest_valid_size() -> None:
    """K = 2 (2 logits, or 2(K-1) = 2 IGR outputs) is accepted everywhere; K = 1 is not."""
    logits = torch.tensor([[0.3, -1.1], [2.0, 0.5]], dtype=torch.float64)
    for name in ("gumbel_softmax", "gumbel_softmax_st", "straight_through", "reinmax"):
        relax = relaxations.get(name, num_categories=2)
        assert relax.num_categories == 2 and relax.categories_from_params(2) == 2
        q = relax(logits, 0.5)
        assert q.event_shape == (2,) and q.batch_shape == (2,)
        torch.testing.assert_close(q.logits, logits.log_softmax(-1))
        p = relax.prior(2, 0.5, dtype=torch.float64)
        torch.testing.assert_close(p.probs, torch.full((2,), 0.5, dtype=torch.float64))
    for name in ("igr_i", "igr_sb"):
        relax = relaxations.get(name, num_categories=2)
        assert relax.categories_from_params(2) == 2
        q = relax(logits, 0.5)  # loc = raw[..., :1], pre = raw[..., 1:]
        assert q.event_shape == (2,)
        torch.testing.assert_close(q.loc, logits[..., :1])
        p = relax.prior(2, 0.5, dtype=torch.float64)
        assert p.loc.shape == (1,) and p.event_shape == (2,)


def test_prior_checks_num_categories_with_its_whole_message() -> None:
    # the message of check_int, naming the argument
    for name in ("gumbel_softmax", "gumbel_softmax_st", "igr_i", "igr_sb", "straight_through"):
        with raises_exactly(ValueError, "num_categories must be an int >= 2, got 1"):
            relaxations.get(name).prior(1, 0.5)
        with raises_exactly(TypeError, "num_categories must be an int, got float"):
            relaxations.get(name).prior(3.0, 0.5)


def test_igr_options_are_checked_with_their_whole_messages() -> None:
    # the messages of check_positive / check_int; num_draws = 1 is the smallest valid value
    for name in ("igr_i", "igr_sb"):
        with raises_exactly(ValueError, "delta must be finite and > 0, got 0.0"):
            relaxations.get(name, delta=0.0)
        with raises_exactly(ValueError, "prior_scale must be finite and > 0, got -1.0"):
            relaxations.get(name, prior_scale=-1.0)
    with raises_exactly(ValueError, "num_draws must be an int >= 1, got 0"):
        relaxations.get("gumbel_rao", num_draws=0)
    assert relaxations.get("gumbel_rao", num_draws=1).num_draws == 1


def test_igr_defaults_and_every_planar_option_reach_the_distribution() -> None:
    """Defaults delta = 1, prior_scale = 1, min_scale = 1e-4 (one planar flow); the planar
    relaxation passes num_categories, delta, prior_scale and min_scale to its base."""
    raw = torch.tensor([[0.4, -1.3, 0.9, 2.1], [-0.2, 0.7, -3.0, 0.1]], dtype=torch.float64)
    loc, pre = raw[..., :2], raw[..., 2:]
    softplus = torch.log1p(pre.exp())
    for name in ("igr_i", "igr_sb", "igr_planar"):
        relax = relaxations.get(name, num_categories=3)
        q = relax(raw, 0.4)
        assert float(q.delta) == 1.0 and relax.delta == 1.0 and relax.prior_scale == 1.0
        torch.testing.assert_close(q.loc, loc)
        torch.testing.assert_close(q.scale, softplus + 1e-4)
        p = relax.prior(3, 0.4, dtype=torch.float64)
        torch.testing.assert_close(p.scale, torch.ones(2, dtype=torch.float64))
    assert len(relaxations.get("igr_planar", num_categories=3).flows()) == 1
    planar = relaxations.get(
        "igr_planar", num_categories=3, delta=0.6, prior_scale=1.3, min_scale=0.02
    )
    assert planar.num_categories == 3 and planar.min_scale == 0.02
    q = planar(raw, 0.4)
    torch.testing.assert_close(q.scale, softplus + 0.02)
    assert float(q.delta) == pytest.approx(0.6)
    p = planar.prior(3, 0.4, dtype=torch.float64)
    torch.testing.assert_close(p.scale, torch.full((2,), 1.3, dtype=torch.float64))
    with raises_exactly(
        ValueError,
        "raw has 6 outputs, i.e. K = 4, but this igr_planar relaxation was built for K = 3 "
        "(4 outputs)",
    ):
        planar(torch.zeros(2, 6, dtype=torch.float64), 0.4)


def test_size_mismatch_message_names_the_last_dimension_of_a_3d_raw() -> None:
    # shape (2, 3, 5): the message reports shape[-1] = 5, not shape[1] = 3
    with raises_exactly(
        ValueError,
        "raw has 5 outputs, i.e. K = 5, but this gumbel_softmax relaxation was built for K = 4 "
        "(4 outputs)",
    ):
        relaxations.get("gumbel_softmax", num_categories=4)(torch.zeros(2, 3, 5), 0.5)


def test_straight_through_temperatures_reach_the_distribution() -> None:
    # 1.7, not the distributions' default temperature 1.0
    logits = torch.tensor([[0.2, -0.7, 1.4]], dtype=torch.float64)
    for name in ("straight_through", "reinmax", "st_gumbel", "gumbel_rao"):
        q = relaxations.get(name)(logits, 1.7)
        assert float(q.temperature) == pytest.approx(1.7)


def test_gumbel_softmax_st_prior_is_straight_through() -> None:
    # the relaxed prior of the straight-through name is itself straight-through
    assert relaxations.get("gumbel_softmax_st").prior(3, 0.5).straight_through is True
    assert relaxations.get("gumbel_softmax").prior(3, 0.5).straight_through is False


def test_kl_falls_back_to_monte_carlo_with_num_samples() -> None:
    """Gumbel-softmax has no closed-form KL: ``kl`` equals ``monte_carlo_kl`` with the same draws,
    with one sample by default."""
    relax = relaxations.get("gumbel_softmax")
    logits = torch.tensor([[0.3, -1.2, 0.8], [1.5, 0.1, -0.4]], dtype=torch.float64)
    q = relax(logits, 0.6)
    p = relax.prior(3, 0.6, dtype=torch.float64)
    results = {}
    for n in (1, 2, 3):
        torch.manual_seed(5)
        results[n] = monte_carlo_kl(q, p, num_samples=n)
    torch.manual_seed(5)
    torch.testing.assert_close(relax.kl(q, p), results[1], rtol=0, atol=0)
    torch.manual_seed(5)
    torch.testing.assert_close(relax.kl(q, p, num_samples=3), results[3], rtol=0, atol=0)
    assert not torch.allclose(results[1], results[2])
    assert not torch.allclose(results[1], results[3])


def test_priors_follow_the_temperature_dtype_and_device() -> None:
    """With no dtype or device given, the prior is made in the temperature tensor's dtype and on its
    device; an explicit device wins. The default device is set to meta, so that a tensor made on
    the default device instead of the requested one shows."""
    tau = torch.tensor(0.3, dtype=torch.float64)  # on the cpu
    logits = torch.tensor([[0.5, -0.2, 1.1], [0.0, 0.9, -1.3]], dtype=torch.float64)

    def params(p: Distribution) -> tuple[torch.Tensor, ...]:
        return (p.loc, p.scale) if hasattr(p, "loc") else (p.logits,)

    with torch.device("meta"):
        for name, size in (("gumbel_softmax", 3), ("gumbel_softmax_st", 3),
                           ("straight_through", 3), ("igr_sb", 2)):  # fmt: skip
            relax = relaxations.get(name)
            from_tau = params(relax.prior(3, tau, batch_shape=(2,)))
            given = params(relax.prior(3, 0.3, batch_shape=(2,), device="cpu"))
            for t in from_tau + given:
                assert t.device.type == "cpu" and t.shape == (2, size)
            assert all(t.dtype == torch.float64 for t in from_tau)
            assert all(t.dtype == torch.get_default_dtype() for t in given)
        q = relaxations.get("decoupled_st")(logits, tau)
        assert q.forward_temperature.device.type == "cpu"
        assert q.forward_temperature.dtype == torch.float64
