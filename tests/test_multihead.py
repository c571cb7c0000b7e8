"""Tests of simplexity.nn.multihead: a drop-in for torch.nn.MultiheadAttention and its Transformer layers."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from torch import nn

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
