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
    with pytest.raises(ValueError, match="unknown normalizer 'nope'"):
        normalizers.get("nope")
    with pytest.raises(TypeError, match="bad options for normalizer 'softmax'"):
        normalizers.get("softmax", alpha=2.0)
    with pytest.raises(ValueError, match="alpha"):
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
    with pytest.raises(ValueError, match="target"):
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
    with pytest.raises(ValueError, match="eps"):
        normalizers.get("ev_softmax", eps=-1.0)


@pytest.mark.parametrize("name", NAMES)
def test_normalizers_pickle_and_label_smoothing(name):
    import pickle

    norm = pickle.loads(pickle.dumps(normalizers.get(name)))
    x = torch.randn(3, 5)
    torch.testing.assert_close(norm(x), normalizers.get(name)(x))
    torch.testing.assert_close(norm.log(x), normalizers.get(name).log(x))
    pickle.dumps(norm.module())
    y = torch.tensor([0, 1, 2])
    if name in ("softmax", "ev_softmax"):
        smooth = norm.loss(x, y, label_smoothing=0.1)
        logp = norm.log(x, training=True)
        nll = -logp.gather(1, y[:, None]).squeeze(1)
        torch.testing.assert_close(smooth, (0.9 * nll - 0.1 * logp.mean(-1)).mean())
    else:
        with pytest.raises(ValueError, match="label_smoothing"):
            norm.loss(x, y, label_smoothing=0.1)
