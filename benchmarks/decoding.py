"""Decoding throughput of the translation Transformer per normalizer: greedy tokens per second.

Usage:
    nice -n 0 python benchmarks/decoding.py [--normalizers softmax sparsemax entmax15 ev_softmax
        posthoc_evidential] [--batch-sizes 1 64] [--steps 30] [--repeats 7] [--min-time 0.5]
        [--threads 1] [--out docs/benchmarks/decoding.json]

The model is the ``translation`` experiment's (``build_model`` of
:mod:`simplexity_lab.experiments.translation`) with the sizes of its ``paper`` budget (d_model 128,
4 heads, 3 + 3 layers, FFN 512, a vocabulary of 4,000 pieces), one per normalizer (in every
attention and in the output layer), each initialized from the same seed and untrained, in eval mode
(the exact sparse maps, as when the experiment decodes). No data is read: the source batch is drawn
from a seeded generator, sentences of 20 to 30 pieces (the last one EOS, PAD after it) with ids
uniform over the non-reserved vocabulary, like tokenized Multi30k German sentences.

One call is ``model.greedy(src, max_len=steps, stop_at_eos=False)``: exactly ``steps`` decoding
steps with the key/value caches of :mod:`simplexity.nn`, whatever the untrained model emits, so the
work timed is the same for every normalizer. Throughput is ``batch × steps`` generated target tokens
(every row of every step, including rows past their EOS, which greedy decoding computes too) over the
seconds of the call, encoder included. The normalizers are timed in interleaved rounds
(:func:`_timing.interleaved`: a warm-up call each, then every round calls each normalizer in turn, a
call shorter than ``--min-time`` repeated to fill it), so the machine's load hits all alike; the
record keeps every round's seconds per call. ``simplexity report benchmarks`` tabulates tokens per
second of the median round and, per round, the throughput over softmax's in the same round.
The experiment's own runs report ``{split}/tokens_per_s`` of their real decoding (stopping at EOS).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import RECORDS, interleaved, start_record, write_record
from simplexity_lab import experiments
from simplexity_lab.experiments.translation import build_model
from simplexity_lab.models.transformer import EOS, PAD, Seq2SeqTransformer

BASELINE = "softmax"
NORMALIZERS = ("softmax", "sparsemax", "entmax15", "ev_softmax", "posthoc_evidential")
"""The translation experiment's normalizers (the default)."""
SOURCE_LENGTHS = (20, 30)
"""Shortest and longest source sentence, in pieces (EOS included)."""
RESERVED = 4
"""Ids below this are PAD, BOS, EOS and the tokenizer's unknown piece."""
SEED = 0


def source_batch(batch: int, vocab_size: int, *, seed: int = SEED) -> torch.Tensor:
    """``batch`` source sentences (B, longest) of random pieces, each ending in EOS, PAD-padded."""
    g = torch.Generator().manual_seed(seed)
    low, high = SOURCE_LENGTHS
    lengths = torch.randint(low, high + 1, (batch,), generator=g)
    src = torch.randint(RESERVED, vocab_size, (batch, int(lengths.max())), generator=g)
    src[torch.arange(batch), lengths - 1] = EOS
    src[torch.arange(src.shape[1]) >= lengths.unsqueeze(1)] = PAD
    return src


def translation_model(normalizer: str, sizes: dict[str, Any] | None = None) -> Seq2SeqTransformer:
    """The experiment's model with ``normalizer`` (``paper`` sizes, or these overrides), seeded."""
    config = experiments.get("translation").make_config(
        "paper", {**(sizes or {}), "normalizer": normalizer}
    )
    torch.manual_seed(SEED)
    return build_model(config, config.vocab_size).eval()


def _decode_call(model: Seq2SeqTransformer, src: torch.Tensor, steps: int) -> Callable[[], object]:
    """One timed call: exactly ``steps`` greedy decoding steps of ``src``."""
    return lambda: model.greedy(src, max_len=steps, stop_at_eos=False)


def measure(
    normalizers: Sequence[str],
    batch_sizes: Sequence[int],
    *,
    steps: int,
    repeats: int,
    min_time: float = 0.5,
    sizes: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Time greedy decoding of every normalizer's model, for every batch size.

    Returns one entry per batch size: ``batch``, ``steps``, ``tokens_per_call`` (batch × steps),
    ``source_lengths``, ``baseline``, ``calls_per_sample``, ``seconds_per_call`` (every round's
    seconds per call, per normalizer), the derived ``tokens_per_second`` of the median round and
    ``ratio_to_baseline`` (per round: throughput over the baseline's), and from the warm-up call
    ``attended`` (mean nonzero cross-attention weights per sentence, step, layer and head) and
    ``ended`` (fraction of sentences that emitted EOS within the steps).
    """
    models = {name: translation_model(name, sizes) for name in normalizers}
    vocab = next(iter(models.values())).output.out_features
    results = []
    for batch in batch_sizes:
        src = source_batch(batch, vocab)
        attended, ended = {}, {}
        for name, model in models.items():  # the warm-up call, and what the model emits
            tokens, mean = model.greedy(src, max_len=steps, stop_at_eos=False)
            assert tokens.shape == (batch, steps), tokens.shape
            attended[name] = float(mean)
            ended[name] = float((tokens == EOS).any(1).double().mean())

        numbers, samples = interleaved(
            {name: _decode_call(model, src, steps) for name, model in models.items()},
            repeats=repeats,
            min_time=min_time,
        )
        tokens = batch * steps
        per_second = {name: tokens / statistics.median(s) for name, s in samples.items()}
        ratios = {
            name: [b / t for t, b in zip(s, samples[BASELINE], strict=True)]
            for name, s in samples.items()
        }
        for name in normalizers:
            log(
                f"batch {batch}: {name}: {per_second[name]:.0f} tokens/s, "
                f"{statistics.median(ratios[name]):.2f}x {BASELINE} (median round)"
            )
        results.append(
            {
                "batch": batch,
                "steps": steps,
                "tokens_per_call": tokens,
                "source_lengths": (src != PAD).sum(1).tolist(),
                "baseline": BASELINE,
                "calls_per_sample": numbers,
                "seconds_per_call": samples,
                "tokens_per_second": per_second,
                "ratio_to_baseline": ratios,
                "attended": attended,
                "ended": ended,
            }
        )
    return results


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normalizers", nargs="+", default=list(NORMALIZERS),
                        help=f"(default: {' '.join(NORMALIZERS)}; {BASELINE} is always timed)")  # fmt: skip
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--steps", type=int, default=30, help="decoding steps per call")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="a shorter call is repeated to last about this long (seconds)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RECORDS / "decoding.json",
                        help="the JSON record (default docs/benchmarks/decoding.json)")  # fmt: skip
    args = parser.parse_args(argv)
    if any(b < 1 for b in args.batch_sizes) or args.steps < 1 or args.repeats < 1:
        parser.error("--batch-sizes, --steps and --repeats must be positive")
    normalizers = list(dict.fromkeys([BASELINE, *args.normalizers]))
    torch.set_num_threads(args.threads)
    config = experiments.get("translation").make_config("paper", {})
    sizes = {k: getattr(config, k) for k in ("d_model", "heads", "layers", "ff", "vocab_size")}
    record = start_record("decoding", {**vars(args), "normalizers": normalizers,
                                       "baseline": BASELINE, "model": sizes, "budget": "paper",
                                       "source_lengths": list(SOURCE_LENGTHS), "seed": SEED,
                                       "dtype": "float32"})  # fmt: skip
    results = measure(
        normalizers,
        args.batch_sizes,
        steps=args.steps,
        repeats=args.repeats,
        min_time=args.min_time,
    )
    return write_record(record, results, args.out)


if __name__ == "__main__":
    main()
