"""ev-softmax against independent references: a brute-force loop, autograd, invariants and limits."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from simplexity import (
    EvSoftmax,
    EvSoftmaxLoss,
    LogEvSoftmax,
    ev_softmax,
    ev_softmax_loss,
    log_ev_softmax,
)


def brute_force(
    x: np.ndarray, dim: int, mask: np.ndarray | None = None, eps: float = 0.0
) -> np.ndarray:
    """Row by row, in float64, straight from the definition (the mean over valid entries)."""
    x = np.asarray(x, dtype=np.float64)
    valid = np.ones(x.shape, bool) if mask is None else np.broadcast_to(mask, x.shape)
    x, valid = np.moveaxis(x, dim, -1), np.moveaxis(valid, dim, -1)
    out = np.zeros_like(x)
    for idx in itertools.product(*(range(n) for n in x.shape[:-1])):
        row, ok = x[idx], valid[idx] & (x[idx] != -np.inf)
        if not ok.any():
            continue
        mean = min(row[ok].mean(), row[ok].max())  # the max is >= the mean: no rounding past it
        weights = np.where(ok, (row >= mean).astype(float) + eps, 0.0) * np.exp(row - row[ok].max())
        out[idx] = weights / weights.sum()
    return np.moveaxis(out, -1, dim)


def reference_ev_softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The reference implementation's algorithm: softmax, times the indicator, renormalized."""
    p = torch.softmax(x, dim) * (x >= x.mean(dim, keepdim=True))
    return p / p.sum(dim, keepdim=True)


@pytest.mark.parametrize(
    "shape,dim", [((7,), 0), ((4, 9), -1), ((4, 9), 0), ((3, 5, 6), 1), ((2, 3, 4, 5), 2)]
)
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_matches_brute_force(shape, dim, eps):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    expected = brute_force(x.numpy(), dim, eps=eps)
    torch.testing.assert_close(ev_softmax(x, dim, eps=eps), torch.from_numpy(expected))
    log_expected = np.log(np.where(expected > 0, expected, 1.0))
    log_expected[expected == 0] = -np.inf
    torch.testing.assert_close(log_ev_softmax(x, dim, eps=eps), torch.from_numpy(log_expected))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_matches_brute_force_with_mask(dim):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 6, 7, generator=g, dtype=torch.float64)
    mask = torch.rand(5, 6, 7, generator=g) > 0.3
    x = x.masked_fill(torch.rand(5, 6, 7, generator=g) > 0.9, -math.inf)
    expected = brute_force(x.numpy(), dim, mask.numpy())
    torch.testing.assert_close(ev_softmax(x, dim, mask=mask), torch.from_numpy(expected))


def test_agrees_with_reference_algorithm_without_padding():
    x = torch.randn(64, 33, dtype=torch.float64)
    torch.testing.assert_close(ev_softmax(x), reference_ev_softmax(x, -1))


def test_padding_does_not_disable_sparsification():
    """The authors' code (Chen et al. 2021) averages over the fill value; we take the valid mean."""
    x = torch.tensor([2.0, 1.0, 0.5, 0.1, -1.0])
    expected = torch.tensor([0.7311, 0.2689, 0.0, 0.0, 0.0])
    torch.testing.assert_close(ev_softmax(x), expected, atol=1e-4, rtol=0)
    padded = torch.cat([x, torch.tensor([-1e18])])
    mask = torch.tensor([True] * 5 + [False])
    torch.testing.assert_close(ev_softmax(padded, mask=mask)[:5], expected, atol=1e-4, rtol=0)
    with_inf = torch.cat([x, torch.tensor([-math.inf])])
    torch.testing.assert_close(ev_softmax(with_inf)[:5], expected, atol=1e-4, rtol=0)
    # the reference algorithm's defect, which we must not share: the row stays dense
    defect = reference_ev_softmax(padded, -1)
    assert (defect[:5] > 0.02).all()
    assert (ev_softmax(padded, mask=mask) == 0).sum() == 4


def test_mask_and_inf_invariance():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 10, generator=g)
    pad = torch.full((8, 4), -1e18)
    mask = torch.cat([torch.ones(8, 10, dtype=torch.bool), torch.zeros(8, 4, dtype=torch.bool)], 1)
    for fill in (pad, torch.full((8, 4), -math.inf), torch.randn(8, 4, generator=g) * 100):
        full = torch.cat([x, fill], 1)
        torch.testing.assert_close(ev_softmax(full, mask=mask)[:, :10], ev_softmax(x))
        assert (ev_softmax(full, mask=mask)[:, 10:] == 0).all()
        assert (log_ev_softmax(full, mask=mask)[:, 10:] == -math.inf).all()
    # a broadcast mask (one per column) and -inf without a mask
    torch.testing.assert_close(
        ev_softmax(torch.cat([x, pad], 1), mask=mask[:1]),
        ev_softmax(torch.cat([x, -math.inf + pad], 1)),
    )


def test_causal_mask_matches_stepwise_decoding():
    """Training with a causal mask equals normalizing each prefix alone (decoding step by step)."""
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(6, 6, generator=g)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    full = ev_softmax(scores.masked_fill(~causal, -1e9), mask=causal)
    for t in range(6):
        torch.testing.assert_close(full[t, : t + 1], ev_softmax(scores[t, : t + 1]))


def test_rows_without_valid_entries_are_zero():
    x = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[False] * 4, [True, False, True, False], [False] * 4])
    p = ev_softmax(x, mask=mask)
    assert torch.isfinite(p).all() and (p[0] == 0).all() and (p[2] == 0).all()
    assert (log_ev_softmax(x, mask=mask)[0] == -math.inf).all()
    p.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[0] == 0).all()
    assert (ev_softmax(torch.full((2, 3), -math.inf)) == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_equal_logits_whose_rounded_mean_exceeds_them_stay_uniform(dtype):
    # found by hypothesis: the rounded mean of three equal values can exceed them
    x = torch.full((5, 3), -43.06771093, dtype=torch.float64).to(dtype)
    x = torch.cat([x, torch.full((5, 7), 0.1, dtype=dtype)], 1)[:, :3]
    torch.testing.assert_close(
        ev_softmax(x).double(), torch.full((5, 3), 1 / 3, dtype=torch.float64), atol=1e-3, rtol=0
    )
    assert torch.isfinite(log_ev_softmax(x)).all()


def test_exact_zeros_ties_uniform_and_two_classes():
    x = torch.tensor([[3.0, 1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
    p = ev_softmax(x)
    assert ((p == 0) == (x < x.mean(-1, keepdim=True))).all()
    torch.testing.assert_close(p[1], torch.full((4,), 0.25))  # all equal: uniform
    torch.testing.assert_close(p[2], torch.tensor([0.5, 0.0, 0.0, 0.5]))
    # a tie exactly at the mean is kept (>=)
    tie = torch.tensor([2.0, 1.0, 0.0])
    assert (ev_softmax(tie) > 0).tolist() == [True, True, False]
    # K = 2: argmax (one-hot) unless the two logits tie
    two = torch.randn(100, 2)
    torch.testing.assert_close(
        ev_softmax(two), torch.nn.functional.one_hot(two.argmax(-1), 2).float()
    )
    torch.testing.assert_close(ev_softmax(torch.zeros(2)), torch.tensor([0.5, 0.5]))


def test_shift_permutation_and_scale_support_invariance():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(16, 12, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ev_softmax(x + 123.4), ev_softmax(x))
    perm = torch.randperm(12, generator=g)
    torch.testing.assert_close(ev_softmax(x[:, perm]), ev_softmax(x)[:, perm])
    assert ((ev_softmax(3.7 * x) > 0) == (ev_softmax(x) > 0)).all()


def test_eps_family_formula_and_limit():
    x = torch.randn(5, 8, dtype=torch.float64)
    eps = 0.05
    w = ((x >= x.mean(-1, keepdim=True)).double() + eps) * x.exp()
    torch.testing.assert_close(ev_softmax(x, eps=eps), w / w.sum(-1, keepdim=True))
    torch.testing.assert_close(ev_softmax(x, eps=1e-12), ev_softmax(x), atol=1e-10, rtol=0)
    assert (ev_softmax(x, eps=eps) > 0).all()


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("use_mask", [False, True])
def test_gradcheck(eps, use_mask):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(3, 6, generator=g) > 0.3) if use_mask else None
    assert torch.autograd.gradcheck(lambda t: ev_softmax(t, mask=mask, eps=eps), (x,))
    assert torch.autograd.gradcheck(lambda t: ev_softmax(t, 0, mask=mask, eps=eps), (x,))
    if eps > 0 and not use_mask:  # log ev-softmax is finite everywhere only with full support
        assert torch.autograd.gradcheck(lambda t: log_ev_softmax(t, eps=eps), (x,))
        assert torch.autograd.gradgradcheck(lambda t: ev_softmax(t, eps=eps), (x,))


def test_log_gradient_on_the_support():
    """d log p_i / d x_j = delta_ij - p_j on the support, 0 off it (the finite entries only)."""
    x = torch.tensor([2.0, 1.0, 0.5, 0.1, -1.0], dtype=torch.float64, requires_grad=True)
    p = ev_softmax(x.detach())
    jac = torch.autograd.functional.jacobian(lambda t: log_ev_softmax(t), x)
    on = p > 0
    expected = torch.eye(5, dtype=torch.float64) - p
    torch.testing.assert_close(jac[on][:, on], expected[on][:, on])
    assert (jac[:, ~on] == 0).all() and (jac[~on] == 0).all()
    # and the probability Jacobian is softmax's restricted to the support
    jp = torch.autograd.functional.jacobian(lambda t: ev_softmax(t), x)
    torch.testing.assert_close(jp, torch.diag(p) - torch.outer(p, p))


def test_loss_gradient_limit_is_onehot_minus_ev_softmax():
    """Chen et al. 2021, Eq. 12: grad of -log evsoftmax_eps(v)_y -> ev_softmax(v) - e_y, any y."""
    g = torch.Generator().manual_seed(6)
    v = torch.randn(1, 7, generator=g, dtype=torch.float64)
    for y in range(7):  # targets above and below the mean
        x = v.clone().requires_grad_()
        ev_softmax_loss(x, torch.tensor([y]), eps=1e-9).backward()
        expected = ev_softmax(v) - torch.nn.functional.one_hot(torch.tensor([y]), 7)
        torch.testing.assert_close(x.grad, expected, atol=1e-6, rtol=0)


def test_loss_layout_reduction_ignore_index_and_smoothing():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 5, 3, generator=g)
    y = torch.randint(0, 5, (4, 3), generator=g)
    y[0, 0] = -100
    flat_x, flat_y = x.movedim(1, -1).reshape(-1, 5), y.reshape(-1)
    per = ev_softmax_loss(x, y, reduction="none")
    assert per.shape == (4, 3) and per[0, 0] == 0
    torch.testing.assert_close(per.reshape(-1), ev_softmax_loss(flat_x, flat_y, reduction="none"))
    keep = flat_y != -100
    logp = log_ev_softmax(flat_x[keep], eps=1e-6)
    nll = -logp.gather(1, flat_y[keep, None]).squeeze(1)
    torch.testing.assert_close(ev_softmax_loss(x, y), nll.mean())
    smooth = 0.1 * -logp.mean(-1) + 0.9 * nll
    torch.testing.assert_close(EvSoftmaxLoss(label_smoothing=0.1)(x, y), smooth.mean())
    torch.testing.assert_close(EvSoftmaxLoss(reduction="sum")(x, y), nll.sum())


def test_loss_rejects_bad_targets():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"^target"):
        ev_softmax_loss(x, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"^target"):
        ev_softmax_loss(x, torch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match=r"^target"):
        ev_softmax_loss(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"^reduction"):
        ev_softmax_loss(x, torch.tensor([0, 1, 2]), reduction="avg")


def test_bad_input():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"^mask"):
        ev_softmax(x, mask=torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"^mask"):
        ev_softmax(x, mask=torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"^eps"):
        ev_softmax(x, eps=-1e-3)
    with pytest.raises(TypeError, match=r"^x"):
        ev_softmax(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(IndexError, match=r"^dim"):
        ev_softmax(x, dim=2)
    with pytest.raises(TypeError, match=r"^x"):
        ev_softmax([1.0, 2.0])  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(dtype):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(32, 50, generator=g).to(dtype)
    ref = ev_softmax(x.float())
    p = ev_softmax(x)
    assert p.dtype == dtype
    torch.testing.assert_close(p.float(), ref, atol=1e-2, rtol=1e-2)
    assert ((p > 0) == (ref > 0)).all()
    xr = x.clone().requires_grad_()
    (ev_softmax(xr) * torch.arange(50)).sum().backward()
    assert xr.grad.dtype == dtype and torch.isfinite(xr.grad).all()
    assert log_ev_softmax(x).dtype == dtype


def test_modules_switch_eps_with_training_mode():
    x = torch.randn(4, 6)
    m = EvSoftmax(eps=0.01)
    torch.testing.assert_close(m(x), ev_softmax(x, eps=0.01))
    m.eval()
    torch.testing.assert_close(m(x), ev_softmax(x))
    lm = LogEvSoftmax(dim=0, eps=0.01)
    torch.testing.assert_close(lm(x), log_ev_softmax(x, 0, eps=0.01))
    assert "eps=0.01" in repr(m)


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.int64, st.tuples(st.integers(1, 4), st.integers(1, 12)), elements=st.integers(-400, 400)
    ),
    st.floats(0, 1),
)
def test_property_sums_to_one_and_support(ints, eps):
    # multiples of 1/8: sums are exact, so the support is decided without rounding ambiguity
    values = ints / 8.0
    x = torch.from_numpy(values)
    p = ev_softmax(x, eps=eps)
    torch.testing.assert_close(p.sum(-1), torch.ones(x.shape[0], dtype=torch.float64))
    above = x >= x.mean(-1, keepdim=True)
    assert above.any(-1).all()
    if eps == 0:
        assert ((p > 0) == above).all()
    else:
        assert (p[above] >= p.new_tensor(0)).all() and torch.isfinite(p).all()
    torch.testing.assert_close(p, torch.from_numpy(brute_force(values, -1, eps=eps)))


def test_fused_kernel_matches_eager(monkeypatch):
    """The compiled forward (large inputs) agrees with the eager path, including its edge cases."""
    from simplexity.normalizers import _fused

    g = torch.Generator().manual_seed(9)
    x = torch.randn(6, 40, generator=g, dtype=torch.float64) * 3
    x[0] = -43.06771093  # equal logits whose rounded mean exceeds them
    x[1, :20] = 2.5  # ties
    for eps in (0.0, 1e-3):
        fused = _fused.fused_ev_softmax(x, eps, min_numel=0)
        if fused is None and _fused._state["failed"]:
            pytest.skip("torch.compile is unavailable here")
        assert fused is not None
        torch.testing.assert_close(fused, torch.from_numpy(brute_force(x.numpy(), -1, eps=eps)))
    # any number of rows with one compilation per K; more K than MAX_STATIC: the generic kernel
    for rows in (2, 5, 17):
        y = torch.randn(rows, 40, generator=g, dtype=torch.float64)
        fused = _fused.fused_ev_softmax(y, 0.0, min_numel=0)
        torch.testing.assert_close(fused, torch.from_numpy(brute_force(y.numpy(), -1)))
    for k in range(41, 41 + _fused.MAX_STATIC + 2):
        y = torch.randn(3, 2, k, generator=g)
        fused = _fused.fused_ev_softmax(y, 1e-6, min_numel=0)
        torch.testing.assert_close(
            fused, torch.from_numpy(brute_force(y.double().numpy(), -1, eps=1e-6)).float()
        )
    assert _fused._state["generic"] is not None and not _fused._state["failed"]
    # rows with -inf are left to the eager path (mean over valid entries only)
    x[2, :5] = -math.inf
    assert _fused.fused_ev_softmax(x, 0.0, min_numel=0) is None
    # the public function takes the fused path above MIN_NUMEL, with the closed-form backward
    monkeypatch.setattr(_fused, "MIN_NUMEL", 0)
    torch.testing.assert_close(ev_softmax(x), torch.from_numpy(brute_force(x.numpy(), -1)))
    xr = x[3:].clone().requires_grad_()
    p = ev_softmax(xr)
    cot = torch.randn(p.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(p, xr, cot)
    torch.testing.assert_close(grad, p * (cot - (cot * p).sum(-1, keepdim=True)))


def test_fused_kernel_falls_back_when_compiling_fails(monkeypatch):
    from simplexity.normalizers import _fused

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler")

    state = {"fn": broken, "generic": broken, "failed": False, "seen": set()}
    monkeypatch.setattr(_fused, "_state", state)
    x = torch.randn(4, 8)
    with pytest.warns(RuntimeWarning, match="eager"):
        assert _fused.fused_ev_softmax(x, 0.0, min_numel=0) is None
    assert _fused.fused_ev_softmax(x, 0.0, min_numel=0) is None  # no second try
    monkeypatch.setattr(_fused, "MIN_NUMEL", 0)
    torch.testing.assert_close(ev_softmax(x), torch.from_numpy(brute_force(x.numpy(), -1)).float())


def test_fused_kernel_leaves_torch_distribution_validation_on():
    """torch.compile's first run turns torch.distributions' validation off process-wide; the
    fused ev-softmax compiles behind the user's back, so it must put the default back."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from torch.distributions import Distribution\n"
        "from simplexity.normalizers import _fused, ev_softmax\n"
        "x = torch.randn(64, _fused.MIN_NUMEL // 64 + 1)\n"
        "ev_softmax(x)\n"
        "print(_fused._state['fn'] is not None, Distribution._validate_args)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"], out.stdout + out.stderr


# ------------------------------------------------------------- torch's private backward kernels


@pytest.mark.parametrize("log", [False, True])
def test_private_softmax_kernels_agree_with_the_public_ops_and_autograd(log):
    from simplexity.normalizers._softmax_kernels import softmax_kernel

    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, 3, dtype=torch.float64, generator=g)
    x[0, 2, :] = -math.inf  # entries off the support (log: -inf outputs, masked gradient)
    x[1, :, 0] = -math.inf
    fn = torch.log_softmax if log else torch.softmax
    kind = "log_softmax_backward" if log else "softmax_backward"
    for dim in (0, 1, 2, -1):
        rows = x.masked_fill((x == -math.inf).all(dim, keepdim=True), 0.0)  # no empty row
        # the forward into the buffer
        buffer = rows.clone()
        written = softmax_kernel("softmax_", buffer, dim, private=True)
        assert written.data_ptr() == buffer.data_ptr()
        torch.testing.assert_close(written, softmax_kernel("softmax_", rows, dim, private=False))
        torch.testing.assert_close(written, torch.softmax(rows, dim))
        # the backward
        out = fn(rows, dim)
        grad = torch.randn(x.shape, dtype=torch.float64, generator=g)
        if log:
            grad = grad.masked_fill(out == -math.inf, 0.0)
        private = softmax_kernel(kind, grad, out, dim, private=True)
        public = softmax_kernel(kind, grad, out, dim, private=False)
        torch.testing.assert_close(private, public)
        leaf = rows.clone().requires_grad_()
        (reference,) = torch.autograd.grad(fn(leaf, dim), leaf, grad)
        torch.testing.assert_close(public, reference)
    # a non-contiguous buffer takes the public op
    strided = torch.randn(3, 5, 4, dtype=torch.float64, generator=g).transpose(0, 2)
    torch.testing.assert_close(softmax_kernel("softmax_", strided, -1), torch.softmax(strided, -1))
    with pytest.raises(ValueError, match=r"^unknown softmax kernel"):
        softmax_kernel("softmax", x, -1)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_ev_softmax_with_the_public_softmax_ops(monkeypatch, eps):
    from simplexity.normalizers import _softmax_kernels

    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 6, dtype=torch.float64)
    private = [torch.autograd.grad(f(x, eps=eps), x, g)[0] for f in (ev_softmax, log_ev_softmax)]
    values = [f(x, eps=eps) for f in (ev_softmax, log_ev_softmax)]
    monkeypatch.setattr(_softmax_kernels, "PRIVATE_KERNELS", False)
    for f, expected, value in zip((ev_softmax, log_ev_softmax), private, values, strict=True):
        torch.testing.assert_close(f(x, eps=eps), value)
        (public,) = torch.autograd.grad(f(x, eps=eps), x, g)
        torch.testing.assert_close(public, expected)
        if f is ev_softmax or eps > 0:  # log with eps = 0 has -inf outputs: no finite differences
            assert torch.autograd.gradcheck(lambda t, f=f: f(t, eps=eps), (x,))
