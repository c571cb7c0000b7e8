"""The normalizer registry and the entmax baselines: shared behaviour, masks, losses."""

from __future__ import annotations

import math

import entmax
import pytest
import torch

from simplexity import normalizers

NAMES = ["softmax", "sparsemax", "entmax15", "entmax_bisect", "ev_softmax"]


def test_names():
    assert set(NAMES) <= set(normalizers.names())
    assert "posthoc_evidential" in normalizers.names()
    with pytest.raises(ValueError, match=r"^unknown normalizer 'nope'; expected one of: softmax, "):
        normalizers.get("nope")
    with pytest.raises(ValueError, match=r"^unknown normalizer 'nope'; expected one of: softmax, "):
        normalizers.check_name("nope")
    assert normalizers.check_name("ev_softmax") == "ev_softmax"
    with pytest.raises(ValueError, match="already registered"):
        normalizers.register("softmax")(lambda: None)
    with pytest.raises(TypeError, match=r"^bad options for normalizer 'softmax'"):
        normalizers.get("softmax", alpha=2.0)
    with pytest.raises(ValueError, match=r"^alpha"):
        normalizers.get("entmax_bisect", alpha=1.0)


@pytest.mark.parametrize("name", NAMES)
def test_maps_are_distributions_and_masks_work(name):
    norm = normalizers.get(name)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 9, generator=g, dtype=torch.float64)
    p = norm(x)
    torch.testing.assert_close(p.sum(-1), torch.ones(6, dtype=torch.float64))
    assert (p >= 0).all()
    # mask semantics: invalid entries get zero and do not change the rest; empty rows are zeros
    pad = torch.cat([x, torch.full((6, 3), -1e18, dtype=torch.float64)], 1)
    mask = torch.cat([torch.ones(6, 9, dtype=torch.bool), torch.zeros(6, 3, dtype=torch.bool)], 1)
    mask[0] = False
    pm = norm(pad, mask=mask)
    torch.testing.assert_close(pm[1:, :9], p[1:])
    assert (pm[:, 9:] == 0).all() and (pm[0] == 0).all()
    # log form agrees with the map, -inf exactly where the probability is 0
    logp = norm.log(x)
    torch.testing.assert_close(logp.exp(), p)
    assert ((logp == -math.inf) == (p == 0)).all()
    # any dim
    torch.testing.assert_close(norm(x.T, 0), p.T)
    # gradients are finite (also through the log form restricted to the support)
    xr = x.clone().requires_grad_()
    (norm(xr) * torch.arange(9.0)).sum().backward()
    assert torch.isfinite(xr.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_losses_share_one_layout(name):
    norm = normalizers.get(name)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (4, 3), generator=g)
    y[1, 2] = -100
    per = norm.loss(x, y, reduction="none")
    assert per.shape == (4, 3) and per[1, 2] == 0 and (per >= -1e-12).all()
    flat = norm.loss(x.movedim(1, -1).reshape(-1, 5), y.reshape(-1), reduction="none")
    torch.testing.assert_close(per.reshape(-1), flat)
    mean = norm.loss(x, y)
    torch.testing.assert_close(mean, per.sum() / 11)
    mean.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"^target"):
        norm.loss(x, torch.full((4, 3), 5))


def test_fenchel_young_losses_gradcheck_and_vanish_at_the_target():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 1])
    for name in ["sparsemax", "entmax15", "ev_softmax"]:
        norm = normalizers.get(name)
        assert torch.autograd.gradcheck(lambda t, n=norm: n.loss(t, y), (x,))
    # a logit far above the rest makes the sparse maps one-hot: the FY loss is then 0
    big = torch.tensor([[10.0, 0.0, 0.0]])
    for name in ["sparsemax", "entmax15"]:
        assert normalizers.get(name).loss(big, torch.tensor([0])).abs() < 1e-6


def test_entmax_bisect_limits_and_agreement():
    x = torch.randn(5, 7, dtype=torch.float64)
    torch.testing.assert_close(
        normalizers.get("entmax_bisect", alpha=2.0)(x), entmax.sparsemax(x), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        normalizers.get("entmax_bisect", alpha=1.5)(x), entmax.entmax15(x), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        normalizers.get("entmax_bisect", alpha=1.001, n_iter=100)(x),
        torch.softmax(x, -1),
        atol=1e-2,
        rtol=0,
    )


def test_ev_softmax_training_form_and_module():
    norm = normalizers.get("ev_softmax", eps=0.01)
    x = torch.randn(3, 6)
    torch.testing.assert_close(norm(x, training=True), normalizers.ev_softmax(x, eps=0.01))
    torch.testing.assert_close(norm(x), normalizers.ev_softmax(x))
    m = norm.module()
    torch.testing.assert_close(m(x), normalizers.ev_softmax(x, eps=0.01))
    torch.testing.assert_close(m.eval()(x), normalizers.ev_softmax(x))
    with pytest.raises(ValueError, match=r"^eps"):
        normalizers.get("ev_softmax", eps=-1.0)


@pytest.mark.parametrize("name", normalizers.names())
def test_every_registered_normalizer_pickles(name):
    import pickle

    original = normalizers.get(name)
    norm = pickle.loads(pickle.dumps(original))
    assert norm.name == original.name and norm.options == original.options
    assert norm.posthoc_evidential == original.posthoc_evidential
    x = torch.randn(3, 5)
    for training in (False, True):
        torch.testing.assert_close(norm(x, training=training), original(x, training=training))
        torch.testing.assert_close(
            norm.log(x, training=training), original.log(x, training=training)
        )
    y = torch.tensor([0, 1, 2])
    torch.testing.assert_close(norm.loss(x, y), original.loss(x, y))
    module = pickle.loads(pickle.dumps(norm.module()))
    torch.testing.assert_close(module(x), original(x, training=True))


@pytest.mark.parametrize("name", normalizers.names())
def test_label_smoothing_is_the_mixture_of_per_class_losses(name):
    # (1 - lam) L(y) + lam / K sum_k L(k), as torch's cross_entropy defines it, for every loss
    norm = normalizers.get(name)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 5, dtype=torch.float64, generator=g)
    y = torch.randint(5, (6,), generator=g)
    y[2] = -100
    lam = 0.3
    per_class = torch.stack(
        [norm.loss(x, torch.full_like(y, c), reduction="none") for c in range(5)], -1
    )
    keep = y != -100
    plain = norm.loss(x, y, reduction="none")
    expected = torch.where(keep, (1 - lam) * plain + lam * per_class.mean(-1), 0.0)
    torch.testing.assert_close(norm.loss(x, y, reduction="none", label_smoothing=lam), expected)
    torch.testing.assert_close(norm.loss(x, y, label_smoothing=lam), expected.sum() / keep.sum())
    torch.testing.assert_close(
        norm.loss(x, y, reduction="sum", label_smoothing=lam), expected.sum()
    )


def test_likelihood_label_smoothing_is_the_smoothed_cross_entropy():
    x, y = torch.randn(3, 5, dtype=torch.float64), torch.tensor([0, 1, 2])
    for name in ("softmax", "ev_softmax"):
        norm = normalizers.get(name)
        logp = norm.log(x, training=True)
        nll = -logp.gather(1, y[:, None]).squeeze(1)
        torch.testing.assert_close(
            norm.loss(x, y, label_smoothing=0.1), (0.9 * nll - 0.1 * logp.mean(-1)).mean()
        )


@pytest.mark.parametrize("name", normalizers.names())
def test_loss_arguments_are_checked_the_same_way(name):
    norm = normalizers.get(name)
    x, y = torch.randn(3, 5), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"^reduction must be 'mean', 'sum' or 'none'"):
        norm.loss(x, y, reduction="avg")
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match=r"^label_smoothing must be a number in \[0, 1\]"):
            norm.loss(x, y, label_smoothing=bad)
    with pytest.raises(TypeError, match=r"^ignore_index must be an int"):
        norm.loss(x, y, ignore_index=1.5)
    with pytest.raises(
        ValueError, match=r"^target must hold integer class indices of shape \(3,\)"
    ):
        norm.loss(x, y[:2])
    with pytest.raises(ValueError, match=r"in \[0, 5\) or equal ignore_index=-100"):
        norm.loss(x, torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match=r"^input must have shape \(N, C\)"):
        norm.loss(x[0], y[0])


def test_ev_softmax_loss_module_checks_its_options_at_construction():
    with pytest.raises(ValueError, match=r"^label_smoothing"):
        normalizers.EvSoftmaxLoss(label_smoothing=-0.1)
    with pytest.raises(ValueError, match=r"^reduction"):
        normalizers.EvSoftmaxLoss(reduction="avg")


def test_capabilities_are_attributes_not_names():
    caps = {
        name: (norm.sparse, norm.has_training_form, norm.native_log, norm.posthoc_evidential)
        for name in normalizers.names()
        for norm in [normalizers.get(name)]
    }
    assert caps["softmax"] == (False, False, True, False)
    assert caps["ev_softmax"] == (True, True, True, False)
    assert caps["sparsemax"] == (True, False, False, False)
    assert caps["posthoc_evidential"] == (True, False, True, True)
    # on bare logits the post-hoc evidential normalizer is the softmax (a layer applies the filter)
    x = torch.randn(4, 6)
    post, soft = normalizers.get("posthoc_evidential"), normalizers.get("softmax")
    torch.testing.assert_close(post(x), soft(x))
    torch.testing.assert_close(post.loss(x, torch.arange(4)), soft.loss(x, torch.arange(4)))


def test_resolve():
    norm = normalizers.get("sparsemax")
    assert normalizers.resolve(norm) is norm
    assert normalizers.resolve("ev_softmax", {"eps": 0.5}).options == {"eps": 0.5}
    with pytest.raises(ValueError, match=r"^normalizer_options"):
        normalizers.resolve(norm, {"eps": 0.5})
    with pytest.raises(TypeError, match=r"^normalizer_options must be a dict"):
        normalizers.resolve("softmax", [1])
    with pytest.raises(TypeError, match=r"^normalizer must be a registry name"):
        normalizers.resolve(3)
    with pytest.raises(ValueError, match=r"^unknown normalizer 'x'"):
        normalizers.resolve("x")
