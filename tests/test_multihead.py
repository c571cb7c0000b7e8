"""Tests of simplexity.nn.multihead: a drop-in for torch.nn.MultiheadAttention and its Transformer layers."""

from __future__ import annotations

import io
import itertools
import math
import types
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import simplexity.nn.functional as functional
from exact_error import raises_exactly
from simplexity import normalizers
from simplexity.nn import KeyValueCache, MultiheadAttention, padding_mask
from simplexity.normalizers import EvSoftmax

NAMES = normalizers.names()
DT = torch.float64


def pair(**kw):
    """A torch module and ours (softmax) with the same weights, in eval mode."""
    theirs = nn.MultiheadAttention(8, 2, dtype=DT, **kw).eval()
    ours = MultiheadAttention(8, 2, dtype=DT, normalizer="softmax", **kw).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def inputs(batch_first: bool, kdim: int = 8, vdim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(3, 4, 8, dtype=DT, generator=g)
    k, v = (
        torch.randn(3, 6, kdim, dtype=DT, generator=g),
        torch.randn(3, 6, vdim, dtype=DT, generator=g),
    )
    if not batch_first:
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    padding = padding_mask(torch.tensor([6, 3, 1]), 6)  # True = padding, torch's polarity
    blocked = torch.rand(4, 6, generator=g) < 0.3  # torch's boolean attn_mask: True = not allowed
    blocked[:, 0] = False
    return q, k, v, padding, blocked


# ----------------------------------------------------------------------------- torch's numbers


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kvdim", [None, (3, 5)])
@pytest.mark.parametrize("masks", ["bool", "float", "none"])
def test_softmax_equals_torch_multihead_attention(batch_first, kvdim, masks):
    kdim, vdim = kvdim or (8, 8)
    theirs, ours = pair(batch_first=batch_first, kdim=kdim, vdim=vdim)
    assert ours._qkv_same_embed_dim == theirs._qkv_same_embed_dim == (kvdim is None)
    q, k, v, padding, blocked = inputs(batch_first, kdim, vdim)
    if masks == "float":
        padding = torch.zeros(padding.shape, dtype=DT).masked_fill(padding, -math.inf)
        blocked = torch.randn(blocked.shape, dtype=DT).masked_fill(blocked, -math.inf)
    kw = {} if masks == "none" else {"key_padding_mask": padding, "attn_mask": blocked}
    for average in (True, False):
        out, w = ours(q, k, v, average_attn_weights=average, **kw)
        t_out, t_w = theirs(q, k, v, average_attn_weights=average, **kw)
        torch.testing.assert_close(out, t_out, rtol=0, atol=1e-6)
        torch.testing.assert_close(w, t_w, rtol=0, atol=1e-6)
        assert w.shape == ((3, 4, 6) if average else (3, 2, 4, 6))
    out, w = ours(q, k, v, need_weights=False, **kw)
    assert w is None
    torch.testing.assert_close(out, theirs(q, k, v, need_weights=False, **kw)[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {"add_bias_kv": True},
        {"add_zero_attn": True},
        {"add_bias_kv": True, "add_zero_attn": True},
        {"bias": False},
    ],
)
def test_softmax_equals_torch_with_its_other_options(options):
    theirs, ours = pair(batch_first=True, **options)
    q, k, v, padding, blocked = inputs(True)
    per_head = torch.randn(3 * 2, 4, 6, dtype=DT)  # torch's 3-D attn_mask: (N * num_heads, L, S)
    for kw in ({"key_padding_mask": padding, "attn_mask": blocked}, {"attn_mask": per_head}):
        out, w = ours(q, k, v, **kw)
        t_out, t_w = theirs(q, k, v, **kw)
        torch.testing.assert_close(out, t_out)
        torch.testing.assert_close(w, t_w)


def test_softmax_equals_torch_unbatched_and_in_float32():
    theirs, ours = pair()
    q, k = torch.randn(4, 8, dtype=DT), torch.randn(6, 8, dtype=DT)
    padding = torch.tensor([False] * 5 + [True])
    for average in (True, False):
        out, w = ours(q, k, k, key_padding_mask=padding, average_attn_weights=average)
        t_out, t_w = theirs(q, k, k, key_padding_mask=padding, average_attn_weights=average)
        torch.testing.assert_close(out, t_out)
        torch.testing.assert_close(w, t_w)
    theirs32, ours32 = theirs.float(), ours.float()
    x = torch.randn(5, 2, 8)
    torch.testing.assert_close(ours32(x, x, x)[0], theirs32(x, x, x)[0], rtol=0, atol=1e-6)


def test_is_causal_applies_the_causal_mask():
    theirs, ours = pair(batch_first=True)
    x = torch.randn(2, 5, 8, dtype=DT)
    causal = nn.Transformer.generate_square_subsequent_mask(5, dtype=DT)
    expected = theirs(x, x, x, attn_mask=causal, is_causal=True)
    torch.testing.assert_close(ours(x, x, x, attn_mask=causal, is_causal=True)[0], expected[0])
    out, w = ours(x, x, x, is_causal=True)  # torch requires the mask as well; here it is optional
    torch.testing.assert_close(out, expected[0])
    torch.testing.assert_close(w, expected[1])


def test_torch_checkpoints_load_both_ways():
    for kw in ({}, {"kdim": 3, "vdim": 5}, {"add_bias_kv": True}, {"bias": False}):
        theirs = nn.MultiheadAttention(8, 2, **kw)
        ours = MultiheadAttention(8, 2, normalizer=EvSoftmax(eps=1e-3), **kw)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        ours.load_state_dict(theirs.state_dict(), strict=True)
        MultiheadAttention(8, 2, **kw).load_state_dict(theirs.state_dict(), strict=True)
        nn.MultiheadAttention(8, 2, **kw).load_state_dict(ours.state_dict(), strict=True)
    named = dict(MultiheadAttention(8, 2, kdim=3, vdim=5).named_parameters())
    assert set(named) == {"q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
                          "out_proj.weight", "out_proj.bias"}  # fmt: skip
    assert MultiheadAttention(8, 2).in_proj_weight.shape == (24, 8)


# ----------------------------------------------------------------------------- Transformer layers


def _spy(module: nn.Module) -> list[bool]:
    seen: list[bool] = []
    module.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_nested))
    return seen


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_self_attn_of_transformer_encoder_layer(batch_first, norm_first):
    kw = {"dropout": 0.0, "batch_first": batch_first, "norm_first": norm_first, "dtype": DT}
    layer = nn.TransformerEncoderLayer(8, 2, 16, **kw).eval()
    ours = nn.TransformerEncoderLayer(8, 2, 16, **kw)
    ours.self_attn = MultiheadAttention(
        8, 2, batch_first=batch_first, dtype=DT, normalizer="softmax"
    )
    ours.load_state_dict(layer.state_dict(), strict=True)
    ours.eval()
    seen = _spy(ours.self_attn)
    x = torch.randn(3, 5, 8, dtype=DT)
    x = x if batch_first else x.transpose(0, 1)
    padding = padding_mask(torch.tensor([5, 3, 4]), 5)
    causal = nn.Transformer.generate_square_subsequent_mask(5, dtype=DT)
    for kw in ({"src_key_padding_mask": padding}, {"src_mask": causal, "is_causal": True}, {}):
        torch.testing.assert_close(ours(x, **kw), layer(x, **kw))  # autograd on: torch's slow path
        with torch.no_grad():  # torch's fast path for its own layer; ours must still call self_attn
            calls = len(seen)
            torch.testing.assert_close(ours(x, **kw), layer(x, **kw))
            assert len(seen) == calls + 1
    ours.train()
    torch.testing.assert_close(
        ours(x, src_key_padding_mask=padding), layer.train()(x, src_key_padding_mask=padding)
    )

    # with ev-softmax the layer computes ev-softmax attention in every mode
    ours.self_attn = MultiheadAttention(8, 2, batch_first=batch_first, dtype=DT)
    ours.self_attn.load_state_dict(layer.self_attn.state_dict())
    ours.eval()
    with_grad = ours(x, src_key_padding_mask=padding)
    with torch.no_grad():
        no_grad = ours(x, src_key_padding_mask=padding)
        softmax = layer.eval()(x, src_key_padding_mask=padding)
    torch.testing.assert_close(no_grad, with_grad)
    assert not torch.allclose(no_grad, softmax)


def test_transformer_encoder_hands_a_nested_tensor_and_gets_the_same_numbers():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, dtype=DT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's nested-tensor prototype warning
        encoder = nn.TransformerEncoder(layer, 2).eval()
        x = torch.randn(3, 5, 8, dtype=DT)
        padding = padding_mask(torch.tensor([5, 3, 4]), 5)
        for normalizer in ("softmax", "ev_softmax"):
            ours = nn.TransformerEncoder(layer, 2).eval()
            for mine, theirs in zip(ours.layers, encoder.layers, strict=True):
                mine.self_attn = MultiheadAttention(
                    8, 2, batch_first=True, dtype=DT, normalizer=normalizer
                ).eval()
                mine.self_attn.load_state_dict(theirs.self_attn.state_dict())
            seen = _spy(ours.layers[0].self_attn)
            with torch.no_grad():
                nested = ours(x, src_key_padding_mask=padding)
            assert seen == [True], "torch's encoder did not take its nested-tensor path"
            dense = ours(x, src_key_padding_mask=padding)  # autograd on: no nested tensors
            assert seen == [True, False]
            # torch's encoder zero-fills the padded positions of its nested output
            real = ~padding[..., None]
            torch.testing.assert_close(nested * real, dense * real)
            if normalizer == "softmax":
                with torch.no_grad():
                    torch.testing.assert_close(nested, encoder(x, src_key_padding_mask=padding))


@pytest.mark.parametrize("layout", [torch.strided, torch.jagged])
def test_nested_self_attention_equals_each_sequence_alone(layout):
    mha = MultiheadAttention(8, 2, batch_first=True, dtype=DT).eval()
    seqs = [torch.randn(3, 8, dtype=DT), torch.randn(5, 8, dtype=DT)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's nested-tensor prototype warning
        x = torch.nested.as_nested_tensor(seqs, layout=layout)
        out, _ = mha(x, x, x, need_weights=False)
    assert out.is_nested and out.layout == layout
    for got, seq in zip(out.unbind(), seqs, strict=True):
        torch.testing.assert_close(got, mha(seq, seq, seq)[0])
    with pytest.raises(TypeError, match=r"^a nested tensor is accepted only"):
        mha(x, torch.randn(2, 5, 8, dtype=DT), x)


@pytest.mark.parametrize("batch_first", [True, False])
def test_self_and_cross_attention_of_transformer_decoder_layer(batch_first):
    kw = {"dropout": 0.0, "batch_first": batch_first, "dtype": DT}
    layer = nn.TransformerDecoderLayer(8, 2, 16, **kw).eval()
    ours = nn.TransformerDecoderLayer(8, 2, 16, **kw)
    ours.self_attn = MultiheadAttention(
        8, 2, batch_first=batch_first, dtype=DT, normalizer="softmax"
    )
    ours.multihead_attn = MultiheadAttention(
        8, 2, batch_first=batch_first, dtype=DT, normalizer="softmax"
    )
    ours.load_state_dict(layer.state_dict(), strict=True)
    ours.eval()
    tgt, memory = torch.randn(3, 4, 8, dtype=DT), torch.randn(3, 6, 8, dtype=DT)
    if not batch_first:
        tgt, memory = tgt.transpose(0, 1), memory.transpose(0, 1)
    masks = {
        "tgt_mask": torch.ones(4, 4, dtype=torch.bool).triu(1),  # torch's: True = not allowed
        "tgt_is_causal": True,
        "tgt_key_padding_mask": padding_mask(torch.tensor([4, 2, 3]), 4),
        "memory_key_padding_mask": padding_mask(torch.tensor([6, 3, 1]), 6),
    }
    torch.testing.assert_close(ours(tgt, memory, **masks), layer(tgt, memory, **masks))
    with torch.no_grad():
        torch.testing.assert_close(ours(tgt, memory, **masks), layer(tgt, memory, **masks))


# ----------------------------------------------------------------------------- normalizers


@pytest.mark.parametrize("name", [*NAMES, "module"])
@pytest.mark.parametrize("training", [False, True])
def test_padded_keys_get_exactly_zero_weight(name, training):
    normalizer = EvSoftmax(eps=0.01) if name == "module" else name
    mha = MultiheadAttention(8, 2, batch_first=True, dtype=DT, normalizer=normalizer).train(
        training
    )
    q, k, v, padding, blocked = inputs(True)
    for kpm in (padding, torch.zeros(padding.shape, dtype=DT).masked_fill(padding, -math.inf)):
        out, w = mha(q, k, v, key_padding_mask=kpm, attn_mask=blocked, average_attn_weights=False)
        assert bool((w.masked_select(padding[:, None, None, :].expand_as(w)) == 0).all())
        assert bool((w.masked_select(blocked.expand_as(w)) == 0).all())
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 4, dtype=DT))
        assert bool(torch.isfinite(out).all())


def test_ev_softmax_weights_are_sparse_with_padding():
    mha = MultiheadAttention(16, 4, batch_first=True, dtype=DT).eval()
    x = torch.randn(3, 10, 16, dtype=DT)
    lengths = torch.tensor([10, 7, 4])
    _, w = mha(x, x, x, key_padding_mask=padding_mask(lengths, 10), average_attn_weights=False)
    nonzero = (w > 0).sum(-1)
    assert bool((nonzero >= 1).all())
    assert bool((nonzero < lengths[:, None, None]).any())  # some real keys dropped
    assert bool((w[1, ..., 7:] == 0).all()) and bool((w[2, ..., 4:] == 0).all())


def test_a_module_normalizer_is_honoured_and_follows_train_eval():
    torch.manual_seed(0)
    by_module = MultiheadAttention(8, 2, batch_first=True, normalizer=EvSoftmax(eps=0.05))
    by_name = MultiheadAttention(8, 2, batch_first=True, normalizer="ev_softmax",
                                 normalizer_options={"eps": 0.05})  # fmt: skip
    by_name.load_state_dict(by_module.state_dict(), strict=True)
    x = torch.randn(2, 5, 8)
    for mode in (True, False):
        by_module.train(mode), by_name.train(mode)
        assert by_module.normalizer.training is mode
        a, wa = by_module(x, x, x)
        b, wb = by_name(x, x, x)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(wa, wb)
        assert bool((wa > 0).all()) is mode  # eps family in training, exact (sparse) map in eval
    assert "EvSoftmax" in repr(by_module) and "'ev_softmax'" in repr(by_name)


def test_train_eval_and_dropout():
    torch.manual_seed(0)
    mha = MultiheadAttention(8, 2, dropout=0.5, batch_first=True, dtype=DT)
    x = torch.randn(2, 5, 8, dtype=DT)
    mha.eval()
    out1, w = mha(x, x, x, average_attn_weights=False)
    torch.testing.assert_close(out1, mha(x, x, x, need_weights=False)[0])
    assert bool((w == 0).any())  # eval: exact ev-softmax is sparse
    mha.train()
    out2, w2 = mha(x, x, x, average_attn_weights=False)
    out3, _ = mha(x, x, x)
    assert not torch.allclose(out2, out3)  # dropout in training
    # as torch, the returned weights are the ones applied (after dropout): rows sum to 0..2
    assert bool((w2.sum(-1) != 1).any())


def test_rows_with_nothing_to_attend_give_zeros_where_torch_gives_nan():
    theirs, ours = pair(batch_first=True)
    x = torch.randn(2, 3, 8, dtype=DT)
    padding = torch.tensor([[True, True, True], [False, True, False]])
    out, w = ours(x, x, x, key_padding_mask=padding)
    assert bool(torch.isfinite(out).all()) and bool((w[0] == 0).all())
    assert bool(theirs(x, x, x, key_padding_mask=padding)[0][0].isnan().all())
    torch.testing.assert_close(out[0], ours.out_proj.bias.expand(3, 8))  # zero attention output
    torch.testing.assert_close(out[1], theirs(x, x, x, key_padding_mask=padding)[0][1])


def test_posthoc_evidential_tracks_the_query_mean():
    mha = MultiheadAttention(8, 2, batch_first=True, dtype=DT, normalizer="posthoc_evidential",
                             momentum=1.0)  # fmt: skip
    assert mha.posthoc_evidential and "posthoc_evidential" in repr(mha)
    x = torch.randn(2, 5, 8, dtype=DT)
    mha.train()
    mha(x, x, x)
    q = (x @ mha.in_proj_weight[:8].T + mha.in_proj_bias[:8]).unflatten(-1, (2, 4)) / 2.0
    torch.testing.assert_close(mha.query_mean, q.mean((0, 1)))
    mha.eval()
    before = mha.query_mean.clone()
    out, w = mha(x, x, x, key_padding_mask=padding_mask(torch.tensor([5, 2]), 5))
    torch.testing.assert_close(mha.query_mean, before)
    assert bool((w[1, :, 2:] == 0).all()) and bool(torch.isfinite(out).all())
    assert "query_mean" not in MultiheadAttention(8, 2).state_dict()


@pytest.mark.parametrize("name", [*NAMES, "module"])
def test_module_survives_torch_save_and_load(name):
    normalizer = EvSoftmax(eps=1e-3) if name == "module" else name
    mha = MultiheadAttention(8, 2, normalizer=normalizer).eval()
    buffer = io.BytesIO()
    torch.save(mha, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(3, 2, 8)
    torch.testing.assert_close(loaded(x, x, x)[0], mha(x, x, x)[0])
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    layer.self_attn = loaded
    with torch.no_grad():  # the no-op hook that keeps torch's fast path off survives pickling
        torch.testing.assert_close(layer.eval()(x), layer(x.requires_grad_()).detach())


# ----------------------------------------------------------------------------- bad input


def test_bad_arguments_raise_errors_naming_them():
    with pytest.raises(ValueError, match=r"^embed_dim must be divisible by num_heads"):
        MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match=r"^num_heads must be an int >= 1"):
        MultiheadAttention(8, 0)
    with pytest.raises(TypeError, match=r"^kdim must be an int"):
        MultiheadAttention(8, 2, kdim=3.0)
    with pytest.raises(ValueError, match=r"^dropout"):
        MultiheadAttention(8, 2, dropout=1.0)
    with pytest.raises(TypeError, match=r"^batch_first must be a bool"):
        MultiheadAttention(8, 2, batch_first=1)
    with pytest.raises(ValueError, match=r"^unknown normalizer"):
        MultiheadAttention(8, 2, normalizer="nope")
    with pytest.raises(TypeError, match=r"^bad options"):
        MultiheadAttention(8, 2, normalizer="softmax", normalizer_options={"eps": 0.1})
    with pytest.raises(ValueError, match=r"^normalizer_options"):
        MultiheadAttention(8, 2, normalizer=EvSoftmax(), normalizer_options={"eps": 0.1})
    with pytest.raises(ValueError, match=r"^momentum"):
        MultiheadAttention(8, 2, normalizer="posthoc_evidential", momentum=0.0)
    with pytest.raises(
        ValueError, match=r"^a cache cannot be used with add_bias_kv or add_zero_attn$"
    ):
        x = torch.randn(1, 2, 8)
        MultiheadAttention(8, 2, add_zero_attn=True)(x, x, x, cache=KeyValueCache())


def test_bad_masks_raise_errors_naming_them():
    mha = MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"^query must have shape \(N, L, E\)"):
        mha(torch.randn(2, 3, 7), x, x)
    with pytest.raises(ValueError, match=r"^key must have shape \(N, S, kdim\)"):
        mha(x, torch.randn(2, 3, 5), x)
    with pytest.raises(ValueError, match=r"^key and value must have the query's batch size"):
        mha(x, x, torch.randn(2, 4, 8))
    with pytest.raises(TypeError, match=r"^key_padding_mask must be boolean .* or float"):
        mha(x, x, x, key_padding_mask=torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^key_padding_mask must have shape \(N, S\) = \(2, 3\)"):
        mha(x, x, x, key_padding_mask=torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"^key_padding_mask must be a torch\.Tensor"):
        mha(x, x, x, key_padding_mask=[[True] * 3] * 2)
    with pytest.raises(TypeError, match=r"^attn_mask must be boolean"):
        mha(x, x, x, attn_mask=torch.zeros(3, 3, dtype=torch.int32))
    with pytest.raises(
        ValueError, match=r"^attn_mask must have shape \(L, S\), \(N\*num_heads, L, S\)"
    ):
        mha(x, x, x, attn_mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^attn_mask must have shape"):
        mha(x, x, x, attn_mask=torch.ones(2, 3, 3, dtype=torch.bool))  # (N, L, S) is not torch's
    with pytest.raises(TypeError, match=r"^is_causal must be a bool"):
        mha(x, x, x, is_causal=None)
    with pytest.raises(ValueError, match=r"^key and value are required"):
        mha(x, None, None)


# ----------------------------------------------------------------------------- nonzero parameters


def randomized_pair(**kw):
    """Torch's module and ours (softmax), in eval mode, with every parameter random and nonzero."""
    theirs = nn.MultiheadAttention(8, 2, dtype=DT, **kw).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # torch initializes the biases to zero, which hides a missing bias
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, dtype=DT, generator=g) * 0.5)
    ours = MultiheadAttention(8, 2, dtype=DT, normalizer="softmax", **kw).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def _assert_same(ours_result, theirs_result):
    torch.testing.assert_close(ours_result[0], theirs_result[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(ours_result[1], theirs_result[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"bias": False},
        {"kdim": 3, "vdim": 5},
        {"kdim": 3},
        {"vdim": 5},
        {"kdim": 3, "vdim": 5, "bias": False},
        {"add_zero_attn": True},
        {"kdim": 3, "vdim": 5, "add_zero_attn": True},
    ],
)
def test_softmax_equals_torch_with_nonzero_biases_in_every_projection_path(options):
    # torch's numbers for self-attention (q is k is v), k is v, and three distinct inputs; a zero
    # key appended makes the key bias visible (it shifts only the real keys' scores)
    theirs, ours = randomized_pair(batch_first=True, **options)
    assert ours._qkv_same_embed_dim == theirs._qkv_same_embed_dim
    kdim, vdim = options.get("kdim", 8), options.get("vdim", 8)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 8, dtype=DT, generator=g)
    k = torch.randn(3, 6, kdim, dtype=DT, generator=g)
    v = torch.randn(3, 6, vdim, dtype=DT, generator=g)
    calls = [(x, k, v)]
    if kdim == vdim:
        calls.append((x, k, k))
    if kdim == vdim == 8:
        calls.append((x, x, x))
    for args in calls:
        _assert_same(
            ours(*args, average_attn_weights=False), theirs(*args, average_attn_weights=False)
        )


def test_projections_are_packed_as_torch_packs_them_bitwise():
    # the cached keys/values are torch's packed in-projection, to the last bit (same rounding)
    _, ours = randomized_pair(batch_first=True)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 7, 8, dtype=DT, generator=g)
    memory = torch.randn(3, 5, 8, dtype=DT, generator=g)
    w, b = ours.in_proj_weight.detach(), ours.in_proj_bias.detach()
    cache = KeyValueCache()
    ours(x, x, x, cache=cache)  # self-attention: one product with the whole packed weight
    _, k, v = F.linear(x, w, b).unflatten(-1, (3, 8)).unbind(-2)
    assert torch.equal(cache.key, k.unflatten(-1, (2, 4)).transpose(1, 2))
    assert torch.equal(cache.value, v.unflatten(-1, (2, 4)).transpose(1, 2))
    cache = KeyValueCache()
    ours(x, memory, memory, cache=cache)  # key is value: one product with the packed k/v weight
    k, v = F.linear(memory, w[8:], b[8:]).unflatten(-1, (2, 8)).unbind(-2)
    assert torch.equal(cache.key, k.unflatten(-1, (2, 4)).transpose(1, 2))
    assert torch.equal(cache.value, v.unflatten(-1, (2, 4)).transpose(1, 2))


@pytest.mark.parametrize("options", [{}, {"bias": False}, {"kdim": 3, "vdim": 5}])
def test_a_filled_static_cache_gives_torchs_cross_attention(options):
    # the reused memory's keys/values with newly projected queries (nonzero query bias) = torch
    theirs, ours = randomized_pair(batch_first=True, **options)
    g = torch.Generator().manual_seed(4)
    mk = torch.randn(3, 6, options.get("kdim", 8), dtype=DT, generator=g)
    mv = torch.randn(3, 6, options.get("vdim", 8), dtype=DT, generator=g)
    first, later = torch.randn(3, 2, 8, dtype=DT, generator=g), torch.randn(3, 4, 8, dtype=DT)
    for length in (6, 1):  # a memory of a single key is reused as well
        cache = KeyValueCache(static=True)
        _assert_same(
            ours(first, mk[:, :length], mv[:, :length], cache=cache),
            theirs(first, mk[:, :length], mv[:, :length]),
        )
        _assert_same(
            ours(later, None, None, cache=cache), theirs(later, mk[:, :length], mv[:, :length])
        )
        assert len(cache) == length


def test_a_filled_static_cache_refuses_new_keys_values_or_padding():
    mha = MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(2, 3, 8)
    cache = KeyValueCache(static=True)
    mha(x, x, x, cache=cache)
    message = (
        "a filled static cache holds its keys, values and key padding mask: pass key=None, "
        "value=None and no key_padding_mask"
    )
    no_padding = torch.zeros(2, 3, dtype=torch.bool)
    for key, value, kpm in ((x, None, None), (None, x, None), (None, None, no_padding)):
        with raises_exactly(ValueError, message):
            mha(x, key, value, key_padding_mask=kpm, cache=cache)


def test_key_and_value_are_both_required_without_a_filled_static_cache():
    mha = MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(2, 3, 8)
    for key, value in ((x, None), (None, x)):
        with raises_exactly(
            ValueError, "key and value are required unless a filled static cache is given"
        ):
            mha(x, key, value)
    with raises_exactly(TypeError, "cache must be a KeyValueCache or None, got str"):
        mha(x, x, x, cache="c")  # a string has no .static: the type is checked first
    with raises_exactly(TypeError, "cache must be a KeyValueCache or None, got SimpleNamespace"):
        mha(x, x, x, cache=types.SimpleNamespace(static=False))


def test_decoding_over_a_cache_hands_ev_softmax_the_cached_key_mean(monkeypatch):
    # documented: the threshold comes from the cache's running key sum wherever it is shared by
    # all queries (one query, or no causal mask), not from a pass over the cached keys
    seen: list = []
    fused = functional.ev_softmax_attention

    def spy(*args, key_mean=None, **kw):
        seen.append(key_mean)
        return fused(*args, key_mean=key_mean, **kw)

    monkeypatch.setattr(functional, "ev_softmax_attention", spy)
    mha = MultiheadAttention(8, 2, batch_first=True, dtype=DT).eval()
    x = torch.randn(2, 6, 8, dtype=DT)
    causal = KeyValueCache()
    mha(x[:, :3], x[:, :3], x[:, :3], need_weights=False, is_causal=True, cache=causal)
    assert seen[-1] is None  # three causal queries: each has its own keys
    mha(x[:, 3:4], x[:, 3:4], x[:, 3:4], need_weights=False, is_causal=True, cache=causal)
    torch.testing.assert_close(seen[-1], causal.key.mean(2, keepdim=True), rtol=0, atol=1e-14)
    full = KeyValueCache()
    mha(x[:, :2], x[:, :2], x[:, :2], need_weights=False, cache=full)
    mha(x[:, 2:5], x[:, 2:5], x[:, 2:5], need_weights=False, cache=full)  # three, not causal
    torch.testing.assert_close(seen[-1], full.key.mean(2, keepdim=True), rtol=0, atol=1e-14)
    assert len(seen) == 4


@pytest.mark.parametrize("options", [{"add_bias_kv": True}, {"add_zero_attn": True}])
def test_is_causal_with_appended_keys_equals_torch_with_the_causal_mask(options):
    # upper-left causal (L=4 < S=6), and-ed with a boolean or float attn_mask; appended keys stay open
    theirs, ours = randomized_pair(batch_first=True, **options)
    g = torch.Generator().manual_seed(5)
    q = torch.randn(3, 4, 8, dtype=DT, generator=g)
    k, v = torch.randn(3, 6, 8, dtype=DT, generator=g), torch.randn(3, 6, 8, dtype=DT, generator=g)
    causal = torch.ones(4, 6, dtype=torch.bool).triu(1)  # torch's polarity: True = not allowed
    blocked = torch.tensor([[False, True, False, False, True, False]] * 4)
    added = torch.randn(4, 6, dtype=DT, generator=g)
    for mask, combined in (
        (None, causal),
        (blocked, blocked | causal),
        (added, added.masked_fill(causal, -math.inf)),
    ):
        _assert_same(
            ours(q, k, v, attn_mask=mask, is_causal=True, average_attn_weights=False),
            theirs(q, k, v, attn_mask=combined, average_attn_weights=False),
        )


def test_float_masks_of_another_dtype_are_added_in_the_modules_dtype():
    # float16 masks on a float64 module: their sum is taken in float64 (torch, masks cast first)
    theirs, ours = randomized_pair(batch_first=True)
    q, k, v, padding, _ = inputs(True)
    g = torch.Generator().manual_seed(6)
    kpm = torch.randn(3, 6, generator=g).half().masked_fill(padding, -math.inf)
    added = torch.randn(4, 6, generator=g).half()
    _assert_same(
        ours(q, k, v, key_padding_mask=kpm, attn_mask=added),
        theirs(q, k, v, key_padding_mask=kpm.to(DT), attn_mask=added.to(DT)),
    )


def test_returned_weights_in_training_are_the_dropped_out_weights_scaled_by_one_over_keep():
    # each weight is 0 or the eval weight / (1 - p), p = the module's dropout
    _, ours = randomized_pair(batch_first=True, dropout=0.25)
    q, k, v, _, _ = inputs(True)
    reference = ours(q, k, v, average_attn_weights=False)[1]
    torch.manual_seed(0)
    w = ours.train()(q, k, v, average_attn_weights=False)[1]
    kept = w != 0
    assert bool(kept.any()) and bool((~kept).any())
    torch.testing.assert_close(w[kept], reference[kept] / 0.75, rtol=0, atol=1e-14)


def test_a_module_normalizer_in_eval_inside_a_training_module_uses_the_exact_map():
    # the module normalizer's own mode decides: exact ev-softmax, p ∝ 1{s >= mean s} exp(s)
    mha = MultiheadAttention(8, 2, batch_first=True, dtype=DT, normalizer=EvSoftmax(eps=0.05))
    mha.train()
    mha.normalizer.eval()
    q, k, v, _, _ = inputs(True)
    _, w = mha(q, k, v, average_attn_weights=False)
    weight, bias = mha.in_proj_weight.detach(), mha.in_proj_bias.detach()
    qh = F.linear(q, weight[:8], bias[:8]).unflatten(-1, (2, 4)).transpose(1, 2)
    kh = F.linear(k, weight[8:16], bias[8:16]).unflatten(-1, (2, 4)).transpose(1, 2)
    s = qh @ kh.transpose(-1, -2) / 2.0
    expected = torch.softmax(s.masked_fill(s < s.mean(-1, keepdim=True), -math.inf), -1)
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-14)


def _posthoc_support(phi: torch.Tensor, keys: torch.Tensor, mu: torch.Tensor) -> list[bool]:
    """The post-hoc evidential filter by its definition, for one scaled query phi (d,) and keys (S, d)."""
    beta = keys - keys.mean(0)
    evidence = beta * (phi - mu) + (beta @ mu)[:, None] / phi.shape[0]
    positive = (evidence > 0).any(1).tolist()
    no_negative = (~(evidence < 0).any(1)).tolist()
    keep = [
        positive[j] or not any(no_negative[o] for o in range(len(keys)) if o != j)
        for j in range(len(keys))
    ]
    return keep if any(keep) else [True] * len(keys)


def test_posthoc_evidential_eval_filters_with_the_tracked_query_mean():
    # eval weights = softmax on the support computed with mu = query_mean (not 0), brute force
    mha = MultiheadAttention(8, 2, batch_first=True, dtype=DT, normalizer="posthoc_evidential",
                             momentum=1.0)  # fmt: skip
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        mha.in_proj_bias.copy_(torch.randn(24, dtype=DT, generator=g) * 3)
    x = torch.randn(2, 5, 8, dtype=DT, generator=g)
    mha.train()(x, x, x)
    mu = mha.query_mean.clone()
    y = torch.randn(2, 5, 8, dtype=DT, generator=g)
    _, w = mha.eval()(y, y, y, average_attn_weights=False)
    weight, bias = mha.in_proj_weight.detach(), mha.in_proj_bias.detach()
    qh = F.linear(y, weight[:8], bias[:8]).unflatten(-1, (2, 4)).transpose(1, 2) / 2.0
    kh = F.linear(y, weight[8:16], bias[8:16]).unflatten(-1, (2, 4)).transpose(1, 2)
    expected = torch.zeros(2, 2, 5, 5, dtype=DT)
    for n, h, i in itertools.product(range(2), range(2), range(5)):
        keep = torch.tensor(_posthoc_support(qh[n, h, i], kh[n, h], mu[h]))
        scores = kh[n, h] @ qh[n, h, i]
        expected[n, h, i] = torch.softmax(scores.masked_fill(~keep, -math.inf), -1)
    assert bool((expected == 0).any())  # the filter drops keys here
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-14)


def test_posthoc_evidential_under_autocast_keeps_the_query_mean_in_its_dtype():
    # bfloat16 queries (CPU autocast) update a float32 query_mean with their float32 mean
    mha = MultiheadAttention(8, 2, batch_first=True, normalizer="posthoc_evidential", momentum=1.0)
    x = torch.randn(2, 5, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mha.train()(x, x, x)
        q = F.linear(x, mha.in_proj_weight[:8], mha.in_proj_bias[:8])
        out, w = mha.eval()(x, x, x)
    assert q.dtype == torch.bfloat16 and mha.query_mean.dtype == torch.float32
    expected = (q.detach().unflatten(-1, (2, 4)) / 2.0).mean((0, 1))  # a bfloat16 mean
    torch.testing.assert_close(mha.query_mean, expected.float(), rtol=0, atol=0)
    assert out.dtype == w.dtype == torch.bfloat16


# ----------------------------------------------------------------------------- construction


def test_parameters_are_torchs_names_dtypes_and_initial_values():
    for kw in ({}, {"kdim": 3, "vdim": 5}, {"kdim": 3}, {"add_bias_kv": True}, {"bias": False}):
        theirs = nn.MultiheadAttention(8, 2, dtype=DT, **kw)
        ours = MultiheadAttention(8, 2, dtype=DT, **kw)
        assert list(ours._parameters) == list(theirs._parameters)
        for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
                     "in_proj_bias", "bias_k", "bias_v"):  # fmt: skip
            assert (getattr(ours, name) is None) == (getattr(theirs, name) is None), name
        for name, p in ours.named_parameters():
            assert p.dtype == DT, name
            if name in ("in_proj_bias", "out_proj.bias"):  # torch's init: zero biases
                assert bool((p == 0).all()), name
    assert MultiheadAttention(8, 2, kdim=3)._qkv_same_embed_dim is False


def test_one_feature_and_one_feature_keys_values_equal_torch():
    for e, kw in ((1, {}), (8, {"kdim": 1, "vdim": 1})):
        theirs = nn.MultiheadAttention(e, 1, dtype=DT, **kw).eval()
        ours = MultiheadAttention(e, 1, dtype=DT, normalizer="softmax", **kw).eval()
        ours.load_state_dict(theirs.state_dict(), strict=True)
        q = torch.randn(4, 2, e, dtype=DT)
        k, v = (
            torch.randn(3, 2, kw.get("kdim", e), dtype=DT),
            torch.randn(3, 2, kw.get("vdim", e), dtype=DT),
        )
        _assert_same(ours(q, k, v), theirs(q, k, v))


def test_constructor_errors_are_exact():
    cases = [
        ({"embed_dim": 0, "num_heads": 1}, ValueError, "embed_dim must be an int >= 1, got 0"),
        ({"kdim": 0}, ValueError, "kdim must be an int >= 1, got 0"),
        ({"vdim": 0}, ValueError, "vdim must be an int >= 1, got 0"),
        ({"vdim": 3.0}, TypeError, "vdim must be an int, got float"),
        ({"dropout": True}, TypeError, "dropout must be a real number, got bool"),
        ({"dropout": "0.1"}, TypeError, "dropout must be a real number, got str"),
        ({"bias": 1}, TypeError, "bias must be a bool, got int"),
        ({"add_bias_kv": 1}, TypeError, "add_bias_kv must be a bool, got int"),
        ({"add_zero_attn": 1}, TypeError, "add_zero_attn must be a bool, got int"),
        ({"dtype": torch.int64}, TypeError,
         "dtype must be a floating-point dtype or None, got torch.int64"),
        ({"normalizer": "posthoc_evidential", "momentum": True}, TypeError,
         "momentum must be a real number, got bool"),
        ({"normalizer": "posthoc_evidential", "momentum": "0.1"}, TypeError,
         "momentum must be a real number, got str"),
        ({"normalizer": "posthoc_evidential", "momentum": 1.5}, ValueError,
         "momentum must be a number in (0, 1], got 1.5"),
    ]  # fmt: skip
    for kw, error, message in cases:
        kw = {"embed_dim": 8, "num_heads": 2, **kw}
        with raises_exactly(error, message):
            MultiheadAttention(**kw)


def test_extra_repr_names_a_module_normalizer_by_its_class():
    mha = MultiheadAttention(8, 2, normalizer=EvSoftmax(eps=0.05))
    assert mha.extra_repr() == (
        "embed_dim=8, num_heads=2, normalizer='EvSoftmax', dropout=0.0, batch_first=False"
    )


# ----------------------------------------------------------------------------- forward errors


def test_forward_errors_are_exact():
    mha = MultiheadAttention(8, 2, batch_first=True)
    seq = MultiheadAttention(8, 2)  # (L, N, E)
    x, ints = torch.randn(2, 3, 8), torch.ones(2, 3, 8, dtype=torch.long)
    unbatched = torch.randn(6, 8)
    floating = "must be a floating-point tensor (float16, bfloat16, float32 or float64), got dtype"
    cases = [
        (lambda: mha(x, x, x, need_weights=1), TypeError, "need_weights must be a bool, got int"),
        (lambda: mha(x, x, x, average_attn_weights=1), TypeError,
         "average_attn_weights must be a bool, got int"),
        (lambda: mha(ints, x, x), TypeError, f"query {floating} torch.int64"),
        (lambda: mha(x, ints, x), TypeError, f"key {floating} torch.int64"),
        (lambda: mha(x, x, ints), TypeError, f"value {floating} torch.int64"),
        (lambda: seq(torch.randn(2, 3, 7), x, x), ValueError,
         "query must have shape (L, N, E) (batch_first=False) or (L, E) with E = 8, got (2, 3, 7)"),
        (lambda: mha(x, torch.randn(2, 3, 5), x), ValueError,
         "key must have shape (N, S, kdim) with kdim = 8 (batch_first=True, batched=True), "
         "got (2, 3, 5)"),
        (lambda: mha(x, x, torch.randn(2, 3, 5)), ValueError,
         "value must have shape (N, S, vdim) with vdim = 8 (batch_first=True, batched=True), "
         "got (2, 3, 5)"),
        (lambda: seq(x, torch.randn(2, 3, 5), x), ValueError,
         "key must have shape (S, N, kdim) with kdim = 8 (batch_first=False, batched=True), "
         "got (2, 3, 5)"),
        (lambda: mha(unbatched, torch.randn(6, 5), unbatched), ValueError,
         "key must have shape (S, kdim) with kdim = 8 (batch_first=True, batched=False), "
         "got (6, 5)"),
        (lambda: mha(x, x, x, key_padding_mask=torch.ones(2, 3, dtype=torch.long)), TypeError,
         "key_padding_mask must be boolean (True = padding, the key is ignored) or float (added "
         "to the scores), got dtype torch.int64"),
        (lambda: mha(unbatched, unbatched, unbatched, key_padding_mask=torch.ones(5).bool()),
         ValueError, "key_padding_mask must have shape (S,) = (6,), got (5,)"),
        (lambda: mha(x, x, x, attn_mask=[[True] * 3] * 3), TypeError,
         "attn_mask must be a torch.Tensor, got list"),
        (lambda: mha(x, x, x, attn_mask=torch.zeros(3, 3, dtype=torch.int32)), TypeError,
         "attn_mask must be boolean (True = not allowed, as nn.MultiheadAttention) or float "
         "(added to the scores), got dtype torch.int32"),
        (lambda: mha(x, x, x, key_padding_mask=torch.full((2, 3), 0.5), cache=KeyValueCache()),
         ValueError,
         "with a cache, a float key_padding_mask may hold only 0 and -inf (use a boolean one)"),
    ]  # fmt: skip
    for call, error, message in cases:
        with raises_exactly(error, message):
            call()


# ----------------------------------------------------------------------------- nested tensors


def _nested(seqs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's nested-tensor prototype warning
        return torch.nested.as_nested_tensor(seqs)


def test_nested_weights_are_torchs_on_the_zero_padded_batch():
    # padded, attended and nested again: weights (padded rows too) = torch on the zero-padded batch
    theirs, ours = randomized_pair(batch_first=True)
    seqs = [torch.randn(3, 8, dtype=DT), torch.randn(5, 8, dtype=DT)]
    x = _nested(seqs)
    with torch.no_grad():
        out, w = ours(x, x, x, average_attn_weights=False)
    dense = torch.stack([F.pad(seqs[0], (0, 0, 0, 2)), seqs[1]])
    padding = padding_mask(torch.tensor([3, 5]), 5)
    t_out, t_w = theirs(dense, dense, dense, key_padding_mask=padding, average_attn_weights=False)
    torch.testing.assert_close(w, t_w, rtol=0, atol=1e-12)
    for got, expected, n in zip(out.unbind(), t_out, (3, 5), strict=True):
        torch.testing.assert_close(got, expected[:n], rtol=0, atol=1e-12)


def test_nested_tensor_errors_are_exact():
    mha = MultiheadAttention(8, 2, batch_first=True)
    x = _nested([torch.randn(3, 8), torch.randn(5, 8)])
    y = _nested([torch.randn(3, 8), torch.randn(5, 8)])
    only = (
        "a nested tensor is accepted only for batch_first self-attention (query is key is value) "
        "without a cache, as nn.TransformerEncoder passes it"
    )
    masks = "masks cannot be given with a nested tensor (it carries its own lengths)"
    padding = padding_mask(torch.tensor([3, 5]), 5)
    cases = [
        (lambda: MultiheadAttention(8, 2)(x, x, x), TypeError, only),  # not batch_first
        (lambda: mha(x, x, y), TypeError, only),
        (lambda: mha(x, x, x, cache=KeyValueCache()), TypeError, only),
        (lambda: mha(x, x, x, key_padding_mask=padding), ValueError, masks),
        (lambda: mha(x, x, x, attn_mask=torch.zeros(5, 5, dtype=torch.bool)), ValueError, masks),
    ]
    for call, error, message in cases:
        with raises_exactly(error, message):
            call()


def test_posthoc_evidential_under_autocast_filters_in_the_queries_dtype():
    # a tie engineered in bfloat16: one head, d = 2, keys (1, 0) and (-1, 0), mu_1 = 2 phi_1 in
    # bfloat16 (float32 mu_1 a little above); by the definition key 2 has evidence
    # (-phi_1 + mu_1 / 2, -mu_1 / 2) = (0, -) and key 1 (phi_1 - mu_1 / 2, mu_1 / 2) = (0, +): key 2 is
    # dropped, and the weights are exactly (1, 0)
    mha = MultiheadAttention(2, 1, batch_first=True, normalizer="posthoc_evidential").eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.eye(2).repeat(3, 1))
        mha.in_proj_bias.zero_()
    query = torch.tensor([[[0.75, 0.0]]])
    keys = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    phi = (query.bfloat16() * (1 / math.sqrt(2)))[0, 0, 0]  # the scaled query, as bfloat16
    mha.query_mean.copy_(torch.tensor([[2 * phi.float() * (1 + 2.0**-12), 0.0]]))
    assert mha.query_mean[0, 0].bfloat16() == 2 * phi  # the tie holds in bfloat16 only
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, w = mha(query, keys, keys)
    assert w.tolist() == [[[1.0, 0.0]]]
