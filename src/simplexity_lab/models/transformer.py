r"""A small encoder–decoder Transformer with one normalizer in every attention and in the output
layer (the machine-translation setup of the ev-softmax paper, Chen et al. 2021).

Pre-layer-norm blocks (Xiong et al. 2020), sinusoidal positions, embeddings shared between the
source, the target and the output layer's input space (a joint subword vocabulary), attention
from :class:`simplexity.nn.MultiheadAttention` (masks passed to the normalizer, so padded
and future positions never enter ev-softmax's mean) and the output layer from
:func:`simplexity.nn.output.output_layer`. In training mode the normalizers use their training form
(ev-softmax's ε-family); in eval mode the exact sparse maps, so greedy decoding attends to and
emits from sparse distributions. ``"posthoc_evidential"`` trains as softmax and sparsifies at test.

References:
    Vaswani et al., *Attention Is All You Need*, NeurIPS 2017. Chen et al., *Evidential Softmax
    for Sparse Multimodal Distributions in Deep Generative Models*, NeurIPS 2021.

Example:
    >>> model = Seq2SeqTransformer(20, normalizer="ev_softmax", d_model=16, heads=2, layers=1)
    >>> src, tgt = torch.randint(3, 20, (2, 5)), torch.randint(3, 20, (2, 4))
    >>> model.loss(src, tgt).shape
    torch.Size([])
    >>> tokens, attended = model.eval().greedy(src, max_len=6)
    >>> tokens.shape[0], bool(attended > 0)
    (2, True)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from simplexity.nn import KeyValueCache, MultiheadAttention
from simplexity.nn.output import output_layer
from simplexity.normalizers import names as normalizer_names

__all__ = ["BOS", "EOS", "PAD", "Seq2SeqTransformer"]

PAD, BOS, EOS = 0, 1, 2
"""Reserved token ids: padding, beginning and end of sentence."""


def _positions(length: int, dim: int, dtype: torch.dtype) -> Tensor:
    position = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return table.to(dtype)


class _Block(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, dropout: float, cross: bool, **attn) -> None:
        super().__init__()
        self.self_norm = nn.LayerNorm(d)
        self.self_attn = MultiheadAttention(d, heads, dropout=dropout, batch_first=True, **attn)
        self.cross = cross
        if cross:
            self.cross_norm = nn.LayerNorm(d)
            self.cross_attn = MultiheadAttention(
                d, heads, dropout=dropout, batch_first=True, **attn
            )
        self.ff_norm = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, padding, *, causal=False, memory=None, memory_padding=None, caches=None):
        # padding masks are torch's key_padding_mask: True at PAD tokens
        h = self.self_norm(x)
        h, _ = self.self_attn(
            h, h, h, key_padding_mask=padding, need_weights=False, is_causal=causal,
            cache=None if caches is None else caches[0],
        )  # fmt: skip
        x = x + self.drop(h)
        weights = None
        if self.cross:
            h = self.cross_norm(x)
            cache = None if caches is None else caches[1]
            filled = cache is not None and len(cache) > 0
            h, weights = self.cross_attn(
                h, None if filled else memory, None if filled else memory,
                key_padding_mask=None if filled else memory_padding,
                need_weights=True, average_attn_weights=False, cache=cache,
            )  # fmt: skip
            x = x + self.drop(h)
        return x + self.drop(self.ff(self.ff_norm(x))), weights


class Seq2SeqTransformer(nn.Module):
    """Encoder–decoder Transformer; ``normalizer`` in all attention and in the output layer.

    Args:
        vocab_size: joint source/target vocabulary (ids ``PAD, BOS, EOS`` = 0, 1, 2 reserved).
        normalizer: a name in :func:`simplexity.normalizers.names` (``"posthoc_evidential"`` too).
        output_normalizer: the output layer's normalizer, if not ``normalizer`` (for ablations:
            e.g. sparse attention with a softmax output).
        d_model, heads, layers, ff: sizes (``layers`` encoder and ``layers`` decoder blocks).
        dropout: dropout of the residual branches and the attention weights.
        max_len: longest sequence the position table covers.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        normalizer: str = "ev_softmax",
        output_normalizer: str | None = None,
        d_model: int = 256,
        heads: int = 4,
        layers: int = 3,
        ff: int = 1024,
        dropout: float = 0.1,
        max_len: int = 256,
    ) -> None:
        super().__init__()
        output_normalizer = normalizer if output_normalizer is None else output_normalizer
        for name, value in (("normalizer", normalizer), ("output_normalizer", output_normalizer)):
            if value not in normalizer_names():
                raise ValueError(
                    f"unknown {name} {value!r}; expected one of {', '.join(normalizer_names())}"
                )
        if vocab_size < 4:
            raise ValueError(f"vocab_size must be >= 4, got {vocab_size}")
        self.normalizer_name = normalizer
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.register_buffer("pos", _positions(max_len, d_model, torch.float32), persistent=False)
        blocks = {"normalizer": normalizer}
        self.encoder = nn.ModuleList(
            [_Block(d_model, heads, ff, dropout, False, **blocks) for _ in range(layers)]
        )
        self.decoder = nn.ModuleList(
            [_Block(d_model, heads, ff, dropout, True, **blocks) for _ in range(layers)]
        )
        self.enc_norm, self.dec_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.output = output_layer(output_normalizer, d_model, vocab_size)

    def _embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        if offset + tokens.shape[1] > self.pos.shape[0]:
            raise ValueError(f"sequence longer than max_len={self.pos.shape[0]}")
        x = self.embed(tokens) * math.sqrt(self.d_model)
        return self.drop(x + self.pos[offset : offset + tokens.shape[1]])

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Memory ``(B, Ls, d)`` and its key padding mask ``(B, Ls)`` (True = PAD, torch's polarity)."""
        padding = src == PAD
        x = self._embed(src)
        for block in self.encoder:
            x, _ = block(x, padding)
        return self.enc_norm(x), padding

    def decode(self, tgt_in: Tensor, memory: Tensor, memory_padding: Tensor) -> Tensor:
        """Decoder features ``(B, Lt, d)`` for the (BOS-prefixed) target, causal; ``memory_padding``
        is :meth:`encode`'s key padding mask (True = PAD)."""
        x, padding = self._embed(tgt_in), tgt_in == PAD
        for block in self.decoder:
            x, _ = block(x, padding, causal=True, memory=memory, memory_padding=memory_padding)
        return self.dec_norm(x)

    def teacher_forced(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Decoder features ``(B, Lt, d)`` predicting each token of ``tgt`` (ends with EOS, no BOS)
        from the source and the reference prefix (the decoder input is ``tgt`` shifted right
        behind BOS)."""
        memory, memory_padding = self.encode(src)
        tgt_in = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], 1)
        return self.decode(tgt_in, memory, memory_padding)

    def loss(self, src: Tensor, tgt: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Mean per-token training loss of the output normalizer; ``tgt`` ends with EOS, no BOS."""
        h = self.teacher_forced(src, tgt)
        return self.output.loss(h, tgt, ignore_index=PAD, label_smoothing=label_smoothing)

    @torch.no_grad()
    def greedy(
        self, src: Tensor, max_len: int = 64, *, stop_at_eos: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Greedy decoding with key/value caches.

        Args:
            src: source tokens ``(B, Ls)``, PAD-padded.
            max_len: the most decoding steps.
            stop_at_eos: stop as soon as every sentence has emitted EOS (the default); ``False``
                runs exactly ``max_len`` steps whatever the model emits (for timing: the work done
                then does not depend on when an untrained model happens to emit EOS). The tokens
                are the same either way, padded with PAD to ``max_len`` when not stopping early.

        Returns:
            ``(tokens, attended)``: tokens ``(B, ≤ max_len)`` (EOS then PAD after the end;
            exactly ``max_len`` columns when ``stop_at_eos`` is False) and the
            mean number of nonzero cross-attention weights per (sentence, step, layer, head)
            over the steps before each sentence's EOS.
        """
        memory, memory_padding = self.encode(src)
        batch = src.shape[0]
        caches = [(KeyValueCache(), KeyValueCache(static=True)) for _ in self.decoder]
        token = torch.full((batch, 1), BOS, dtype=torch.long, device=src.device)
        done = torch.zeros(batch, dtype=torch.bool, device=src.device)
        out, nonzero, counted = [], torch.zeros((), dtype=torch.float64), 0
        for step in range(max_len):
            x = self._embed(token, offset=step)
            alive = ~done
            for block, cache in zip(self.decoder, caches, strict=True):
                x, weights = block(
                    x, None, memory=memory, memory_padding=memory_padding, caches=cache
                )
                support = (weights[:, :, -1] > 0).sum(-1)  # (B, H)
                nonzero += support[alive].sum().double()
                counted += int(alive.sum()) * support.shape[1]
            probs = self.output.probs(self.dec_norm(x[:, -1]))
            token = probs.argmax(-1, keepdim=True).masked_fill(done.unsqueeze(1), PAD)
            out.append(token)
            done |= token.squeeze(1) == EOS
            if stop_at_eos and bool(done.all()):
                break
        return torch.cat(out, 1), nonzero / max(counted, 1)
