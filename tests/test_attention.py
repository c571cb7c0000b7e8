"""Tests of simplexity.nn.attention: agreement with torch, mask correctness, caching, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from simplexity import normalizers
from simplexity.nn.attention import (
    KeyValueCache,
    MultiheadAttention,
    attention,
    attention_weights,
    causal_mask,
    evidential_attention_support,
    padding_mask,
)

NAMES = normalizers.names()
DT = torch.float64


def reference_ev_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference implementation's masking: fill with -1e18, then take the mean over the whole row."""
    filled = scores.masked_fill(~mask, -1e18)
    keep = filled >= filled.mean(-1, keepdim=True)
    weights = keep * filled.exp()
    return weights / weights.sum(-1, keepdim=True)


def copy_from_torch(torch_mha: torch.nn.MultiheadAttention, mha: MultiheadAttention) -> None:
    e = torch_mha.embed_dim
    with torch.no_grad():
        if torch_mha.in_proj_weight is not None:
            wq, wk, wv = torch_mha.in_proj_weight.split(e)
        else:
            wq, wk, wv = torch_mha.q_proj_weight, torch_mha.k_proj_weight, torch_mha.v_proj_weight
        for proj, w in ((mha.q_proj, wq), (mha.k_proj, wk), (mha.v_proj, wv)):
            proj.weight.copy_(w)
        for proj, b in zip((mha.q_proj, mha.k_proj, mha.v_proj), torch_mha.in_proj_bias.split(e)):
            proj.bias.copy_(b)
        mha.out_proj.weight.copy_(torch_mha.out_proj.weight)
        mha.out_proj.bias.copy_(torch_mha.out_proj.bias)


# ----------------------------------------------------------------------------- agreement with torch


def test_softmax_matches_scaled_dot_product_attention():
    q, k, v = (
        torch.randn(2, 3, 4, 5, dtype=DT),
        torch.randn(2, 3, 6, 5, dtype=DT),
        torch.randn(2, 3, 6, 7, dtype=DT),
    )
    mask = torch.rand(2, 1, 4, 6) < 0.6
    mask[..., 0] = True  # torch returns NaN for fully masked rows
    for m in (None, mask):
        ours = attention(q, k, v, mask=m, normalizer="softmax")
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        torch.testing.assert_close(ours, theirs)
    ours = attention(q, k, v, mask=mask, normalizer="softmax", scale=0.3)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    torch.testing.assert_close(ours, theirs)
    causal = attention(q, k[..., :4, :], v[..., :4, :], mask=causal_mask(4), normalizer="softmax")
    theirs = F.scaled_dot_product_attention(q, k[..., :4, :], v[..., :4, :], is_causal=True)
    torch.testing.assert_close(causal, theirs)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kvdim", [None, (3, 5)])
def test_softmax_matches_torch_multihead_attention(batch_first, kvdim):
    kdim, vdim = kvdim or (None, None)
    torch_mha = torch.nn.MultiheadAttention(
        8, 2, batch_first=batch_first, kdim=kdim, vdim=vdim, dtype=DT
    ).eval()
    mha = MultiheadAttention(
        8, 2, normalizer="softmax", kdim=kdim, vdim=vdim, batch_first=batch_first
    ).to(DT)
    mha.eval()
    copy_from_torch(torch_mha, mha)
    b, lq, lk = 3, 4, 6
    query = torch.randn(b, lq, 8, dtype=DT)
    key, value = torch.randn(b, lk, kdim or 8, dtype=DT), torch.randn(b, lk, vdim or 8, dtype=DT)
    valid = padding_mask(torch.tensor([6, 3, 1]), lk)
    allowed = torch.rand(lq, lk) < 0.7
    allowed[:, 0] = True
    if not batch_first:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    out, w = mha(query, key, value, key_padding_mask=valid, attn_mask=allowed, need_weights=True)
    # torch: key_padding_mask True = padding, boolean attn_mask True = NOT allowed
    t_out, t_w = torch_mha(
        query,
        key,
        value,
        key_padding_mask=~valid,
        attn_mask=~allowed,
        need_weights=True,
        average_attn_weights=False,
    )
    torch.testing.assert_close(out, t_out)
    torch.testing.assert_close(w, t_w)
    # the explicit torch-convention keyword gives the same result
    out2, _ = mha(query, key, value, key_is_padding=~valid, attn_mask=allowed)
    torch.testing.assert_close(out2, out)


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [False, True])
def test_padding_gets_zero_weight_and_does_not_change_valid_outputs(name, training):
    b, lq, d, lengths = 3, 4, 6, torch.tensor([5, 2, 7])
    n = int(lengths.max())
    q = torch.randn(b, lq, d, dtype=DT)
    k, v = torch.randn(b, n, d, dtype=DT), torch.randn(b, n, 3, dtype=DT)
    outputs = []
    for extra, fill in ((0, 0.0), (3, 1e4), (9, -1e4)):
        valid = padding_mask(lengths, n + extra)
        kp = torch.cat([k, torch.full((b, extra, d), fill, dtype=DT)], 1)
        vp = torch.cat([v, torch.randn(b, extra, 3, dtype=DT) * 1e3], 1)
        # garbage in the padded part of the shorter rows too
        kp = torch.where(valid[..., None], kp, torch.randn_like(kp) * 50 + fill)
        vp = torch.where(valid[..., None], vp, torch.randn_like(vp) * 1e3)
        out, w = attention(
            q,
            kp,
            vp,
            mask=valid[:, None, :],
            normalizer=name,
            training=training,
            return_weights=True,
        )
        assert bool((w.masked_select(~valid[:, None, :].expand_as(w)) == 0).all())
        torch.testing.assert_close(w.sum(-1), torch.ones(b, lq, dtype=DT))
        outputs.append(out)
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0])
    # and each sequence alone, unpadded, gives the same output
    for i, length in enumerate(lengths.tolist()):
        alone = attention(q[i], k[i, :length], v[i, :length], normalizer=name, training=training)
        torch.testing.assert_close(outputs[0][i], alone)


def test_ev_softmax_padding_is_sparse_unlike_reference():
    # REFERENCE.md §1.3: [2, 1, .5, .1, -1] -> [.73, .27, 0, 0, 0]; one pad must not change that.
    scores = torch.tensor([[2.0, 1.0, 0.5, 0.1, -1.0, 123.0]], dtype=DT)
    valid = torch.tensor([[True] * 5 + [False]])
    q, k = torch.ones(1, 1, dtype=DT), scores.T  # q k^T = scores
    ours = attention_weights(q, k, mask=valid, normalizer="ev_softmax", scale=1.0)
    expected = torch.tensor([[0.7311, 0.2689, 0, 0, 0, 0]], dtype=DT)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    ref = reference_ev_softmax(scores, valid)
    assert bool((ref[valid] > 0.02).all()), "the reference's defect: no valid entry is dropped"

    # On random padded attention: ours is sparse on the valid keys, the reference is dense there.
    b, lq, d, n = 4, 5, 8, 12
    q, k = torch.randn(b, lq, d, dtype=DT), torch.randn(b, n, d, dtype=DT)
    valid = padding_mask(torch.tensor([12, 9, 6, 3]), n)[:, None, :].expand(b, lq, n)
    ours = attention_weights(q, k, mask=valid, normalizer="ev_softmax")
    ref = reference_ev_softmax(q @ k.transpose(-1, -2) / math.sqrt(d), valid)
    padded_rows = ~valid.all(-1)
    ours_zeros = ((ours == 0) & valid).sum(-1)
    ref_zeros = ((ref == 0) & valid).sum(-1)
    assert bool(
        (ours_zeros[padded_rows] > 0).all()
    )  # sparsified (ev-softmax keeps >= 1, drops some)
    assert bool((ref_zeros[padded_rows] == 0).all())  # the reference never is, on padded rows
    # rows without padding: both agree
    torch.testing.assert_close(ours[~padded_rows], ref[~padded_rows])


def test_minus_inf_scores_count_as_masked():
    scores = torch.tensor([[3.0, 1.0, 0.0, -1.0]], dtype=DT)
    with_inf = torch.cat([scores, torch.full((1, 3), -math.inf, dtype=DT)], -1)
    q = torch.ones(1, 1, dtype=DT)
    ours = attention_weights(q, with_inf.T, scale=1.0)
    torch.testing.assert_close(ours[:, :4], attention_weights(q, scores.T, scale=1.0))


@pytest.mark.parametrize("name", NAMES)
def test_rows_without_valid_key_give_zeros(name):
    q = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    k = torch.randn(2, 5, 4, dtype=DT, requires_grad=True)
    v = torch.randn(2, 5, 2, dtype=DT, requires_grad=True)
    mask = torch.rand(2, 3, 5) < 0.5
    mask[0, 1] = False
    mask[1] = False
    mask[0, 0, 0] = True
    out, w = attention(q, k, v, mask=mask, normalizer=name, return_weights=True)
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(w).all())
    assert bool((out[0, 1] == 0).all()) and bool((out[1] == 0).all())
    assert bool((w[1] == 0).all())
    out.sum().backward()
    for t in (q, k, v):
        assert bool(torch.isfinite(t.grad).all())
    assert bool((q.grad[1] == 0).all())


def test_causal_mask_and_padding_mask():
    torch.testing.assert_close(causal_mask(3), torch.ones(3, 3, dtype=torch.bool).tril())
    assert causal_mask(1, 4).all()
    assert not causal_mask(3, 2)[0].any()  # bottom-right aligned
    torch.testing.assert_close(padding_mask([2, 0]), torch.tensor([[True, True], [False, False]]))
    with pytest.raises(ValueError, match="max_len"):
        padding_mask(torch.tensor([3]), 2)
    with pytest.raises(TypeError, match="lengths"):
        padding_mask(torch.tensor([1.0]), 2)
    with pytest.raises(ValueError, match="lengths"):
        padding_mask(torch.tensor([-1]), 2)


# ----------------------------------------------------------------------------- decoding with a cache


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [False, True])
def test_causal_pass_equals_step_by_step_decoding(name, training):
    torch.manual_seed(1)
    e, b, length, src_len = 8, 3, 6, 5
    self_attn = MultiheadAttention(e, 2, normalizer=name).to(DT).train(training)
    cross_attn = MultiheadAttention(e, 2, normalizer=name, kdim=4, vdim=3).to(DT).train(training)
    x = torch.randn(b, length, e, dtype=DT)
    memory_k, memory_v = torch.randn(b, src_len, 4, dtype=DT), torch.randn(b, src_len, 3, dtype=DT)
    src_valid = padding_mask(torch.tensor([5, 2, 4]), src_len)

    def block(h, self_cache=None, cross_cache=None, causal=True):
        a, wa = self_attn(h, h, h, causal=causal, cache=self_cache, need_weights=True)
        c, wc = cross_attn(
            h + a,
            memory_k if cross_cache is None or len(cross_cache) == 0 else None,
            memory_v if cross_cache is None or len(cross_cache) == 0 else None,
            key_padding_mask=src_valid if cross_cache is None or len(cross_cache) == 0 else None,
            cache=cross_cache,
            need_weights=True,
        )
        return h + a + c, wa, wc

    full, full_wa, full_wc = block(x)
    self_cache, cross_cache = KeyValueCache(), KeyValueCache(static=True)
    steps = []
    for t in range(length):
        out, wa, wc = block(x[:, t : t + 1], self_cache, cross_cache, causal=False)
        steps.append(out)
        torch.testing.assert_close(wa[..., 0, :], full_wa[..., t, : t + 1])
        torch.testing.assert_close(wc[..., 0, :], full_wc[..., t, :])
    torch.testing.assert_close(torch.cat(steps, 1), full)
    assert len(self_cache) == length and len(cross_cache) == src_len
    # a prefill chunk after cached keys: bottom-right causal mask
    cache = KeyValueCache()
    first, _ = self_attn(x[:, :2], x[:, :2], x[:, :2], causal=True, cache=cache)
    rest, _ = self_attn(x[:, 2:], x[:, 2:], x[:, 2:], causal=True, cache=cache)
    full_self, _ = self_attn(x, x, x, causal=True)
    torch.testing.assert_close(torch.cat([first, rest], 1), full_self)


def test_reference_masking_is_inconsistent_between_training_and_decoding():
    # With -1e18 fills and a mean over the whole row, row t of the causal pass is not the same
    # distribution as decoding step t (whose row has no future positions); ours is.
    scores = torch.randn(6, 6, dtype=DT)
    causal = causal_mask(6)
    ours = normalizers.get("ev_softmax")(scores, mask=causal)
    ref = reference_ev_softmax(scores, causal)
    differs = False
    for t in range(6):
        step = normalizers.get("ev_softmax")(scores[t, : t + 1])
        torch.testing.assert_close(ours[t, : t + 1], step)
        differs |= not torch.allclose(ref[t, : t + 1], step)
    assert differs


def test_cache_reorder_and_key_padding_in_cache():
    mha = MultiheadAttention(4, 1).to(DT).eval()
    x = torch.randn(2, 3, 4, dtype=DT)
    valid = torch.tensor([[True, False, True], [True, True, True]])
    full, _ = mha(x, x, x, key_padding_mask=valid, causal=True)
    cache = KeyValueCache()
    outs = [
        mha(
            x[:, t : t + 1],
            x[:, t : t + 1],
            x[:, t : t + 1],
            key_padding_mask=valid[:, t : t + 1],
            cache=cache,
        )[0]
        for t in range(3)
    ]
    torch.testing.assert_close(torch.cat(outs, 1), full)
    cache.reorder(torch.tensor([1, 1, 0]))
    assert cache.key.shape[0] == 3 and cache.valid.tolist()[2] == valid[0].tolist()


# ----------------------------------------------------------------------------- module behaviour


def test_module_train_eval_and_dropout():
    torch.manual_seed(0)
    mha = MultiheadAttention(8, 2, dropout=0.5).to(DT)
    x = torch.randn(2, 5, 8, dtype=DT)
    mha.eval()
    out1, w = mha(x, x, x, need_weights=True)
    out2, _ = mha(x, x, x)
    torch.testing.assert_close(out1, out2)
    assert bool((w == 0).any())  # eval: exact ev-softmax is sparse
    mha.train()
    _, w_train = mha(x, x, x, need_weights=True)
    assert bool((w_train > 0).all())  # training form (eps > 0) has full support
    torch.testing.assert_close(w_train.sum(-1), torch.ones(2, 2, 5, dtype=DT))
    out3, _ = mha(x, x, x)
    out4, _ = mha(x, x, x)
    assert not torch.allclose(out3, out4)  # dropout is active in training only
    assert "ev_softmax" in repr(mha)


def test_mha_weights_are_sparse_with_ev_softmax_and_padding():
    mha = MultiheadAttention(16, 4).to(DT).eval()
    x = torch.randn(3, 10, 16, dtype=DT)
    valid = padding_mask(torch.tensor([10, 7, 4]), 10)
    _, w = mha(x, x, x, key_padding_mask=valid, need_weights=True)
    nonzero = (w > 0).sum(-1).double()
    assert bool((nonzero >= 1).all())
    assert bool((nonzero < valid.sum(-1)[:, None, None]).any())  # some valid keys dropped
    assert bool((w[1, ..., 7:] == 0).all()) and bool((w[2, ..., 4:] == 0).all())


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("eps", [1e-3, 0.0])
def test_gradcheck_ev_softmax_attention_with_mask(eps):
    torch.manual_seed(3)
    q = torch.randn(2, 3, 4, dtype=DT, requires_grad=True)
    k = torch.randn(2, 5, 4, dtype=DT, requires_grad=True)
    v = torch.randn(2, 5, 2, dtype=DT, requires_grad=True)
    mask = padding_mask(torch.tensor([5, 3]), 5)[:, None, :] & (torch.rand(2, 3, 5) < 0.8)
    mask[..., 0] = True
    norm = normalizers.get("ev_softmax", eps=eps) if eps else "ev_softmax"

    def f(q, k, v):
        return attention(q, k, v, mask=mask, normalizer=norm, training=eps > 0)

    assert torch.autograd.gradcheck(f, (q, k, v))


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    with pytest.raises(ValueError, match="same last dimension"):
        attention(q, torch.randn(2, 5, 3), v)
    with pytest.raises(ValueError, match="as many rows"):
        attention(q, k, torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="batch dimensions"):
        attention(q, torch.randn(3, 5, 4), torch.randn(3, 5, 6))
    with pytest.raises(ValueError, match=r"\(\.\.\., L, d\)"):
        attention(torch.randn(4), k, v)
    with pytest.raises(TypeError, match="boolean"):
        attention(q, k, v, mask=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="does not broadcast"):
        attention(q, k, v, mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown normalizer"):
        attention(q, k, v, normalizer="softermax")
    with pytest.raises(TypeError, match="normalizer must be"):
        attention(q, k, v, normalizer=torch.softmax)
    with pytest.raises(TypeError, match="floating"):
        attention(q.long(), k, v)
    with pytest.raises(ValueError, match="dropout"):
        attention(q, k, v, dropout=1.0)

    with pytest.raises(ValueError, match="divisible"):
        MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="unknown normalizer"):
        MultiheadAttention(8, 2, normalizer="nope")
    with pytest.raises(TypeError, match="bad options"):
        MultiheadAttention(8, 2, normalizer="softmax", normalizer_options={"eps": 0.1})
    mha = MultiheadAttention(8, 2)
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match="query must have shape"):
        mha(torch.randn(2, 3, 7), x, x)
    with pytest.raises(ValueError, match="key must have shape"):
        mha(x, torch.randn(2, 3, 5), x)
    with pytest.raises(ValueError, match="value must have shape"):
        mha(x, x, torch.randn(2, 4, 8))
    with pytest.raises(TypeError, match="key_padding_mask must be a boolean"):
        mha(x, x, x, key_padding_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="key_padding_mask must have shape"):
        mha(x, x, x, key_padding_mask=torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="not both"):
        mha(
            x,
            x,
            x,
            key_padding_mask=torch.ones(2, 3, dtype=torch.bool),
            key_is_padding=torch.zeros(2, 3, dtype=torch.bool),
        )
    with pytest.raises(TypeError, match="additive float mask"):
        mha(x, x, x, attn_mask=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="attn_mask must have shape"):
        mha(x, x, x, attn_mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="key and value are required"):
        mha(x, None, None)


# ----------------------------------------------------------------------------- post-hoc evidential


def test_evidential_attention_support_matches_the_linear_layer_filter():
    # Batched, masked form == simplexity.normalizers.evidential_support on each row's valid keys.
    torch.manual_seed(4)
    b, lq, lk, d = 2, 4, 7, 3
    q, k = torch.randn(b, lq, d, dtype=DT), torch.randn(b, lk, d, dtype=DT)
    mask = (torch.rand(b, lq, lk) < 0.7) & padding_mask(torch.tensor([7, 5]), lk)[:, None, :]
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
    mask = padding_mask(torch.tensor([8, 6, 3]), 8)[:, None, :]
    train = attention(q, k, v, mask=mask, normalizer="posthoc_evidential", training=True)
    torch.testing.assert_close(train, attention(q, k, v, mask=mask, normalizer="softmax"))
    w = attention_weights(q, k, mask=mask, normalizer="posthoc_evidential")
    ev = attention_weights(q, k, mask=mask, normalizer="ev_softmax")
    # d = 1 feature: the filter's support equals ev-softmax's (Theorem 3.1), and so do the weights
    torch.testing.assert_close(w, ev)
    q, k = torch.randn(3, 5, 16, dtype=DT), torch.randn(3, 8, 16, dtype=DT)
    w = attention_weights(q, k, mask=mask, normalizer="posthoc_evidential")
    ev = attention_weights(q, k, mask=mask, normalizer="ev_softmax")
    assert bool(((w > 0) | (ev == 0)).all())  # support contains ev-softmax's
    assert bool((w.masked_select(~mask.expand_as(w)) == 0).all())
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 5, dtype=DT))


def test_posthoc_multihead_tracks_query_mean():
    mha = MultiheadAttention(8, 2, normalizer="posthoc_evidential", momentum=1.0).to(DT)
    assert mha.normalizer.name == "softmax" and "posthoc_evidential" in repr(mha)
    x = torch.randn(2, 5, 8, dtype=DT)
    mha.train()
    mha(x, x, x)
    q = mha.q_proj(x).unflatten(-1, (2, 4)) / 2.0  # scaled by 1/sqrt(head_dim)
    torch.testing.assert_close(mha.query_mean, q.mean((0, 1)))
    mha.eval()
    before = mha.query_mean.clone()
    valid = padding_mask(torch.tensor([5, 2]), 5)
    out, w = mha(x, x, x, key_padding_mask=valid, need_weights=True)
    torch.testing.assert_close(mha.query_mean, before)
    assert bool((w[1, ..., 2:] == 0).all()) and bool(torch.isfinite(out).all())
    with pytest.raises(ValueError, match="feature_mean is only used"):
        attention_weights(x, x, normalizer="softmax", feature_mean=torch.zeros(8))


@pytest.mark.parametrize("name", [*NAMES, "posthoc_evidential"])
def test_module_survives_torch_save_and_load(name):
    import io

    mha = MultiheadAttention(8, 2, normalizer=name).eval()
    buffer = io.BytesIO()
    torch.save(mha, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(loaded(x, x, x)[0], mha(x, x, x)[0])
    assert loaded.normalizer.options == mha.normalizer.options
