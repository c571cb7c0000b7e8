"""Tests of GumbelSoftmax / ExpGumbelSoftmax against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Categorical, RelaxedOneHotCategorical

from simplexity.distributions import ExpGumbelSoftmax, GumbelSoftmax, zero_temperature_limit

D64 = torch.float64


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.5])
def test_log_prob_matches_torch_where_stable(tau: float) -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 5, dtype=D64)
    t = torch.tensor(tau, dtype=D64)
    ours = GumbelSoftmax(t, logits=logits)
    ref = RelaxedOneHotCategorical(t, logits=logits)
    y = ref.sample((7,))
    torch.testing.assert_close(ours.log_prob(y), ref.log_prob(y))
    y = ours.rsample((7,))  # our own (cached) sample
    torch.testing.assert_close(ours.log_prob(y), ref.log_prob(y.clone()))
    assert ours.event_shape == (5,) and ours.batch_shape == (4,)
    assert ours.support is torch.distributions.constraints.simplex


def test_probs_parameterization() -> None:
    probs = torch.tensor([0.2, 0.3, 0.5], dtype=D64)
    a, b = GumbelSoftmax(0.7, probs=probs), GumbelSoftmax(0.7, logits=probs.log())
    y = a.rsample((3,))
    torch.testing.assert_close(a.log_prob(y), b.log_prob(y.clone()))
    torch.testing.assert_close(a.logits.exp(), probs)


def test_two_category_density_and_samples_against_logistic_cdf() -> None:
    # K = 2: y1 = sigmoid((dl + L) / tau), L ~ Logistic, so P(y1 <= t) = sigmoid(tau logit(t) - dl).
    torch.manual_seed(1)
    dl, tau = 0.8, 0.6
    logits = torch.tensor([dl, 0.0], dtype=D64)
    d = GumbelSoftmax(tau, logits=logits)

    t = torch.linspace(0.02, 0.98, 25, dtype=D64).requires_grad_()
    cdf = torch.sigmoid(tau * torch.logit(t) - dl)
    (pdf,) = torch.autograd.grad(cdf.sum(), t)
    y = torch.stack([t.detach(), 1 - t.detach()], -1)
    torch.testing.assert_close(d.log_prob(y), pdf.log())

    def cdf_np(x):
        return torch.sigmoid(tau * torch.logit(torch.as_tensor(x)) - dl).numpy()

    sample = d.sample((3000,))[:, 0].numpy()
    assert stats.kstest(sample, cdf_np).pvalue > 1e-3


def simplex_integral(log_prob, n: int = 200) -> float:
    """Integral of exp(log_prob) over the 2-simplex: Gauss-Legendre in Duffy coordinates."""
    x, w = np.polynomial.legendre.leggauss(n)
    u = torch.tensor((x + 1) / 2, dtype=D64)
    w = torch.tensor(w / 2, dtype=D64)
    uu, vv = torch.meshgrid(u, u, indexing="ij")
    weight = w[:, None] * w[None, :] * (1 - uu)
    y1, y2 = uu, (1 - uu) * vv
    y = torch.stack([y1, y2, 1 - y1 - y2], -1)
    return float((log_prob(y).exp() * weight).sum())


def test_density_integrates_to_one() -> None:
    d = GumbelSoftmax(1.5, logits=torch.tensor([0.3, -0.2, 0.1], dtype=D64), validate_args=False)
    assert simplex_integral(d.log_prob) == pytest.approx(1.0, abs=1e-5)
    d2 = GumbelSoftmax(0.8, logits=torch.tensor([0.4, -0.3], dtype=D64))
    total, _ = integrate.quad(
        lambda t: float(d2.log_prob(torch.tensor([t, 1 - t], dtype=D64)).exp()), 0, 1
    )
    assert total == pytest.approx(1.0, abs=1e-6)


def test_low_temperature_float32_finite_and_exact() -> None:
    torch.manual_seed(2)
    logits = torch.randn(50, 10)
    d = GumbelSoftmax(0.01, logits=logits)
    y = d.rsample((20,))
    assert bool((y == 0).any()), "the test needs underflowed entries"
    lp = d.log_prob(y)
    assert bool(lp.isfinite().all())
    # independent float64 reference from the log-space sample
    _, x = d.rsample_log((20,))
    y2 = d.transforms[0](x)
    ref = ExpGumbelSoftmax(0.01, logits=logits.double()).log_prob(x.double()) - x.double().sum(-1)
    torch.testing.assert_close(d.log_prob(y2).double(), ref, rtol=1e-4, atol=1e-2)
    # torch's RelaxedOneHotCategorical returns NaN on these values (pytorch #18254)
    torch_lp = RelaxedOneHotCategorical(torch.tensor(0.01), logits=logits).log_prob(y)
    assert bool(torch_lp.isnan().any())


def test_batched_temperatures_broadcast_against_batch() -> None:
    torch.manual_seed(3)
    logits = torch.randn(3, 4, dtype=D64)
    taus = torch.tensor([0.3, 1.0, 2.0], dtype=D64)
    d = GumbelSoftmax(taus, logits=logits)
    assert d.batch_shape == (3,)
    y = d.rsample((5,))
    assert y.shape == (5, 3, 4)
    lp = d.log_prob(y.clone())
    for i in range(3):
        single = GumbelSoftmax(taus[i], logits=logits[i])
        torch.testing.assert_close(lp[:, i], single.log_prob(y[:, i].clone()))
    # temperature of shape (2, 1, 1) with logits of batch (3,): batch (2, 3) (the last axis of a
    # temperature with as many axes as the logits faces the categories)
    d2 = GumbelSoftmax(torch.tensor([[[0.5]], [[1.0]]], dtype=D64), logits=logits)
    assert d2.batch_shape == (2, 3) and d2.rsample().shape == (2, 3, 4)


def test_expand() -> None:
    d = GumbelSoftmax(torch.tensor([0.5, 1.0]), logits=torch.randn(2, 3), straight_through=True)
    e = d.expand((4, 2))
    assert e.batch_shape == (4, 2) and e.straight_through
    y = e.rsample((3,))
    assert y.shape == (3, 4, 2, 3) and e.log_prob(y).shape == (3, 4, 2)
    base = ExpGumbelSoftmax(0.5, probs=torch.tensor([0.2, 0.8])).expand((3,))
    assert base.rsample().shape == (3, 2)


def test_straight_through_forward_one_hot_backward_relaxed() -> None:
    torch.manual_seed(4)
    logits = torch.randn(6, 5, dtype=D64, requires_grad=True)
    w = torch.randn(5, dtype=D64)
    torch.manual_seed(5)
    hard = GumbelSoftmax(0.5, logits=logits, straight_through=True).rsample()
    torch.manual_seed(5)
    soft = GumbelSoftmax(0.5, logits=logits).rsample()
    assert torch.equal(hard.sum(-1), torch.ones(6, dtype=D64))
    assert torch.equal(hard.argmax(-1), soft.argmax(-1))
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    (g_hard,) = torch.autograd.grad((hard * w).sum(), logits)
    (g_soft,) = torch.autograd.grad((soft * w).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft)


def test_straight_through_log_prob_is_relaxed_density_of_its_soft_sample() -> None:
    torch.manual_seed(6)
    logits = torch.randn(4, dtype=D64)
    st = GumbelSoftmax(0.4, logits=logits, straight_through=True)
    torch.manual_seed(7)
    hard = st.rsample()
    torch.manual_seed(7)
    soft = GumbelSoftmax(0.4, logits=logits).rsample()
    torch.testing.assert_close(st.log_prob(hard), GumbelSoftmax(0.4, logits=logits).log_prob(soft))


def test_gradcheck_log_prob() -> None:
    torch.manual_seed(8)
    y = torch.distributions.Dirichlet(torch.ones(4, dtype=D64)).sample((3,)).requires_grad_()
    logits = torch.randn(3, 4, dtype=D64, requires_grad=True)
    tau = torch.tensor([0.4, 0.9, 1.7], dtype=D64, requires_grad=True)

    def f(y: torch.Tensor, logits: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return GumbelSoftmax(tau, logits=logits, validate_args=False).log_prob(y)

    assert torch.autograd.gradcheck(f, (y, logits, tau))

    def g(logits: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:  # through rsample
        torch.manual_seed(9)
        d = GumbelSoftmax(tau, logits=logits, validate_args=False)
        return d.log_prob(d.rsample((2,)))

    assert torch.autograd.gradcheck(g, (logits, tau))


def test_zero_temperature_limit_matches_argmax_frequencies() -> None:
    torch.manual_seed(10)
    logits = torch.tensor([1.0, 0.0, -0.5, 0.5])
    d = GumbelSoftmax(0.05, logits=logits)
    limit = zero_temperature_limit(d)
    assert isinstance(limit, Categorical)
    n = 20000
    freq = torch.bincount(d.sample((n,)).argmax(-1), minlength=4).double() / n
    p = limit.probs.double()
    assert float((freq - p).abs().max()) < 4 * math.sqrt(0.25 / n)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": -1.0, "logits": torch.zeros(3)}, "temperature"),
        ({"temperature": torch.tensor([0.5, -1.0]), "logits": torch.zeros(2, 3)}, "temperature"),
        ({"temperature": torch.ones(4), "logits": torch.zeros(3, 3)}, "temperature"),
        ({"temperature": 1.0, "logits": torch.zeros(3), "probs": torch.ones(3) / 3}, "logits"),
        ({"temperature": 1.0, "logits": torch.zeros(1)}, "logits"),
        ({"temperature": 1.0, "probs": torch.tensor([-0.5, 0.6])}, "probs"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GumbelSoftmax(**kwargs, validate_args=True)


def test_value_off_simplex_rejected() -> None:
    d = GumbelSoftmax(0.5, logits=torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.tensor([0.5, 0.6, 0.1]))


# --------------------------------------------------------------- torch's conventions
def test_straight_through_sample_is_one_hot_like_rsample() -> None:
    torch.manual_seed(11)
    logits = torch.tensor([1.0, -0.5, 0.3], dtype=D64)
    st = GumbelSoftmax(0.7, logits=logits, straight_through=True)
    n = 20000
    for draw in (st.sample, st.rsample):
        y = draw((n,))
        assert set(y.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(y.sum(-1), torch.ones(n, dtype=D64))
        freq = torch.bincount(y.argmax(-1), minlength=3).double() / n
        assert float((freq - logits.softmax(-1)).abs().max()) < 4 * math.sqrt(0.25 / n)


def test_exp_gumbel_softmax_reference_measure_is_the_log_ratios() -> None:
    # log p is a density of u = (x_k - x_K)_{k<K}, which softmax(u, 0) maps onto the simplex
    d = ExpGumbelSoftmax(0.6, logits=torch.tensor([0.5, -0.3], dtype=D64))

    def density(u: float) -> float:
        u_t = torch.tensor([u, 0.0], dtype=D64)
        return float(d.log_prob(u_t.log_softmax(-1)).exp())

    total, _ = integrate.quad(density, -np.inf, np.inf)
    assert total == pytest.approx(1.0, abs=1e-7)
    doc = " ".join((ExpGumbelSoftmax.__doc__ or "").split())
    assert "log-ratio coordinates :math:`u_k = x_k - x_K`" in doc


def test_log_prob_from_log_rejects_values_off_the_simplex() -> None:
    d = GumbelSoftmax(0.5, logits=torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError, match=r"^log_value"):
        d.log_prob_from_log(torch.tensor([0.1, 0.2, 0.3]).log())
    with pytest.raises(ValueError, match=r"^log_value"):
        d.log_prob_from_log(torch.tensor([0.5, 0.5]).log())
    ok = torch.tensor([0.2, 0.3, 0.5]).log()
    torch.testing.assert_close(d.log_prob_from_log(ok), d.log_prob(ok.exp()))


@pytest.mark.parametrize("cls", [GumbelSoftmax, ExpGumbelSoftmax])
def test_per_row_temperature_of_shape_b_by_1_stands_beside_the_logits(cls) -> None:
    # torch users write temperature (B, 1) beside logits (B, K) (pytorch #37162)
    torch.manual_seed(12)
    logits, tau = torch.randn(6, 4, dtype=D64), torch.rand(6, 1, dtype=D64) + 0.1
    d = cls(tau, logits=logits)
    assert d.batch_shape == (6,)
    x = d.rsample((5,))
    lp = d.log_prob(x)
    assert lp.shape == (5, 6)
    for i in range(6):
        torch.testing.assert_close(lp[:, i], cls(tau[i, 0], logits=logits[i]).log_prob(x[:, i]))
    with pytest.raises(ValueError, match=r"^temperature"):
        cls(torch.rand(6, 4, dtype=D64) + 0.1, logits=logits)  # one per entry: no density


def test_logits_are_normalized_log_probabilities() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], dtype=D64)
    d = GumbelSoftmax(0.5, logits=logits)
    torch.testing.assert_close(d.logits, logits - logits.logsumexp(-1, keepdim=True))
    torch.testing.assert_close(d.probs, logits.softmax(-1))
    p = GumbelSoftmax(0.5, probs=torch.tensor([1.0, 3.0], dtype=D64))
    torch.testing.assert_close(p.probs, torch.tensor([0.25, 0.75], dtype=D64))
    torch.testing.assert_close(p.logits, torch.tensor([0.25, 0.75], dtype=D64).log())


def test_positional_arguments_in_torchs_order() -> None:
    """``GumbelSoftmax(t, p)`` reads ``p`` as probabilities, as ``RelaxedOneHotCategorical(t, p)``
    and ``ExpRelaxedCategorical(t, p)`` do: a torch user's positional call keeps its meaning."""
    import inspect

    from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

    probs = torch.tensor([0.2, 0.3, 0.5], dtype=D64)
    for ours, theirs in ((GumbelSoftmax, RelaxedOneHotCategorical),
                         (ExpGumbelSoftmax, ExpRelaxedCategorical)):  # fmt: skip
        torch.testing.assert_close(ours(0.5, probs).probs, theirs(torch.tensor(0.5), probs).probs)
        shared = [n for n in inspect.signature(theirs).parameters if n != "validate_args"]
        assert list(inspect.signature(ours).parameters)[: len(shared)] == shared


# --------------------------------------------------------------- exact values, messages, devices
def test_argument_errors_name_the_argument_and_the_expected_form() -> None:
    floating = r"must be a floating-point tensor \(float16, bfloat16, float32 or float64\), got "
    cases = [
        ({"temperature": torch.tensor(1), "logits": torch.zeros(3)}, TypeError,
         rf"^temperature {floating}dtype torch.int64$"),
        ({"temperature": -1.0, "logits": torch.zeros(3)}, ValueError,
         r"^temperature must be finite and > 0, got -1.0$"),
        ({"temperature": 1.0}, ValueError, r"^give exactly one of logits or probs$"),
        ({"temperature": 1.0, "probs": torch.ones(1)}, ValueError,
         r"^probs must have shape \(\.\.\., K\) with K >= 2 categories, got \(1,\)$"),
        ({"temperature": 1.0, "logits": torch.zeros(2, 1)}, ValueError,
         r"^logits must have shape \(\.\.\., K\) with K >= 2 categories, got \(2, 1\)$"),
        ({"temperature": 1.0, "probs": torch.ones(3, dtype=torch.long)}, TypeError,
         rf"^probs {floating}dtype torch.int64$"),
        ({"temperature": 1.0, "logits": torch.ones(3, dtype=torch.long)}, TypeError,
         rf"^logits {floating}dtype torch.int64$"),
    ]  # fmt: skip
    for cls in (GumbelSoftmax, ExpGumbelSoftmax):
        for kwargs, error, message in cases:
            with pytest.raises(error, match=message):
                cls(**kwargs)


def test_a_float_temperature_takes_the_dtype_and_device_of_the_logits() -> None:
    d = GumbelSoftmax(0.5, logits=torch.zeros(2, 3, dtype=D64))
    assert d.temperature.dtype == D64 and float(d.temperature) == 0.5
    # the meta device shows where each tensor is made without computing anything
    meta = GumbelSoftmax(0.5, logits=torch.zeros(2, 3, device="meta"), validate_args=False)
    assert meta.temperature.device.type == "meta"
    assert meta.rsample((4,)).device.type == "meta" and meta.rsample((4,)).shape == (4, 2, 3)


def test_batched_unnormalized_probs_are_normalized_per_row() -> None:
    probs = torch.tensor([[1.0, 3.0], [2.0, 2.0], [9.0, 1.0]], dtype=D64)
    for cls in (GumbelSoftmax, ExpGumbelSoftmax):
        d = cls(0.5, probs=probs)
        torch.testing.assert_close(d.probs, probs / probs.sum(-1, keepdim=True))
        assert d.batch_shape == (3,)


def test_rsample_clamps_the_uniforms_so_that_every_gumbel_is_finite(monkeypatch) -> None:
    """``u = 0`` and ``u = 1`` (which torch.rand can return in finite precision) give the Gumbels of
    the nearest representable uniforms inside (0, 1), never ±inf."""
    edges = torch.tensor([0.0, 1.0, 0.5], dtype=D64)
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: edges.to(**kw).expand(shape).clone())
    logits = torch.tensor([0.2, -0.4, 0.1], dtype=D64)
    x = ExpGumbelSoftmax(0.8, logits=logits).rsample()
    finfo = torch.finfo(D64)
    u = torch.tensor([finfo.tiny, 1 - finfo.eps, 0.5], dtype=D64)
    torch.testing.assert_close(x, ((logits - (-u.log()).log()) / 0.8).log_softmax(-1))
    assert bool(x.isfinite().all())


def test_validate_args_false_checks_nothing_also_after_expand() -> None:
    """torch's convention: ``validate_args=False`` skips the checks of arguments and values, in the
    distribution, its base and its expansions (an invalid tensor temperature is the user's call)."""
    tau = torch.tensor([-1.0, 0.5])  # tensor temperatures are checked by validation only
    for cls in (GumbelSoftmax, ExpGumbelSoftmax):
        d = cls(tau, logits=torch.zeros(2, 3), validate_args=False)
        assert d.expand((4, 2)).batch_shape == (4, 2)
        with pytest.raises(ValueError, match="temperature"):
            cls(tau, logits=torch.zeros(2, 3), validate_args=True)
    off = torch.tensor([0.1, 0.2, 0.3])  # not on the simplex
    quiet = GumbelSoftmax(0.5, logits=torch.zeros(3), validate_args=False)
    ref = RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(3), validate_args=False)
    torch.testing.assert_close(quiet.log_prob_from_log(off.log()), ref.log_prob(off))
    exp = ExpGumbelSoftmax(0.5, logits=torch.zeros(3), validate_args=False)
    assert bool(exp.log_prob(off.log()).isfinite())


def test_straight_through_log_prob_of_a_batch_of_samples() -> None:
    torch.manual_seed(13)
    logits = torch.randn(2, 4, dtype=D64)
    st = GumbelSoftmax(0.9, logits=logits, straight_through=True)
    hard = st.rsample((3,))
    soft = st._st_cache[1].exp()  # the relaxed samples behind the one-hot ones
    ref = RelaxedOneHotCategorical(torch.tensor(0.9, dtype=D64), logits=logits)
    torch.testing.assert_close(st.log_prob(hard), ref.log_prob(soft))
    assert st.log_prob(hard).shape == (3, 2)
