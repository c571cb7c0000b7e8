"""Tests of the decoding-throughput benchmark (``benchmarks/decoding.py``), its table, and greedy
decoding for a fixed number of steps (``Seq2SeqTransformer.greedy(..., stop_at_eos=False)``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from simplexity_lab.models.transformer import EOS, PAD, Seq2SeqTransformer
from simplexity_lab.report.benchmarks import decoding_table

REPO = Path(__file__).resolve().parents[1]
TINY = {"d_model": 16, "heads": 2, "layers": 1, "ff": 32, "vocab_size": 40}


@pytest.fixture(scope="module")
def decoding():
    """``benchmarks/decoding.py`` as a module (the scripts are not a package)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(
            "decoding_benchmark", REPO / "benchmarks" / "decoding.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_source_batch_is_seeded_padded_and_ends_in_eos(decoding):
    src = decoding.source_batch(8, 40)
    assert torch.equal(src, decoding.source_batch(8, 40))
    lengths = (src != PAD).sum(1)
    low, high = decoding.SOURCE_LENGTHS
    assert bool((lengths >= low).all()) and bool((lengths <= high).all())
    assert src[torch.arange(8), lengths - 1].tolist() == [EOS] * 8
    body = src[(src != PAD) & (src != EOS)]
    assert bool((body >= decoding.RESERVED).all()) and bool((body < 40).all())


def test_measure_returns_positive_throughput_per_normalizer(decoding):
    logged = []
    results = decoding.measure(
        ["softmax", "ev_softmax"], [1, 3], steps=4, repeats=2, min_time=0.0, sizes=TINY,
        log=logged.append,
    )  # fmt: skip
    assert [r["batch"] for r in results] == [1, 3] and len(logged) == 4
    for entry in results:
        assert entry["steps"] == 4 and entry["tokens_per_call"] == 4 * entry["batch"]
        assert entry["baseline"] == "softmax" and len(entry["source_lengths"]) == entry["batch"]
        for key in ("calls_per_sample", "seconds_per_call", "tokens_per_second", "ratio_to_baseline",
                    "attended", "ended"):  # fmt: skip
            assert set(entry[key]) == {"softmax", "ev_softmax"}
        for name in ("softmax", "ev_softmax"):
            assert len(entry["seconds_per_call"][name]) == 2
            assert all(t > 0 for t in entry["seconds_per_call"][name])
            assert entry["tokens_per_second"][name] > 0
            assert all(r > 0 for r in entry["ratio_to_baseline"][name])
            assert 1 <= entry["attended"][name] and 0 <= entry["ended"][name] <= 1
        assert entry["ratio_to_baseline"]["softmax"] == [1.0, 1.0]
    record = {
        "command": "python benchmarks/decoding.py --steps 4",
        "date": "2026-01-01T00:00:00Z",
        "git": {"commit": "0123456789abcdef"},
        "torch_threads": 1,
        "settings": {"baseline": "softmax"},
        "results": results,
    }
    table = decoding_table(record)
    assert table.startswith("`python benchmarks/decoding.py --steps 4` (commit `0123456789`")
    assert table.count("| ev_softmax |") == 2 and "| 1.00× |" in table


def _model(eos_bias: float) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    model = Seq2SeqTransformer(30, normalizer="ev_softmax", d_model=16, heads=2, layers=2, ff=32)
    with torch.no_grad():
        model.output.bias[EOS] = eos_bias  # +: every sentence ends at once; -: none ever does
    return model.eval()


@pytest.mark.parametrize("eos_bias", [-1e4, 0.0, 1e4])
def test_greedy_without_stopping_runs_max_len_steps_and_agrees(eos_bias):
    model = _model(eos_bias)
    src = torch.randint(3, 30, (3, 7))
    src[0, 4:] = PAD
    tokens, attended = model.greedy(src, max_len=9)
    full, full_attended = model.greedy(src, max_len=9, stop_at_eos=False)
    assert full.shape == (3, 9)
    assert torch.equal(full[:, : tokens.shape[1]], tokens)  # the same tokens, then PAD only
    assert bool((full[:, tokens.shape[1] :] == PAD).all())
    assert float(full_attended) == pytest.approx(float(attended))
    if eos_bias > 0:
        assert tokens.shape == (3, 1) and tokens[:, 0].tolist() == [EOS] * 3
    if eos_bias < 0:
        assert tokens.shape == (3, 9) and not bool((tokens == EOS).any())
        assert torch.equal(full, tokens)
