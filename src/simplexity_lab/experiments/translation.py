r"""``translation``: Multi30k German→English with a sparse-attention Transformer (Chen et al. 2021).

A small pre-LN Transformer (:class:`~simplexity_lab.models.transformer.Seq2SeqTransformer`) trained
from scratch with one normalizer in every self- and cross-attention and in the output layer:
``softmax``, ``posthoc_evidential`` (softmax training, evidential sparsification at test),
``sparsemax``, ``entmax15``, ``ev_softmax``. Subwords: a joint sentencepiece unigram model trained
on the training split (both languages) when the task is built. Greedy decoding with the exact
normalizers; BLEU by sacreBLEU (default 13a tokenization) on detokenized output; "# attended" =
the mean number of nonzero cross-attention weights per decoding step, layer and head;
``tokens_per_s`` = the generated tokens (each hypothesis up to and including its EOS) over the wall
time of greedy decoding (tokenization and detokenization excluded), on the run's torch threads.
``benchmarks/decoding.py`` times the same model's decoding for a fixed number of steps.

``valid/*`` uses ``eval_size`` sentences of ``val`` (BLEU every ``val_every`` steps); ``test/*``
always the whole ``test_2016_flickr`` (1,000 sentences). Needs the optional extras
``sentencepiece`` and ``sacrebleu`` (``pip install simplexity[translation]``).

Budgets: ``paper`` = 10 epochs of 29,000 pairs in batches of 64 sentences (4,540 steps) of a
3 + 3-layer Transformer with d_model 128, 4 heads, FFN 512 and a 4,000-piece vocabulary, the same
for every normalizer: what fits on two CPU cores (≈ 0.5–1 s a step on one thread). The paper
fine-tunes a Transformer-base on IWSLT'14, which is neither available nor affordable here.

Usage::

    simplexity run translation --budget smoke --set normalizer=ev_softmax
    simplexity run translation --budget paper --set normalizer=NORMALIZER --set seed=S
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from simplexity.normalizers import names as normalizer_names
from simplexity_lab.data.multi30k import load_multi30k
from simplexity_lab.engine.experiment import Experiment, register
from simplexity_lab.engine.task import StepBatches, Task, TrainConfig
from simplexity_lab.experiments._data import eval_subset
from simplexity_lab.models.transformer import EOS, PAD, Seq2SeqTransformer

__all__ = ["TranslationConfig", "TranslationTask", "build_model", "train_tokenizer"]


@dataclass(frozen=True)
class TranslationConfig(TrainConfig):
    """Config of the ``translation`` experiment (fields of :class:`TrainConfig` plus these).

    Attributes:
        normalizer: a name in :func:`simplexity.normalizers.names`.
        output_normalizer: the output layer's, if not ``normalizer`` (``None``: the same); for
            ablations that separate the attention from the output layer.
        source, target: languages (``de``, ``en``).
        vocab_size: joint sentencepiece vocabulary size.
        train_size: use only the first this many training pairs (``None``: all 29,000).
        d_model, heads, layers, ff, dropout: Transformer sizes.
        max_len: longest subword sequence kept (longer ones are truncated).
        label_smoothing: of the output loss (the same for every normalizer).
        decode_batch: sentences per greedy-decoding batch.
    """

    steps: int = 4540  # 10 epochs of 29,000 pairs in batches of 64 sentences
    batch_size: int = 64
    lr: str = "5e-4"
    grad_clip: float | None = 1.0
    val_every: int = 500
    checkpoint_every: int = 250
    eval_size: int | None = 300
    normalizer: str = "ev_softmax"
    output_normalizer: str | None = None
    source: str = "de"
    target: str = "en"
    vocab_size: int = 4000
    train_size: int | None = None
    d_model: int = 128
    heads: int = 4
    layers: int = 3
    ff: int = 512
    dropout: float = 0.1
    max_len: int = 64
    label_smoothing: float = 0.1
    decode_batch: int = 200

    minimums: ClassVar[Mapping[str, int]] = dict.fromkeys(
        ("vocab_size", "d_model", "heads", "layers", "ff", "max_len", "decode_batch", "train_size"),
        1,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("normalizer", "output_normalizer"):
            value = getattr(self, name)
            if value is not None and value not in normalizer_names():
                raise ValueError(
                    f"unknown {name} {value!r}; expected one of {', '.join(normalizer_names())}"
                )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"the translation experiment needs {module!r}: pip install 'simplexity[translation]'"
        ) from error


def train_tokenizer(sentences: list[str], vocab_size: int) -> Any:
    """A sentencepiece unigram model trained in memory on ``sentences``; ids 0-3 = pad/bos/eos/unk."""
    spm = _require("sentencepiece")
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=PAD,
        bos_id=1,
        eos_id=EOS,
        unk_id=3,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_proto=proto.getvalue())


def build_model(config: TranslationConfig, vocab_size: int) -> Seq2SeqTransformer:
    """The experiment's Transformer for ``config`` over a vocabulary of ``vocab_size`` pieces (the
    tokenizer's; positions cover a source or target of ``max_len`` pieces plus the decoding slack)."""
    return Seq2SeqTransformer(
        vocab_size,
        normalizer=config.normalizer,
        output_normalizer=config.output_normalizer,
        d_model=config.d_model,
        heads=config.heads,
        layers=config.layers,
        ff=config.ff,
        dropout=config.dropout,
        max_len=2 * config.max_len + 2,
    )


def _encode(tokenizer: Any, sentences: list[str], max_len: int) -> Tensor:
    ids = [[*row[: max_len - 1], EOS] for row in tokenizer.encode(sentences)]
    out = torch.full((len(ids), max(map(len, ids))), PAD, dtype=torch.long)
    for i, row in enumerate(ids):
        out[i, : len(row)] = torch.tensor(row)
    return out


def _trim(x: Tensor) -> Tensor:
    return x[:, : int((x != PAD).sum(1).max())]


class TranslationTask(Task):
    """Trains :class:`~simplexity_lab.models.transformer.Seq2SeqTransformer` on Multi30k."""

    monitor = "valid/bleu"
    monitor_mode = "max"

    def __init__(self, config: TranslationConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        _require("sacrebleu")
        kw = {"source": config.source, "target": config.target, "data_dir": data_dir}
        src, tgt = load_multi30k("train", **kw)
        if config.train_size is not None:
            src, tgt = src[: config.train_size], tgt[: config.train_size]
        self.tokenizer = train_tokenizer(src + tgt, config.vocab_size)
        self.train_src = _encode(self.tokenizer, src, config.max_len)
        self.train_tgt = _encode(self.tokenizer, tgt, config.max_len)
        self.eval_text = {
            "valid": load_multi30k("val", **kw),
            "test": load_multi30k("test_2016_flickr", **kw),
        }
        self.model = build_model(config, self.tokenizer.get_piece_size())

    def train_batches(self) -> StepBatches:
        return StepBatches(self.train_src, self.train_tgt, seed=self.config.seed)

    def training_loss(self, batch, step):
        src, tgt = batch
        loss = self.model.loss(_trim(src), _trim(tgt), self.config.label_smoothing)
        return loss, {"loss": loss.detach()}

    def translate(self, sentences: list[str]) -> tuple[list[str], float]:
        """Greedy translations of ``sentences`` and the mean number of attended source tokens."""
        out, attended, _, _ = self._decode(sentences)
        return out, attended

    def _decode(self, sentences: list[str]) -> tuple[list[str], float, int, float]:
        """:meth:`translate`'s translations and attended sources, the generated tokens (EOS
        included, PAD not) and the seconds spent in greedy decoding."""
        self.model.eval()
        src = _encode(self.tokenizer, sentences, self.config.max_len)
        out, attended, weight, generated, seconds = [], 0.0, 0, 0, 0.0
        for start in range(0, len(sentences), self.config.decode_batch):
            chunk = _trim(src[start : start + self.config.decode_batch])
            begin = time.perf_counter()
            tokens, mean = self.model.greedy(chunk, max_len=self.config.max_len + 10)
            seconds += time.perf_counter() - begin
            generated += int((tokens != PAD).sum())
            for row in tokens.tolist():
                row = row[: row.index(EOS)] if EOS in row else row
                out.append(self.tokenizer.decode([t for t in row if t != PAD]))
            attended += float(mean) * len(chunk)
            weight += len(chunk)
        return out, attended / max(weight, 1), generated, seconds

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        sacrebleu = _require("sacrebleu")
        src, ref = self.eval_text[split]
        if split == "valid":
            index = eval_subset(len(src), self.config.eval_size)
            index = range(len(src))[index] if isinstance(index, slice) else index.tolist()
            src, ref = [src[i] for i in index], [ref[i] for i in index]
        self.model.eval()
        s = _trim(_encode(self.tokenizer, src, self.config.max_len))
        t = _trim(_encode(self.tokenizer, ref, self.config.max_len))
        loss = self.model.loss(s, t)
        hyps, attended, generated, seconds = self._decode(src)
        return {
            f"{split}/loss": float(loss),
            f"{split}/bleu": float(sacrebleu.corpus_bleu(hyps, [ref]).score),
            f"{split}/attended": attended,
            f"{split}/tokens_per_s": generated / max(seconds, 1e-9),
        }

    def figures(self, history):
        from simplexity_lab import plots

        out = {}
        steps = [h["step"] for h in history if "valid/bleu" in h["metrics"]]
        if steps:
            bleu = [h["metrics"]["valid/bleu"] for h in history if "valid/bleu" in h["metrics"]]
            out["bleu"] = plots.curves({self.config.normalizer: (steps, bleu)}, ylabel="valid BLEU")
        out["cross_attention"] = self._attention_map()
        return out

    @torch.no_grad()
    def _attention_map(self) -> Any:
        import matplotlib.pyplot as plt

        src_text, _ = self.eval_text["test"]
        self.model.eval()
        src = _encode(self.tokenizer, src_text[:1], self.config.max_len)
        tokens, _ = self.model.greedy(src, max_len=self.config.max_len + 10)
        row = tokens[0].tolist()
        row = row[: row.index(EOS) + 1] if EOS in row else row
        memory, memory_padding = self.model.encode(src)
        tgt_in = torch.cat(
            [torch.ones(1, 1, dtype=torch.long), torch.tensor([row[:-1]], dtype=torch.long)], 1
        )
        x, tgt_padding = self.model._embed(tgt_in), tgt_in == PAD  # key_padding_mask: True = PAD
        for block in self.model.decoder:
            x, weights = block(
                x, tgt_padding, causal=True, memory=memory, memory_padding=memory_padding
            )
        w = weights[0].mean(0)  # last layer, mean over heads: (Lt, Ls)
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.imshow(w.numpy(), cmap="Greys", vmin=0, vmax=1)
        pieces = self.tokenizer.id_to_piece
        ax.set_xticks(range(src.shape[1]), [pieces(i) for i in src[0].tolist()], rotation=90)
        ax.set_yticks(range(len(row)), [pieces(i) for i in row])
        ax.set_title(f"{self.config.normalizer}: last-layer cross-attention (head mean)")
        fig.tight_layout()
        return fig

    def summary(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.get_piece_size(), "train_pairs": len(self.train_src)}


EXPERIMENT = register(
    Experiment(
        name="translation",
        description="Multi30k de→en Transformer, normalizer in attention and output; --set normalizer=",
        config_class=TranslationConfig,
        task_class=TranslationTask,
        budgets={
            "smoke": TrainConfig.smoke(
                6,
                log_every=3,
                eval_size=8,
                train_size=300,
                vocab_size=200,
                d_model=16,
                heads=2,
                layers=1,
                ff=32,
                max_len=24,
                batch_size=16,
            ),
            # every normalizer alike when 10 epochs do not fit: 3 epochs (1,362 steps)
            "short": {"steps": 1362, "val_every": 454},
            "paper": {},
        },
        paper_command="simplexity run translation --budget paper --set normalizer=NORMALIZER --set seed=S",
    )
)
