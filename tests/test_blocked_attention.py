"""Blocked attention (any normalizer, checkpointed query blocks) against the dense computation."""

from __future__ import annotations

import math

import pytest
import torch

import simplexity.nn.blocked_attention as blocked
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
