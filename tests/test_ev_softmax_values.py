"""ev-softmax's exact values on asymmetric inputs, every public path to them, and its argument checks.

Values are checked against the definition evaluated in float64 by hand, on logits that are nonzero and
unequal (so that a wrong sign, a swapped operand or a dropped term changes the result), rather than
against signs or finiteness. The fused kernel is reached through :func:`ev_softmax` with the compiler
replaced by the kernel's own body, so that its dispatch condition is tested without compiling.

References:
    Chen, Itkina, Senanayake, Kochenderfer. "Evidential Softmax for Sparse Multimodal Distributions in
    Deep Generative Models", NeurIPS 2021 (arXiv:2110.14182).
"""

from __future__ import annotations

import importlib
import math
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from simplexity import (
    EvSoftmax,
    EvSoftmaxLoss,
    LogEvSoftmax,
    ev_softmax,
    ev_softmax_loss,
    log_ev_softmax,
)
from simplexity.normalizers import _fused

# Rows with unequal, nonzero logits; the second has an entry exactly at its mean (0.25, exact in
# binary), the third a rounded mean (in float32) above its equal entries.
ROWS = [[2.0, -0.5, 1.25, -3.0], [1.5, 0.25, -1.0, 0.25], [0.75, -2.5, -1.75, 3.5]]


def definition(row: list[float], eps: float = 0.0, valid: list[bool] | None = None) -> list[float]:
    """p_k = (1{x_k >= mean} + eps) e^{x_k} / sum, over the valid entries, in Python floats."""
    valid = valid or [True] * len(row)
    kept = [x for x, ok in zip(row, valid) if ok and x != -math.inf]
    mean = sum(kept) / len(kept)
    w = [
        ((x >= mean) + eps) * math.exp(x) if ok and x != -math.inf else 0.0
        for x, ok in zip(row, valid)
    ]
    return [v / sum(w) for v in w]


def expected(rows, eps=0.0, dtype=torch.float64, valid=None):
    valid = valid or [None] * len(rows)
    return torch.tensor([definition(r, eps, v) for r, v in zip(rows, valid)], dtype=dtype)


def log_expected(rows, eps=0.0, dtype=torch.float64):
    return expected(rows, eps).log().to(dtype)


@pytest.mark.parametrize("eps", [0.0, 0.1, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_on_asymmetric_rows(eps, dtype):
    x = torch.tensor(ROWS, dtype=dtype)
    torch.testing.assert_close(ev_softmax(x, eps=eps), expected(ROWS, eps, dtype))
    torch.testing.assert_close(log_ev_softmax(x, eps=eps), log_expected(ROWS, eps, dtype))
    # the same through the masked path (an all-True mask) and along another dimension
    everywhere = torch.ones_like(x, dtype=torch.bool)
    torch.testing.assert_close(ev_softmax(x, mask=everywhere, eps=eps), expected(ROWS, eps, dtype))
    torch.testing.assert_close(
        log_ev_softmax(x, mask=everywhere, eps=eps), log_expected(ROWS, eps, dtype)
    )
    torch.testing.assert_close(ev_softmax(x.T, 0, eps=eps), expected(ROWS, eps, dtype).T)
    torch.testing.assert_close(log_ev_softmax(x.T, 0, eps=eps), log_expected(ROWS, eps, dtype).T)


@pytest.mark.parametrize("eps", [0.0, 0.5])
@pytest.mark.parametrize("masked", [False, True])
def test_an_entry_exactly_at_the_mean_is_on_the_support(eps, masked):
    # 0.25 is the row's mean exactly: it gets weight 1 + eps, as the entries above the mean
    row = ROWS[1]
    x = torch.tensor([row], dtype=torch.float64)
    mask = torch.ones_like(x, dtype=torch.bool) if masked else None
    p = ev_softmax(x, mask=mask, eps=eps)
    torch.testing.assert_close(p, expected([row], eps))
    torch.testing.assert_close(p[0, 1] / p[0, 0], torch.tensor(math.exp(0.25 - 1.5), dtype=x.dtype))
    torch.testing.assert_close(log_ev_softmax(x, mask=mask, eps=eps), log_expected([row], eps))


def test_masked_values_use_the_mean_of_the_valid_entries():
    x = torch.tensor(ROWS, dtype=torch.float64)
    valid = [[True, True, False, True], [False, True, True, True], [True, True, True, False]]
    mask = torch.tensor(valid)
    for eps in (0.0, 0.3):
        want = expected(ROWS, eps, valid=valid)
        torch.testing.assert_close(ev_softmax(x, mask=mask, eps=eps), want)
        got = log_ev_softmax(x, mask=mask, eps=eps)
        torch.testing.assert_close(got, want.log())
    # -inf logits are invalid entries too: the mean is over the others
    y = x.clone()
    y[0, 2] = -math.inf
    torch.testing.assert_close(ev_softmax(y)[0], expected([ROWS[0]], valid=[valid[0]])[0])


def test_log_space_retry_returns_log_probabilities():
    # float32 equal logits whose rounded mean exceeds them empty the support on the first try; the
    # retry (mean clamped to the max) must return log-probabilities: log(1/3), not 1/3
    x = torch.tensor([[-43.06771093] * 3, ROWS[1][:3]], dtype=torch.float32)
    assert bool(x[0].mean() > x[0, 0])  # the fixture does trigger the retry
    out = log_ev_softmax(x)
    want = torch.tensor(
        [[-math.log(3.0)] * 3, [math.log(p) if p else -math.inf for p in definition(ROWS[1][:3])]]
    )
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(ev_softmax(x), want.exp())
    torch.testing.assert_close(LogEvSoftmax().eval()(x), want)


def test_modules_use_eps_in_training_and_the_exact_map_in_eval():
    x = torch.tensor(ROWS)
    m, lm = EvSoftmax(eps=0.2), LogEvSoftmax(eps=0.2)
    torch.testing.assert_close(m(x), expected(ROWS, 0.2, torch.float32))
    torch.testing.assert_close(lm(x), log_expected(ROWS, 0.2, torch.float32))
    m.eval()
    lm.eval()
    torch.testing.assert_close(m(x), expected(ROWS, 0.0, torch.float32))
    torch.testing.assert_close(lm(x), log_expected(ROWS, 0.0, torch.float32))
    # the stored dim is used, and a mask is passed through
    lm0 = LogEvSoftmax(dim=0, eps=0.2).eval()
    torch.testing.assert_close(lm0(x.T), log_expected(ROWS, 0.0, torch.float32).T)
    mask = torch.tensor([[True, True, True, False]] * 3)
    want = expected(ROWS, 0.0, torch.float32, valid=mask.tolist())
    torch.testing.assert_close(m(x, mask), want)
    torch.testing.assert_close(lm(x, mask), want.log())
    assert repr(lm0) == "LogEvSoftmax(dim=0, eps=0.2)"


def test_gradient_is_the_closed_form_on_the_support():
    x = torch.tensor(ROWS, dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[0.3, -1.2, 0.7, 2.0], [1.1, 0.4, -0.6, -2.2], [-0.9, 0.5, 1.7, 0.2]])
    g = g.double()
    for eps in (0.0, 0.4):
        p = ev_softmax(x, eps=eps)
        (grad,) = torch.autograd.grad(p, x, g)
        torch.testing.assert_close(grad, p * (g - (g * p).sum(-1, keepdim=True)))
        logp = log_ev_softmax(x, eps=eps)
        (grad,) = torch.autograd.grad(logp, x, g)
        # d log p_i / d x_j = 1{i = j} - p_j on the support; off it log p_i = -inf is constant
        on = p > 0
        gs = torch.where(on, g, 0.0)
        torch.testing.assert_close(grad, torch.where(on, gs - p * gs.sum(-1, keepdim=True), 0.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    x = torch.tensor(ROWS).to(dtype)
    want = expected(x.double().tolist(), 0.1)
    p = ev_softmax(x, eps=0.1)
    assert p.dtype == dtype
    torch.testing.assert_close(p.double(), want, atol=4e-3, rtol=0)
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(ev_softmax(xr).double()[:, 0].sum(), xr)
    assert grad.dtype == dtype
    p = expected(x.double().tolist())
    onehot = torch.zeros_like(p)
    onehot[:, 0] = 1
    torch.testing.assert_close(grad.double(), p * (onehot - p[:, :1]), atol=1e-2, rtol=0)
    # the log form: d log p_0 / dx = e_0 - p on the support (its float32 buffers meet a half grad)
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(log_ev_softmax(xr)[:, 0].sum(), xr)
    assert grad.dtype == dtype
    torch.testing.assert_close(
        grad.double(), torch.where(p > 0, onehot - p, 0.0), atol=1e-2, rtol=0
    )


# --- the fused kernel, reached through ev_softmax -------------------------------------------------


@pytest.fixture
def fused_calls(monkeypatch):
    """The fused path with the kernel's body instead of its compilation; records the rows it got."""
    calls: list[tuple[tuple[int, ...], float]] = []

    def compiled(rows, eps):
        calls.append((tuple(rows.shape), eps))
        return _fused._body

    monkeypatch.setattr(_fused, "_compiled", compiled)
    monkeypatch.setattr(_fused, "MIN_NUMEL", 12)
    monkeypatch.setitem(_fused._state, "failed", False)
    monkeypatch.delenv("SIMPLEXITY_COMPILE", raising=False)
    return calls


@pytest.mark.parametrize("eps", [0.0, 0.25])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_path_is_taken_for_large_unmasked_rows_along_the_last_dim(fused_calls, eps, dtype):
    x = torch.tensor(ROWS, dtype=dtype)  # 12 elements: exactly the threshold
    torch.testing.assert_close(ev_softmax(x, eps=eps), expected(ROWS, eps, dtype))
    torch.testing.assert_close(ev_softmax(x, 1, eps=eps), expected(ROWS, eps, dtype))
    assert fused_calls == [((3, 4), eps), ((3, 4), eps)]
    # a batch of rows is flattened to (rows, K)
    batch = torch.stack([x, x.flip(0)])
    want = torch.stack([expected(ROWS, eps, dtype), expected(ROWS[::-1], eps, dtype)])
    torch.testing.assert_close(ev_softmax(batch, eps=eps), want)
    assert fused_calls[-1] == ((6, 4), eps)


def test_fused_path_gradient_is_the_closed_form(fused_calls):
    x = torch.tensor(ROWS, dtype=torch.float64, requires_grad=True)
    p = ev_softmax(x)
    assert fused_calls
    g = torch.tensor(
        [[0.3, -1.2, 0.7, 2.0], [1.1, 0.4, -0.6, -2.2], [-0.9, 0.5, 1.7, 0.2]]
    ).double()
    (grad,) = torch.autograd.grad(p, x, g)
    torch.testing.assert_close(p, expected(ROWS))
    torch.testing.assert_close(grad, p * (g - (g * p).sum(-1, keepdim=True)))


def test_fused_path_is_not_taken_below_the_threshold_or_off_its_domain(fused_calls, monkeypatch):
    x = torch.tensor(ROWS)
    want = expected(ROWS, dtype=torch.float32)
    # masked inputs never reach the kernel, which has no mask: the mean is over the valid entries
    mask = torch.tensor([[True, False, True, True]] * 3)
    masked_want = expected(ROWS, dtype=torch.float32, valid=mask.tolist())
    torch.testing.assert_close(ev_softmax(x, mask=mask), masked_want)
    torch.testing.assert_close(ev_softmax(x, mask=torch.ones_like(mask)), want)
    # another dimension, a non-contiguous last dimension, a low-precision dtype, fewer elements
    torch.testing.assert_close(ev_softmax(x.T.contiguous(), 0), want.T)
    torch.testing.assert_close(ev_softmax(x.T.contiguous().T), want)
    torch.testing.assert_close(ev_softmax(x.half()).float(), want, atol=2e-3, rtol=0)
    torch.testing.assert_close(ev_softmax(x[:2, :3]), expected([r[:3] for r in ROWS[:2]]).float())
    # one row (a row count the compiler would specialize on)
    row = torch.tensor([ROWS[0] * 3])
    torch.testing.assert_close(ev_softmax(row), expected([ROWS[0] * 3], dtype=torch.float32))
    monkeypatch.setenv("SIMPLEXITY_COMPILE", "0")
    torch.testing.assert_close(ev_softmax(x), want)
    assert fused_calls == []


def test_fused_path_leaves_rows_with_invalid_entries_to_the_eager_path(fused_calls):
    x = torch.tensor(ROWS, dtype=torch.float64)
    x[1, 0] = -math.inf
    valid = [[True] * 4, [False, True, True, True], [True] * 4]
    torch.testing.assert_close(ev_softmax(x), expected(ROWS, valid=valid))
    assert fused_calls == [((3, 4), 0.0)]  # tried, found a non-finite row sum, fell back
    x[1, 0] = math.nan
    p = ev_softmax(x)
    assert p[1].isnan().all()
    torch.testing.assert_close(p[[0, 2]], expected([ROWS[0], ROWS[2]]))


def test_fused_kernel_bounds_direct(fused_calls):
    x = torch.tensor(ROWS, dtype=torch.float64)
    assert _fused.fused_ev_softmax(x, 0.0, min_numel=13) is None  # the argument wins over MIN_NUMEL
    torch.testing.assert_close(_fused.fused_ev_softmax(x, 0.0, min_numel=12), expected(ROWS))
    torch.testing.assert_close(
        _fused.fused_ev_softmax(x[:, :3].contiguous(), 0.5, min_numel=0),
        expected([r[:3] for r in ROWS], 0.5),
    )
    assert _fused.fused_ev_softmax(torch.tensor(2.0), 0.0, min_numel=0) is None
    assert _fused.fused_ev_softmax(torch.zeros(0, 4), 0.0, min_numel=0) is None
    assert _fused.fused_ev_softmax(torch.zeros(2, 0), 0.0, min_numel=0) is None  # no row length
    assert _fused.fused_ev_softmax(x[:1], 0.0, min_numel=0) is None
    two = _fused.fused_ev_softmax(x[:2], 0.0, min_numel=0)
    torch.testing.assert_close(two, expected(ROWS[:2]))
    assert _fused.fused_ev_softmax(x.int(), 0.0, min_numel=0) is None
    assert _fused.fused_ev_softmax(x.T, 0.0, min_numel=0) is None
    assert fused_calls == [((3, 4), 0.0), ((3, 3), 0.5), ((2, 4), 0.0)]


def test_fused_kernel_caps_the_mean_at_the_max():
    # the kernel itself (uncompiled): equal float32 logits whose rounded mean exceeds them stay uniform
    x = torch.full((2, 3), -43.06771093)
    probs, finite = _fused._body(x, 0.0)
    torch.testing.assert_close(probs, torch.full((2, 3), 1 / 3))
    assert bool(finite)
    probs, finite = _fused._body(torch.tensor([[1.0, -math.inf, 0.0], [1.0, 2.0, 3.0]]), 0.0)
    assert not bool(finite)


# --- the training loss ---------------------------------------------------------------------------


def nll(rows, targets, eps):
    return torch.tensor([-math.log(definition(r, eps)[t]) for r, t in zip(rows, targets)])


def test_loss_values_weights_ignore_index_and_smoothing():
    x = torch.tensor(ROWS, dtype=torch.float64)
    y = torch.tensor([2, 3, 0])
    eps = 0.05
    each = nll(ROWS, y.tolist(), eps).double()
    torch.testing.assert_close(ev_softmax_loss(x, y, eps=eps), each.mean())
    torch.testing.assert_close(ev_softmax_loss(x, y, eps=eps, reduction="sum"), each.sum())
    torch.testing.assert_close(ev_softmax_loss(x, y, eps=eps, reduction="none"), each)
    ignored = torch.tensor([2, -1, 0])
    torch.testing.assert_close(
        ev_softmax_loss(x, ignored, eps=eps, ignore_index=-1), each[[0, 2]].mean()
    )
    w = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    wy = w[y]
    torch.testing.assert_close(
        ev_softmax_loss(x, y, eps=eps, weight=w), (wy * each).sum() / wy.sum()
    )
    lam = 0.3
    logp = torch.tensor([[math.log(p) for p in definition(r, eps)] for r in ROWS]).double()
    smooth = -(1 - lam) * logp.gather(1, y[:, None]).squeeze(1) - lam * logp.mean(1)
    torch.testing.assert_close(ev_softmax_loss(x, y, eps=eps, label_smoothing=lam), smooth.mean())
    module = EvSoftmaxLoss(eps=eps, reduction="sum", ignore_index=-1, label_smoothing=lam, weight=w)
    # with class weights, torch weights the smoothing term of class k by w_k
    weighted = -(1 - lam) * wy * logp.gather(1, y[:, None]).squeeze(1) - lam * (w * logp).mean(1)
    torch.testing.assert_close(module(x, y), weighted.sum())
    assert repr(module) == "EvSoftmaxLoss(eps=0.05, reduction='sum', ignore_index=-1)"
    # probability targets: the cross-entropy against the distribution
    t = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]]).double()
    torch.testing.assert_close(ev_softmax_loss(x, t, eps=eps), -(t * logp).sum(1).mean())
    # classes on dim 1 of (N, C, d)
    x3 = torch.stack([x, x.flip(0)], -1)
    y3 = torch.stack([y, y.flip(0)], -1)
    both = torch.stack([each, nll(ROWS[::-1], y.flip(0).tolist(), eps).double()], -1)
    torch.testing.assert_close(ev_softmax_loss(x3, y3, eps=eps, reduction="none"), both)


def test_loss_default_eps_and_eps_zero():
    x = torch.tensor(ROWS, dtype=torch.float64)
    y = torch.tensor([0, 0, 3])
    torch.testing.assert_close(ev_softmax_loss(x, y), nll(ROWS, [0, 0, 3], 1e-6).double().mean())
    torch.testing.assert_close(EvSoftmaxLoss()(x, y), nll(ROWS, [0, 0, 3], 1e-6).double().mean())
    torch.testing.assert_close(
        ev_softmax_loss(x, y, eps=0.0), nll(ROWS, [0, 0, 3], 0.0).double().mean()
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"label_smoothing": 1.5},
            ValueError,
            r"label_smoothing must be a number in \[0, 1\], got 1.5",
        ),
        (
            {"label_smoothing": -0.1},
            ValueError,
            r"label_smoothing must be a number in \[0, 1\], got -0.1",
        ),
        (
            {"label_smoothing": True},
            ValueError,
            r"label_smoothing must be a number in \[0, 1\], got True",
        ),
        (
            {"label_smoothing": "0.1"},
            ValueError,
            r"label_smoothing must be a number in \[0, 1\], got '0.1'",
        ),
        ({"reduction": "avg"}, ValueError, r"reduction must be 'mean', 'sum' or 'none', got 'avg'"),
        ({"ignore_index": 1.5}, TypeError, r"ignore_index must be an int, got float"),
        ({"eps": -0.5}, ValueError, r"eps must be a finite number >= 0, got -0.5"),
        ({"eps": math.inf}, ValueError, r"eps must be a finite number >= 0, got inf"),
    ],
)
def test_loss_option_checks(kwargs, error, message):
    x, y = torch.tensor(ROWS), torch.tensor([0, 1, 2])
    with pytest.raises(error, match=message):
        ev_softmax_loss(x, y, **kwargs)
    with pytest.raises(error, match=message):
        EvSoftmaxLoss(**kwargs)


def test_loss_smoothing_bounds_are_allowed():
    x, y = torch.tensor(ROWS, dtype=torch.float64), torch.tensor([0, 1, 2])
    logp = torch.tensor([[math.log(p) for p in definition(r, 0.1)] for r in ROWS]).double()
    torch.testing.assert_close(
        ev_softmax_loss(x, y, eps=0.1, label_smoothing=1), -logp.mean(1).mean()
    )
    torch.testing.assert_close(
        ev_softmax_loss(x, y, eps=0.1, label_smoothing=0), nll(ROWS, [0, 1, 2], 0.1).double().mean()
    )


def test_loss_tensor_checks():
    x = torch.tensor(ROWS)
    with pytest.raises(
        ValueError,
        match=r"input must have shape \(N, C\) or \(N, C, d1, \.\.\.\) with classes on dim 1, got \(4,\)",
    ):
        ev_softmax_loss(x[0], torch.tensor(1))
    with pytest.raises(
        ValueError, match=r"probability targets must have input's shape \(3, 4\), got \(3, 3\)"
    ):
        ev_softmax_loss(x, torch.full((3, 3), 1 / 3))
    with pytest.raises(
        ValueError,
        match=r"target must hold integer class indices of shape \(3,\) \(or probabilities of shape \(3, 4\)\), got \(2,\) torch.int64",
    ):
        ev_softmax_loss(x, torch.tensor([0, 1]))
    with pytest.raises(
        ValueError, match=r"target must hold integer class indices of shape \(3,\).*torch.bool"
    ):
        ev_softmax_loss(x, torch.tensor([True, False, True]))
    with pytest.raises(
        ValueError, match=r"target class indices must be in \[0, 4\) or equal ignore_index=-100"
    ):
        ev_softmax_loss(x, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"^target class indices must be in \[0, 4\)"):
        ev_softmax_loss(x, torch.tensor([0, -1, 1]))
    with pytest.raises(
        TypeError, match=r"input must be a floating-point tensor .* got dtype torch.int64"
    ):
        ev_softmax_loss(x.long(), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match=r"^target must be a torch.Tensor, got list"):
        ev_softmax_loss(x, [0, 1, 2])  # type: ignore[arg-type]
    # ignored entries may hold any index; the last class is a valid one
    torch.testing.assert_close(
        ev_softmax_loss(x.double(), torch.tensor([3, -100, 0]), eps=0.1),
        nll([ROWS[0], ROWS[2]], [3, 0], 0.1).double().mean(),
    )


def test_function_argument_checks():
    x = torch.tensor(ROWS)
    with pytest.raises(
        ValueError, match=r"^x must have at least one dimension \(the one to normalize\)"
    ):
        ev_softmax(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"^x must have at least one dimension"):
        log_ev_softmax(torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"^x must be a floating-point tensor"):
        log_ev_softmax(x.long())
    with pytest.raises(ValueError, match=r"^eps must be a finite number >= 0, got -1"):
        log_ev_softmax(x, eps=-1)
    with pytest.raises(ValueError, match=r"^eps must be a finite number >= 0, got -0.1"):
        EvSoftmax(eps=-0.1)
    with pytest.raises(
        IndexError, match=r"dim=-3 is out of range for a tensor with 2 dimension\(s\)"
    ):
        log_ev_softmax(x, dim=-3)
    with pytest.raises(ValueError, match=r"^mask of shape \(3, 5\) does not broadcast"):
        log_ev_softmax(x, mask=torch.ones(3, 5, dtype=torch.bool))
    # a broadcastable mask (one per column) is accepted
    mask = torch.tensor([True, True, False, True])
    want = expected(ROWS, dtype=torch.float32, valid=[mask.tolist()] * 3)
    torch.testing.assert_close(ev_softmax(x, mask=mask), want)


def test_rows_without_valid_entries_are_zero_in_both_forms():
    x = torch.tensor(ROWS, dtype=torch.float64)
    mask = torch.tensor([[False] * 4, [True] * 4, [False] * 4])
    for eps in (0.0, 0.2):
        p = ev_softmax(x, mask=mask, eps=eps)
        assert (p[[0, 2]] == 0).all()
        torch.testing.assert_close(p[1], expected([ROWS[1]], eps)[0])
        logp = log_ev_softmax(x, mask=mask, eps=eps)
        assert (logp[[0, 2]] == -math.inf).all()
        torch.testing.assert_close(logp[1], log_expected([ROWS[1]], eps)[0])


def test_inplace_threshold_keeps_the_input_and_its_graph():
    # without autograd the eager path thresholds in place: on its own buffer, never on x
    x = torch.tensor(ROWS)
    before = x.clone()
    with torch.no_grad():
        ev_softmax(x)
        log_ev_softmax(x)
    assert torch.equal(x, before)
    ev_module = importlib.import_module("simplexity.normalizers.ev_softmax")
    assert ev_module._off_support_offset(0.0) == -math.inf
    assert ev_module._off_support_offset(0.25) == pytest.approx(math.log(0.25 / 1.25))


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_one_category_has_probability_one_and_none_an_empty_result(eps):
    x = torch.tensor([[2.5], [-1.0]])
    for mask in (None, torch.ones_like(x, dtype=torch.bool)):
        torch.testing.assert_close(ev_softmax(x, mask=mask, eps=eps), torch.ones(2, 1))
        torch.testing.assert_close(log_ev_softmax(x, mask=mask, eps=eps), torch.zeros(2, 1))
    torch.testing.assert_close(ev_softmax(x.T, 0, eps=eps), torch.ones(1, 2))
    torch.testing.assert_close(log_ev_softmax(x.T, 0, eps=eps), torch.zeros(1, 2))
    empty = torch.zeros(3, 0)
    assert ev_softmax(empty, eps=eps).shape == (3, 0)
    assert log_ev_softmax(empty, eps=eps).shape == (3, 0)


def test_module_defaults_and_dim():
    x = torch.tensor(ROWS, dtype=torch.float64)
    m = EvSoftmax()
    assert repr(m) == "EvSoftmax(dim=-1, eps=1e-06)"
    torch.testing.assert_close(m(x), expected(ROWS, 1e-6))
    torch.testing.assert_close(LogEvSoftmax()(x), log_expected(ROWS, 1e-6))
    m0 = EvSoftmax(dim=0, eps=0.2)
    torch.testing.assert_close(m0(x.T), expected(ROWS, 0.2).T)
    torch.testing.assert_close(m0.eval()(x.T), expected(ROWS).T)


def test_loss_mean_over_a_single_kept_position():
    x = torch.tensor(ROWS, dtype=torch.float64)
    y = torch.tensor([-100, 1, -100])
    torch.testing.assert_close(ev_softmax_loss(x, y, eps=0.1), nll([ROWS[1]], [1], 0.1).double()[0])


def test_compiled_kernel_is_used_and_keyed_by_row_length_dtype_and_eps(monkeypatch):
    # with a compiler, a failing compilation is a bug, not a reason to skip: no fallback warning
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        pytest.skip("no C++ compiler: the fused kernel falls back to the eager path")
    state = {"fn": None, "generic": None, "failed": False, "seen": set()}
    monkeypatch.setattr(_fused, "_state", state)
    monkeypatch.setattr(_fused, "MAX_STATIC", 1)
    monkeypatch.delenv("SIMPLEXITY_COMPILE", raising=False)
    x = torch.tensor(ROWS, dtype=torch.float64)
    key = (4, torch.float64, 0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        torch.testing.assert_close(
            _fused.fused_ev_softmax(x, 0.25, min_numel=0), expected(ROWS, 0.25)
        )
        assert not state["failed"] and state["seen"] == {key}
        static = state["fn"]
        assert static is not None and state["generic"] is None
        # the same key again (other rows): the static compilation
        flipped = _fused.fused_ev_softmax(x.flip(0).contiguous(), 0.25, min_numel=0)
        torch.testing.assert_close(flipped, expected(ROWS[::-1], 0.25))
        assert state["fn"] is static and state["generic"] is None
        # a new row length past MAX_STATIC keys: the shape-generic compilation, the keys unchanged
        y = x[:, :3].contiguous()
        torch.testing.assert_close(
            _fused.fused_ev_softmax(y, 0.0, min_numel=0), expected([r[:3] for r in ROWS])
        )
        assert state["generic"] is not None and state["seen"] == {key}
        assert not state["failed"]


def test_fused_kernel_body_works_row_by_row():
    # the shift and the cap are per row: rows of very different scales, and a row whose rounded
    # mean exceeds its own max beside a row with a larger max
    far = [[1000.0, 999.0, 998.5, 997.0], [0.5, -1.0, -2.0, 3.0]]
    probs, finite = _fused._body(torch.tensor(far, dtype=torch.float64), 0.1)
    torch.testing.assert_close(probs, expected([[v - 990 for v in far[0]], far[1]], 0.1))
    assert bool(finite)
    x = torch.tensor([[-43.06771093] * 3, [5.0, 6.0, 7.0]])
    probs, _ = _fused._body(x, 0.0)
    torch.testing.assert_close(probs, torch.tensor([[1 / 3] * 3, definition([5.0, 6.0, 7.0])]))
    for eps in (1.0, 0.0):  # eps = 1 is a full-support weight (2 on the support, 1 off it)
        probs, _ = _fused._body(torch.tensor(ROWS, dtype=torch.float64), eps)
        torch.testing.assert_close(probs, expected(ROWS, eps))


def test_a_failed_compilation_warns_once_and_is_not_retried(monkeypatch):
    attempts = []

    def broken(rows, eps):
        attempts.append(rows.shape)
        raise RuntimeError("no compiler")

    state = {"fn": None, "generic": None, "failed": False, "seen": set()}
    monkeypatch.setattr(_fused, "_state", state)
    monkeypatch.setattr(_fused, "_compiled", lambda rows, eps: broken)
    monkeypatch.setattr(_fused, "MIN_NUMEL", 0)
    x = torch.tensor(ROWS)
    with pytest.warns(
        RuntimeWarning, match=r"unavailable \(RuntimeError: no compiler\); using the eager"
    ) as record:
        torch.testing.assert_close(ev_softmax(x), expected(ROWS, dtype=torch.float32))
    assert state["failed"] is True
    # the warning names the caller of ev_softmax (under mutmut, the trampoline that calls the
    # mutated function: mutmut runs a copy of the tests under mutants/)
    in_mutmut = "mutants" in Path(__file__).parts
    caller = "mutmut/mutation/trampoline.py" if in_mutmut else __file__
    assert record[0].filename.endswith(caller)
    state["failed"] = False  # and of a module, through torch's own frames
    with pytest.warns(RuntimeWarning, match=r"^simplexity: the compiled") as record:
        EvSoftmax()(x)
    assert record[0].filename.endswith(caller)
    state["failed"] = True
    attempts.pop()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(ev_softmax(x, eps=0.5), expected(ROWS, 0.5, torch.float32))
    assert attempts == [(3, 4)]


@pytest.mark.parametrize("eps", [0.0, 0.5])
def test_an_entry_below_the_mean_by_the_smallest_normal_is_off_the_support(eps):
    tiny = torch.finfo(torch.float32).tiny
    x = torch.tensor([[-tiny, tiny, 0.0]])  # mean 0 exactly: the first entry is below it
    want = torch.tensor([[eps, 1 + eps, 1 + eps]]) / (eps + 2 * (1 + eps))
    torch.testing.assert_close(ev_softmax(x, eps=eps), want)
    torch.testing.assert_close(
        ev_softmax(x, mask=torch.ones_like(x, dtype=torch.bool), eps=eps), want
    )


def test_masked_rows_whose_rounded_mean_exceeds_their_valid_entries_stay_uniform():
    x = torch.tensor([[-43.06771093] * 3 + [5.0]])
    mask = torch.tensor([[True, True, True, False]])
    want = torch.tensor([[1 / 3] * 3 + [0.0]])
    torch.testing.assert_close(ev_softmax(x, mask=mask), want)
    torch.testing.assert_close(log_ev_softmax(x, mask=mask), want.log())


def test_loss_module_passes_ignore_index():
    x = torch.tensor(ROWS, dtype=torch.float64)
    y = torch.tensor([2, -1, 0])
    want = nll([ROWS[0], ROWS[2]], [2, 0], 0.1).double().mean()
    torch.testing.assert_close(EvSoftmaxLoss(eps=0.1, ignore_index=-1)(x, y), want)
