"""The blocked ev-softmax attention against the definition: ev_softmax on explicit scores, in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import simplexity.nn.ev_attention as ev_attention
import simplexity.nn.functional as functional
from largest_tensor import LargestTensor
from simplexity import EvSoftmax, ev_softmax
from simplexity.nn import (
    KeyValueCache,
    MultiheadAttention,
    attention,
    attention_weights,
    padding_mask,
)
from simplexity.nn.ev_attention import ev_softmax_attention

DT = torch.float64


def dense(q, k, v, attn_mask=None, is_causal=False, scale=None, eps=0.0):
    """The definition: ev-softmax of the explicit scores over the valid keys, times the values."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    valid = torch.ones(scores.shape, dtype=torch.bool)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            valid = valid & attn_mask
        else:
            scores = scores + attn_mask  # -inf entries are invalid for ev_softmax
    if is_causal:
        valid = valid & torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
    return ev_softmax(scores, mask=valid, eps=eps) @ v


def qkv(b=2, h=3, lq=13, lk=11, e=5, ev=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, lq, e, dtype=DT, generator=g),
        torch.randn(b, h, lk, e, dtype=DT, generator=g),
        torch.randn(b, h, lk, ev, dtype=DT, generator=g),
    )


def masks(b=2, h=3, lq=13, lk=11):
    """Every mask kind: key-only and per-query, boolean and float (with -inf), one all-masked row."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([lk, 6, 1, 3][:b])
    padding = torch.arange(lk) < lengths.view(b, 1, 1, 1)  # (B, 1, 1, Lk)
    per_query = torch.rand(b, 1, lq, lk, generator=g) > 0.3
    per_query[0, 0, 4] = False  # a query with nothing to attend to
    key_bias = torch.randn(b, h, 1, lk, dtype=DT, generator=g)
    key_bias[0, 1, 0, 3] = -math.inf
    bias = torch.randn(lq, lk, dtype=DT, generator=g)
    bias[2] = -math.inf
    bias[5, :4] = -math.inf
    return {
        "none": None,
        "padding": padding,
        "per_query": per_query,
        "key_bias": key_bias,
        "bias": bias,
        "1d": torch.arange(lk) != 2,
    }


MASKS = list(masks())


@pytest.mark.parametrize("mask_name", MASKS)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("block_size", [1, 4, None])
def test_equals_ev_softmax_of_the_scores(mask_name, is_causal, eps, block_size):
    q, k, v = qkv()
    mask = masks()[mask_name]
    out = ev_softmax_attention(q, k, v, mask, is_causal=is_causal, eps=eps, block_size=block_size)
    expected = dense(q, k, v, mask, is_causal, eps=eps)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mask_name", MASKS)
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_gradients_equal_the_dense_definitions(mask_name, is_causal, eps):
    mask = masks()[mask_name]
    inputs = qkv()
    if mask is not None and mask.is_floating_point():
        inputs = (*inputs, mask)
    grads = []
    for fn in (ev_softmax_attention, dense):
        leaves = [t.clone().requires_grad_() for t in inputs]
        m = leaves[3] if len(leaves) == 4 else mask
        out = fn(
            *leaves[:3],
            m,
            is_causal=is_causal,
            eps=eps,
            **({"block_size": 3} if fn is ev_softmax_attention else {}),
        )
        grads.append(
            torch.autograd.grad(
                out, leaves, torch.linspace(-1, 1, out.numel(), dtype=DT).view_as(out)
            )
        )
    for fused, reference in zip(*grads):
        assert not fused.isnan().any()
        torch.testing.assert_close(fused, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_gradcheck(is_causal, eps):
    q, k, v = qkv(b=1, h=2, lq=5, lk=5, e=3, ev=2, seed=3)
    bias = torch.randn(5, 5, dtype=DT, generator=torch.Generator().manual_seed(4))
    bias[1, 3] = -math.inf
    leaves = [t.requires_grad_() for t in (q, k, v, bias)]

    def fn(q, k, v, bias):
        return ev_softmax_attention(q, k, v, bias, is_causal=is_causal, eps=eps, block_size=2)

    assert torch.autograd.gradcheck(fn, leaves, fast_mode=True)


def test_ties_at_the_threshold_are_kept():
    # integer scores (scale 1): the mean is exact, so a score equal to it is a tie, kept as ev_softmax keeps it
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=DT)
    k = torch.tensor([[[2.0, 1.0], [1.0, -1.0], [0.0, 0.0], [-3.0, 0.0]]], dtype=DT)
    v = torch.eye(4, dtype=DT).unsqueeze(0)
    weights = ev_softmax_attention(q, k, v, scale=1.0, block_size=1)  # = the weights themselves
    # query 0: scores 2, 1, 0, -3, mean 0: key 2 ties; query 1: 1, -1, 0, 0, mean 0: keys 2, 3 tie
    assert (weights[0, 0] > 0).tolist() == [True, True, True, False]
    assert (weights[0, 1] > 0).tolist() == [True, False, True, True]
    torch.testing.assert_close(weights, dense(q, k, v, scale=1.0), rtol=0, atol=1e-15)
    # the eps family weighs a tie as a kept key too: (1 + eps) e^s against eps e^s
    for dtype in (torch.float32, DT):
        family = ev_softmax_attention(q.to(dtype), k.to(dtype), v.to(dtype), scale=1.0, eps=0.5)
        expected = dense(q.to(dtype), k.to(dtype), v.to(dtype), scale=1.0, eps=0.5)
        torch.testing.assert_close(family, expected, rtol=0, atol=1e-6)
        scores = torch.tensor([[2.0, 1.0, 0.0, -3.0], [1.0, -1.0, 0.0, 0.0]], dtype=dtype)
        by_hand = (
            torch.tensor([[1.5, 1.5, 1.5, 0.5], [1.5, 0.5, 1.5, 1.5]], dtype=dtype)
        ) * scores.exp()
        torch.testing.assert_close(family[0], by_hand / by_hand.sum(-1, keepdim=True))
    # causal prefix means: query 1 sees scores 1, -1 (mean 0): key 0 only
    causal = ev_softmax_attention(q, k[:, :2], v[:, :2, :2], is_causal=True, scale=1.0)
    assert causal[0].tolist() == [[1.0, 0.0], [1.0, 0.0]]
    # padding: the mean is over the valid keys only (1, -1, 0 -> 0: keys 0 and 2 kept, 3 is padding)
    pad = torch.tensor([True, True, True, False])
    padded = ev_softmax_attention(q, k, v, pad, scale=1.0)
    assert (padded[0, 1] > 0).tolist() == [True, False, True, False]


def test_rows_with_nothing_to_attend_to_are_zero_with_zero_gradient():
    q, k, v = qkv(b=2, h=1, lq=6, lk=6)
    left_padding = torch.tensor([[True] * 6, [False, False, False, True, True, True]])
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = ev_softmax_attention(*leaves, left_padding[:, None, None], is_causal=True)
    assert not out.isnan().any()
    assert (out[1, 0, :3] == 0).all()  # the first three queries of entry 1 see only padding
    out.sum().backward()
    assert all(not t.grad.isnan().any() for t in leaves)
    assert (leaves[0].grad[1, 0, :3] == 0).all()
    everything_masked = torch.zeros(6, 6, dtype=torch.bool)
    assert (ev_softmax_attention(q, k, v, everything_masked) == 0).all()
    minus_inf = torch.full((6, 6), -math.inf, dtype=DT)
    assert (ev_softmax_attention(q, k, v, minus_inf, eps=0.1) == 0).all()
    no_keys = ev_softmax_attention(q, k[:, :, :0], v[:, :, :0])
    assert no_keys.shape == (2, 1, 6, 4) and (no_keys == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, DT])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("is_causal", [False, True])
def test_equal_scores_keep_every_key(dtype, eps, is_causal):
    # equal keys 0.1: every score is 0.1 exactly (products by 1), while the rounded mean of the keys
    # lies an ulp away; above all scores, the threshold is capped at the row's max (as ev_softmax caps
    # the mean), so every key is kept in both computations
    q = torch.ones(1, 5, 1, dtype=dtype)
    k = torch.full((1, 33, 1), 0.1, dtype=dtype)
    v = torch.randn(1, 33, 2, dtype=dtype, generator=torch.Generator().manual_seed(5))
    out = ev_softmax_attention(q, k, v, is_causal=is_causal, eps=eps, scale=1.0)
    seen = torch.arange(1, 6).view(1, 5, 1)
    expected = v.cumsum(1)[:, :5] / seen if is_causal else v.mean(1, keepdim=True).expand(1, 5, 2)
    torch.testing.assert_close(out, expected.to(dtype))
    torch.testing.assert_close(out, dense(q, k, v, is_causal=is_causal, scale=1.0, eps=eps))


def test_head_groups_and_block_sizes_give_the_same_values(monkeypatch):
    q, k, v = qkv(b=3, h=4, lq=17, lk=17)
    mask = masks(b=3, h=4, lq=17, lk=17)
    reference = {
        n: ev_softmax_attention(q, k, v, m, is_causal=True)
        for n, m in mask.items()
        if n in ("none", "key_bias")
    }
    monkeypatch.setattr(ev_attention, "BLOCK_ELEMENTS", 40)  # one batch entry per block
    for name, expected in reference.items():
        out = ev_softmax_attention(q, k, v, mask[name], is_causal=True, block_size=5)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_query_and_key_lengths_differ_and_batch_dimensions_broadcast():
    q = torch.randn(2, 1, 7, 4, dtype=DT)
    k = torch.randn(1, 3, 12, 4, dtype=DT)
    v = torch.randn(12, 5, dtype=DT)
    for is_causal in (False, True):
        out = ev_softmax_attention(q, k, v, is_causal=is_causal, block_size=3)
        assert out.shape == (2, 3, 7, 5)
        torch.testing.assert_close(out, dense(q, k, v, is_causal=is_causal), rtol=0, atol=1e-12)
    two_d = ev_softmax_attention(q[0, 0], k[0, 0], v, scale=0.3)
    torch.testing.assert_close(two_d, dense(q[0, 0], k[0, 0], v, scale=0.3), rtol=0, atol=1e-12)


def test_low_precision_is_computed_in_float32():
    q, k, v = (t.float() for t in qkv())
    out = ev_softmax_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), is_causal=True)
    assert out.dtype == torch.bfloat16
    reference = ev_softmax_attention(
        q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(), is_causal=True
    )
    torch.testing.assert_close(out.float(), reference, rtol=1e-2, atol=1e-2)


def test_key_mean_replaces_the_mean_of_the_keys():
    q, k, v = qkv()
    pad = masks()["padding"]
    weight = pad.transpose(-2, -1).to(DT)  # (B, 1, Lk, 1)
    mean = (k * weight).sum(-2, keepdim=True) / weight.sum(-2, keepdim=True)
    torch.testing.assert_close(
        ev_softmax_attention(q, k, v, pad, key_mean=mean),
        ev_softmax_attention(q, k, v, pad),
        rtol=0,
        atol=1e-12,
    )
    with pytest.raises(ValueError, match=r"^key_mean"):
        ev_softmax_attention(q, k, v, key_mean=mean, is_causal=True)
    with pytest.raises(ValueError, match=r"^key_mean"):
        ev_softmax_attention(q, k, v, key_mean=mean[..., :2])


def test_dropout_draws_as_f_dropout_and_the_backward_replays_them():
    q, k, v = qkv()
    torch.manual_seed(7)
    out = ev_softmax_attention(q, k, v, dropout_p=0.4)
    torch.manual_seed(7)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    torch.testing.assert_close(out, F.dropout(ev_softmax(scores), 0.4) @ v, rtol=0, atol=1e-12)

    def fixed_draws(q, k, v):
        torch.manual_seed(3)
        return ev_softmax_attention(q, k, v, dropout_p=0.4, is_causal=True, block_size=2)

    leaves = [t[:1, :2, :6].clone().requires_grad_() for t in (q, k, v)]
    assert torch.autograd.gradcheck(fixed_draws, leaves, fast_mode=True)
    # the backward leaves the default generator where the forward left it
    out = fixed_draws(*leaves)
    state = torch.get_rng_state()
    out.sum().backward()
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("is_causal", [False, True])
def test_the_score_matrix_is_never_formed(is_causal):
    length, block = 512, 64
    q, k, v = (torch.randn(1, 2, length, 8, requires_grad=True) for _ in range(3))
    pad = torch.arange(length) < 500
    with LargestTensor() as mode:
        out = ev_softmax_attention(q, k, v, pad, is_causal=is_causal, block_size=block)
        out.sum().backward()
    assert mode.largest <= 2 * block * length < length * length


def test_attention_dispatches_ev_softmax_to_the_blocked_path(monkeypatch):
    q, k, v = qkv()
    mask = masks()["per_query"]
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs["eps"])
        return ev_softmax_attention(*args, **kwargs)

    monkeypatch.setattr(functional, "ev_softmax_attention", spy)
    module = EvSoftmax(eps=0.05)
    for norm, training, eps in (("ev_softmax", False, 0.0), (module.train(), None, 0.05)):
        out = attention(q, k, v, mask, is_causal=True, normalizer=norm, training=training)
        weights = attention_weights(q, k, mask, is_causal=True, normalizer=norm, training=training)
        torch.testing.assert_close(out, weights @ v, rtol=0, atol=1e-12)
        assert calls[-1] == eps


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"attn_mask": torch.ones(13, 11, dtype=torch.int64)}, TypeError, "attn_mask"),
        ({"attn_mask": torch.ones(13, 12, dtype=torch.bool)}, ValueError, "attn_mask"),
        ({"dropout_p": 1.0}, ValueError, "dropout_p"),
        ({"is_causal": 1}, TypeError, "is_causal"),
        ({"scale": math.inf}, ValueError, "scale"),
        ({"eps": -1.0}, ValueError, "eps"),
        ({"block_size": 0}, ValueError, "block_size"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    q, k, v = qkv()
    with pytest.raises(error, match=match):
        ev_softmax_attention(q, k, v, **kwargs)


def test_bad_tensors_are_named():
    q, k, v = qkv()
    with pytest.raises(TypeError, match="dtype"):
        ev_softmax_attention(q, k.float(), v)
    with pytest.raises(ValueError, match="share E"):
        ev_softmax_attention(q, k[..., :2], v)
    with pytest.raises(ValueError, match=r"^value"):
        ev_softmax_attention(q, k, v[..., :3, :])
    with pytest.raises(TypeError, match=r"^query"):
        ev_softmax_attention(q.long(), k, v)


def test_decoding_with_a_cache_uses_its_running_key_mean(monkeypatch):
    torch.manual_seed(2)
    e, b, length = 8, 3, 7
    self_attn = MultiheadAttention(e, 2, batch_first=True, normalizer="ev_softmax").to(DT).eval()
    cross_attn = MultiheadAttention(e, 2, batch_first=True, normalizer="ev_softmax").to(DT).eval()
    x, memory = torch.randn(b, length, e, dtype=DT), torch.randn(b, 5, e, dtype=DT)
    src_padding = padding_mask(torch.tensor([5, 2, 4]), 5)  # True = padding
    means = []

    def spy(*args, **kwargs):
        means.append(kwargs.get("key_mean"))
        return ev_softmax_attention(*args, **kwargs)

    monkeypatch.setattr(functional, "ev_softmax_attention", spy)

    def block(h, self_cache=None, cross_cache=None, causal=True):
        filled = cross_cache is not None and len(cross_cache) > 0
        a, _ = self_attn(h, h, h, is_causal=causal, cache=self_cache, need_weights=False)
        c, _ = cross_attn(
            h + a,
            None if filled else memory,
            None if filled else memory,
            key_padding_mask=None if filled else src_padding,
            cache=cross_cache,
            need_weights=False,
        )
        return h + a + c

    with torch.no_grad():
        full = block(x)
        assert means == [None, None]
        self_cache, cross_cache = KeyValueCache(), KeyValueCache(static=True)
        steps = [
            block(x[:, t : t + 1], self_cache, cross_cache, causal=False) for t in range(length)
        ]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-12)
    assert all(m is not None for m in means[2:]) and len(means) == 2 + 2 * length
    keys = cross_cache.key
    valid = (~src_padding)[:, None, :, None].to(DT)
    torch.testing.assert_close(
        means[-1], (keys * valid).sum(2, keepdim=True) / valid.sum(2, keepdim=True)
    )
    torch.testing.assert_close(means[-2], self_cache.key.mean(2, keepdim=True))
    # beam search reorders the cache: the running sum follows
    cross_cache.reorder(torch.tensor([2, 2, 0]))
    expected = ((keys * valid).sum(2, keepdim=True) / valid.sum(2, keepdim=True))[[2, 2, 0]]
    torch.testing.assert_close(cross_cache.key_mean(), expected)
