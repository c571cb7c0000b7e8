"""Tests of the IGR transforms: round trips and log-determinants against autograd Jacobians."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian
from torch.overrides import TorchFunctionMode

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


def test_stick_breaking_codomain_check_is_the_open_sub_simplex_row_by_row() -> None:
    # exact booleans of "all entries > 0 and sum < 1", written out per row by hand
    from simplexity.distributions.transforms import open_sub_simplex

    codomain = StickBreakingTransform().codomain
    assert codomain is open_sub_simplex and codomain.event_dim == 1
    rows = [
        ([0.2, 0.3, 0.1], True),
        ([0.25, 0.5, 0.25], False),  # sums to exactly 1
        ([0.5, 0.5, 0.5], False),  # sums to 1.5: positive but not below 1
        ([0.0, 0.5, 0.25], False),  # a zero entry
        ([0.1, 0.3, -0.2], False),  # a negative entry, sum below 1
        ([0.9, 0.05, 0.04], True),
    ]
    value = torch.tensor([[r for r, _ in rows[:3]], [r for r, _ in rows[3:]]], dtype=D64)
    expected = torch.tensor([[e for _, e in rows[:3]], [e for _, e in rows[3:]]])
    assert value.shape == (2, 3, 3)
    assert torch.equal(codomain.check(value), expected)
    flat = torch.tensor([r for r, _ in rows[:2]], dtype=D64)[:, :2]  # (2, 2): 2 rows of 2
    assert torch.equal(codomain.check(flat), torch.tensor([True, True]))
    wide = torch.tensor([[0.1, 0.2, 0.3, 0.35], [0.1, 0.2, 0.3, 0.5]], dtype=D64)
    assert torch.equal(codomain.check(wide), torch.tensor([True, False]))
    # the outputs of the transform lie in its codomain
    assert bool(codomain.check(StickBreakingTransform()(torch.randn(5, 4, dtype=D64))).all())


def test_log_simplex_check_row_by_row_and_at_its_tolerance() -> None:
    # exact booleans of "all entries <= 0 and |logsumexp| < 1e-4" (ExpGumbelSoftmax's support)
    from simplexity.distributions import ExpGumbelSoftmax
    from simplexity.distributions.transforms import log_simplex

    assert ExpGumbelSoftmax.support is log_simplex and log_simplex.event_dim == 1
    log_third = math.log(1 / 3)
    value = torch.tensor(
        [
            [log_third, log_third, log_third],
            [5e-5, -30.0, -30.0],  # logsumexp within 1e-4 of 0, but one entry is positive
            [math.log(0.5), math.log(0.25), math.log(0.2)],  # sums to 0.95
        ],
        dtype=D64,
    )
    assert torch.equal(log_simplex.check(value), torch.tensor([True, False, False]))
    # a single category: logsumexp is the entry itself; 1e-4 away from 0 is outside
    assert torch.equal(log_simplex.check(torch.tensor([[-1e-4], [-0.99e-4]], dtype=D64)),
                       torch.tensor([False, True]))  # fmt: skip


def test_softmax_pp_hyperparameters_follow_the_temperature_and_name_themselves() -> None:
    # a float delta takes the device (and dtype) of a tensor temperature; wrong dtypes name the arg
    t = SoftmaxPlusPlusTransform(torch.tensor(0.5, dtype=D64, device="meta"), 2.0)
    assert t.delta.device.type == "meta" and t.delta.dtype == D64
    message = (
        "{} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
        "got dtype torch.int64"
    )
    with raises_exactly(TypeError, message.format("temperature")):
        SoftmaxPlusPlusTransform(torch.tensor(1))
    with raises_exactly(TypeError, message.format("delta")):
        SoftmaxPlusPlusTransform(0.5, torch.tensor(2))


def test_softmax_pp_output_dtype_is_that_of_the_input() -> None:
    # float64 hyperparameters do not promote float32 inputs; the values are those of float32
    # hyperparameters (tau = 0.5, delta = 2 and their logs are exact in float32)
    taus = torch.tensor([0.5, 0.25], dtype=D64)
    t = SoftmaxPlusPlusTransform(taus, torch.tensor([2.0, 0.5], dtype=D64), cache_size=0)
    t32 = SoftmaxPlusPlusTransform(taus.float(), torch.tensor([2.0, 0.5]), cache_size=0)
    lam = torch.tensor([[0.3, -0.7, 1.2], [-0.4, 0.9, 0.1]])
    z, log_z = t(lam), t.log_z(lam)
    assert z.dtype == torch.float32 and log_z.dtype == torch.float32
    torch.testing.assert_close(z, t32(lam), rtol=0, atol=0)
    back = t.inverse_from_log(log_z)
    assert back.dtype == torch.float32
    torch.testing.assert_close(back, t32.inverse_from_log(log_z), rtol=0, atol=0)
    ladj = t.log_abs_det_jacobian_from_log(log_z)
    assert ladj.dtype == torch.float32 and ladj.shape == (2,)
    expected = log_z.sum(-1) - 3 * taus.float().log()
    torch.testing.assert_close(ladj, expected, rtol=0, atol=0)
    # an unbatched float32 input with a 0-dim float64 temperature
    t0 = SoftmaxPlusPlusTransform(torch.tensor(0.5, dtype=D64), cache_size=0)
    assert t0.log_abs_det_jacobian_from_log(log_z[0]).dtype == torch.float32


def test_trailing_singleton_hyperparameters_stand_beside_loc_only_when_aligned() -> None:
    # (A, B, 1) beside loc (A, B, K-1) is read as (A, B); (1,) beside an unbatched loc is a scalar
    from simplexity.distributions import IGR

    loc, scale = torch.zeros(2, 3, 4, dtype=D64), torch.ones(2, 3, 4, dtype=D64)
    tau = torch.tensor([[[0.3], [0.5], [0.7]], [[0.4], [0.6], [0.8]]], dtype=D64)
    d = IGR(loc, scale, tau, torch.full((2, 3, 1), 2.0, dtype=D64))
    assert d.batch_shape == (2, 3) and d.rsample((5,)).shape == (5, 2, 3, 5)
    d1 = IGR(torch.zeros(3, dtype=D64), torch.ones(3, dtype=D64), torch.tensor([0.5], dtype=D64))
    assert d1.batch_shape == () and d1.rsample().shape == (4,)


def test_planar_equality_compares_every_parameter_after_broadcasting() -> None:
    u = torch.tensor([0.5, -1.0, 2.0], dtype=D64)
    w = torch.tensor([1.0, 0.3, -0.2], dtype=D64)
    b = torch.tensor(0.1, dtype=D64)
    t = PlanarTransform(u, w, b)
    assert t == PlanarTransform(u.clone(), w.clone(), b.clone(), cache_size=0)
    assert t != PlanarTransform(u + 1, w, b)  # only u differs
    assert t != PlanarTransform(u, w + 1, b)
    assert t != PlanarTransform(u, w, b + 1)
    # equal after broadcasting (either side), not equal when the shapes do not broadcast
    assert t == PlanarTransform(u.expand(2, 3), w, b)
    assert PlanarTransform(u.expand(2, 3), w, b) == t
    assert PlanarTransform(u.expand(2, 3), w, b) != PlanarTransform(u.expand(4, 3), w, b)
    # parameters are compared in the dtype of the left-hand side
    s = SoftmaxPlusPlusTransform(torch.tensor(0.1))
    assert s == SoftmaxPlusPlusTransform(torch.tensor(0.1, dtype=D64))
    assert t != StickBreakingTransform()


def test_planar_rejects_a_scalar_u_or_w() -> None:
    for u, w, shapes in (
        (torch.tensor(1.0), torch.ones(3), "() and (3,)"),
        (torch.ones(3), torch.tensor(1.0), "(3,) and ()"),
        (torch.ones(3), torch.ones(2), "(3,) and (2,)"),
    ):
        message = f"u and w must have shape (..., D) with the same D, got {shapes}"
        with raises_exactly(ValueError, message):
            PlanarTransform(u, w, torch.tensor(0.0))


def test_with_cache_keeps_or_switches_the_cache() -> None:
    for t in (
        _planar(3),
        SoftmaxPlusPlusTransform(torch.tensor(0.5, dtype=D64)),
        StickBreakingTransform(),
    ):
        assert t._cache_size == 1 and t.with_cache() is t and t.with_cache(1) is t
        t0 = t.with_cache(0)
        assert t0 is not t and t0._cache_size == 0 and t0 == t
        assert t0.with_cache(0) is t0 and t0.with_cache()._cache_size == 1


def test_planar_forward_against_the_definition_with_batched_parameters() -> None:
    # f(x) = x + u_hat tanh(w.x + b), u_hat = u + (softplus(w.u) - 1 - w.u) w / |w|^2, per row
    u = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]], dtype=D64)
    w = torch.tensor([[1.0, 0.3, -0.2], [-0.6, 0.8, 1.1]], dtype=D64)
    b = torch.tensor([0.1, -0.4], dtype=D64)
    t = PlanarTransform(u, w, b, cache_size=0)
    x = torch.tensor([[[0.2, -0.5, 0.9], [1.1, 0.4, -0.8]]] * 4, dtype=D64)
    x = x * torch.arange(1, 5, dtype=D64)[:, None, None]
    y = t(x)
    ladj = t.log_abs_det_jacobian(x, y)
    assert y.shape == (4, 2, 3) and ladj.shape == (4, 2)
    for j in range(2):
        uj, wj, bj = u[j].tolist(), w[j].tolist(), float(b[j])
        wu = sum(p * q for p, q in zip(wj, uj, strict=True))
        norm2 = sum(q * q for q in wj)
        m = math.log1p(math.exp(wu)) - 1
        u_hat = [p + (m - wu) * q / norm2 for p, q in zip(uj, wj, strict=True)]
        for i in range(4):
            xi = x[i, j].tolist()
            a = math.tanh(sum(p * q for p, q in zip(wj, xi, strict=True)) + bj)
            expected = [p + q * a for p, q in zip(xi, u_hat, strict=True)]
            torch.testing.assert_close(y[i, j], torch.tensor(expected, dtype=D64))
            torch.testing.assert_close(float(ladj[i, j]), math.log(1 + (1 - a * a) * m))
    torch.testing.assert_close(t.inv(y), x)


class _CountTanh(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += func is torch.tanh
        return func(*args, **(kwargs or {}))


def _inverse_with_iterations(t: PlanarTransform, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``t.inv(y)`` and its number of Newton iterations (one tanh each, plus two after the loop)."""
    with _CountTanh() as count:
        x = t.with_cache(0).inv(y)
    return x, count.calls - 2


def test_planar_inverse_stops_at_the_first_check_after_converging() -> None:
    # convergence is checked every 8 iterations: a solve that converges within a few Newton steps
    # stops after 8 iterations
    u = torch.tensor([1.2, 0.7, -0.4], dtype=D64)
    w = torch.tensor([0.5, -0.25, 1.0], dtype=D64)
    t = PlanarTransform(u, w, torch.tensor(0.75, dtype=D64), cache_size=0)
    # w.y = -b exactly: tanh(w.y + b) = 0, so y is a fixed point of f and the root from the start
    y = torch.tensor([1.0, 2.0, -0.75], dtype=D64)
    x, iterations = _inverse_with_iterations(t, y)
    assert iterations == 8 and torch.equal(x, y)
    t = PlanarTransform(
        torch.tensor([0.8, -0.3, 0.5], dtype=D64),
        torch.tensor([0.4, 0.9, -0.6], dtype=D64),
        torch.tensor(0.2, dtype=D64),
        cache_size=0,
    )
    y = torch.tensor([[0.3, -0.6, 1.1], [-1.4, 0.2, 0.5]], dtype=D64)
    x, iterations = _inverse_with_iterations(t, y)
    assert iterations == 8
    torch.testing.assert_close(t(x), y, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("wy", "b", "root"),
    [(223.0, 40.0, 191.0), (222.0, 40.0, 190.0), (223.0, -300.0, 255.0)],
)
def test_planar_inverse_tolerance_on_a_saturated_bisection(
    wy: float, b: float, root: float
) -> None:
    # w = e_1, u = 33 e_1: w.u = 33 > 20, where softplus is the identity, so w.u_hat = 32 exactly.
    # tanh(alpha + b) is +-1 on the whole bracket w.y -+ 32, so g(alpha) = alpha +- 32 - w.y is
    # linear: the Newton step lands on the bracket end (the root), is rejected, and bisection runs
    # with |g| = 32 / 2^i at iteration i. The solve stops at the first check (i = 7 mod 8) with
    # |g| <= 4 eps (1 + |w.y| + 32): at i = 47 when that is 2^-42 (w.y = 223), else at i = 55.
    t = PlanarTransform(
        torch.tensor([33.0, 0.0], dtype=D64),
        torch.tensor([1.0, 0.0], dtype=D64),
        torch.tensor(b, dtype=D64),
        cache_size=0,
    )
    tol = 4 * 2.0**-52 * (1 + wy + 32)
    first = next(i for i in range(7, 100, 8) if 32 * 2.0**-i <= tol)
    assert first == (47 if wy == 223.0 else 55)
    x, iterations = _inverse_with_iterations(t, torch.tensor([wy, 0.7], dtype=D64))
    assert iterations == first + 1
    assert torch.equal(x, torch.tensor([root, 0.7], dtype=D64))


def test_planar_inverse_of_a_nan_row_gives_up_after_100_iterations() -> None:
    # a NaN never converges: the loop stops at its cap; the other rows are still inverted
    t = PlanarTransform(
        torch.tensor([0.8, -0.3, 0.5], dtype=D64),
        torch.tensor([0.4, 0.9, -0.6], dtype=D64),
        torch.tensor(0.2, dtype=D64),
        cache_size=0,
    )
    y = torch.tensor([[float("nan"), 0.2, 0.5], [-1.4, 0.2, 0.5]], dtype=D64)
    x, iterations = _inverse_with_iterations(t, y)
    assert iterations == 100
    assert bool(x[0].isnan().all())
    torch.testing.assert_close(t(x[1]), y[1], rtol=0, atol=1e-15)
