"""Tests of the registered KL divergences and of monte_carlo_kl."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from exact_error import raises_exactly
from simplexity.distributions import (
    IGR,
    GumbelSoftmax,
    IGRPlanar,
    IGRStickBreaking,
    NoClosedFormKLError,
    PlanarFlows,
    PlanarTransform,
    monte_carlo_kl,
)

D64 = torch.float64


def _params(seed: int, batch: tuple[int, ...] = (3,), d: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(*batch, d, generator=g, dtype=D64)
    scale = torch.rand(*batch, d, generator=g, dtype=D64) + 0.5
    return loc, scale


def _flows(seed: int) -> list[PlanarTransform]:
    g = torch.Generator().manual_seed(seed)
    return [
        PlanarTransform(
            torch.randn(4, generator=g, dtype=D64),
            torch.randn(4, generator=g, dtype=D64),
            torch.tensor(0.2, dtype=D64),
        )
    ]


@pytest.mark.parametrize("family", ["igr_i", "igr_sb", "igr_planar"])
def test_closed_form_kl_against_monte_carlo(family: str) -> None:
    torch.manual_seed(0)
    (lq, sq), (lp, sp) = _params(1), _params(2, batch=())
    tau = 0.3
    if family == "igr_i":
        q, p = IGR(lq, sq, tau), IGR(lp, sp, tau)
    elif family == "igr_sb":
        q, p = IGRStickBreaking(lq, sq, tau), IGRStickBreaking(lp, sp, tau)
    else:
        q, p = IGRPlanar(lq, sq, tau, flows=_flows(3)), IGRPlanar(lp, sp, tau, flows=_flows(3))
    kl = kl_divergence(q, p)
    assert kl.shape == (3,)
    ref = kl_divergence(Normal(lq, sq), Normal(lp, sp)).sum(-1)
    torch.testing.assert_close(kl, ref)
    n = 4000
    # generic Monte Carlo on the simplex, through log_prob (not the Gaussian shortcut)
    z = q.rsample((n,))
    diff = q.log_prob(z) - p.log_prob(z.clone())
    mc, se = diff.mean(0), diff.std(0) / n**0.5
    assert bool(((mc - kl).abs() < 5 * se + 1e-3).all())


def test_kl_gradient_flows_to_both_sides() -> None:
    lq, sq = _params(4)
    lq.requires_grad_()
    lp = torch.zeros(4, dtype=D64, requires_grad=True)
    kl = kl_divergence(IGR(lq, sq, 0.5), IGR(lp, torch.ones(4, dtype=D64), 0.5)).sum()
    gq, gp = torch.autograd.grad(kl, (lq, lp))
    assert bool(gq.abs().sum() > 0) and bool(gp.abs().sum() > 0)


@pytest.mark.parametrize(
    ("q", "p"),
    [
        (IGR(torch.zeros(2), torch.ones(2), 0.5), IGR(torch.zeros(2), torch.ones(2), 0.4)),
        (IGR(torch.zeros(2), torch.ones(2), 0.5), IGR(torch.zeros(2), torch.ones(2), 0.5, 2.0)),
        (
            IGRPlanar(torch.zeros(2), torch.ones(2), 0.5, flows=PlanarFlows(2)()),
            IGRPlanar(torch.zeros(2), torch.ones(2), 0.5, flows=PlanarFlows(2)()),
        ),
        (
            IGR(torch.zeros(2), torch.ones(2), 0.5),
            IGRStickBreaking(torch.zeros(2), torch.ones(2), 0.5),
        ),
        (GumbelSoftmax(0.5, logits=torch.zeros(3)), GumbelSoftmax(0.5, logits=torch.ones(3))),
        (GumbelSoftmax(0.5, logits=torch.zeros(3)), IGR(torch.zeros(2), torch.ones(2), 0.5)),
    ],
)
def test_no_closed_form_raises_value_error_naming_monte_carlo_kl(q, p) -> None:
    with pytest.raises(ValueError, match="monte_carlo_kl"):
        kl_divergence(q, p)
    with pytest.raises(NotImplementedError):  # torch's convention for "no KL" also holds
        kl_divergence(q, p)
    assert issubclass(NoClosedFormKLError, ValueError)
    est = monte_carlo_kl(q, p, num_samples=64)
    assert est.shape == q.batch_shape and not bool(est.isnan().any())
    if isinstance(p, IGRStickBreaking):  # q puts mass outside the image of p's map
        assert bool(torch.isinf(est).all())
    else:
        assert bool(est.isfinite().all())


def test_same_temperature_tensor_with_equal_values_is_same_map() -> None:
    q = IGR(torch.zeros(2), torch.ones(2), torch.tensor([0.5, 0.5]).reshape(2, 1).squeeze(-1))
    p = IGR(torch.zeros(2), 2 * torch.ones(2), 0.5)
    assert kl_divergence(q, p).shape == (2,)


@pytest.mark.parametrize("tau", [1.0, 0.01])
def test_monte_carlo_kl_gumbel_softmax_in_log_space(tau: float) -> None:
    torch.manual_seed(5)
    logits = torch.randn(4, 6, requires_grad=True)
    q = GumbelSoftmax(tau, logits=logits)
    p = GumbelSoftmax(tau, logits=torch.zeros(6))
    est = monte_carlo_kl(q, p, num_samples=200)
    assert est.shape == (4,) and bool(est.isfinite().all())
    est.sum().backward()
    assert bool(logits.grad.isfinite().all())
    # equal to the estimate computed in the ExpConcrete (log) space with float64
    torch.manual_seed(6)
    qd = GumbelSoftmax(tau, logits=logits.detach().double())
    pd = GumbelSoftmax(tau, logits=torch.zeros(6, dtype=D64))
    torch.manual_seed(7)
    a = monte_carlo_kl(qd, pd, num_samples=500)
    torch.manual_seed(7)
    x = qd.base_dist.rsample((500,))
    b = (qd.base_dist.log_prob(x) - pd.base_dist.log_prob(x)).mean(0)
    torch.testing.assert_close(a, b)
    assert bool((a > -0.05).all())  # KL >= 0 up to Monte Carlo error


def test_monte_carlo_kl_igr_different_temperatures_low_tau_float32() -> None:
    torch.manual_seed(8)
    q = IGR(torch.randn(5, 9), torch.rand(5, 9) + 0.5, 0.01)
    p = IGR(torch.zeros(9), torch.ones(9), 0.02)
    assert bool(q.rsample((100,)).eq(0).any())  # underflow happens at this temperature
    est = monte_carlo_kl(q, p, num_samples=100)
    assert bool(est.isfinite().all())


def test_monte_carlo_kl_equals_closed_form_on_average() -> None:
    torch.manual_seed(9)
    q = IGR(torch.tensor([0.5, -0.2]), torch.tensor([0.7, 1.2]), 0.1)
    p = IGR(torch.zeros(2), torch.ones(2), 0.1)
    est = monte_carlo_kl(q, p, num_samples=20000)
    assert float(est) == pytest.approx(float(kl_divergence(q, p)), abs=0.03)


def test_monte_carlo_kl_bad_arguments() -> None:
    q = IGR(torch.zeros(2), torch.ones(2), 0.5)
    with pytest.raises(ValueError, match=r"^num_samples"):
        monte_carlo_kl(q, q, num_samples=0)
    with pytest.raises(ValueError, match="event shape"):
        monte_carlo_kl(q, IGR(torch.zeros(3), torch.ones(3), 0.5))


def test_no_closed_form_message_names_both_types_the_reason_and_the_estimator() -> None:
    gs, igr = GumbelSoftmax(0.5, logits=torch.zeros(3)), IGR(torch.zeros(2), torch.ones(2), 0.5)
    tail = "Estimate it with simplexity.distributions.monte_carlo_kl(q, p, num_samples)."
    cases = [
        (gs, igr, "kl_divergence(GumbelSoftmax, IGR) has no closed form: the Gumbel-softmax "
         "density has no closed-form KL. "),
        (igr, gs, "kl_divergence(IGR, GumbelSoftmax) has no closed form: the Gumbel-softmax "
         "density has no closed-form KL. "),
        (igr, IGRStickBreaking(torch.zeros(2), torch.ones(2), 0.5), "kl_divergence(IGR, "
         "IGRStickBreaking) has no closed form: the two distributions use different maps. "),
        (igr, IGR(torch.zeros(2), torch.ones(2), 0.4), "kl_divergence(IGR, IGR) has no closed "
         "form: the closed form needs the same temperature, delta and flows in q and p. "),
    ]  # fmt: skip
    for q, p, message in cases:
        with raises_exactly(NoClosedFormKLError, message + tail):
            kl_divergence(q, p)


def test_monte_carlo_kl_uses_log_space_only_when_both_sides_have_it() -> None:
    """A p with ``rsample_log`` but no ``log_prob_from_log`` is evaluated on the sample itself."""
    from torch.distributions import RelaxedOneHotCategorical

    class HalfLogSpace(RelaxedOneHotCategorical):
        def rsample_log(self, sample_shape=()):
            y = self.rsample(sample_shape)
            return y, y.log()

    torch.manual_seed(3)
    logits = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    q = GumbelSoftmax(0.8, logits=logits)
    p = HalfLogSpace(torch.tensor(0.8, dtype=torch.float64), logits=logits.flip(0))
    torch.manual_seed(4)
    est = monte_carlo_kl(q, p, num_samples=5)
    torch.manual_seed(4)
    z = q.rsample((5,))
    torch.testing.assert_close(est, (q.log_prob(z) - p.log_prob(z)).mean(0))


def test_monte_carlo_kl_of_other_distributions_uses_rsample_or_sample() -> None:
    """Outside the log-space pair: ``rsample`` (differentiable) when ``q`` has it, else ``sample``;
    one sample by default."""
    from torch.distributions import OneHotCategorical

    loc = torch.tensor([0.3, -1.2], dtype=D64, requires_grad=True)
    q, p = Normal(loc, 1.5), Normal(torch.zeros(2, dtype=D64), 1.0)
    torch.manual_seed(11)
    est = monte_carlo_kl(q, p)  # default: a single sample
    torch.manual_seed(11)
    z = q.rsample((1,))
    torch.testing.assert_close(est, (q.log_prob(z) - p.log_prob(z)).mean(0))
    (grad,) = torch.autograd.grad(est.sum(), loc)  # through rsample
    torch.testing.assert_close(grad, z[0].detach())  # d/dloc of z^2/2; log q(z) does not move
    logits = torch.tensor([[0.5, -0.3, 1.1], [0.0, 2.0, -1.0]], dtype=D64)
    q, p = OneHotCategorical(logits=logits), OneHotCategorical(logits=logits.flip(-1))
    torch.manual_seed(12)
    est = monte_carlo_kl(q, p, num_samples=7)  # no rsample: sample
    torch.manual_seed(12)
    z = q.sample((7,))
    torch.testing.assert_close(est, (q.log_prob(z) - p.log_prob(z)).mean(0))


def test_monte_carlo_kl_type_error_names_the_argument_and_its_type() -> None:
    q = IGR(torch.zeros(2), torch.ones(2), 0.5)
    with pytest.raises(TypeError, match=r"^p must be a torch Distribution, got str$"):
        monte_carlo_kl(q, "prior")
    with pytest.raises(TypeError, match=r"^q must be a torch Distribution, got Tensor$"):
        monte_carlo_kl(torch.zeros(3), q)
