"""Tests of simplexity.nn.cache: step-by-step decoding with a KeyValueCache equals the causal training pass."""

from __future__ import annotations

import pytest
import torch

from exact_error import raises_exactly
from simplexity import normalizers
from simplexity.nn import KeyValueCache, MultiheadAttention, causal_mask, padding_mask
from simplexity.normalizers import EvSoftmax

NAMES = normalizers.names()
DT = torch.float64


def reference_ev_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The reference implementation's masking: fill with -1e18, then take the mean over the whole row."""
    filled = scores.masked_fill(~valid, -1e18)
    keep = filled >= filled.mean(-1, keepdim=True)
    weights = keep * filled.exp()
    return weights / weights.sum(-1, keepdim=True)


@pytest.mark.parametrize("name", [*NAMES, "module"])
@pytest.mark.parametrize("training", [False, True])
def test_causal_pass_equals_step_by_step_decoding(name, training):
    torch.manual_seed(1)
    normalizer = (lambda: EvSoftmax(eps=0.01)) if name == "module" else (lambda: name)
    e, b, length, src_len = 8, 3, 6, 5
    self_attn = MultiheadAttention(e, 2, batch_first=True, normalizer=normalizer()).to(DT)
    cross_attn = MultiheadAttention(e, 2, kdim=4, vdim=3, batch_first=True, normalizer=normalizer())
    self_attn.train(training), cross_attn.to(DT).train(training)
    if name == "posthoc_evidential":  # a filter that reads a trained query mean
        self_attn.query_mean.normal_(), cross_attn.query_mean.normal_()
    x = torch.randn(b, length, e, dtype=DT)
    memory_k, memory_v = torch.randn(b, src_len, 4, dtype=DT), torch.randn(b, src_len, 3, dtype=DT)
    src_padding = padding_mask(torch.tensor([5, 2, 4]), src_len)

    def block(h, self_cache=None, cross_cache=None, causal=True):
        filled = cross_cache is not None and len(cross_cache) > 0
        a, wa = self_attn(h, h, h, is_causal=causal, cache=self_cache, average_attn_weights=False)
        c, wc = cross_attn(
            h + a,
            None if filled else memory_k,
            None if filled else memory_v,
            key_padding_mask=None if filled else src_padding,
            cache=cross_cache,
            average_attn_weights=False,
        )
        return h + a + c, wa, wc

    with torch.no_grad():
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
        # a prefill chunk after cached keys: is_causal is lower-right aligned with a cache
        cache = KeyValueCache()
        first, _ = self_attn(x[:, :2], x[:, :2], x[:, :2], is_causal=True, cache=cache)
        rest, _ = self_attn(x[:, 2:], x[:, 2:], x[:, 2:], is_causal=True, cache=cache)
        full_self, _ = self_attn(x, x, x, is_causal=True)
        torch.testing.assert_close(torch.cat([first, rest], 1), full_self)
        # and the explicit causal_mask helper (lower-right) gives the same chunk
        cache = KeyValueCache()
        self_attn(x[:, :2], x[:, :2], x[:, :2], is_causal=True, cache=cache)
        chunk, _ = self_attn(
            x[:, 2:], x[:, 2:], x[:, 2:], attn_mask=causal_mask(4, 6, dtype=DT), cache=cache
        )
        torch.testing.assert_close(chunk, rest)


def test_reference_masking_is_inconsistent_between_training_and_decoding():
    # With -1e18 fills and a mean over the whole row, row t of the causal pass is not the same
    # distribution as decoding step t (whose row has no future positions); ours is.
    scores = torch.randn(6, 6, dtype=DT)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    ours = normalizers.get("ev_softmax")(scores, mask=causal)
    ref = reference_ev_softmax(scores, causal)
    differs = False
    for t in range(6):
        step = normalizers.get("ev_softmax")(scores[t, : t + 1])
        torch.testing.assert_close(ours[t, : t + 1], step)
        differs |= not torch.allclose(ref[t, : t + 1], step)
    assert differs


def test_key_padding_in_the_cache_and_reorder():
    mha = MultiheadAttention(4, 1, batch_first=True).to(DT).eval()
    x = torch.randn(2, 3, 4, dtype=DT)
    padding = torch.tensor([[False, True, False], [False, False, False]])  # torch's polarity
    full, _ = mha(x, x, x, key_padding_mask=padding, is_causal=True)
    cache = KeyValueCache()
    outs = []
    for t in range(3):
        step = x[:, t : t + 1]
        outs.append(mha(step, step, step, key_padding_mask=padding[:, t : t + 1], cache=cache)[0])
    torch.testing.assert_close(torch.cat(outs, 1), full)
    assert cache.key_padding_mask.tolist() == padding.tolist()
    cache.reorder(torch.tensor([1, 1, 0]))
    assert cache.key.shape[0] == 3 and cache.key_padding_mask.tolist()[2] == padding[0].tolist()
    # a float padding mask of 0 / -inf is stored as the boolean one
    cache = KeyValueCache()
    float_padding = torch.zeros(2, 3, dtype=DT).masked_fill(padding, float("-inf"))
    mha(x, x, x, key_padding_mask=float_padding, cache=cache)
    assert cache.key_padding_mask.tolist() == padding.tolist()
    with pytest.raises(ValueError, match="only 0 and -inf"):
        mha(x, x, x, key_padding_mask=float_padding + 1.0, cache=KeyValueCache())


def test_cache_errors_name_the_problem():
    cache = KeyValueCache()
    with pytest.raises(ValueError, match=r"^key and value must have shapes"):
        cache.append(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3))
    with pytest.raises(
        TypeError, match=r"^key_padding_mask must be boolean \(True = padding\), got torch.float32$"
    ):
        cache.append(torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 3, 4), torch.zeros(2, 3))
    with pytest.raises(
        ValueError,
        match=r"^key_padding_mask must have shape \(B, S_new\) = \(2, 3\), got \(3, 2\)$",
    ):
        cache.append(
            torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 3, 4), torch.zeros(3, 2, dtype=torch.bool)
        )
    cache.append(torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 3, 4))
    with pytest.raises(
        ValueError,
        match=r"^new keys \(3, 1, 1, 4\) and values \(3, 1, 1, 4\) do not match the cached",
    ):
        cache.append(torch.zeros(3, 1, 1, 4), torch.zeros(3, 1, 1, 4))
    static = KeyValueCache(static=True)
    static.append(torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 3, 4))
    with pytest.raises(
        ValueError, match=r"^a static cache is filled once; create a new one for a new memory$"
    ):
        static.append(torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 3, 4))
    with pytest.raises(TypeError, match=r"^static must be a bool, got int$"):
        KeyValueCache(static=1)
    mha = MultiheadAttention(4, 1, batch_first=True)
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="filled static cache"):
        mha(x, x, x, cache=static)
    with pytest.raises(ValueError, match="the cache holds a batch of 2"):
        mha(torch.randn(5, 1, 4), None, None, cache=static)
    assert repr(static) == "KeyValueCache(length=3, static=True)"


def test_cache_contents_against_concatenation():
    """Appends with and without padding: the cache holds the concatenation, the padding mask
    (missing parts as not padding), the mean of the unpadded keys, and reorders all of them."""
    g = torch.Generator().manual_seed(0)
    steps = [
        (torch.randn(3, 2, 2, 4, generator=g, dtype=DT), None),
        (torch.randn(3, 2, 1, 4, generator=g, dtype=DT), torch.tensor([[True], [False], [True]])),
        (torch.randn(3, 2, 3, 4, generator=g, dtype=DT), None),
        (torch.randn(3, 2, 2, 4, generator=g, dtype=DT),
         torch.tensor([[True, True], [False, True], [True, True]])),
    ]  # fmt: skip
    cache = KeyValueCache()
    assert (
        len(cache) == 0
        and cache.key_mean() is None
        and repr(cache).startswith("KeyValueCache(length=0, static=False")
    )
    for key, mask in steps:
        cache.append(key, 2 * key[..., :3], mask)
    keys = torch.cat([k for k, _ in steps], 2)
    padding = torch.cat(
        [torch.zeros(3, k.shape[2], dtype=torch.bool) if m is None else m for k, m in steps], 1
    )
    assert len(cache) == 8
    torch.testing.assert_close(cache.key, keys)
    torch.testing.assert_close(cache.value, 2 * keys[..., :3])
    assert torch.equal(cache.key_padding_mask, padding)
    kept = (~padding)[:, None, :, None].to(DT)
    torch.testing.assert_close(
        cache.key_mean(), (keys * kept).sum(2, keepdim=True) / kept.sum(2, keepdim=True)
    )
    index = torch.tensor([2, 0])
    cache.reorder(index)
    torch.testing.assert_close(cache.key, keys[index])
    assert torch.equal(cache.key_padding_mask, padding[index])
    kept = kept[index]
    torch.testing.assert_close(
        cache.key_mean(), (keys[index] * kept).sum(2, keepdim=True) / kept.sum(2, keepdim=True)
    )
    # a row whose every key is padding has mean 0 (no division by zero)
    empty = KeyValueCache()
    empty.append(torch.ones(1, 1, 2, 3), torch.ones(1, 1, 2, 3), torch.tensor([[True, True]]))
    assert torch.equal(empty.key_mean(), torch.zeros(1, 1, 1, 3))
    KeyValueCache().reorder(torch.tensor([0]))  # nothing cached yet: nothing to do
    with pytest.raises(TypeError, match=r"^index must be"):
        cache.reorder([0, 1])


def test_cache_fresh_state_types_and_shape_checks():
    cache = KeyValueCache()
    assert (cache.key, cache.value, cache.key_padding_mask) == (None, None, None)
    assert (cache.key_sum, cache.key_count) == (None, None)
    # one head, a row with a single unpadded key: the mean is that key
    cache.append(torch.ones(2, 1, 1, 3), torch.ones(2, 1, 1, 2))
    cache.append(2 * torch.ones(2, 1, 2, 3), torch.ones(2, 1, 2, 2), torch.tensor([[True, True],
                                                                                   [False, True]]))  # fmt: skip
    assert cache.key_padding_mask.dtype == torch.bool
    assert cache.key_count.dtype == cache.key.dtype and cache.key_count.shape == (2, 1, 1, 1)
    assert cache.key_mean().shape == (2, 1, 1, 3)
    torch.testing.assert_close(cache.key_mean()[:, 0, 0, 0], torch.tensor([1.0, 1.5]))
    cache.reorder(torch.tensor([1]))
    assert cache.value.shape == (1, 1, 3, 2) and len(cache) == 3
    padded_first = KeyValueCache()  # a padding mask first, then none: the rest is not padding
    padded_first.append(torch.ones(1, 1, 1, 3), torch.ones(1, 1, 1, 2), torch.tensor([[True]]))
    assert padded_first.key_count.dtype == torch.float32  # the keys' dtype, counted from a mask
    padded_first.append(torch.ones(1, 1, 1, 3), torch.ones(1, 1, 1, 2))
    assert padded_first.key_padding_mask.tolist() == [[True, False]]
    assert padded_first.key_padding_mask.dtype == torch.bool
    message = "key and value must have shapes (B, H, S_new, E / H) and (B, H, S_new, Ev / H), got "
    for key, value in (
        (torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 2, 4)),  # four axes each, lengths differ
        (torch.zeros(2, 1, 3), torch.zeros(2, 1, 3, 4)),  # a key of three axes
    ):
        with raises_exactly(ValueError, message + f"{tuple(key.shape)} and {tuple(value.shape)}"):
            KeyValueCache().append(key, value)
    for key, value, name in (
        (torch.zeros(1, 1, 1, 2, dtype=torch.long), torch.zeros(1, 1, 1, 2), "key"),
        (torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2, dtype=torch.long), "value"),
    ):
        with pytest.raises(TypeError, match=rf"^{name} must be a floating-point tensor"):
            KeyValueCache().append(key, value)
    with pytest.raises(TypeError, match=r"^key_padding_mask must be a torch\.Tensor"):
        KeyValueCache().append(torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2), [[True]])
