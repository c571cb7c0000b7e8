"""Tests of simplexity.nn.output: NormalizedOutput and the "posthoc_evidential" name."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from exact_error import raises_exactly
from simplexity import normalizers
from simplexity.nn.output import NormalizedOutput, output_layer

NAMES = normalizers.names()
DT = torch.float64


def make(name: str, f: int = 5, k: int = 7, **kw) -> NormalizedOutput:
    return output_layer(name, f, k, **kw).to(DT)


@pytest.mark.parametrize("name", NAMES)
def test_loss_equals_normalizer_loss_on_logits(name):
    layer = make(name)
    h = torch.randn(4, 3, 5, dtype=DT)
    y = torch.randint(7, (4, 3))
    y[0, 1] = -100
    logits = layer(h)
    norm = normalizers.get(name)
    for reduction in ("mean", "sum", "none"):
        ours = layer.loss(h, y, reduction=reduction)
        theirs = norm.loss(logits.movedim(-1, 1), y, reduction=reduction)
        torch.testing.assert_close(ours, theirs)
    # (N, F) layout too, and ignore_index honoured
    ours = layer.loss(h[:, 0], y[:, 0], ignore_index=3)
    torch.testing.assert_close(ours, norm.loss(logits[:, 0], y[:, 0], ignore_index=3))


def test_ev_softmax_loss_is_nll_of_training_form():
    layer = make("ev_softmax", normalizer_options={"eps": 1e-2})
    h, y = torch.randn(6, 5, dtype=DT), torch.randint(7, (6,))
    layer.train()
    nll = -layer.log_probs(h).gather(1, y[:, None]).mean()
    torch.testing.assert_close(layer.loss(h, y), nll)


@pytest.mark.parametrize("name", NAMES)
def test_label_smoothing_is_mixture_of_per_class_losses(name):
    layer = make(name)
    h, y = torch.randn(6, 5, dtype=DT), torch.randint(7, (6,))
    y[2] = -100
    lam = 0.3
    logits = layer(h)
    norm = normalizers.get(name)
    per_class = torch.stack(
        [norm.loss(logits, torch.full_like(y, c), reduction="none") for c in range(7)], -1
    )
    plain = norm.loss(logits, y, reduction="none")
    keep = y != -100
    expected = torch.where(keep, (1 - lam) * plain + lam * per_class.mean(-1), 0.0)
    ours = layer.loss(h, y, reduction="none", label_smoothing=lam)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(layer.loss(h, y, label_smoothing=lam), expected.sum() / keep.sum())


def test_softmax_label_smoothing_matches_torch():
    layer = make("softmax")
    h, y = torch.randn(6, 2, 5, dtype=DT), torch.randint(7, (6, 2))
    ours = layer.loss(h, y, label_smoothing=0.1)
    torch.testing.assert_close(
        ours, F.cross_entropy(layer(h).movedim(-1, 1), y, label_smoothing=0.1)
    )


@pytest.mark.parametrize("name", NAMES)
def test_train_eval_switch(name):
    layer = make(name)
    h = torch.randn(8, 5, dtype=DT)
    norm = normalizers.get(name)
    layer.train()
    torch.testing.assert_close(layer.probs(h), norm(layer(h), training=True))
    layer.eval()
    p = layer.probs(h)
    mask = None
    if norm.posthoc_evidential:  # eval: the softmax on the layer's evidential support
        mask = normalizers.evidential_support(h, layer.weight, layer.bias, layer.feature_mean)
    torch.testing.assert_close(p, norm(layer(h), mask=mask))
    torch.testing.assert_close(p.sum(-1), torch.ones(8, dtype=DT))
    logp = layer.log_probs(h)
    torch.testing.assert_close(logp.exp(), p)
    if name == "ev_softmax":
        assert bool((p == 0).any())
        layer.train()
        assert bool((layer.probs(h) > 0).all())  # eps > 0: full support in training


def test_class_mask():
    layer = make("ev_softmax").eval()
    h = torch.randn(3, 5, dtype=DT)
    mask = torch.tensor([True, True, False, True, True, True, False])
    p = layer.probs(h, mask)
    assert bool((p[:, ~mask] == 0).all())
    torch.testing.assert_close(p, normalizers.get("ev_softmax")(layer(h), mask=mask))


# ----------------------------------------------------------------------------- post-hoc evidential


def test_posthoc_name_trains_as_softmax_and_evaluates_with_the_filter():
    layer = make("posthoc_evidential", f=6, k=9)
    assert layer.posthoc_evidential and layer.normalizer.posthoc_evidential
    assert not make("softmax").posthoc_evidential
    h = torch.randn(50, 6, dtype=DT) + 0.5
    y = torch.randint(9, (50,))
    layer.train()
    torch.testing.assert_close(layer.loss(h, y), F.cross_entropy(layer(h), y))
    torch.testing.assert_close(layer.probs(h), torch.softmax(layer(h), -1))
    layer.eval()
    expected = normalizers.posthoc_evidential(h, layer.weight, layer.bias, layer.feature_mean)
    torch.testing.assert_close(layer.probs(h), expected)
    torch.testing.assert_close(layer.log_probs(h).exp(), expected)
    assert bool((layer.probs(h) == 0).any())  # the filter drops classes
    # eval loss is still the training loss (softmax cross-entropy)
    torch.testing.assert_close(layer.loss(h, y), F.cross_entropy(layer(h), y))
    # the registered Normalizer object gives the same layer as its name
    same = NormalizedOutput(6, 9, normalizer=normalizers.get("posthoc_evidential")).to(DT).eval()
    same.load_state_dict(layer.state_dict())
    torch.testing.assert_close(same.probs(h), expected)


def test_posthoc_support_contains_ev_softmax_and_equals_it_with_one_feature():
    torch.manual_seed(2)
    for f in (1, 4, 16):
        layer = make("posthoc_evidential", f=f, k=10)
        with torch.no_grad():
            layer.weight.normal_()
            layer.bias.normal_()
        layer.train()
        layer(torch.randn(200, f, dtype=DT) * 2 + 1)  # tracks a feature mean
        layer.eval()
        h = torch.randn(100, f, dtype=DT) * 2 + 1
        posthoc = layer.probs(h) > 0
        ev = normalizers.get("ev_softmax")(layer(h)) > 0
        assert bool((posthoc | ~ev).all())  # support(posthoc) ⊇ support(ev-softmax)
        if f == 1:
            assert bool((posthoc == ev).all())  # Theorem 3.1
        else:
            assert bool((posthoc & ~ev).any())  # strictly larger somewhere with many features


def test_running_mean_is_tracked_in_training_only():
    layer = make("posthoc_evidential", f=3, k=4, momentum=None)
    batches = [torch.randn(10, 3, dtype=DT) + i for i in range(3)]
    layer.train()
    for b in batches:
        layer(b)
    torch.testing.assert_close(
        layer.feature_mean, torch.stack([b.mean(0) for b in batches]).mean(0)
    )
    assert int(layer.num_batches_tracked) == 3
    layer.eval()
    before = layer.feature_mean.clone()
    layer.probs(batches[0] * 10)
    torch.testing.assert_close(layer.feature_mean, before)
    # exponential average like BatchNorm; padding (ignored targets) left out of the mean
    layer = make("softmax", f=3, k=4, momentum=0.5).train()
    h = torch.randn(2, 4, 3, dtype=DT)
    y = torch.randint(4, (2, 4))
    y[1, 2:] = -100
    layer.loss(h, y)
    valid = y != -100
    torch.testing.assert_close(layer.feature_mean, 0.5 * h[valid].mean(0))
    assert "feature_mean" in layer.state_dict()


# ----------------------------------------------------------------------------- gradients and errors


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_weight_and_bias(name):
    layer = make(name).train()
    h = torch.randn(6, 5, dtype=DT, requires_grad=True)
    y = torch.randint(7, (6,))
    layer.loss(h, y, label_smoothing=0.1).backward()
    for t in (layer.weight, layer.bias, h):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())
        assert bool((t.grad != 0).any())


def test_gradcheck_ev_softmax_loss_through_layer():
    layer = make("ev_softmax", f=3, k=5, normalizer_options={"eps": 1e-2})
    h = torch.randn(4, 3, dtype=DT, requires_grad=True)
    y = torch.randint(5, (4,))
    assert torch.autograd.gradcheck(lambda h: layer.loss(h, y, label_smoothing=0.2), (h,))


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"^unknown normalizer"):
        output_layer("softermax", 3, 4)
    with pytest.raises(TypeError, match=r"^normalizer must be"):
        NormalizedOutput(3, 4, normalizer=3)
    with pytest.raises(ValueError, match=r"^in_features"):
        NormalizedOutput(0, 4)
    with pytest.raises(TypeError, match=r"^num_classes"):
        NormalizedOutput(3, 4.0)
    with pytest.raises(ValueError, match=r"^momentum"):
        NormalizedOutput(3, 4, momentum=0.0)
    layer = NormalizedOutput(3, 4)
    with pytest.raises(ValueError, match=r"^h must have shape \(\.\.\., F\) with F = 3"):
        layer(torch.randn(2, 5))
    with pytest.raises(TypeError, match="floating"):
        layer(torch.ones(2, 3, dtype=torch.long))
    h = torch.randn(2, 3)
    with pytest.raises(ValueError, match="class indices of shape"):
        layer.loss(h, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="class indices of shape"):
        layer.loss(h, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        layer.loss(h, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"^reduction"):
        layer.loss(h, torch.tensor([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match=r"^label_smoothing"):
        layer.loss(h, torch.tensor([0, 1]), label_smoothing=1.5)
    # a rejected loss call leaves the running feature mean untouched
    layer.train()
    before = (layer.feature_mean.clone(), int(layer.num_batches_tracked))
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        layer.loss(h, torch.tensor([0, 4]))
    assert torch.equal(layer.feature_mean, before[0])
    assert int(layer.num_batches_tracked) == before[1]
    with pytest.raises(TypeError, match=r"^mask must be a boolean"):
        layer.probs(h, torch.ones(4))


@pytest.mark.parametrize("name", NAMES)
def test_layer_survives_torch_save_and_load(name):
    import io

    layer = output_layer(name, 4, 5).eval()
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    h = torch.randn(3, 4)
    torch.testing.assert_close(loaded.probs(h), layer.probs(h))
    assert loaded.posthoc_evidential == layer.posthoc_evidential


@pytest.mark.parametrize("name", NAMES)
def test_layer_pickles(name):
    import pickle

    layer = output_layer(
        name, 4, 5, normalizer_options={"eps": 0.1} if name == "ev_softmax" else None
    )
    layer.train()
    layer(torch.randn(6, 4))  # a tracked feature mean
    loaded = pickle.loads(pickle.dumps(layer))
    assert loaded.normalizer.name == name and loaded.normalizer.options == layer.normalizer.options
    h = torch.randn(3, 4)
    for mode in (True, False):
        layer.train(mode), loaded.train(mode)
        torch.testing.assert_close(loaded.probs(h), layer.probs(h))


@pytest.mark.parametrize("name", NAMES)
def test_multihead_attention_with_a_registry_normalizer_pickles(name):
    import pickle

    from simplexity.nn import MultiheadAttention

    mha = MultiheadAttention(8, 2, batch_first=True, normalizer=name).eval()
    loaded = pickle.loads(pickle.dumps(mha))
    assert loaded.normalizer.name == name
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(loaded(x, x, x)[0], mha(x, x, x)[0])


# ----------------------------------------------------------------------------- argument checks, exact


def _layer(name: str = "softmax", f: int = 3, k: int = 4, **kw) -> NormalizedOutput:
    """A float64 layer with fixed, unequal weights and bias (no symmetry between classes)."""
    layer = NormalizedOutput(f, k, normalizer=name, **kw).to(DT)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, f * k + 1, dtype=DT).reshape(k, f).sin() * 1.7)
        if layer.bias is not None:
            layer.bias.copy_(torch.linspace(-0.9, 1.3, k, dtype=DT) ** 3)
    return layer


def test_momentum_check_messages_and_bounds():
    # the documented range (0, 1]: bools and strings are rejected, 1 is accepted, 1.5 is not
    for bad in (True, "0.5", 1.5, 2, 0.0, -0.1):
        with raises_exactly(
            ValueError, f"momentum must be a number in (0, 1] or None, got {bad!r}"
        ):
            NormalizedOutput(3, 4, momentum=bad)
    layer = _layer(momentum=1).train()
    assert layer.momentum == 1.0 and type(layer.momentum) is float
    h = torch.tensor([[0.5, -1.25, 2.0], [1.5, 0.75, -3.0]], dtype=DT)
    layer(h)  # weight 1 on the current batch: the running mean is this batch's mean
    torch.testing.assert_close(layer.feature_mean, torch.tensor([1.0, -0.25, -0.5], dtype=DT))
    assert NormalizedOutput(3, 4, momentum=None).momentum is None


def test_num_classes_bounds():
    # num_classes >= 1: 0 is rejected with check_int's message, 1 is a valid (degenerate) layer
    with raises_exactly(ValueError, "num_classes must be an int >= 1, got 0"):
        NormalizedOutput(3, 0)
    layer = _layer(k=1).eval()
    h = torch.tensor([[0.3, -0.2, 1.1], [2.0, 0.5, -0.7]], dtype=DT)
    torch.testing.assert_close(layer.probs(h), torch.ones(2, 1, dtype=DT))
    torch.testing.assert_close(layer.loss(h, torch.tensor([0, 0])), torch.tensor(0.0, dtype=DT))


def test_bias_false_and_normalizer_options_reach_the_layer():
    # bias=False: logits are h W^T exactly (no bias parameter)
    layer = _layer(bias=False)
    assert layer.bias is None and "bias" not in dict(layer.named_parameters())
    h = torch.tensor([[0.3, -0.2, 1.1]], dtype=DT)
    torch.testing.assert_close(layer(h), h @ layer.weight.T)
    # normalizer_options reach the normalizer: ev-softmax_eps by its formula (1{v >= mean} + eps) e^v
    layer = _layer("ev_softmax", normalizer_options={"eps": 0.25}).train()
    assert layer.normalizer.options == {"eps": 0.25}
    v = h @ layer.weight.T + layer.bias
    unnorm = ((v >= v.mean(-1, keepdim=True)).to(DT) + 0.25) * v.exp()
    torch.testing.assert_close(layer.probs(h), unnorm / unnorm.sum(-1, keepdim=True))


def test_feature_and_target_checks_have_exact_messages():
    layer = _layer()
    floating = "(float16, bfloat16, float32 or float64)"
    with raises_exactly(
        TypeError, f"h must be a floating-point tensor {floating}, got dtype torch.int64"
    ):
        layer(torch.ones(2, 3, dtype=torch.long))
    with raises_exactly(TypeError, "h must be a torch.Tensor, got list"):
        layer([[1.0, 2.0, 3.0]])
    with raises_exactly(ValueError, "h must have shape (..., F) with F = 3, got ()"):
        layer(torch.tensor(1.0, dtype=DT))
    with raises_exactly(ValueError, "h must have shape (..., F) with F = 3, got (2, 5)"):
        layer(torch.ones(2, 5, dtype=DT))
    h = torch.zeros(2, 5, 3, dtype=DT)
    with raises_exactly(TypeError, "target must be a torch.Tensor, got list"):
        layer.loss(h, [[0] * 5] * 2)
    with raises_exactly(ValueError, "h must have shape (N, ..., F), got (3,)"):
        layer.loss(torch.ones(3, dtype=DT), torch.tensor(0))
    target_msg = (
        "target must hold integer class indices of shape (2, 5) (h's shape without F), got {}"
    )
    with raises_exactly(ValueError, target_msg.format("(2, 5) torch.bool")):
        layer.loss(h, torch.ones(2, 5, dtype=torch.bool))
    with raises_exactly(ValueError, target_msg.format("(2, 4) torch.int64")):
        layer.loss(h, torch.zeros(2, 4, dtype=torch.long))
    with raises_exactly(ValueError, target_msg.format("(2, 5) torch.float64")):
        layer.loss(h, torch.zeros(2, 5, dtype=DT))
    with raises_exactly(TypeError, "mask must be a torch.Tensor, got list"):
        layer.probs(h, [True, False, True, True])


def test_valid_checks_have_exact_messages():
    layer = _layer()
    h = torch.zeros(2, 5, 3, dtype=DT)
    with raises_exactly(TypeError, "valid must be a torch.Tensor, got list"):
        layer(h, [[True] * 5] * 2)
    msg = "valid must be a boolean tensor of shape (2, 5), got {}"
    with raises_exactly(ValueError, msg.format("(2, 5) torch.int64")):
        layer(h, torch.ones(2, 5, dtype=torch.long))
    with raises_exactly(ValueError, msg.format("(2,) torch.bool")):
        layer(h, torch.ones(2, dtype=torch.bool))
    with raises_exactly(ValueError, msg.format("(2, 5, 3) torch.bool")):
        layer(h, torch.ones(2, 5, 3, dtype=torch.bool))


# ----------------------------------------------------------------------------- values, exact


def test_valid_leaves_padding_out_of_the_running_mean():
    # forward(h, valid) in training: the running mean of the valid rows only (momentum 1: their mean)
    layer = _layer(momentum=1.0).train()
    h = torch.arange(24, dtype=DT).reshape(2, 4, 3) ** 1.5
    valid = torch.tensor([[True, False, True, True], [False, True, False, False]])
    logits = layer(h, valid)
    torch.testing.assert_close(logits, h @ layer.weight.T + layer.bias)  # all positions
    rows = [h[0, 0], h[0, 2], h[0, 3], h[1, 1]]
    torch.testing.assert_close(layer.feature_mean, sum(rows) / 4)
    assert int(layer.num_batches_tracked) == 1


def test_one_dimensional_features():
    # h of shape (F,): logits (K,) = W h + b, probabilities the softmax of them
    layer = _layer().eval()
    h = torch.tensor([0.3, -0.2, 1.1], dtype=DT)
    v = layer.weight @ h + layer.bias
    torch.testing.assert_close(layer(h), v)
    torch.testing.assert_close(layer.probs(h), torch.softmax(v, 0))


def test_probs_and_log_probs_normalize_the_last_dim_of_batched_features():
    # h (2, 5, F): classes are the last dim, not dim 1 (torch.softmax / log_softmax as reference)
    layer = _layer(k=4)
    h = torch.linspace(-2, 3, 30, dtype=DT).reshape(2, 5, 3).cos() * 2
    v = h @ layer.weight.T + layer.bias
    torch.testing.assert_close(layer.probs(h), torch.softmax(v, -1))
    torch.testing.assert_close(layer.log_probs(h), torch.log_softmax(v, -1))
    # a class mask reaches log_probs: log-softmax over the allowed classes, -inf elsewhere
    mask = torch.tensor([True, False, True, True])
    expected = torch.log_softmax(v.masked_fill(~mask, -torch.inf), -1)
    torch.testing.assert_close(layer.log_probs(h, mask), expected)
    torch.testing.assert_close(layer.probs(h, mask), expected.exp())


def test_posthoc_filter_is_intersected_with_the_callers_mask():
    # one feature, mean 0, no bias: the evidence is w_k = v_k - mean(v); by hand the support of
    # v = (2, 1, -3) is {0, 1}, of v = (-1, -0.5, 1.5) it is {2}; intersected with mask (F, T, T)
    layer = NormalizedOutput(1, 3, normalizer="posthoc_evidential").to(DT).eval()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0], [1.0], [-3.0]]))
        layer.bias.zero_()
    h = torch.tensor([[1.0], [-0.5]], dtype=DT)
    mask = torch.tensor([False, True, True])
    expected = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=DT)
    torch.testing.assert_close(layer.probs(h, mask), expected)
    torch.testing.assert_close(layer.log_probs(h, mask), expected.log())
    # without the mask, the filtered softmax over the hand-computed supports
    e = torch.exp(torch.tensor([2.0, 1.0], dtype=DT))
    torch.testing.assert_close(
        layer.probs(h),
        torch.tensor([[e[0] / e.sum(), e[1] / e.sum(), 0.0], [0.0, 0.0, 1.0]], dtype=DT),
    )


def test_posthoc_filter_uses_the_feature_mean_in_the_weight_dtype():
    # a float64 running mean in a float32 layer is read in float32, as the reference function gets it
    torch.manual_seed(5)
    layer = NormalizedOutput(4, 6, normalizer="posthoc_evidential").eval()
    layer.feature_mean = torch.tensor([0.3, -1.2, 0.7, 2.1], dtype=DT)
    h = torch.randn(5, 4)
    expected = normalizers.posthoc_evidential(
        h, layer.weight, layer.bias, layer.feature_mean.to(torch.float32)
    )
    torch.testing.assert_close(layer.probs(h), expected)


def test_posthoc_filter_reads_features_in_the_weight_dtype_under_autocast():
    # bfloat16 layer, float16 features under CPU autocast: the filter sees h rounded to bfloat16, as
    # the logits do. h = (1 + 2^-10, 0) rounds to the feature mean (1, 0), so every weight of evidence
    # w_jk = (h_j - mu_j) beta_jk + (beta0_k + beta_k . mu) / J is 0: vacuous, all classes kept.
    layer = NormalizedOutput(2, 2, normalizer="posthoc_evidential").eval()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        layer.bias.copy_(torch.tensor([-1.0, 1.0]))
        layer.feature_mean.copy_(torch.tensor([1.0, 0.0]))
    layer = layer.to(torch.bfloat16)
    h = torch.tensor([[1.0 + 2.0**-10, 0.0]], dtype=torch.float16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        p = layer.probs(h)
    torch.testing.assert_close(p.float(), torch.tensor([[0.5, 0.5]]))


def test_loss_ignore_index_is_passed_on():
    # ignore_index=2: positions with target 2 are left out; the rest is the plain cross-entropy
    layer = _layer(k=4)
    h = torch.linspace(-1, 2, 18, dtype=DT).reshape(2, 3, 3).exp()
    y = torch.tensor([[2, 0, 3], [1, 2, 2]])
    logp = torch.log_softmax(h @ layer.weight.T + layer.bias, -1)
    keep = y != 2
    nll = -logp.gather(-1, y[..., None])[..., 0]
    torch.testing.assert_close(layer.loss(h, y, ignore_index=2), nll[keep].mean())
    torch.testing.assert_close(
        layer.loss(h, y, ignore_index=2, reduction="none"), torch.where(keep, nll, 0.0)
    )
