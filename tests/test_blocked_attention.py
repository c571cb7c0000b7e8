"""Blocked attention (any normalizer, checkpointed query blocks) against the dense computation."""

from __future__ import annotations

import math

import pytest
import torch

import simplexity.nn.blocked_attention as blocked
from exact_error import raises_exactly
from largest_tensor import LargestTensor
from simplexity.nn import attention
from simplexity.nn.blocked_attention import blocked_attention
from simplexity.normalizers import entmax15, entmax_bisect, softmax, sparsemax

DT = torch.float64
NORMALIZERS = {
    "sparsemax": sparsemax,
    "entmax15": entmax15,
    "entmax_bisect": lambda s, d=-1, mask=None: entmax_bisect(
        s, d, alpha=1.3, n_iter=60, mask=mask
    ),
    "softmax": softmax,
}


def dense(q, k, v, norm, attn_mask=None, is_causal=False):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    valid = torch.ones(scores.shape, dtype=torch.bool)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        valid = valid & attn_mask
    elif attn_mask is not None:
        scores = scores + attn_mask
        valid = valid & (attn_mask != -math.inf)
    if is_causal:
        valid = valid & torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
    return norm(scores, -1, mask=valid) @ v


def inputs(lq=9, lk=7):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, lq, 4, dtype=DT, generator=g)
    k = torch.randn(2, 3, lk, 4, dtype=DT, generator=g)
    v = torch.randn(2, 3, lk, 5, dtype=DT, generator=g)
    bias = torch.randn(lq, lk, dtype=DT, generator=g)
    bias[3] = -math.inf  # a query with nothing to attend to
    bias[1, :2] = -math.inf
    masks = {
        "none": None,
        "padding": torch.arange(lk) < torch.tensor([lk, 3]).view(2, 1, 1, 1),
        "per_query": torch.rand(2, 1, lq, lk, generator=g) > 0.4,
        "bias": bias,
    }
    return q, k, v, masks


@pytest.mark.parametrize("name", NORMALIZERS)
@pytest.mark.parametrize("mask_name", ["none", "padding", "per_query", "bias"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_values_and_gradients_equal_the_dense_computation(name, mask_name, is_causal):
    norm = NORMALIZERS[name]
    q, k, v, masks = inputs()
    mask = masks[mask_name]
    results = []
    for blocked_path in (True, False):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        m = mask.clone().requires_grad_() if mask is not None and mask.is_floating_point() else mask
        if blocked_path:
            out = blocked_attention(
                *leaves, m, is_causal=is_causal, block_size=2,
                normalize=lambda s, valid: norm(s, -1, mask=valid),
            )  # fmt: skip
        else:
            out = dense(*leaves, norm, m, is_causal)
        wrt = leaves + ([m] if m is not None and m.requires_grad else [])
        weight = torch.linspace(-1, 1, out.numel(), dtype=DT).view_as(out)
        results.append((out, *torch.autograd.grad(out, wrt, weight)))
    for got, expected in zip(*results):
        assert not got.isnan().any()
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


def test_dropout_is_replayed_in_the_backward():
    q, k, v, _ = inputs()
    leaves = [t[:1, :1].clone().requires_grad_() for t in (q, k, v)]

    def fixed_draws(q, k, v):
        torch.manual_seed(0)
        return blocked_attention(
            q, k, v, dropout_p=0.3, block_size=3, normalize=lambda s, m: sparsemax(s, -1, mask=m)
        )

    assert torch.autograd.gradcheck(fixed_draws, leaves, fast_mode=True)


def test_attention_blocks_long_sequences_for_every_normalizer(monkeypatch):
    length = 256
    q, k, v = (torch.randn(1, 2, length, 8, requires_grad=True) for _ in range(3))
    monkeypatch.setattr(blocked, "MIN_SCORES", 1)  # block from the first score on
    monkeypatch.setattr(blocked, "BLOCK_ELEMENTS", 2 * 32 * length)  # 32 queries per block
    for name in ("sparsemax", "entmax15", "softmax"):
        with LargestTensor() as mode:
            out = attention(q, k, v, is_causal=True, normalizer=name)
            out.sum().backward()
        assert mode.largest < 2 * length * length / 4
        expected = dense(q.detach(), k.detach(), v.detach(), NORMALIZERS[name], is_causal=True)
        torch.testing.assert_close(out.detach(), expected, rtol=1e-5, atol=1e-5)


def test_no_queries_or_no_keys():
    q, k, v, _ = inputs()
    norm = lambda s, m: sparsemax(s, -1, mask=m)  # noqa: E731
    assert blocked_attention(q[..., :0, :], k, v, normalize=norm).shape == (2, 3, 0, 5)
    no_keys = blocked_attention(q, k[..., :0, :], v[..., :0, :], normalize=norm, is_causal=True)
    assert no_keys.shape == (2, 3, 9, 5) and (no_keys == 0).all()
    with pytest.raises(ValueError, match=r"^block_size"):
        blocked_attention(q, k, v, normalize=norm, block_size=0)


def torch_softmax(scores, valid):
    """Softmax over the valid keys, written with torch only (the SDPA references' normalizer)."""
    return (scores if valid is None else scores.masked_fill(~valid, -math.inf)).softmax(-1)


def sdpa(*args, **kwargs):
    return torch.nn.functional.scaled_dot_product_attention(*args, **kwargs)


@pytest.mark.parametrize("causal", [{}, {"is_causal": True}], ids=["default", "causal"])
@pytest.mark.parametrize("grad", [True, False])
def test_broadcast_batch_dims_of_rank_three_equal_sdpa(causal, grad):
    # 5-d inputs whose batch dims each come from a different tensor (q: 2, k: 3, v: 4); 7 queries in
    # blocks of 3; values and gradients against torch's scaled_dot_product_attention (default: not causal)
    g = torch.Generator().manual_seed(1)
    shapes = [(2, 1, 1, 7, 3), (1, 3, 1, 5, 3), (1, 1, 4, 5, 2)]
    leaves = [torch.randn(s, dtype=DT, generator=g).requires_grad_(grad) for s in shapes]
    out = blocked_attention(*leaves, **causal, block_size=3, normalize=torch_softmax)
    expected = sdpa(*leaves, **causal)
    assert out.shape == (2, 3, 4, 7, 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    if grad:
        weight = torch.linspace(-1, 2, out.numel(), dtype=DT).view_as(out)
        got = torch.autograd.grad(out, leaves, weight)
        for g_got, g_expected in zip(got, torch.autograd.grad(expected, leaves, weight)):
            torch.testing.assert_close(g_got, g_expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "attn_mask",
    [
        torch.tensor([True, False, True, True, False]),
        torch.tensor([0.3, -math.inf, -1.2, 0.0, 2.5], dtype=DT),
        torch.tensor(0.7, dtype=DT),
    ],
    ids=["bool_1d", "float_1d", "float_0d"],
)
@pytest.mark.parametrize("is_causal", [False, True])
def test_unbatched_inputs_with_one_and_zero_dim_masks_equal_sdpa(attn_mask, is_causal):
    # (L, E) / (S, E) inputs without batch dims, 7 queries in blocks of 2, a 1-d or 0-d mask broadcast
    # over the queries; against torch's scaled_dot_product_attention
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(n, e, dtype=DT, generator=g) for n, e in ((7, 3), (5, 3), (5, 2)))
    out = blocked_attention(
        q, k, v, attn_mask, is_causal=is_causal, block_size=2, normalize=torch_softmax
    )
    reference_mask = attn_mask
    if is_causal:  # SDPA takes no mask with is_causal: the mask and-ed with the lower triangle
        tril = torch.ones(7, 5, dtype=torch.bool).tril()
        reference_mask = (
            attn_mask & tril
            if attn_mask.dtype == torch.bool
            else attn_mask + torch.zeros(7, 5, dtype=DT).masked_fill(~tril, -math.inf)
        )
    expected = sdpa(q, k, v, reference_mask)
    assert out.shape == (7, 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_dropout_of_one_drops_every_weight():
    # p = 1 zeroes every weight: the output and all gradients are exactly 0 (and not the plain attention)
    q, k, v, _ = inputs()
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = blocked_attention(*leaves, dropout_p=1.0, block_size=4, normalize=torch_softmax)
    assert out.shape == (2, 3, 9, 5) and (out == 0).all()
    assert all((grad == 0).all() for grad in torch.autograd.grad(out.sum(), leaves))
    with torch.no_grad():
        assert (blocked_attention(q, k, v, dropout_p=1.0, normalize=torch_softmax) == 0).all()


@pytest.mark.parametrize("is_causal", [False, True])
def test_no_keys_give_zero_rows_in_every_block(is_causal):
    # 9 queries in blocks of 2 and no keys: nothing to attend to, 9 zero rows (brute force: zeros)
    q, k, v, _ = inputs()
    out = blocked_attention(
        q, k[..., :0, :], v[..., :0, :], is_causal=is_causal, block_size=2, normalize=torch_softmax
    )
    assert out.shape == (2, 3, 9, 5) and (out == 0).all()


def test_empty_features_weight_every_key_equally():
    # E = 0: every score is 0 (the default scale must not divide by sqrt(0)), so each query averages
    # the values (each key gets weight 1/S); 7 queries in blocks of 3
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 3, 7, 0, dtype=DT), torch.randn(2, 3, 5, 0, dtype=DT)
    v = torch.randn(2, 3, 5, 4, dtype=DT, generator=g)
    out = blocked_attention(q, k, v, block_size=3, normalize=torch_softmax)
    expected = v.mean(-2, keepdim=True).expand(2, 3, 7, 4)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_block_size_of_one_and_bad_block_sizes():
    # block_size = 1 (the smallest allowed) equals SDPA; 0 and a bool are rejected with check_int's messages
    q, k, v, _ = inputs()
    out = blocked_attention(q, k, v, is_causal=True, block_size=1, normalize=torch_softmax)
    torch.testing.assert_close(out, sdpa(q, k, v, is_causal=True), rtol=0, atol=1e-12)
    with raises_exactly(ValueError, "block_size must be an int >= 1, got 0"):
        blocked_attention(q, k, v, normalize=torch_softmax, block_size=0)
    with raises_exactly(TypeError, "block_size must be an int, got bool"):
        blocked_attention(q, k, v, normalize=torch_softmax, block_size=True)


def recording(shapes):
    """torch_softmax that appends the shape of every score block it normalizes to ``shapes``."""

    def normalize(scores, valid):
        shapes.append(tuple(scores.shape))
        return torch_softmax(scores, valid)

    return normalize


@pytest.mark.parametrize("is_causal, widths", [(False, [7, 7, 7, 7, 7]), (True, [2, 4, 6, 7, 7])])
def test_causal_blocks_stop_at_their_last_querys_key(is_causal, widths):
    # 9 queries, 7 keys, blocks of 2: under a causal mask the block [s, e) scores keys [0, min(e, 7))
    q, k, v, _ = inputs()
    shapes = []
    out = blocked_attention(q, k, v, is_causal=is_causal, block_size=2, normalize=recording(shapes))
    rows = [2, 2, 2, 2, 1]
    assert shapes == [(2, 3, r, w) for r, w in zip(rows, widths)]
    torch.testing.assert_close(out, sdpa(q, k, v, is_causal=is_causal), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "block_elements, batch, keys, rows",
    [
        (8, (1, 1), 1, [8, 3]),  # 1 score per query: 8 queries per block
        (100, (2, 3), 5, [3, 3, 3, 2]),  # 30 scores per query: 100 // 30 = 3 queries per block
        (8, (2, 3), 5, [1] * 11),  # a query's 30 scores exceed the budget: one query per block
    ],
)
def test_default_block_size_holds_about_block_elements_scores(
    monkeypatch, block_elements, batch, keys, rows
):
    # block_size None: BLOCK_ELEMENTS // (batch size * S) queries per block (at least 1), 11 queries
    monkeypatch.setattr(blocked, "BLOCK_ELEMENTS", block_elements)
    g = torch.Generator().manual_seed(4)
    q = torch.randn(*batch, 11, 3, dtype=DT, generator=g)
    k = torch.randn(*batch, keys, 3, dtype=DT, generator=g)
    v = torch.randn(*batch, keys, 2, dtype=DT, generator=g)
    shapes = []
    out = blocked_attention(q, k, v, normalize=recording(shapes))
    assert shapes == [(*batch, r, keys) for r in rows]
    torch.testing.assert_close(out, sdpa(q, k, v), rtol=0, atol=1e-12)


def test_backward_recomputes_every_block_once():
    # checkpointed blocks: the forward normalizes each of the 5 blocks once, the backward once more
    q, k, v, _ = inputs()
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    shapes = []
    out = blocked_attention(*leaves, block_size=2, normalize=recording(shapes))
    assert len(shapes) == 5
    out.sum().backward()
    assert len(shapes) == 10


def test_a_trainable_normalizer_alone_still_gets_checkpointed_blocks():
    """Inputs without gradients and a normalizer holding a trainable temperature: the blocks are
    still checkpointed (the backward normalizes each of the 5 blocks again, memory stays
    O(L * block)) and the temperature gets the dense gradient."""
    q, k, v, _ = inputs()
    temperature = torch.tensor(1.7, dtype=DT, requires_grad=True)
    shapes = []
    record = recording(shapes)

    def normalize(scores, valid):
        return record(scores / temperature, valid)

    out = blocked_attention(q, k, v, block_size=2, normalize=normalize)
    assert len(shapes) == 5
    (grad,) = torch.autograd.grad(out.square().sum(), temperature)
    assert len(shapes) == 10
    dense = torch.softmax(q @ k.transpose(-2, -1) / 2 / temperature, -1) @ v
    (expected,) = torch.autograd.grad(dense.square().sum(), temperature)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
