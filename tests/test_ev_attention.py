"""The blocked ev-softmax attention against the definition: ev_softmax on explicit scores, in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import simplexity.nn.ev_attention as ev_attention
import simplexity.nn.functional as functional
from exact_error import raises_exactly
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


def grads_of(fn, inputs, wrt, **kwargs):
    """Gradients of ``fn(*inputs, **kwargs)`` against a fixed unequal output gradient, for ``wrt`` only."""
    leaves = [
        t.clone().requires_grad_(i in wrt) if t is not None else None for i, t in enumerate(inputs)
    ]
    out = fn(*leaves, **kwargs)
    grad_out = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    return out, torch.autograd.grad(out, [leaves[i] for i in wrt], grad_out)


@pytest.mark.parametrize("wrt", [(0,), (1,), (2,), (3,), (1, 3)])
def test_gradients_of_some_inputs_only_equal_the_dense_ones(wrt):
    # each input alone (the others constant), several query blocks: against the dense autograd
    q, k, v = qkv(b=2, h=1, lq=7, lk=6, seed=6)
    bias = torch.randn(7, 6, dtype=DT, generator=torch.Generator().manual_seed(8))
    bias[3, :2] = -math.inf
    for causal in (False, True):
        _, fused = grads_of(
            ev_softmax_attention, (q, k, v, bias), wrt, is_causal=causal, block_size=2
        )
        _, reference = grads_of(dense, (q, k, v, bias), wrt, is_causal=causal)
        for a, b in zip(fused, reference):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_gradients_with_several_batch_entries_per_block(monkeypatch):
    # BLOCK_ELEMENTS for 2 of the 6 batch entries per block (block_size 5, 11 keys): the dense gradients
    monkeypatch.setattr(ev_attention, "BLOCK_ELEMENTS", 120)
    q, k, v = qkv(b=2, h=3, lq=13, lk=11, seed=9)
    pad = masks(b=2, h=3, lq=13, lk=11)["key_bias"]
    for causal in (False, True):
        out, fused = grads_of(
            ev_softmax_attention, (q, k, v, pad), (0, 1, 2, 3), is_causal=causal, block_size=5
        )
        expected, reference = grads_of(dense, (q, k, v, pad), (0, 1, 2, 3), is_causal=causal)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
        for a, b in zip(fused, reference):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "lk,block_size,block_elements,group",
    [(11, 5, 120, 2), (11, 5, 40, 1), (11, 5, 1 << 20, 6), (1, 5, 12, 2), (1, 3, 7, 2)],
)
def test_batch_entries_per_block_follow_block_elements(
    monkeypatch, lk, block_size, block_elements, group
):
    # the documented grouping: as many batch entries as fit BLOCK_ELEMENTS scores (rows x keys), >= 1
    monkeypatch.setattr(ev_attention, "BLOCK_ELEMENTS", block_elements)
    layouts = []
    blocks = ev_attention._Plan.blocks

    def spy(plan):
        layouts.append(blocks(plan))
        return layouts[-1]

    monkeypatch.setattr(ev_attention._Plan, "blocks", spy)
    q, k, v = qkv(b=2, h=3, lq=7, lk=lk, seed=2)
    out = ev_softmax_attention(q, k, v, block_size=block_size)
    torch.testing.assert_close(out, dense(q, k, v), rtol=0, atol=1e-12)
    starts = range(0, 7, block_size)
    expected = [
        (slice(first, min(first + group, 6)), s, min(s + block_size, 7), lk)
        for first in range(0, 6, group)
        for s in starts
    ]
    assert layouts == [expected]


def test_causal_queries_never_read_the_values_of_later_keys():
    # blocks of one query stop at their query's key: a NaN value of key j reaches only queries >= j
    q, k, v = qkv(b=1, h=2, lq=6, lk=6, seed=4)
    v[..., 4, :] = math.nan
    out = ev_softmax_attention(q, k, v, is_causal=True, block_size=1)
    expected = dense(q[..., :4, :], k[..., :4, :], v[..., :4, :], is_causal=True)
    torch.testing.assert_close(out[..., :4, :], expected, rtol=0, atol=1e-12)
    assert out[..., 4:, :].isnan().all()


def test_causal_gradients_with_one_query_per_block():
    # the first block's only key (weight 1) still passes the output gradient to its value
    q, k, v = qkv(b=2, h=1, lq=5, lk=4, seed=10)
    out, fused = grads_of(ev_softmax_attention, (q, k, v), (0, 1, 2), is_causal=True, block_size=1)
    expected, reference = grads_of(dense, (q, k, v), (0, 1, 2), is_causal=True)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    for a, b in zip(fused, reference):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_causal_with_one_key_and_with_no_keys():
    q, k, v = qkv(b=2, h=1, lq=3, lk=1, seed=11)
    # one key: every query sees key 0 alone, weight 1
    out = ev_softmax_attention(q, k, v, is_causal=True, block_size=2)
    torch.testing.assert_close(out, v.expand(2, 1, 3, 4), rtol=0, atol=0)
    # no key: zero outputs, whatever the number of queries and of batch entries
    for lq in (3, 1):
        empty = ev_softmax_attention(q[..., :lq, :], k[..., :0, :], v[..., :0, :], is_causal=True)
        assert empty.shape == (2, 1, lq, 4) and (empty == 0).all()


@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("lq,lk,block_size", [(5, 1, 2), (2, 3, 1), (4, 2, 1)])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_per_query_masks_of_few_rows_or_keys(kind, is_causal, lq, lk, block_size, batch):
    # 2-D and 3-D inputs, per-query masks with 1 key or 2 queries, forward and gradients: the dense ones
    g = torch.Generator().manual_seed(lq * 10 + lk)
    q = torch.randn(*batch, lq, 3, dtype=DT, generator=g)
    k = torch.randn(*batch, lk, 3, dtype=DT, generator=g)
    v = torch.randn(*batch, lk, 2, dtype=DT, generator=g)
    allowed = torch.ones(lq, lk, dtype=torch.bool)
    allowed[1, 0] = False
    if kind == "bool":
        mask, wrt = allowed, (0, 1, 2)
    else:
        mask = torch.randn(lq, lk, dtype=DT, generator=g).masked_fill(~allowed, -math.inf)
        wrt = (0, 1, 2, 3)
    out, fused = grads_of(
        ev_softmax_attention, (q, k, v, mask), wrt, is_causal=is_causal, block_size=block_size
    )
    expected, reference = grads_of(dense, (q, k, v, mask), wrt, is_causal=is_causal)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    for a, b in zip(fused, reference):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_per_query_bias_broadcast_over_keys_gets_its_gradient():
    # a float mask (Lq, 1) added to every key of its query: gradient summed over the keys, as dense
    q, k, v = qkv(b=1, h=2, lq=5, lk=4, seed=12)
    bias = torch.tensor([[0.5], [-1.0], [2.0], [0.25], [-0.75]], dtype=DT)
    for inputs in ((q, k, v, bias), (q[0], k[0], v[0], bias)):
        out, fused = grads_of(ev_softmax_attention, inputs, (0, 1, 3), block_size=2)
        expected, reference = grads_of(dense, inputs, (0, 1, 3))
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
        for a, b in zip(fused, reference):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("one_entry_per_block", [False, True])
def test_rounded_mean_above_every_score_keeps_the_largest(monkeypatch, eps, one_entry_per_block):
    # keys x, x - ulp, x: their rounded mean exceeds x, so no score reaches it; the threshold is
    # capped at the max, keys 0 and 2 are kept: by hand, weights (1 + eps) e^s on them, eps e^s on key 1.
    # Batch entry 0 has no valid key (a zero output), in the same block or in its own.
    if one_entry_per_block:
        monkeypatch.setattr(ev_attention, "BLOCK_ELEMENTS", 1)
    x = 0.813
    k = torch.tensor([x, x - math.ulp(x), x], dtype=DT).view(1, 3, 1).expand(2, 3, 1)
    assert bool((k[0].mean(0) > x).all()) and bool(
        ((torch.ones(1, 3, dtype=DT) @ k[0]) / 3 > x).all()
    )
    q = torch.ones(2, 2, 1, dtype=DT)
    v = torch.tensor([[1.0, 2.0], [-3.0, 0.5], [0.25, -1.0]], dtype=DT).expand(2, 3, 2)
    weights = torch.tensor([1 + eps, eps, 1 + eps], dtype=DT) * k[0, :, 0].exp()
    expected = (weights / weights.sum()) @ v[0]
    pad = torch.tensor([[[False] * 3], [[True] * 3]])
    out = ev_softmax_attention(q, k, v, pad, scale=1.0, eps=eps)
    assert (out[0] == 0).all()
    torch.testing.assert_close(out[1], expected.expand(2, 2), rtol=0, atol=1e-15)
    unmasked = ev_softmax_attention(q[1], k[1], v[1], scale=1.0, eps=eps)
    torch.testing.assert_close(unmasked, expected.expand(2, 2), rtol=0, atol=1e-15)


def test_eps_one_weighs_the_support_twice():
    # eps = 1: weights 2 e^s on the support, e^s off it, as ev_softmax of the scores
    q, k, v = qkv(seed=13)
    out = ev_softmax_attention(q, k, v, eps=1.0, block_size=4)
    torch.testing.assert_close(out, dense(q, k, v, eps=1.0), rtol=0, atol=1e-12)


def test_the_backward_draws_nothing_from_the_generator():
    # without dropout it leaves the default generator alone; with dropout it replays the forward's
    # draws and then restores the generator to where it was before the backward
    q, k, v = (t.requires_grad_() for t in qkv(seed=14))
    for dropout_p in (0.0, 0.3):
        out = ev_softmax_attention(q, k, v, dropout_p=dropout_p, block_size=4)
        torch.rand(3)  # the generator moves on between the forward and the backward
        state = torch.get_rng_state()
        out.sum().backward()
        assert torch.equal(torch.get_rng_state(), state)


def test_attn_mask_errors_are_exact():
    q, k, v = qkv()
    with raises_exactly(TypeError, "attn_mask must be a torch.Tensor, got list"):
        ev_softmax_attention(q, k, v, [[True] * 11] * 13)
    with raises_exactly(
        TypeError,
        "attn_mask must be boolean (True where a query may attend) or a float mask of the query's "
        "dtype torch.float64 (added to the scores), got dtype torch.int64",
    ):
        ev_softmax_attention(q, k, v, torch.ones(13, 11, dtype=torch.int64))
    with raises_exactly(ValueError, "attn_mask is on meta but query is on cpu"):
        ev_softmax_attention(q, k, v, torch.ones(13, 11, dtype=torch.bool, device="meta"))


def test_input_errors_are_exact():
    q, k, v = qkv()
    floating = "must be a floating-point tensor (float16, bfloat16, float32 or float64), got dtype"
    with raises_exactly(TypeError, f"key {floating} torch.int64"):
        ev_softmax_attention(q, k.long(), v)
    with raises_exactly(TypeError, f"value {floating} torch.int64"):
        ev_softmax_attention(q, k, v.long())
    with raises_exactly(ValueError, "query must have shape (..., L, E), got (5,)"):
        ev_softmax_attention(q[0, 0, 0], k, v)
    with raises_exactly(ValueError, "query, key and value must be on one device"):
        ev_softmax_attention(q, k.to("meta"), v)
    with raises_exactly(ValueError, "query, key and value must be on one device"):
        ev_softmax_attention(q, k, v.to("meta"))
    with raises_exactly(
        ValueError,
        "the batch dimensions of query, key and value must broadcast, got "
        "(2, 3, 13, 5), (3, 11, 5), (4, 11, 4)",
    ):
        ev_softmax_attention(q, k[0], v[0, :1].expand(4, 11, 4))


def test_argument_errors_are_exact():
    q, k, v = qkv()
    for dropout_p in (False, "0.5"):
        with raises_exactly(
            ValueError, f"dropout_p must be a probability in [0, 1), got {dropout_p!r}"
        ):
            ev_softmax_attention(q, k, v, dropout_p=dropout_p)
    with raises_exactly(TypeError, "is_causal must be a bool, got int"):
        ev_softmax_attention(q, k, v, is_causal=1)
    for scale in (True, "2"):
        with raises_exactly(ValueError, f"scale must be a finite number or None, got {scale!r}"):
            ev_softmax_attention(q, k, v, scale=scale)
    with raises_exactly(ValueError, "eps must be a finite number >= 0, got -1.0"):
        ev_softmax_attention(q, k, v, eps=-1.0)
    with raises_exactly(ValueError, "block_size must be an int >= 1, got 0"):
        ev_softmax_attention(q, k, v, block_size=0)


def test_key_mean_errors_are_exact():
    q, k, v = qkv()
    mean = k.mean(-2, keepdim=True)
    with raises_exactly(
        TypeError,
        "key_mean must be a floating-point tensor (float16, bfloat16, float32 or float64), got "
        "dtype torch.int64",
    ):
        ev_softmax_attention(q, k, v, key_mean=mean.long())
    shared_only = (
        "key_mean applies only to a threshold shared by all queries: not with is_causal or a "
        "per-query attn_mask"
    )
    bias = torch.randn(13, 11, dtype=DT, generator=torch.Generator().manual_seed(23))
    for lq, mask in ((13, masks()["per_query"]), (13, bias), (2, bias[:2])):
        with raises_exactly(ValueError, shared_only):
            ev_softmax_attention(q[..., :lq, :], k, v, mask, key_mean=mean)
    with raises_exactly(ValueError, shared_only):
        ev_softmax_attention(q, k, v, key_mean=mean, is_causal=True)
    with raises_exactly(
        ValueError, "key_mean must broadcast to (..., 1, E) = (2, 3, 1, 5), got (2, 3, 1, 4)"
    ):
        ev_softmax_attention(q, k, v, key_mean=mean[..., :4])


def test_a_key_mean_that_only_broadcasts_with_the_queries_is_refused():
    """A key_mean of several rows, or of more batch dimensions, broadcasts together with
    (..., 1, E) but not to it: refused with the documented message, not an error from expand."""
    q, k, v = qkv(b=2, h=3, lq=13, lk=11, e=5, ev=4, seed=31)
    for bad in (k[..., :2, :], k[:1, :1, :1, :].expand(4, 2, 3, 1, 5)):
        message = f"key_mean must broadcast to (..., 1, E) = (2, 3, 1, 5), got {tuple(bad.shape)}"
        with raises_exactly(ValueError, message):
            ev_softmax_attention(q, k, v, key_mean=bad)
    ev_softmax_attention(q, k, v, key_mean=k.mean(-2, keepdim=True)[:1])  # (1, 3, 1, 5) fits


def test_key_mean_sets_the_threshold():
    # a given key_mean m is used as is: threshold scale q.m (+ the mean bias of the valid keys), by hand
    q, k, v = qkv(b=2, h=1, lq=4, lk=6, e=3, ev=2, seed=15)
    m = torch.tensor([0.5, -0.25, 0.125], dtype=DT)
    bias = torch.tensor([0.3, -0.2, 0.1, 0.4, -math.inf, 0.0], dtype=DT)
    plain = q @ k.transpose(-2, -1) / math.sqrt(3)
    for mask in (bias, bias.isfinite()):
        if mask.dtype == DT:
            scores, threshold = plain + bias, q @ m / math.sqrt(3) + bias[bias.isfinite()].mean()
        else:
            scores, threshold = plain.masked_fill(~mask, -math.inf), q @ m / math.sqrt(3)
        kept = scores >= threshold.unsqueeze(-1)
        assert kept.any(-1).all()
        expected = torch.softmax(scores.masked_fill(~kept, -math.inf), -1) @ v
        assert (expected - dense(q, k, v, mask)).abs().amax() > 0.1  # not the mean of the keys
        out = ev_softmax_attention(q, k, v, mask, key_mean=m)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
        # a float64 mean with float32 inputs is used in float32
        mask32 = mask.float() if mask.dtype == DT else mask
        out32 = ev_softmax_attention(q.float(), k.float(), v.float(), mask32, key_mean=m)
        torch.testing.assert_close(out32, expected.float(), rtol=0, atol=1e-5)
    # without a mask: every key valid, threshold scale q.m
    scores, threshold = plain, q @ m / math.sqrt(3)
    kept = scores >= threshold.unsqueeze(-1)
    expected = torch.softmax(scores.masked_fill(~kept, -math.inf), -1) @ v
    assert (expected - dense(q, k, v)).abs().amax() > 0.1
    torch.testing.assert_close(
        ev_softmax_attention(q, k, v, key_mean=m), expected, rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_equals_float32_rounded(dtype):
    # the inputs are converted to float32, computed there, and the output rounded: exactly that
    q, k, v = (t.to(dtype) for t in qkv(seed=16))
    key_bias = masks()["key_bias"].to(dtype)
    bias = masks()["bias"].to(dtype)
    for mask in (None, key_bias, bias, masks()["padding"]):
        out = ev_softmax_attention(q, k, v, mask, is_causal=True, block_size=4)
        as_float = None if mask is None or mask.dtype == torch.bool else mask.float()
        if mask is not None and mask.dtype == torch.bool:
            as_float = mask
        reference = ev_softmax_attention(
            q.float(), k.float(), v.float(), as_float, is_causal=True, block_size=4
        )
        assert out.dtype == dtype
        assert torch.equal(out, reference.to(dtype))


def test_value_batch_dimensions_broadcast_too():
    q, k, _ = qkv(b=1, h=1, lq=5, lk=4, seed=17)
    values = torch.randn(3, 4, 2, dtype=DT, generator=torch.Generator().manual_seed(18))
    out = ev_softmax_attention(q[0, 0], k[0, 0], values)
    assert out.shape == (3, 5, 2)
    torch.testing.assert_close(out, dense(q[0, 0], k[0, 0], values), rtol=0, atol=1e-12)


def test_queries_and_keys_of_dimension_zero_weigh_keys_equally():
    # E = 0: every score is 0, all tie: the mean of the (causal prefix of the) values
    q, k, v = qkv(b=2, h=3, lq=4, lk=4, e=0, seed=19)
    torch.testing.assert_close(
        ev_softmax_attention(q, k, v), v.mean(-2, keepdim=True).expand(2, 3, 4, 4)
    )
    prefix = v.cumsum(-2) / torch.arange(1, 5, dtype=DT).view(4, 1)
    torch.testing.assert_close(ev_softmax_attention(q, k, v, is_causal=True), prefix)


def test_the_forward_draws_nothing_without_dropout():
    q, k, v = qkv(seed=20)
    state = torch.get_rng_state()
    ev_softmax_attention(q, k, v, masks()["per_query"], block_size=4)
    ev_softmax_attention(q, k, v, is_causal=True, block_size=4)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    "mask_kind,n,lq,lk,block_elements,rows",
    [
        ("none", 6, 300, 3, 1 << 20, 256),  # 128..256 queries
        ("none", 6, 300, 3, 20000, 256),
        ("none", 6, 200, 3, 500, 166),  # fewer than 256 fit: BLOCK_ELEMENTS // Lk
        ("none", 6, 200, 3, 300, 128),  # at least 128
        ("none", 6, 200, 0, 150, 150),  # no keys: as one key
        ("per_query", 6, 300, 3, 1 << 20, 256),  # over all n batch entries at once
        ("per_query", 6, 40, 3, 400, 22),
        ("per_query", 6, 40, 3, 200, 16),  # at least 16
        ("per_query", 6, 40, 1, 200, 33),
        ("bias", 6, 40, 3, 400, 22),
        ("key_bias", 6, 200, 3, 500, 166),
    ],
)
def test_default_block_sizes(monkeypatch, mask_kind, n, lq, lk, block_elements, rows):
    # block_size None: 128..256 queries for BLOCK_ELEMENTS scores, 16..256 over all batch entries
    # with a per-query mask; the values are those of the dense definition
    monkeypatch.setattr(ev_attention, "BLOCK_ELEMENTS", block_elements)
    seen = []
    blocks = ev_attention._Plan.blocks

    def spy(plan):
        seen.append(plan.rows)
        return blocks(plan)

    monkeypatch.setattr(ev_attention._Plan, "blocks", spy)
    q, k, v = qkv(b=2, h=n // 2, lq=lq, lk=lk, e=1, ev=1, seed=21)
    g = torch.Generator().manual_seed(22)
    mask = {
        "none": None,
        "per_query": torch.rand(lq, lk, generator=g) > 0.2,
        "bias": torch.randn(lq, lk, dtype=DT, generator=g),
        "key_bias": torch.randn(lk, dtype=DT, generator=g),
    }[mask_kind]
    out = ev_softmax_attention(q, k, v, mask)
    assert seen == [rows]
    torch.testing.assert_close(out, dense(q, k, v, mask), rtol=0, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_rounded_mean_above_every_score_with_a_per_query_mask(eps):
    # the masked mean of the block's scores x, x - ulp, x (and twice those) rounds above their max:
    # capped at each row's own max, keys 0 and 2 kept; by hand, (1 + eps) e^s on them, eps e^s on key 1
    x = 0.813
    k = torch.tensor([x, x - math.ulp(x), x], dtype=DT).view(3, 1)
    q = torch.tensor([[1.0], [2.0]], dtype=DT)
    v = torch.tensor([[1.0, 2.0], [-3.0, 0.5], [0.25, -1.0]], dtype=DT)
    scores = q @ k.T
    assert bool((scores.sum(-1) / 3 > scores.amax(-1)).all())
    weights = torch.tensor([1 + eps, eps, 1 + eps], dtype=DT) * scores.exp()
    expected = (weights / weights.sum(-1, keepdim=True)) @ v
    per_query = torch.ones(2, 3, dtype=torch.bool)
    out = ev_softmax_attention(q, k, v, per_query, scale=1.0, eps=eps)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_rounded_mean_one_smallest_normal_above_the_max(eps):
    # keys x, x - ulp, x with ulp(x) = tiny (the smallest normal): the rounded mean is x + tiny, so
    # the largest centred score is -tiny exactly, off the support; capped at the max, keys 0 and 2 are
    # kept and key 1 (-tiny below them) is not. e^s = 1 at these scores: weights 1 + eps, eps, 1 + eps
    tiny = torch.finfo(DT).tiny
    x = 0.813 * 2.0**-969
    assert math.ulp(x) == tiny
    k = torch.tensor([x, x - tiny, x], dtype=DT).view(3, 1)
    assert float(k.mean()) == x + tiny
    v = torch.tensor([[1.0, 2.0], [-3.0, 0.5], [0.25, -1.0]], dtype=DT)
    weights = torch.tensor([1 + eps, eps, 1 + eps], dtype=DT)
    out = ev_softmax_attention(torch.ones(2, 1, dtype=DT), k, v, scale=1.0, eps=eps)
    torch.testing.assert_close(
        out, ((weights / weights.sum()) @ v).expand(2, 2), rtol=0, atol=1e-15
    )
