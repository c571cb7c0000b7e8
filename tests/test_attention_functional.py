"""Tests of simplexity.nn.functional: torch's SDPA conventions, mask correctness, normalizers, gradients, errors."""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from default_dtype import default_dtype
from exact_error import raises_exactly
from simplexity import normalizers
from simplexity.nn import functional
from simplexity.nn.functional import (
    attention,
    attention_weights,
    causal_mask,
    evidential_attention_support,
    padding_mask,
    resolve_normalizer,
)
from simplexity.normalizers import EvSoftmax, LogEvSoftmax

NAMES = normalizers.names()
DT = torch.float64


def reference_ev_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The reference implementation's masking: fill with -1e18, then take the mean over the whole row."""
    filled = scores.masked_fill(~valid, -1e18)
    keep = filled >= filled.mean(-1, keepdim=True)
    weights = keep * filled.exp()
    return weights / weights.sum(-1, keepdim=True)


def qkv(*batch: int, lq: int = 4, lk: int = 6, e: int = 5, ev: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(*batch, lq, e, dtype=DT, generator=g),
        torch.randn(*batch, lk, e, dtype=DT, generator=g),
        torch.randn(*batch, lk, ev, dtype=DT, generator=g),
    )


# ----------------------------------------------------------------------------- torch's conventions


@pytest.mark.parametrize("batch", [(), (2,), (2, 3), (2, 1, 3)])
def test_softmax_equals_scaled_dot_product_attention(batch):
    q, k, v = qkv(*batch)
    allowed = torch.rand(*batch, 4, 6) < 0.6
    allowed[..., 0] = True  # torch gives NaN for a row with nothing allowed
    bias = torch.randn(*batch, 4, 6, dtype=DT)
    bias[..., 2] = -math.inf
    cases = [
        {},
        {"attn_mask": allowed},  # boolean: True = may attend, as torch
        {"attn_mask": bias},  # float: added to the scores
        {"attn_mask": allowed, "scale": 0.3},
        {"is_causal": True},
    ]
    for kw in cases:
        ours = attention(q, k, v, normalizer="softmax", **kw)
        torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, **kw))
        w = attention_weights(q, k, normalizer="softmax", **kw)
        torch.testing.assert_close(w @ v, ours)
    # is_causal with L != S: torch's upper-left triangle
    q6 = torch.randn(*batch, 6, 5, dtype=DT)
    ours = attention(q6, k[..., :4, :], v[..., :4, :], is_causal=True, normalizer="softmax")
    theirs = F.scaled_dot_product_attention(q6, k[..., :4, :], v[..., :4, :], is_causal=True)
    torch.testing.assert_close(ours, theirs)


def test_grouped_query_attention_matches_torch():
    q = torch.randn(2, 6, 4, 5, dtype=DT)
    k, v = torch.randn(2, 2, 7, 5, dtype=DT), torch.randn(2, 2, 7, 3, dtype=DT)
    ours = attention(q, k, v, enable_gqa=True, normalizer="softmax")
    theirs = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    torch.testing.assert_close(ours, theirs)
    with pytest.raises(ValueError, match="enable_gqa"):
        attention(
            q, torch.randn(2, 4, 7, 5, dtype=DT), torch.randn(2, 4, 7, 3, dtype=DT), enable_gqa=True
        )


def test_is_causal_and_mask_combine_and_causal_mask_helper():
    q, k, v = qkv(2, lq=5, lk=5)
    allowed = torch.rand(2, 5, 5) < 0.7
    both = attention_weights(q, k, allowed, is_causal=True)
    tril = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(both, attention_weights(q, k, allowed & tril))
    # the float helper means the same as is_causal for L == S, and is lower-right aligned otherwise
    torch.testing.assert_close(
        attention_weights(q, k, causal_mask(5, dtype=DT)), attention_weights(q, k, is_causal=True)
    )
    lower_right = causal_mask(2, 5, dtype=DT)
    assert lower_right.dtype == DT and bool((lower_right[-1] == 0).all())
    assert lower_right[0].tolist() == [0, 0, 0, 0, -math.inf]
    torch.testing.assert_close(
        attention(q[:, 3:], k, v, lower_right), attention(q, k, v, is_causal=True)[:, 3:]
    )


def test_dropout_is_applied_to_the_weights_whenever_positive():
    q, k, v = qkv(lq=3, lk=5)
    exact = attention(q, k, v, normalizer="softmax")
    torch.manual_seed(0)
    draws = attention(q.expand(4000, 3, 5), k, v, dropout_p=0.5, normalizer="softmax")  # iid draws
    assert not torch.allclose(draws[0], exact)
    torch.testing.assert_close(
        draws.mean(0), exact, atol=0.08, rtol=0
    )  # unbiased (inverted dropout)
    torch.manual_seed(1)
    out = attention(q, k, v, dropout_p=0.3)
    torch.manual_seed(1)
    torch.testing.assert_close(out, F.dropout(attention_weights(q, k), 0.3) @ v)


def test_empty_keys_give_zeros():
    q, k, v = qkv(2, lk=0)
    for name in NAMES:
        out = attention(q, k, v, normalizer=name)
        assert out.shape == (2, 4, 3) and bool((out == 0).all())


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_padding_gets_exactly_zero_weight_and_does_not_change_valid_outputs(name, training, kind):
    b, lq, d, lengths = 3, 4, 6, torch.tensor([5, 2, 7])
    n = int(lengths.max())
    g = torch.Generator().manual_seed(7)
    q = torch.randn(b, lq, d, dtype=DT, generator=g)
    k, v = torch.randn(b, n, d, dtype=DT, generator=g), torch.randn(b, n, 3, dtype=DT, generator=g)
    outputs = []
    for extra, fill in ((0, 0.0), (3, 1e4), (9, -1e4)):
        pad = padding_mask(lengths, n + extra)  # True at padding
        kp = torch.cat([k, torch.full((b, extra, d), fill, dtype=DT)], 1)
        vp = torch.cat([v, torch.randn(b, extra, 3, dtype=DT, generator=g) * 1e3], 1)
        kp = torch.where(
            pad[..., None], torch.randn(kp.shape, dtype=DT, generator=g) * 50 + fill, kp
        )
        vp = torch.where(pad[..., None], torch.randn(vp.shape, dtype=DT, generator=g) * 1e3, vp)
        if kind == "bool":
            mask = ~pad[:, None, :]  # SDPA's boolean: True = may attend
        else:
            mask = torch.zeros(pad.shape, dtype=DT).masked_fill(pad, -math.inf)[:, None, :]
        w = attention_weights(q, kp, mask, normalizer=name, training=training)
        assert bool((w.masked_select(pad[:, None, :].expand_as(w)) == 0).all())
        torch.testing.assert_close(w.sum(-1), torch.ones(b, lq, dtype=DT))
        outputs.append(attention(q, kp, vp, mask, normalizer=name, training=training))
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0])
    for i, length in enumerate(lengths.tolist()):  # each sequence alone, unpadded
        alone = attention(q[i], k[i, :length], v[i, :length], normalizer=name, training=training)
        torch.testing.assert_close(outputs[0][i], alone)


def test_float_mask_is_added_and_its_minus_inf_entries_are_masked():
    q, k, v = qkv(2)
    bias = torch.randn(2, 4, 6, dtype=DT)
    blocked = torch.rand(2, 4, 6) < 0.4
    blocked[..., 0] = False
    scores = q @ k.transpose(-1, -2) / math.sqrt(5) + bias
    for name in NAMES:
        if name == "posthoc_evidential":
            continue  # its eval support reads q and k themselves (tested below)
        norm = normalizers.get(name)
        expected = norm(scores, -1, mask=~blocked)
        w = attention_weights(q, k, bias.masked_fill(blocked, -math.inf), normalizer=name)
        torch.testing.assert_close(w, expected)
        assert bool((w[blocked] == 0).all())
    # ev-softmax: a -inf entry of the mask leaves the mean, the same as a boolean False
    ev_bool = attention_weights(q, k, ~blocked)
    ev_float = attention_weights(
        q, k, torch.zeros(2, 4, 6, dtype=DT).masked_fill(blocked, -math.inf)
    )
    torch.testing.assert_close(ev_float, ev_bool)
    # a float32 mask is taken in the query's dtype: it does not change the output's dtype
    assert attention(q, k, v, bias.float()).dtype == DT


def test_ev_softmax_padding_is_sparse_unlike_reference():
    # ev-softmax paper's example [2, 1, .5, .1, -1] -> [.73, .27, 0, 0, 0]; one pad must not change it.
    scores = torch.tensor([[2.0, 1.0, 0.5, 0.1, -1.0, 123.0]], dtype=DT)
    valid = torch.tensor([[True] * 5 + [False]])
    q, k = torch.ones(1, 1, dtype=DT), scores.T  # q k^T = scores
    ours = attention_weights(q, k, valid, scale=1.0)
    expected = torch.tensor([[0.7311, 0.2689, 0, 0, 0, 0]], dtype=DT)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    ref = reference_ev_softmax(scores, valid)
    assert bool((ref[valid] > 0.02).all()), "the reference's defect: no valid entry is dropped"

    # On random padded attention: ours is sparse on the valid keys, the reference is dense there.
    b, lq, d, n = 4, 5, 8, 12
    q, k = torch.randn(b, lq, d, dtype=DT), torch.randn(b, n, d, dtype=DT)
    valid = ~padding_mask(torch.tensor([12, 9, 6, 3]), n)[:, None, :].expand(b, lq, n)
    ours = attention_weights(q, k, valid)
    ref = reference_ev_softmax(q @ k.transpose(-1, -2) / math.sqrt(d), valid)
    padded_rows = ~valid.all(-1)
    assert bool((((ours == 0) & valid).sum(-1)[padded_rows] > 0).all())  # sparsified
    assert bool((((ref == 0) & valid).sum(-1)[padded_rows] == 0).all())  # the reference never is
    torch.testing.assert_close(ours[~padded_rows], ref[~padded_rows])  # agree without padding


def test_minus_inf_scores_count_as_masked():
    scores = torch.tensor([[3.0, 1.0, 0.0, -1.0]], dtype=DT)
    with_inf = torch.cat([scores, torch.full((1, 3), -math.inf, dtype=DT)], -1)
    q = torch.ones(1, 1, dtype=DT)
    ours = attention_weights(q, with_inf.T, scale=1.0)
    torch.testing.assert_close(ours[:, :4], attention_weights(q, scores.T, scale=1.0))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_rows_with_nothing_to_attend_give_zeros_not_nan(name, kind):
    q = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    k = torch.randn(2, 5, 4, dtype=DT, requires_grad=True)
    v = torch.randn(2, 5, 2, dtype=DT, requires_grad=True)
    allowed = torch.rand(2, 3, 5) < 0.5
    allowed[0, 1] = False
    allowed[1] = False
    allowed[0, 0, 0] = True
    mask = (
        allowed
        if kind == "bool"
        else torch.zeros(2, 3, 5, dtype=DT).masked_fill(~allowed, -math.inf)
    )
    out = attention(q, k, v, mask, normalizer=name)
    w = attention_weights(q, k, mask, normalizer=name)
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(w).all())
    assert bool((out[0, 1] == 0).all()) and bool((out[1] == 0).all()) and bool((w[1] == 0).all())
    out.sum().backward()
    for t in (q, k, v):
        assert bool(torch.isfinite(t.grad).all())
    assert bool((q.grad[1] == 0).all())


def test_padding_mask_has_torch_polarity():
    assert padding_mask([2, 0]).tolist() == [[False, False], [True, True]]
    assert padding_mask(torch.tensor([1, 3]), 4).tolist() == [
        [False, True, True, True],
        [False, False, False, True],
    ]
    with pytest.raises(ValueError, match=r"^max_len"):
        padding_mask(torch.tensor([3]), 2)
    with pytest.raises(TypeError, match=r"^lengths"):
        padding_mask(torch.tensor([1.0]), 2)
    with pytest.raises(ValueError, match=r"^lengths"):
        padding_mask(torch.tensor([-1]), 2)
    with pytest.raises(ValueError, match=r"^query_len"):
        causal_mask(-1)
    with pytest.raises(TypeError, match=r"^dtype"):
        causal_mask(2, dtype=torch.long)


# ----------------------------------------------------------------------------- normalizers


def test_module_normalizer_hyperparameters_and_mode_are_honoured():
    q, k, v = qkv(2)
    allowed = torch.rand(2, 4, 6) < 0.7
    module = EvSoftmax(eps=0.1)
    train = attention_weights(q, k, allowed, normalizer=module.train())
    expected = attention_weights(
        q, k, allowed, normalizer="ev_softmax", normalizer_options={"eps": 0.1}, training=True
    )
    torch.testing.assert_close(train, expected)
    assert bool((train[allowed] > 0).all())  # the eps family has full support on the valid keys
    exact = attention_weights(q, k, allowed, normalizer=module.eval())
    torch.testing.assert_close(exact, attention_weights(q, k, allowed, normalizer="ev_softmax"))
    with pytest.raises(ValueError, match="disagrees"):
        attention(q, k, v, normalizer=module.eval(), training=True)
    # torch's Softmax module is the softmax
    torch.testing.assert_close(
        attention(q, k, v, allowed, normalizer=torch.nn.Softmax(-1)),
        attention(q, k, v, allowed, normalizer="softmax"),
    )
    # a registry module wrapper too
    wrapped = normalizers.get("sparsemax").module()
    torch.testing.assert_close(
        attention(q, k, v, allowed, normalizer=wrapped),
        attention(q, k, v, allowed, normalizer="sparsemax"),
    )


def test_resolve_normalizer_rejects_what_it_cannot_honour():
    with pytest.raises(TypeError, match="log-probabilities"):
        resolve_normalizer(LogEvSoftmax())
    with pytest.raises(TypeError, match="mask"):
        resolve_normalizer(torch.nn.ReLU())
    with pytest.raises(ValueError, match="dim=-1"):
        resolve_normalizer(EvSoftmax(dim=0))
    with pytest.raises(ValueError, match="dim=-1"):
        resolve_normalizer(torch.nn.Softmax(dim=1))
    with pytest.raises(ValueError, match=r"^normalizer_options"):
        resolve_normalizer(EvSoftmax(), {"eps": 0.1})
    with pytest.raises(TypeError, match=r"^normalizer must be"):
        resolve_normalizer(torch.softmax)
    with pytest.raises(ValueError, match="post-hoc evidential filter reads the queries"):
        resolve_normalizer(normalizers.get("posthoc_evidential").module())
    with pytest.raises(ValueError, match=r"^unknown normalizer"):
        resolve_normalizer("softermax")


def test_the_fused_dispatch_point_is_called_for_ev_softmax_only(monkeypatch):
    calls = []

    def fake(query, key, value, attn_mask, dropout_p, is_causal, scale, eps, key_mean=None):
        calls.append((attn_mask, dropout_p, is_causal, scale, eps))
        return None  # fall back to the dense path

    monkeypatch.setattr(functional, "_fused_ev_softmax_attention", fake)
    q, k, v = qkv(2)
    mask = torch.rand(4, 6) < 0.5
    dense = attention(q, k, v, mask, is_causal=True, scale=0.5)
    assert calls == [(mask, 0.0, True, 0.5, 0.0)]
    attention(q, k, v, normalizer="ev_softmax", normalizer_options={"eps": 0.01}, training=True)
    attention(q, k, v, normalizer=EvSoftmax(eps=0.02).train(), dropout_p=0.1)
    attention(q, k, v, normalizer=EvSoftmax(eps=0.02).eval())
    assert [c[-1] for c in calls[1:]] == [0.01, 0.02, 0.0] and calls[2][1] == 0.1
    assert calls[1][3] == 1 / math.sqrt(5)
    for other in ("softmax", "sparsemax", "posthoc_evidential"):
        attention(q, k, v, normalizer=other)
    assert len(calls) == 4
    monkeypatch.setattr(functional, "_fused_ev_softmax_attention", lambda *a: torch.zeros(()))
    assert attention(q, k, v).shape == ()  # what the fused path returns is the result
    assert attention(q, k, v, normalizer="softmax").shape == dense.shape == (2, 4, 3)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_with_masks(name):
    torch.manual_seed(3)
    q = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    k = torch.randn(2, 5, 4, dtype=DT, requires_grad=True)
    v = torch.randn(2, 5, 2, dtype=DT, requires_grad=True)
    allowed = ~padding_mask(torch.tensor([5, 3]), 5)[:, None, :] & (torch.rand(2, 3, 5) < 0.8)
    allowed[..., 0] = True
    bias = torch.randn(2, 3, 5, dtype=DT).masked_fill(~allowed, -math.inf)
    for mask in (allowed, bias):
        assert torch.autograd.gradcheck(
            lambda q, k, v, mask=mask: attention(q, k, v, mask, normalizer=name),
            (q, k, v),
            fast_mode=True,
        )
    assert torch.autograd.gradcheck(
        lambda q, k, v: attention(q, k, v, is_causal=True, normalizer=name),
        (q, k[:, :3], v[:, :3]),
        fast_mode=True,
    )


@pytest.mark.parametrize("eps", [1e-3, 0.1])
def test_gradcheck_ev_softmax_training_form_and_module(eps):
    torch.manual_seed(4)
    q = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    k = torch.randn(2, 5, 4, dtype=DT, requires_grad=True)
    v = torch.randn(2, 5, 2, dtype=DT, requires_grad=True)
    mask = torch.rand(2, 3, 5) < 0.8
    mask[..., 0] = True
    module = EvSoftmax(eps=eps).train()
    assert torch.autograd.gradcheck(
        lambda q, k, v: attention(q, k, v, mask, normalizer=module), (q, k, v)
    )


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_errors_naming_the_argument():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    with pytest.raises(
        ValueError,
        match=r"^query and key must have the same last dimension E: query \(\.\.\., L, E\) is \(2, 3, 4\), key \(\.\.\., S, E\) is \(2, 5, 3\)$",
    ):
        attention(q, torch.randn(2, 5, 3), v)
    with pytest.raises(ValueError, match=r"^value \(\.\.\., S, Ev\) must have as many rows as key"):
        attention(q, k, torch.randn(2, 4, 6))
    with pytest.raises(
        ValueError,
        match=r"^the batch dimensions \(all but the last two\) of query, key and value must broadcast, got \(2,\), \(3,\), \(3,\)$",
    ):
        attention(q, torch.randn(3, 5, 4), torch.randn(3, 5, 6))
    with pytest.raises(ValueError, match=r"^query must have shape \(\.\.\., L, E\), got \(4,\)$"):
        attention(torch.randn(4), k, v)
    with pytest.raises(TypeError, match=r"^query must be a floating-point"):
        attention(q.long(), k, v)
    with pytest.raises(
        TypeError,
        match=r"^query, key and value must share a dtype, got torch.float32 and key torch.float64$",
    ):
        attention(q, k.double(), v)
    with pytest.raises(
        TypeError,
        match=r"^attn_mask must be a boolean tensor .* or a float tensor .*, got dtype torch.int64$",
    ):
        attention(q, k, v, torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(TypeError, match=r"^attn_mask must be a torch\.Tensor"):
        attention(q, k, v, [[True] * 5] * 3)
    with pytest.raises(
        ValueError,
        match=r"^attn_mask of shape \(3, 4\) does not broadcast to the scores' shape \(\.\.\., L, S\) = \(2, 3, 5\)$",
    ):
        attention(q, k, v, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^attn_mask of shape \(4, 3, 5\) does not broadcast"):
        attention(q, k, v, torch.zeros(4, 3, 5))
    with pytest.raises(ValueError, match=r"^dropout_p must be a probability in \[0, 1\), got 1.5$"):
        attention(q, k, v, dropout_p=1.5)
    with pytest.raises(TypeError, match=r"^is_causal must be a bool, got int$"):
        attention(q, k, v, is_causal=1)
    with pytest.raises(TypeError, match=r"^scale must be a finite real number or None, got nan$"):
        attention(q, k, v, scale=float("nan"))
    with pytest.raises(TypeError, match=r"^training must be a bool or None, got str$"):
        attention(q, k, v, training="yes")
    with pytest.raises(
        ValueError,
        match=r"^feature_mean is only used by a post-hoc evidential normalizer \(normalizer='posthoc_evidential'\)$",
    ):
        attention_weights(q, k, normalizer="softmax", feature_mean=torch.zeros(4))
    with pytest.raises(TypeError, match=r"^dropout_p must be a real number, got str$"):
        attention(q, k, v, dropout_p="0.1")
    with pytest.raises(ValueError, match=r"^key is on meta but query is on cpu$"):
        attention(q, k.to("meta"), v)
    with pytest.raises(ValueError, match=r"^attn_mask is on meta but query is on cpu$"):
        attention(q, k, v, torch.ones(3, 5, dtype=torch.bool, device="meta"))
    with pytest.raises(TypeError, match=r"^enable_gqa must be a bool, got int$"):
        attention(q, k, v, enable_gqa=1)
    q4, k4, v4 = torch.randn(1, 4, 3, 4), torch.randn(1, 3, 5, 4), torch.randn(1, 3, 5, 6)
    with pytest.raises(ValueError, match=r"^with enable_gqa the query heads \(dim -3\) must be a "
                       r"multiple of the key/value heads, got query \(1, 4, 3, 4\), key "
                       r"\(1, 3, 5, 4\), value \(1, 3, 5, 6\)$"):  # fmt: skip
        attention(q4, k4, v4, enable_gqa=True)


# ----------------------------------------------------------------------------- post-hoc evidential


def test_evidential_attention_support_matches_the_linear_layer_filter():
    # Batched, masked form == simplexity.normalizers.evidential_support on each row's valid keys.
    torch.manual_seed(4)
    b, lq, lk, d = 2, 4, 7, 3
    q, k = torch.randn(b, lq, d, dtype=DT), torch.randn(b, lk, d, dtype=DT)
    mask = (torch.rand(b, lq, lk) < 0.7) & ~padding_mask(torch.tensor([7, 5]), lk)[:, None, :]
    mask[..., 0] = True
    mu = torch.randn(d, dtype=DT)
    for feature_mean in (None, mu):
        keep = evidential_attention_support(q, k, mask, feature_mean)
        assert bool((keep <= mask).all())
        for i in range(b):
            for j in range(lq):
                cols = mask[i, j].nonzero().squeeze(-1)
                expected = normalizers.evidential_support(q[i, j], k[i, cols], None, feature_mean)
                assert keep[i, j, cols].tolist() == expected.tolist()


def test_posthoc_attention_is_softmax_in_training_and_filtered_in_eval():
    torch.manual_seed(5)
    q, k, v = (
        torch.randn(3, 5, 1, dtype=DT),
        torch.randn(3, 8, 1, dtype=DT),
        torch.randn(3, 8, 2, dtype=DT),
    )
    mask = ~padding_mask(torch.tensor([8, 6, 3]), 8)[:, None, :]
    train = attention(q, k, v, mask, normalizer="posthoc_evidential", training=True)
    torch.testing.assert_close(train, attention(q, k, v, mask, normalizer="softmax"))
    w = attention_weights(q, k, mask, normalizer="posthoc_evidential")
    ev = attention_weights(q, k, mask, normalizer="ev_softmax")
    # d = 1 feature: the filter's support equals ev-softmax's (Theorem 3.1), and so do the weights
    torch.testing.assert_close(w, ev)
    q, k = torch.randn(3, 5, 16, dtype=DT), torch.randn(3, 8, 16, dtype=DT)
    w = attention_weights(q, k, mask, normalizer="posthoc_evidential")
    ev = attention_weights(q, k, mask, normalizer="ev_softmax")
    assert bool(((w > 0) | (ev == 0)).all())  # support contains ev-softmax's
    assert bool((w.masked_select(~mask.expand_as(w)) == 0).all())
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 5, dtype=DT))


# ----------------------------------------------------------------------------- mask helpers, edges


def test_causal_mask_values_dtype_and_empty_shapes_against_brute_force():
    # brute force: 0 where j <= i + key_len - query_len, -inf elsewhere; default dtype followed
    for lq, lk in ((2, 3), (3, 3), (3, 5), (0, 0), (0, 3), (2, 0)):
        expected = [[0.0 if j <= i + lk - lq else -math.inf for j in range(lk)] for i in range(lq)]
        out = causal_mask(lq, lk)
        assert out.dtype == torch.float32 and out.shape == (lq, lk)
        assert out.tolist() == expected
    assert causal_mask(0).shape == (0, 0)
    with default_dtype(torch.float64):
        assert causal_mask(2, 3).dtype == torch.float64
    with raises_exactly(ValueError, "key_len must be an int >= 0, got -1"):
        causal_mask(2, -1)
    with raises_exactly(ValueError, "query_len must be an int >= 0, got -2"):
        causal_mask(-2, 3)
    with raises_exactly(TypeError, "dtype must be a floating-point dtype, got torch.int64"):
        causal_mask(2, dtype=torch.long)


def test_causal_mask_on_the_meta_device():
    # the mask is made where asked (meta: shapes only, any CPU intermediate would show up)
    out = causal_mask(2, 3, device="meta", dtype=DT)
    assert out.device.type == "meta" and out.shape == (2, 3) and out.dtype == DT


def test_padding_mask_edges_against_brute_force():
    # brute force: position t of a sequence of length n is padding iff t >= n
    lengths = torch.tensor([[3, 0, 1], [2, 4, 4]])
    out = padding_mask(lengths, 5)
    expected = [[[t >= n for t in range(5)] for n in row] for row in lengths.tolist()]
    assert out.shape == (2, 3, 5) and out.tolist() == expected
    assert padding_mask(lengths).shape == (2, 3, 4)  # max_len defaults to the longest
    assert padding_mask(torch.tensor(2), 4).tolist() == [False, False, True, True]  # 0-d lengths
    empty = torch.zeros(0, dtype=torch.long)
    assert padding_mask(empty).shape == (0, 0)
    assert padding_mask(empty, 0).shape == (0, 0)
    assert padding_mask(empty, 3).shape == (0, 3)
    assert padding_mask(torch.zeros(2, 0, dtype=torch.int32), 2).shape == (2, 0, 2)
    for bad in (torch.tensor([True, False]), torch.tensor([1.0]), torch.tensor([1 + 0j])):
        with raises_exactly(TypeError, f"lengths must hold integers, got dtype {bad.dtype}"):
            padding_mask(bad)
    with raises_exactly(ValueError, "lengths must be >= 0"):
        padding_mask(torch.tensor([2, -1]))
    with raises_exactly(ValueError, "max_len must be an int >= 3, got 2"):
        padding_mask([1, 3], 2)


# ----------------------------------------------------------------------------- fused ev-softmax dispatch


def masked_ev_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """ev-softmax with the mean over the valid scores only: keep the valid scores >= it, softmax them."""
    mean = scores.masked_fill(~valid, 0).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True)
    top = scores.masked_fill(~valid, -math.inf).max(-1, keepdim=True).values
    weights = (valid & (scores >= mean)) * (scores - top).exp()
    return weights / weights.sum(-1, keepdim=True)


def test_fused_ev_softmax_takes_the_given_scale():
    # brute force: ev-softmax of scale * q k^T (keep the scores >= their mean, softmax over them)
    q, k, v = qkv(2, lq=3, lk=5, e=4)
    for scale in (0.7, 2.5):
        scores = scale * (q @ k.transpose(-1, -2))
        expected = masked_ev_softmax(scores, torch.ones_like(scores, dtype=torch.bool)) @ v
        torch.testing.assert_close(attention(q, k, v, scale=scale), expected)


def test_key_mean_is_ignored_where_the_threshold_is_per_query():
    # is_causal or a per-query mask: key_mean is not used, the result is the brute-force ev-softmax
    q, k, v = qkv(2, lq=4, lk=4, e=3)
    scores = q @ k.transpose(-1, -2) / math.sqrt(3)
    key_mean = k.mean(-2, keepdim=True)
    tril = torch.ones(4, 4, dtype=torch.bool).tril()
    per_query = torch.tensor(
        [[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 1, 0]], dtype=torch.bool
    )
    per_batch = torch.stack([per_query, per_query.flip(-1)])  # (2, 4, 4)
    for kw, valid in (
        ({"is_causal": True}, tril),
        ({"attn_mask": per_query}, per_query),  # a 2-d per-query mask
        ({"attn_mask": per_batch}, per_batch),  # a 3-d one
        ({"attn_mask": per_query, "is_causal": True}, per_query & tril),
    ):
        expected = masked_ev_softmax(scores, valid.expand(2, 4, 4)) @ v
        torch.testing.assert_close(attention(q, k, v, key_mean=key_mean, **kw), expected)
    # where the threshold is shared (a key-only mask) the mean of the valid keys is used
    keys = torch.tensor([True, False, True, True])
    shared_mean = k[:, keys].mean(-2, keepdim=True)
    expected = masked_ev_softmax(scores, keys.expand(2, 4, 4)) @ v
    torch.testing.assert_close(attention(q, k, v, keys, key_mean=shared_mean), expected)
    torch.testing.assert_close(attention(q, k, v, keys[None, :], key_mean=shared_mean), expected)


# ----------------------------------------------------------------------------- post-hoc filter, exact cases


def brute_force_support(q, k, valid, mu=None):
    """The filter of the docstring, one query at a time, in exact rational arithmetic."""
    from fractions import Fraction

    d = len(q)
    idx = [j for j in range(len(k)) if valid[j]]
    if not idx:
        return [False] * len(k)
    centre = [sum(Fraction(k[j][f]) for j in idx) / len(idx) for f in range(d)]
    evidence = {}
    for j in idx:
        beta = [Fraction(k[j][f]) - centre[f] for f in range(d)]
        if mu is None:
            evidence[j] = [beta[f] * Fraction(q[f]) for f in range(d)]
        else:
            shared = sum(beta[f] * Fraction(mu[f]) for f in range(d)) / d
            evidence[j] = [beta[f] * (Fraction(q[f]) - Fraction(mu[f])) + shared for f in range(d)]
    keep = [False] * len(k)
    for j in idx:
        positive = any(e > 0 for e in evidence[j])
        others_negative = all(any(e < 0 for e in evidence[o]) for o in idx if o != j)
        keep[j] = positive or others_negative
    return keep if any(keep) else list(valid)


def test_evidential_attention_support_exact_zero_evidence_and_vacuous_rows():
    # integer fixtures (all arithmetic exact): zero features, a key at the centre, a vacuous row
    q = torch.tensor(
        [
            [[1.0, 1.0], [0.0, 0.0], [0.0, 1.0], [2.0, -1.0]],
            [[0.0, 2.0], [1.0, 0.0], [0.0, 0.0], [-1.0, 3.0]],
        ],
        dtype=DT,
    )  # (2, 4, 2)
    k = torch.tensor(
        [
            [[0.0, 0.0], [2.0, -1.0], [-2.0, 1.0], [4.0, 4.0]],
            [[1.0, 3.0], [3.0, -1.0], [-1.0, 1.0], [1.0, 1.0]],
        ],
        dtype=DT,
    )  # (2, 4, 2)
    mask = torch.tensor(
        [
            [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]],
            [[1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 0, 1], [0, 0, 0, 0]],
        ],
        dtype=torch.bool,
    )
    results = {}
    for name, m in (("mask", mask), ("none", None)):
        keep = evidential_attention_support(q, k, m)
        full = torch.ones(2, 4, 4, dtype=torch.bool) if m is None else m
        results[name] = [
            [
                brute_force_support(q[b, i].tolist(), k[b].tolist(), full[b, i].tolist())
                for i in range(4)
            ]
            for b in range(2)
        ]
        assert keep.tolist() == results[name]
    # the fixture holds what it is meant to: a centred key kept because every other key has negative
    # evidence, a vacuous row (q = 0) keeping every valid key next to rows that drop keys
    expected = results["mask"]
    assert expected[0][0] == [True, True, True, False]
    assert expected[0][1] == [True] * 4 and expected[1][2] == [True, True, False, True]
    assert expected[0][2] == [False, False, True, False] and expected[1][3] == [False] * 4


def test_evidential_attention_support_with_feature_mean_exact():
    # batched (L != d) with a dyadic feature mean: the shared term is divided by d = 2
    q = torch.tensor(
        [
            [[1.0, 0.5], [-1.0, 2.0], [0.5, -0.5], [2.0, 1.0]],
            [[0.0, 1.0], [1.5, -2.0], [1.0, 1.0], [-0.5, 0.0]],
        ],
        dtype=DT,
    )  # (2, 4, 2)
    k = torch.tensor(
        [
            [[1.0, 2.0], [-1.0, 0.0], [3.0, -2.0], [0.0, 4.0]],
            [[2.0, 2.0], [-2.0, 1.0], [1.0, -3.0], [3.0, 0.0]],
        ],
        dtype=DT,
    )
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)[:, None, :]
    for mu in (
        torch.tensor([0.5, -1.5], dtype=DT),
        torch.tensor([[0.5, -1.5], [-2.0, 1.0]], dtype=DT),
    ):
        keep = evidential_attention_support(q, k, mask, mu)
        mus = mu.expand(2, 2).tolist()
        expected = [
            [
                brute_force_support(q[b, i].tolist(), k[b].tolist(), mask[b, 0].tolist(), mus[b])
                for i in range(4)
            ]
            for b in range(2)
        ]
        assert keep.tolist() == expected


def test_evidential_attention_support_on_the_meta_device():
    # without a mask the all-valid mask is made on the queries' device
    q, k = torch.randn(2, 5, 3, device="meta"), torch.randn(2, 4, 3, device="meta")
    keep = evidential_attention_support(q, k)
    assert keep.device.type == "meta" and keep.shape == (2, 5, 4) and keep.dtype == torch.bool


# ----------------------------------------------------------------------------- argument checks, exact messages


def test_argument_errors_have_their_whole_message():
    q, k, v = qkv(2, lq=3, lk=5, e=4, ev=6)
    msg = (
        "attn_mask must be a boolean tensor (True where a query may attend) or a float tensor added "
        "to the scores (-inf = masked), got dtype torch.int64"
    )
    with raises_exactly(TypeError, msg):
        attention(q, k, v, torch.zeros(3, 5, dtype=torch.long))
    floating = "must be a floating-point tensor (float16, bfloat16, float32 or float64), got dtype"
    for name in ("softmax", "ev_softmax"):
        with raises_exactly(TypeError, f"value {floating} torch.int64"):
            attention(q, k, v.long(), normalizer=name)
    with raises_exactly(TypeError, f"feature_mean {floating} torch.int64"):
        attention(q, k, v, normalizer="posthoc_evidential", feature_mean=torch.zeros(4).long())
    with raises_exactly(ValueError, "feature_mean must have shape (..., E) with E = 4, got (3,)"):
        attention(q, k, v, normalizer="posthoc_evidential", feature_mean=torch.zeros(3, dtype=DT))
    nested = torch.nested.nested_tensor([torch.randn(3, 4), torch.randn(2, 4)])
    with raises_exactly(
        TypeError, "query is a nested tensor; pad it (attention takes dense tensors)"
    ):
        attention(nested, k.float(), v.float())
    for p in (1.0, 1.5):  # the dense path (softmax): dropout_p = 1 would zero every weight
        with raises_exactly(ValueError, f"dropout_p must be a probability in [0, 1), got {p}"):
            attention(q, k, v, dropout_p=p, normalizer="softmax")
    for scale in (True, "1"):
        with raises_exactly(
            TypeError, f"scale must be a finite real number or None, got {scale!r}"
        ):
            attention(q, k, v, scale=scale)


def test_resolve_normalizer_errors_have_their_whole_message():
    with raises_exactly(
        ValueError,
        "the post-hoc evidential filter reads the queries and keys: pass "
        "normalizer='posthoc_evidential' (or its Normalizer), not a module",
    ):
        resolve_normalizer(normalizers.get("posthoc_evidential").module())
    with raises_exactly(
        TypeError,
        "normalizer LogEvSoftmax returns log-probabilities; attention needs probabilities "
        "(use EvSoftmax)",
    ):
        resolve_normalizer(LogEvSoftmax())
    with raises_exactly(
        TypeError,
        "a normalizer module must accept a boolean mask= keyword (True = valid), as "
        "simplexity.EvSoftmax does; ReLU.forward does not",
    ):
        resolve_normalizer(torch.nn.ReLU())
    with raises_exactly(
        TypeError,
        "normalizer must be a registry name (str), a simplexity.normalizers.Normalizer or an "
        "nn.Module such as simplexity.EvSoftmax(), got builtin_function_or_method",
    ):
        resolve_normalizer(torch.softmax)
    with raises_exactly(
        ValueError,
        "normalizer_options can only be given with a normalizer name, not a EvSoftmax: "
        "configure the module itself",
    ):
        resolve_normalizer(EvSoftmax(), {"eps": 0.1})

    class NoSignature(torch.nn.Module):  # forward without a signature to read: cannot take mask=
        def __init__(self):
            super().__init__()
            self.forward = torch.relu

    with raises_exactly(
        TypeError,
        "a normalizer module must accept a boolean mask= keyword (True = valid), as "
        "simplexity.EvSoftmax does; NoSignature.forward does not",
    ):
        resolve_normalizer(NoSignature())


def test_a_module_without_a_dim_attribute_is_taken_as_normalizing_the_keys():
    # a custom module (no `dim`): the masked softmax, against the brute-force masked softmax
    class MaskedSoftmax(torch.nn.Module):
        def forward(self, scores, mask=None):
            return torch.softmax(scores.masked_fill(~mask, -math.inf), -1)

    module = MaskedSoftmax()
    assert resolve_normalizer(module) is module
    q, k, v = qkv(2, lq=3, lk=5, e=4)
    allowed = torch.tensor([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0], [1, 0, 0, 1, 1]], dtype=torch.bool)
    scores = (q @ k.transpose(-1, -2) / 2.0).masked_fill(~allowed, -math.inf)
    expected = scores.exp() / scores.exp().sum(-1, keepdim=True) @ v
    torch.testing.assert_close(attention(q, k, v, allowed, normalizer=module), expected)


# ----------------------------------------------------------------------------- grouped-query attention, shapes


def gqa_softmax_reference(q, k, v, attn_mask=None):
    """torch's SDPA on key/value heads repeated by hand (no enable_gqa)."""
    r = q.shape[-3] // k.shape[-3]
    k, v = k.repeat_interleave(r, -3), v.repeat_interleave(r, -3)
    return F.scaled_dot_product_attention(q, k, v, attn_mask)


def test_grouped_query_attention_shapes_against_repeated_heads():
    g = torch.Generator().manual_seed(11)

    def rand(*shape):
        return torch.randn(*shape, dtype=DT, generator=g)

    cases = [
        (rand(6, 4, 5), rand(2, 7, 5), rand(2, 7, 3)),  # no batch dimension
        (rand(4, 4, 3, 5), rand(4, 2, 7, 5), rand(4, 2, 7, 3)),  # batch == query heads
        (rand(3, 4, 3, 5), rand(3, 2, 7, 5), rand(3, 2, 7, 3)),  # batch != key heads
        (rand(2, 6, 3, 5), rand(2, 1, 7, 5), rand(2, 1, 7, 3)),  # one key/value head
    ]
    for q, k, v in cases:
        expected = gqa_softmax_reference(q, k, v)
        torch.testing.assert_close(
            attention(q, k, v, enable_gqa=True, normalizer="softmax"), expected
        )
        weights = attention_weights(q, k, enable_gqa=True, normalizer="softmax")
        r = q.shape[-3] // k.shape[-3]
        torch.testing.assert_close(weights @ v.repeat_interleave(r, -3), expected)
    q, k, v = rand(1, 4, 3, 4), rand(1, 2, 5, 4), rand(1, 3, 5, 6)
    with raises_exactly(
        ValueError,
        "with enable_gqa the query heads (dim -3) must be a multiple of the key/value heads, "
        "got query (1, 4, 3, 4), key (1, 2, 5, 4), value (1, 3, 5, 6)",
    ):
        attention(q, k, v, enable_gqa=True)
    with raises_exactly(
        ValueError,
        "with enable_gqa the query heads (dim -3) must be a multiple of the key/value heads, "
        "got query (1, 4, 3, 4), key (1, 3, 5, 4)",
    ):
        attention_weights(q, rand(1, 3, 5, 4), enable_gqa=True)
    with raises_exactly(  # enable_gqa defaults to False: the heads must then broadcast
        ValueError,
        "the batch dimensions (all but the last two) of query, key and value must broadcast, "
        "got (1, 4), (1, 2)",
    ):
        attention_weights(q, k)


def test_a_mask_broadcasts_over_the_batch_of_either_query_or_key():
    # query with batch dims and 2-d keys, and the reverse: a full (B, L, S) mask is accepted
    q, k, v = qkv(2, lq=3, lk=5, e=4)
    allowed = torch.rand(2, 3, 5, generator=torch.Generator().manual_seed(2)) < 0.7
    allowed[..., 0] = True
    for qq, kk, vv in ((q, k[0], v[0]), (q[0], k, v)):
        expected = F.scaled_dot_product_attention(qq, kk, vv, allowed)
        torch.testing.assert_close(attention(qq, kk, vv, allowed, normalizer="softmax"), expected)


def test_empty_embedding_gives_uniform_weights():
    # E = 0: every score is 0 (an empty sum), so softmax weights are uniform
    q, k, v = torch.zeros(3, 0, dtype=DT), torch.zeros(4, 0, dtype=DT), qkv(lk=4)[2]
    out = attention(q, k, v, normalizer="softmax")
    torch.testing.assert_close(out, v.mean(0).expand(3, -1))


def test_float_mask_of_another_dtype_is_added_in_the_querys_dtype():
    # against the brute-force ev-softmax of the scores plus the (rounded) float32 mask
    q, k, v = qkv(2)
    bias = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(5)) * 3
    scores = q @ k.transpose(-1, -2) / math.sqrt(5) + bias.double()
    expected = masked_ev_softmax(scores, torch.ones(2, 4, 6, dtype=torch.bool)) @ v
    out = attention(q, k, v, bias)
    assert out.dtype == DT
    torch.testing.assert_close(out, expected)


# ----------------------------------------------------------------------------- post-hoc evidential in attention


def test_posthoc_attention_uses_the_feature_mean_against_brute_force():
    # eval: softmax restricted to the brute-force support of the scaled queries with mean mu
    q = torch.tensor([[1.0, -2.0], [0.5, 1.5], [-1.0, -0.5]], dtype=DT)
    k = torch.tensor([[2.0, 1.0], [-1.0, 3.0], [0.0, -2.0], [1.5, 0.5]], dtype=DT)
    v = torch.randn(4, 3, dtype=DT, generator=torch.Generator().manual_seed(9))
    scale, mu = 2.0, torch.tensor([-3.0, -3.0], dtype=DT)
    scores = scale * q @ k.T
    for feature_mean in (None, mu):
        m = None if feature_mean is None else mu.tolist()
        support = torch.tensor(
            [
                brute_force_support((scale * q[i]).tolist(), k.tolist(), [True] * 4, m)
                for i in range(3)
            ]
        )
        expected = torch.softmax(scores.masked_fill(~support, -math.inf), -1)
        kw = {"scale": scale, "normalizer": "posthoc_evidential", "feature_mean": feature_mean}
        w = attention_weights(q, k, **kw)
        torch.testing.assert_close(w, expected)
        assert (w > 0).tolist() == support.tolist()  # exactly the support (some weights are tiny)
        torch.testing.assert_close(attention(q, k, v, **kw), expected @ v)
        assert not bool(support.all())  # the filter drops keys here
    without = torch.tensor(
        [brute_force_support((scale * q[i]).tolist(), k.tolist(), [True] * 4) for i in range(3)]
    )
    assert not torch.equal(support, without)  # and the feature mean changes what it drops


# ----------------------------------------------------------------------------- dispatch


def test_ev_softmax_normalizer_module_dispatches_to_the_fused_kernel(monkeypatch):
    # a registry module wrapper of ev-softmax takes the fused path, with its eps in training mode
    calls = []

    def fake(query, key, value, attn_mask, dropout_p, is_causal, scale, eps, key_mean=None):
        calls.append(eps)
        return None

    monkeypatch.setattr(functional, "_fused_ev_softmax_attention", fake)
    q, k, v = qkv(2)
    module = normalizers.get("ev_softmax", eps=0.25).module()
    attention(q, k, v, normalizer=module.train())
    attention(q, k, v, normalizer=module.eval())
    assert calls == [0.25, 0.0]


def test_long_sequences_take_the_blocked_path_and_agree_with_brute_force(monkeypatch):
    from simplexity.nn import blocked_attention as blocked

    calls = []
    original = blocked.blocked_attention

    def spy(*args, **kwargs):
        calls.append(args[3:])
        return original(*args, **kwargs)

    monkeypatch.setattr(blocked, "blocked_attention", spy)
    q, k, v = qkv(2, lq=4, lk=6, e=5)  # 48 scores
    monkeypatch.setattr(blocked, "MIN_SCORES", 49)
    attention(q, k, v, normalizer="softmax")
    attention(q, k, v, normalizer="posthoc_evidential")
    assert calls == []  # below the threshold: the dense path
    monkeypatch.setattr(blocked, "MIN_SCORES", 48)
    allowed = torch.rand(2, 4, 6, generator=torch.Generator().manual_seed(3)) < 0.7
    allowed[..., 0] = True
    cases = [
        {"attn_mask": allowed},
        {"attn_mask": allowed, "scale": 0.3},
        {"is_causal": True},
        {"is_causal": True, "scale": 2.0},
    ]
    for kw in cases:
        out = attention(q, k, v, normalizer="softmax", **kw)
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, **kw))
    assert len(calls) == len(cases)  # at the threshold: the blocked path
    attention(q, k, v, normalizer="posthoc_evidential")
    assert len(calls) == len(cases)  # never for the post-hoc filter
    # a Normalizer's training form is used on the blocked path too
    import dataclasses

    sparse_in_eval = dataclasses.replace(
        normalizers.get("sparsemax"), train_mapping=normalizers.get("softmax").mapping
    )
    out = attention(q, k, v, allowed, normalizer=sparse_in_eval, training=True)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, allowed))


def test_dense_dropout_uses_the_given_probability():
    # the same draws as torch's dropout with p = 0.3 on the brute-force softmax weights
    q, k, v = qkv(lq=3, lk=5)
    torch.manual_seed(2)
    out = attention(q, k, v, dropout_p=0.3, normalizer="softmax")
    torch.manual_seed(2)
    weights = torch.softmax(q @ k.T / math.sqrt(5), -1)
    torch.testing.assert_close(out, F.dropout(weights, 0.3) @ v)


def test_a_posthoc_normalizer_never_takes_the_fused_path():
    # a post-hoc Normalizer whose map is ev-softmax: ev-softmax on the brute-force support, in eval
    import dataclasses

    norm = dataclasses.replace(normalizers.get("ev_softmax"), posthoc_evidential=True)
    q = torch.tensor([[1.0, -2.0], [0.5, 1.5], [-1.0, -0.5]], dtype=DT)
    k = torch.tensor([[2.0, 1.0], [-1.0, 3.0], [0.0, -2.0], [1.5, 0.5]], dtype=DT)
    v = torch.randn(4, 3, dtype=DT, generator=torch.Generator().manual_seed(9))
    support = torch.tensor(
        [brute_force_support(q[i].tolist(), k.tolist(), [True] * 4) for i in range(3)]
    )
    expected = masked_ev_softmax(q @ k.T, support) @ v
    torch.testing.assert_close(attention(q, k, v, scale=1.0, normalizer=norm), expected)
    assert not bool(support.all())


def test_a_hand_built_ev_softmax_normalizer_trains_with_its_own_training_map():
    """A Normalizer whose options do not record eps: attention in training uses its train_mapping
    (here eps = 0.3), exactly as attention_weights does; in eval both use the exact map."""
    norm = dataclasses.replace(
        normalizers.get("ev_softmax"), options={},
        train_mapping=partial(normalizers.ev_softmax, eps=0.3),
    )  # fmt: skip
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    for training in (True, False):
        weights = attention_weights(q, k, normalizer=norm, training=training, scale=0.7)
        out = attention(q, k, v, normalizer=norm, training=training, scale=0.7)
        torch.testing.assert_close(out, weights @ v, rtol=1e-12, atol=1e-12)
    scores = 0.7 * q @ k.transpose(-2, -1)
    expected = normalizers.ev_softmax(scores, -1, eps=0.3) @ v
    torch.testing.assert_close(
        attention(q, k, v, normalizer=norm, training=True, scale=0.7), expected
    )
