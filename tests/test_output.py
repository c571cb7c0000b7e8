"""Tests of simplexity.nn.output: NormalizedOutput and the "posthoc_evidential" name."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

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
