"""Tests of the IGR transforms: round trips and log-determinants against autograd Jacobians."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from exact_error import raises_exactly
from simplexity.distributions import (
    PlanarTransform,
    SoftmaxPlusPlusTransform,
    StickBreakingTransform,
)

D64 = torch.float64


def _planar(d: int, seed: int = 0, scale: float = 1.5) -> PlanarTransform:
    g = torch.Generator().manual_seed(seed)
    u = scale * torch.randn(d, generator=g, dtype=D64)
    w = scale * torch.randn(d, generator=g, dtype=D64)
    return PlanarTransform(u, w, torch.tensor(0.3, dtype=D64))


def _transforms() -> list[tuple[str, torch.distributions.Transform]]:
    return [
        ("softmax++", SoftmaxPlusPlusTransform(torch.tensor(0.7, dtype=D64), 1.0)),
        ("softmax++ delta", SoftmaxPlusPlusTransform(torch.tensor(0.3, dtype=D64), 2.5)),
        ("stick-breaking", StickBreakingTransform()),
        ("planar", _planar(4)),
    ]


@pytest.mark.parametrize(("name", "t"), _transforms())
def test_log_abs_det_jacobian_against_autograd(name: str, t) -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 4, dtype=D64)
    y = t(x)
    ladj = t.log_abs_det_jacobian(x, y)
    assert ladj.shape == (5,)
    for i in range(5):
        if isinstance(t, SoftmaxPlusPlusTransform):
            jac = jacobian(lambda v: t.with_cache(0)(v)[:-1], x[i])  # z_{1:K-1} w.r.t. lambda
        else:
            jac = jacobian(t.with_cache(0), x[i])
        sign, logdet = torch.linalg.slogdet(jac)
        assert float(sign) != 0
        torch.testing.assert_close(ladj[i], logdet)


@pytest.mark.parametrize(("name", "t"), _transforms())
def test_inverse_round_trip_without_cache(name: str, t) -> None:
    torch.manual_seed(1)
    x = 2 * torch.randn(6, 4, dtype=D64)
    t0 = t.with_cache(0)
    y = t0(x)
    torch.testing.assert_close(t0.inv(y), x)
    # the cache returns the exact pre-image of the last output
    t1 = t.with_cache(1)
    y1 = t1(x)
    assert t1.inv(y1) is x


def test_softmax_pp_against_definition_and_not_relaxit_inverse() -> None:
    tau, delta = 0.4, 1.7
    t = SoftmaxPlusPlusTransform(torch.tensor(tau, dtype=D64), delta, cache_size=0)
    lam = torch.tensor([0.3, -0.8, 1.1], dtype=D64)
    e = torch.exp(lam / tau)
    expected = torch.cat([e, torch.tensor([delta], dtype=D64)]) / (e.sum() + delta)
    z = t(lam)
    torch.testing.assert_close(z, expected)
    assert z.shape == (4,) and float(z.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(t.inv(z), lam)
    # relaxit's inverse tau * log(z_k) (dropping - log z_K + log delta) is not the inverse
    wrong = tau * z[:-1].log()
    assert float((wrong - lam).abs().max()) > 0.1


def test_softmax_pp_log_space_at_low_temperature() -> None:
    t = SoftmaxPlusPlusTransform(torch.tensor(0.01), 1.0, cache_size=0)
    lam = torch.tensor([[2.0, -1.0, 0.5]])
    z = t(lam)
    assert bool((z == 0).any())
    ladj = t.log_abs_det_jacobian(lam, z)  # from lambda, not from log(z)
    assert bool(ladj.isfinite().all())
    log_z = t.log_z(lam)
    torch.testing.assert_close(t.inverse_from_log(log_z), lam, rtol=1e-5, atol=1e-5)


def test_softmax_pp_batched_temperature_and_shapes() -> None:
    taus = torch.tensor([0.2, 1.0], dtype=D64)
    t = SoftmaxPlusPlusTransform(taus, 1.0, cache_size=0)
    lam = torch.randn(3, 2, 4, dtype=D64)
    z = t(lam)
    for i in range(2):
        zi = SoftmaxPlusPlusTransform(taus[i], 1.0, cache_size=0)(lam[:, i])
        torch.testing.assert_close(z[:, i], zi)
    assert t.forward_shape((3, 2, 4)) == (3, 2, 5)
    assert t.inverse_shape((3, 2, 5)) == (3, 2, 4)
    assert t.log_abs_det_jacobian(lam, z).shape == (3, 2)


def test_temperature_gradient_flows() -> None:
    tau = torch.tensor(0.5, dtype=D64, requires_grad=True)
    t = SoftmaxPlusPlusTransform(tau, 1.0)
    lam = torch.randn(3, dtype=D64)
    (g,) = torch.autograd.grad(t(lam)[0] + t.log_abs_det_jacobian(lam, t(lam)), tau)
    assert float(g.abs()) > 0


def test_stick_breaking_definition() -> None:
    kappa = torch.tensor([0.3, -1.2, 2.0], dtype=D64)
    eta = torch.sigmoid(kappa)
    expected = torch.stack([eta[0], eta[1] * (1 - eta[0]), eta[2] * (1 - eta[0]) * (1 - eta[1])])
    torch.testing.assert_close(StickBreakingTransform(cache_size=0)(kappa), expected)
    assert float(expected.sum()) < 1


def test_planar_invertibility_constraint_uses_w_norm_squared() -> None:
    # with ||w|| != 1, w^T u_hat must stay > -1 (dividing by ||w||, as the reference code does,
    # breaks this)
    u = torch.tensor([-6.0, 0.5], dtype=D64)
    w = torch.tensor([0.5, 0.0], dtype=D64)
    t = PlanarTransform(u, w, torch.tensor(0.0, dtype=D64), cache_size=0)
    u_hat, _, m = t._params()
    assert float((w * u_hat).sum()) > -1
    torch.testing.assert_close((w * u_hat).sum(), m.squeeze())
    wu = (w * u).sum()
    m_ref = torch.nn.functional.softplus(wu) - 1
    u_bad = u + (m_ref - wu) * w / w.norm()
    assert float((w * u_bad).sum()) < -1  # what dividing by ||w|| would give: not invertible
    # monotone along w: f is a bijection
    s = torch.linspace(-5, 5, 201, dtype=D64)
    along = (t(s[:, None] * w / w.norm()) * w).sum(-1)
    assert bool((along.diff() > 0).all())
    x = torch.randn(10, 2, dtype=D64)
    torch.testing.assert_close(t.inv(t(x)), x)
    assert bool(t.log_abs_det_jacobian(x, t(x)).isfinite().all())


def test_planar_inverse_gradients_are_exact() -> None:
    g = torch.Generator().manual_seed(3)
    u = torch.randn(3, generator=g, dtype=D64, requires_grad=True)
    w = torch.randn(3, generator=g, dtype=D64, requires_grad=True)
    b = torch.tensor(0.2, dtype=D64, requires_grad=True)
    y = torch.randn(2, 3, generator=g, dtype=D64, requires_grad=True)

    def inv(y, u, w, b):
        return PlanarTransform(u, w, b, cache_size=0).inv(y)

    assert torch.autograd.gradcheck(inv, (y, u, w, b))


def test_planar_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"^u and w"):
        PlanarTransform(torch.zeros(3), torch.zeros(2), torch.tensor(0.0))
    with pytest.raises(TypeError, match=r"^u"):
        PlanarTransform(torch.zeros(3, dtype=torch.long), torch.zeros(3), torch.tensor(0.0))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf")])
def test_softmax_pp_bad_hyperparameters(bad: float) -> None:
    with pytest.raises(ValueError, match=r"^temperature"):
        SoftmaxPlusPlusTransform(bad)
    with pytest.raises(ValueError, match=r"^delta"):
        SoftmaxPlusPlusTransform(1.0, bad)


def test_softmax_pp_log_z_reuses_only_the_last_forward_input() -> None:
    t = SoftmaxPlusPlusTransform(torch.tensor(0.3, dtype=torch.float64), 1.7)
    x1 = torch.tensor([0.2, -0.4], dtype=torch.float64)
    x2 = torch.tensor([1.1, 0.5], dtype=torch.float64)

    def exact(x: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([x / 0.3, torch.tensor([1.7], dtype=torch.float64).log()])
        return padded.log_softmax(-1)

    z1 = t(x1)
    torch.testing.assert_close(t.log_z(x1), z1.log())
    torch.testing.assert_close(t.log_z(x2), exact(x2))  # not the cached value of x1
    torch.testing.assert_close(t.log_z(x1.clone()), exact(x1))
    y2 = t(x2)
    t(x1)  # the cache now holds x1
    torch.testing.assert_close(t.log_abs_det_jacobian(x2, y2), exact(x2).sum() - 2 * math.log(0.3))


def test_transform_caches_equality_shapes_and_dtypes() -> None:
    t = SoftmaxPlusPlusTransform(torch.tensor(0.5, dtype=D64), 2.0)
    assert t.delta.dtype == D64 and float(t.delta) == 2.0  # a float delta follows the temperature
    assert SoftmaxPlusPlusTransform(0.5).temperature.dtype == torch.get_default_dtype()
    assert t.with_cache(1) is t and t.with_cache(0) is not t
    assert t.with_cache(0)._cache_size == 0 and t.with_cache(0) == t
    assert t == SoftmaxPlusPlusTransform(torch.tensor(0.5, dtype=D64), 2.0, cache_size=0)
    assert t != SoftmaxPlusPlusTransform(torch.tensor(0.5, dtype=D64), 1.0)
    assert t != SoftmaxPlusPlusTransform(torch.tensor(0.4, dtype=D64), 2.0)
    assert t != StickBreakingTransform()
    s = StickBreakingTransform()
    assert s.with_cache(1) is s and s.with_cache(0)._cache_size == 0 and s.with_cache(0) == s
    assert s != t and StickBreakingTransform(cache_size=0)._cache_size == 0
    # the forward pass keeps log z for its own input only, and only with a cache
    lam = torch.randn(2, 3, dtype=D64)
    t0 = t.with_cache(0)
    t0(lam)
    assert t0._log_z_cache is None
    t(lam)
    assert t.log_z(lam) is t._log_z_cache[1]
    torch.testing.assert_close(t.log_z(lam.clone()), t(lam).log())
    for call, message in (
        (lambda: t.forward_shape(()), "SoftmaxPlusPlusTransform needs inputs of shape (..., K-1)"),
        (lambda: t.inverse_shape((3, 1)),
         "SoftmaxPlusPlusTransform needs values of shape (..., K), K >= 2"),
        (lambda: t.inverse_shape(()),
         "SoftmaxPlusPlusTransform needs values of shape (..., K), K >= 2"),
    ):  # fmt: skip
        with raises_exactly(ValueError, message):
            call()
    # stick-breaking's inverse of a point on the boundary stays finite
    y = torch.tensor([0.5, 0.5], dtype=D64)
    assert bool(s.with_cache(0).inv(y).isfinite().all())
