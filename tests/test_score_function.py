"""Tests of the score-function surrogate (simplexity.distributions.score_function).

The truth is the exact gradient of E[f] by enumeration over the categories (one categorical and a
pair of them); the estimators' means over many independent estimates must agree with it within
four standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, OneHotCategorical

from default_dtype import default_dtype
from exact_error import raises_exactly
from simplexity.distributions import RunningMean, score_function_surrogate


@pytest.fixture(autouse=True)
def _float64():
    with default_dtype(torch.float64):
        yield


def _exact_single(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    theta = logits.clone().requires_grad_()
    (grad,) = torch.autograd.grad((torch.softmax(theta, -1) * values).sum(), theta)
    return grad


def _estimates(logits: torch.Tensor, values: torch.Tensor, baseline, num_samples: int, reps: int):
    """``reps`` independent estimates of ∇ E[f], each from ``num_samples`` samples (S, reps)."""
    theta = logits.expand(reps, -1).clone().requires_grad_()
    q = Categorical(logits=theta)
    d = q.sample((num_samples,))  # (S, reps)
    f = values[d]
    loss = score_function_surrogate(f, q.log_prob(d), baseline)  # (reps,)
    loss.sum().backward()
    return theta.grad


@pytest.mark.parametrize("baseline", [None, "rloo", "running"])
def test_unbiased_on_one_categorical(baseline) -> None:
    torch.manual_seed(0)
    logits = torch.tensor([0.3, -1.0, 0.8, 0.0, -0.2, 1.1])
    values = torch.tensor([3.0, -1.0, 0.5, 2.0, 10.0, -4.0])
    exact = _exact_single(logits, values)
    if baseline == "running":
        running = RunningMean(decay=0.5)
        running.update(torch.tensor([5.0]))  # a baseline far from the mean still leaves no bias
        grads = _estimates(logits, values, running, 4, 50_000)
    else:
        grads = _estimates(logits, values, baseline, 4, 50_000)
    mean, se = grads.mean(0), grads.std(0) / math.sqrt(len(grads))
    assert bool(((mean - exact).abs() <= 4 * se).all()), (mean, exact, se)


def test_rloo_has_less_variance_and_the_test_can_fail() -> None:
    torch.manual_seed(1)
    logits = torch.tensor([0.3, -1.0, 0.8, 0.0])
    values = torch.tensor([10.0, 11.0, 12.0, 9.0])  # a large common offset: REINFORCE suffers
    plain = _estimates(logits, values, None, 4, 20_000)
    rloo = _estimates(logits, values, "rloo", 4, 20_000)
    assert float(rloo.var(0).sum()) < 0.05 * float(plain.var(0).sum())
    # a biased "estimator" (a baseline that depends on the sample itself) is caught
    theta = logits.expand(20_000, -1).clone().requires_grad_()
    q = Categorical(logits=theta)
    d = q.sample((4,))
    f = values[d]
    biased = ((f - 0.5 * f).detach() * q.log_prob(d)).mean(0)
    biased.sum().backward()
    exact = _exact_single(logits, values)
    mean, se = theta.grad.mean(0), theta.grad.std(0) / math.sqrt(20_000)
    assert bool(((mean - exact).abs() > 4 * se).any())


def test_unbiased_on_a_pair_of_categoricals() -> None:
    r"""f(D_1, D_2) = D_1ᵀ A D_2 over two categoricals (K = 4 and 5): the exact gradient by
    enumerating the 20 pairs; RLOO over S = 3 joint samples."""
    torch.manual_seed(2)
    a = torch.randn(4, 5) * 3
    l1, l2 = torch.randn(4), torch.randn(5)
    t1, t2 = l1.clone().requires_grad_(), l2.clone().requires_grad_()
    exact = torch.autograd.grad(torch.softmax(t1, -1) @ a @ torch.softmax(t2, -1), (t1, t2))
    reps = 40_000
    theta1 = l1.expand(reps, -1).clone().requires_grad_()
    theta2 = l2.expand(reps, -1).clone().requires_grad_()
    q1, q2 = OneHotCategorical(logits=theta1), OneHotCategorical(logits=theta2)
    d1, d2 = q1.sample((3,)), q2.sample((3,))
    f = torch.einsum("srk,kl,srl->sr", d1, a, d2)
    score_function_surrogate(f, q1.log_prob(d1) + q2.log_prob(d2), "rloo").sum().backward()
    for grad, truth in zip((theta1.grad, theta2.grad), exact):
        mean, se = grad.mean(0), grad.std(0) / math.sqrt(reps)
        assert bool(((mean - truth).abs() <= 4 * se).all())


def test_value_dim_and_pathwise_gradient() -> None:
    torch.manual_seed(3)
    w = torch.tensor(2.0, requires_grad=True)  # a parameter f depends on directly (a decoder)
    logits = torch.zeros(2, 3, requires_grad=True)
    q = Categorical(logits=logits)
    d = q.sample((5,))  # (5, 2)
    f = w * d.to(w.dtype)
    loss = score_function_surrogate(f.movedim(0, 1), q.log_prob(d).movedim(0, 1), "rloo", dim=1)
    assert loss.shape == (2,)
    torch.testing.assert_close(loss, f.mean(0))
    loss.sum().backward()
    torch.testing.assert_close(w.grad, d.to(w.dtype).mean(0).sum())  # ∂ mean f / ∂w


def test_rloo_equals_the_centred_form() -> None:
    r"""(1/S) Σ (f_s - b_s) ∇log q_s with the leave-one-out b_s is (1/(S-1)) Σ (f_s - f̄) ∇log q_s."""
    f = torch.tensor([1.0, 4.0, -2.0, 0.5])
    log_prob = torch.randn(4, requires_grad=True)
    (grad,) = torch.autograd.grad(score_function_surrogate(f, log_prob, "rloo"), log_prob)
    torch.testing.assert_close(grad, (f - f.mean()) / 3)


def test_gradients_of_the_surrogate() -> None:
    """Its value does not depend on log_prob (so it is not gradcheck-able by design): the gradient
    is (f - b)/S with respect to log_prob and 1/S with respect to f (the pathwise part)."""
    f = torch.randn(4, 3, requires_grad=True)
    log_prob = torch.randn(4, 3, requires_grad=True)
    loss = score_function_surrogate(f, log_prob)
    torch.testing.assert_close(loss, f.mean(0))
    grad_f, grad_lp = torch.autograd.grad(loss.sum(), (f, log_prob))
    torch.testing.assert_close(grad_f, torch.full((4, 3), 0.25))
    torch.testing.assert_close(grad_lp, f.detach() / 4)


def test_running_mean() -> None:
    running = RunningMean(decay=0.9)
    assert float(running.value) == 0.0
    f = torch.tensor([[1.0], [3.0]])
    log_prob = torch.zeros(2, 1, requires_grad=True)
    score_function_surrogate(f, log_prob, running).sum().backward()
    torch.testing.assert_close(log_prob.grad, f / 2)  # baseline 0 before the first update
    assert float(running.value) == 2.0 and int(running.count) == 1
    log_prob.grad = None
    score_function_surrogate(f, log_prob, running).sum().backward()
    torch.testing.assert_close(log_prob.grad, (f - 2.0) / 2)  # the value before this batch
    torch.testing.assert_close(running.value, torch.tensor(0.9 * 2.0 + 0.1 * 2.0))
    state = running.state_dict()
    assert set(state) == {"value", "count"}
    copy = RunningMean(0.9)
    copy.load_state_dict(state)
    assert int(copy.count) == 2


def test_bad_arguments_name_the_argument_and_the_expected_form() -> None:
    f, lp = torch.randn(3), torch.randn(3)
    floating = "must be a floating-point tensor (float16, bfloat16, float32 or float64), got "
    cases = [
        ((f, torch.randn(4)), {}, ValueError,
         "f_values and log_prob must have the same shape, got (3,) and (4,)"),
        ((torch.randn(1, 2), torch.randn(1, 2), "rloo"), {}, ValueError,
         "the 'rloo' baseline needs at least 2 samples along dim=0, got 1"),
        ((f, lp, "mean"), {}, ValueError,
         "baseline must be None, 'rloo' or a RunningMean, got 'mean'"),
        ((f, lp, 0.5), {}, TypeError, "baseline must be None, 'rloo' or a RunningMean, got float"),
        ((torch.ones(3, dtype=torch.long), lp), {}, TypeError, f"f_values {floating}dtype torch.int64"),
        ((f, torch.ones(3, dtype=torch.long)), {}, TypeError, f"log_prob {floating}dtype torch.int64"),
        ((f, lp), {"dim": 1}, IndexError,
         "dim=1 is out of range for a tensor with 1 dimension(s) (expected an int in [-1, 0])"),
        ((f, lp), {"dim": 0.0}, TypeError, "dim must be an int, got float"),
        ((torch.tensor(1.0), torch.tensor(0.0)), {}, ValueError,
         "f_values must have a sample dimension (shape (S, ...)), got a scalar"),
    ]  # fmt: skip
    for args, kwargs, error, message in cases:
        with raises_exactly(error, message):
            score_function_surrogate(*args, **kwargs)
    for decay in (1.0, -0.1, True, "0.5"):
        with raises_exactly(ValueError, f"decay must be a number in [0, 1), got {decay!r}"):
            RunningMean(decay=decay)
    with pytest.raises(TypeError, match=r"^values must be a floating-point tensor"):
        RunningMean().update(torch.ones(2, dtype=torch.long))


def test_rloo_with_two_samples_and_the_running_mean_defaults() -> None:
    # S = 2: each sample's baseline is the other one's value
    f = torch.tensor([1.0, 4.0])
    log_prob = torch.zeros(2, requires_grad=True)
    score_function_surrogate(f, log_prob, "rloo").backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([-3.0, 3.0]) / 2)
    # the default decay is 0.9; decay 0 keeps only the last batch; the count is an integer buffer
    running, last = RunningMean(), RunningMean(decay=0)
    assert running.decay == 0.9 and repr(running) == "RunningMean(decay=0.9)"
    assert running.count.dtype == torch.long and running.value.dtype == torch.get_default_dtype()
    for values, expected in (([2.0, 4.0], 3.0), ([13.0], 0.9 * 3.0 + 0.1 * 13.0)):
        torch.testing.assert_close(running.update(torch.tensor(values)), torch.tensor(expected))
        last.update(torch.tensor(values))
    assert float(last.value) == 13.0 and int(running.count) == 2


def test_a_running_mean_baseline_keeps_the_dtype_of_the_values() -> None:
    """A float32 baseline buffer beside bfloat16 values (mixed precision): the surrogate stays bfloat16."""
    running = RunningMean().float()
    running.update(torch.tensor([1.0]))
    f = torch.tensor([1.5, 2.5], dtype=torch.bfloat16)
    log_prob = torch.zeros(2, dtype=torch.bfloat16, requires_grad=True)
    loss = score_function_surrogate(f, log_prob, running)
    assert loss.dtype == torch.bfloat16 and float(loss.detach()) == 2.0
    loss.backward()
    assert log_prob.grad.dtype == torch.bfloat16
    torch.testing.assert_close(
        log_prob.grad.float(), torch.tensor([0.25, 0.75], dtype=torch.float32)
    )
