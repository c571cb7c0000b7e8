"""The ev-softmax paper experiments: ``cvae`` (metrics over iterations) and ``ssvae`` (M2)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from simplexity_lab import experiments
from simplexity_lab.cli import main
from simplexity_lab.experiments.ssvae import labelled_indices
from simplexity_lab.models.ssvae import SemiSupervisedVAE, methods


def _nearly_deterministic(model: SemiSupervisedVAE) -> None:
    # log std of q(z | x, y) pinned at the clamp (-10): z = mean up to ~5e-5
    last = model.encoder[-1]
    with torch.no_grad():
        last.weight[model.latent_dim :].zero_()
        last.bias[model.latent_dim :].fill_(-10.0)


@pytest.mark.parametrize("method", ["softmax", "sparsemax", "entmax15", "ev_softmax"])
def test_ssvae_exact_marginalization_is_the_sum_over_the_support(method):
    torch.manual_seed(0)
    model = SemiSupervisedVAE(12, method=method, hidden=16)
    _nearly_deterministic(model)
    with torch.no_grad():  # spread logits so the sparse maps drop classes
        model.classifier[-1].weight.mul_(30.0)
    x = torch.rand(5, 12)
    with torch.no_grad():
        loss, logs = model.unlabelled_loss(x)
        q = model.class_probs(x)
        brute = torch.zeros(5)
        for y in range(10):
            f = model._f(x, torch.nn.functional.one_hot(torch.full((5,), y), 10).float())
            brute += q[:, y] * f
    kl = (torch.where(q > 0, q * q.clamp_min(1e-30).log(), 0.0)).sum(-1) + math.log(10)
    assert float(loss) == pytest.approx(float((brute + kl).mean()), rel=1e-4)
    assert float(logs["decoder_calls"]) == pytest.approx(float((q > 0).sum(-1).float().mean()))
    if method == "softmax":
        assert float(logs["decoder_calls"]) == 10
    else:
        assert float(logs["decoder_calls"]) < 10


@pytest.mark.parametrize("method", methods())
def test_ssvae_losses_backpropagate_to_the_classifier(method):
    torch.manual_seed(1)
    model = SemiSupervisedVAE(12, method=method, hidden=16)
    x, y = torch.rand(6, 12), torch.arange(6)
    loss = model.unlabelled_loss(x)[0] + model.labelled_loss(x, y, alpha=1.0)[0]
    loss.backward()
    assert torch.isfinite(loss)
    assert model.classifier[0].weight.grad.abs().sum() > 0
    if method in ("gumbel", "st_gumbel"):
        assert float(model.unlabelled_loss(x)[1]["decoder_calls"]) == 1


def test_ssvae_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown method"):
        SemiSupervisedVAE(4, method="nope")
    with pytest.raises(ValueError, match="temperature"):
        SemiSupervisedVAE(4, method="gumbel", temperature=0.0)
    exp = experiments.get("ssvae")
    for bad, words in (
        (["method=nope"], "unknown method"),
        (["labelled_fraction=1.5"], "labelled_fraction"),
        (["alpha=-1"], "alpha"),
        (["warm_start_steps=-1"], "warm_start_steps"),
    ):
        with pytest.raises(ValueError, match=words):
            exp.make_config("smoke", bad)


def test_labelled_indices_are_a_fixed_fraction():
    a, b = labelled_indices(1000, 0.1, seed=3), labelled_indices(1000, 0.1, seed=3)
    assert torch.equal(a, b) and len(a) == 100 and len(a.unique()) == 100
    assert not torch.equal(a, labelled_indices(1000, 0.1, seed=4))


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


def test_ssvae_smoke_budget_runs(tmp_path):
    base = ["run", "ssvae", "--out", str(tmp_path), "--no-progress", "--set", "dataset=digits"]
    for method in ("sparsemax", "st_gumbel"):
        assert main([*base, "--set", f"method={method}", "--name", method]) == 0
    sparse, mc = _metrics(tmp_path / "sparsemax"), _metrics(tmp_path / "st_gumbel")
    assert 1 <= sparse["test/decoder_calls"] <= 10 and mc["test/decoder_calls"] == 1
    assert 0 <= sparse["test/accuracy"] <= 1
    assert (tmp_path / "sparsemax" / "plots" / "accuracy.png").exists()


def test_cvae_smoke_records_the_metrics_over_iterations(tmp_path):
    args = ["run", "cvae", "--out", str(tmp_path), "--no-progress", "--name", "c",
            "--set", "dataset=digits", "--set", "normalizer=ev_softmax"]  # fmt: skip
    assert main(args) == 0
    history = [
        json.loads(line) for line in (tmp_path / "c" / "history.jsonl").read_text().splitlines()
    ]
    evaluations = [h for h in history if "valid/tv" in h["metrics"]]
    assert len(evaluations) >= 2  # smoke: every 10 of 20 steps
    for key in ("tv", "w1", "paper_w1", "prior_support", "digits_kept", "posterior_support"):
        assert all(f"valid/{key}" in h["metrics"] for h in evaluations), key
    assert 1 <= evaluations[-1]["metrics"]["valid/posterior_support"] <= 10
    assert (tmp_path / "c" / "plots" / "distance.png").exists()


def test_cvae_reference_budget_is_the_reference_codes_beta():
    config = experiments.get("cvae").make_config("reference")
    assert float(config.beta) == pytest.approx(0.01 / 64)
    assert experiments.get("cvae").make_config("paper").beta == "1.0"


# ---------------------------------------------------------------------------------------------
# translation (a fake Multi30k in tmp_path: the real one is not needed to test the pipeline)

_DE = ["ein mann fährt rad", "zwei hunde spielen im schnee", "eine frau liest ein buch",
       "kinder laufen am strand", "ein hund springt über einen zaun"]  # fmt: skip
_EN = ["a man rides a bike", "two dogs play in the snow", "a woman reads a book",
       "children run on the beach", "a dog jumps over a fence"]  # fmt: skip


def _fake_multi30k(root, copies=12):
    import gzip

    folder = root / "multi30k"
    folder.mkdir(parents=True)
    for split, n in (("train", copies), ("val", 2), ("test_2016_flickr", 2)):
        for lang, lines in (("de", _DE), ("en", _EN)):
            with gzip.open(folder / f"{split}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.write("\n".join(lines * n) + "\n")
    return root


def test_multi30k_loader_and_its_errors(tmp_path):
    from simplexity_lab.data.multi30k import load_multi30k
    from simplexity_lab.data.paths import MissingDataError

    root = _fake_multi30k(tmp_path)
    de, en = load_multi30k("val", data_dir=root)
    assert len(de) == len(en) == 10 and de[1] == _DE[1] and en[1] == _EN[1]
    en2, de2 = load_multi30k("val", source="en", target="de", data_dir=root)
    assert (en2, de2) == (en, de)
    with pytest.raises(ValueError, match="unknown Multi30k split"):
        load_multi30k("nope", data_dir=root)
    with pytest.raises(ValueError, match="must differ"):
        load_multi30k("val", source="en", target="en", data_dir=root)
    with pytest.raises(MissingDataError):
        load_multi30k("val", data_dir=tmp_path / "empty")


@pytest.mark.parametrize("normalizer", ["softmax", "posthoc_evidential", "sparsemax", "ev_softmax"])
def test_greedy_decoding_with_caches_equals_the_full_causal_pass(normalizer):
    from simplexity_lab.models.transformer import BOS, EOS, Seq2SeqTransformer

    torch.manual_seed(2)
    model = Seq2SeqTransformer(30, normalizer=normalizer, d_model=16, heads=2, layers=2, ff=32)
    src = torch.randint(3, 30, (3, 7))
    src[0, 4:] = 0  # padding
    model.loss(src, torch.randint(3, 30, (3, 5)))  # training mode: posthoc tracks its means
    model.eval()
    tokens, attended = model.greedy(src, max_len=6)
    memory, memory_padding = model.encode(src)
    assert memory_padding.tolist()[0] == [False] * 4 + [True] * 3  # torch's polarity: True = PAD
    tgt_in = torch.cat([torch.full((3, 1), BOS), tokens[:, :-1]], 1)
    full = model.output.probs(model.decode(tgt_in, memory, memory_padding)).argmax(-1)
    steps = []
    for row, ref in zip(tokens.tolist(), full.tolist(), strict=True):
        end = row.index(EOS) + 1 if EOS in row else len(row)
        assert row[:end] == ref[:end]
        steps.append(end)
    # dense: every real source token (4 for the padded sentence), weighted by decoding steps
    dense = sum(n * k for n, k in zip(steps, (4, 7, 7), strict=True)) / sum(steps)
    if normalizer in ("softmax", "posthoc_evidential"):  # posthoc keeps a superset of ev-softmax
        assert 1 <= float(attended) <= dense + 1e-9
        if normalizer == "softmax":
            assert float(attended) == pytest.approx(dense)
    else:
        assert 1 <= float(attended) < dense


def test_translation_output_normalizer_separates_the_output_layer_from_attention():
    from simplexity.nn import MultiheadAttention
    from simplexity_lab.models.transformer import Seq2SeqTransformer

    model = Seq2SeqTransformer(30, normalizer="sparsemax", output_normalizer="softmax",
                               d_model=8, heads=2, layers=1, ff=16)  # fmt: skip
    assert model.output.normalizer.name == "softmax"
    attention = [m for m in model.modules() if isinstance(m, MultiheadAttention)]
    assert attention and all(m.normalizer.name == "sparsemax" for m in attention)
    assert Seq2SeqTransformer(30, normalizer="entmax15", d_model=8, heads=2, layers=1,
                              ff=16).output.normalizer.name == "entmax15"  # fmt: skip
    with pytest.raises(ValueError, match="unknown output_normalizer 'nope'"):
        Seq2SeqTransformer(30, normalizer="softmax", output_normalizer="nope")
    with pytest.raises(ValueError, match="unknown output_normalizer"):
        experiments.get("translation").make_config("smoke", ["output_normalizer=nope"])


def test_translation_smoke_budget_runs(tmp_path):
    pytest.importorskip("sentencepiece")
    pytest.importorskip("sacrebleu")
    root = _fake_multi30k(tmp_path / "data")
    args = ["run", "translation", "--out", str(tmp_path), "--no-progress", "--data-dir", str(root),
            "--set", "vocab_size=60", "--set", "max_len=12", "--name", "t"]  # fmt: skip
    for normalizer in ("ev_softmax", "posthoc_evidential"):
        assert main([*args, "--set", f"normalizer={normalizer}", "--overwrite"]) == 0
        metrics = _metrics(tmp_path / "t")
        assert 0 <= metrics["test/bleu"] <= 100 and 1 <= metrics["test/attended"] <= 12
        assert metrics["test/tokens_per_s"] > 0 and metrics["valid/tokens_per_s"] > 0
    assert (tmp_path / "t" / "plots" / "cross_attention.png").exists()
    with pytest.raises(ValueError, match="unknown normalizer"):
        experiments.get("translation").make_config("smoke", ["normalizer=nope"])


# ---------------------------------------------------------------------------------------------
# vqvae: the PixelCNN prior is autoregressive, the VQ-VAE trains, the smoke budget runs


def test_gated_pixelcnn_is_causal_in_raster_order():
    from simplexity_lab.models.pixelcnn import GatedPixelCNN

    torch.manual_seed(0)
    prior = GatedPixelCNN(8, hidden=8, layers=3, kernel=3, normalizer="softmax")
    codes, labels = torch.randint(8, (1, 5, 5)), torch.tensor([1])
    x = prior.embed(codes).permute(0, 3, 1, 2).detach().requires_grad_()
    v, h = x, x
    for layer in prior.layers:
        v, h = layer(v, h, labels)
    out = prior.head(h)
    seen_before = 0
    for i in range(5):
        for j in range(5):
            (grad,) = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=True)
            depends = grad.abs().sum(1)[0] > 0
            before = torch.tensor(
                [[a < i or (a == i and b < j) for b in range(5)] for a in range(5)]
            )
            assert not (depends & ~before).any(), (i, j)
            seen_before += int(depends.sum())
    assert seen_before > 100  # it does look at the past (no dead network)


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax", "ev_softmax"])
def test_pixelcnn_samples_with_the_exact_normalizer(normalizer):
    from simplexity_lab.models.pixelcnn import GatedPixelCNN

    torch.manual_seed(0)
    prior = GatedPixelCNN(12, hidden=8, layers=2, normalizer=normalizer)
    with torch.no_grad():
        prior.head[-1].weight.mul_(50.0)  # peaked logits: the sparse maps drop codes
    labels = torch.tensor([0, 5, 9])
    codes, nonzero = prior.sample(labels, (4, 4), generator=torch.Generator().manual_seed(0))
    assert codes.shape == (3, 4, 4) and codes.min() >= 0 and codes.max() < 12
    if normalizer == "softmax":
        assert float(nonzero) == 12
    else:
        assert 1 <= float(nonzero) < 12
    loss = prior.loss(torch.randint(12, (3, 4, 4)), labels)  # not its own (likely) samples
    loss.backward()
    assert torch.isfinite(loss) and prior.embed.weight.grad.abs().sum() > 0


def test_vqvae_straight_through_trains_the_encoder_and_codebook():
    from simplexity_lab.models.vqvae import VQVAE

    torch.manual_seed(0)
    vq = VQVAE(num_codes=8, code_dim=4, hidden=8)
    loss, _ = vq.loss(torch.rand(3, 1, 28, 28))
    loss.backward()
    assert vq.encoder[0].weight.grad.abs().sum() > 0
    assert vq.codebook.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="num_codes"):
        VQVAE(num_codes=1)


def _real_mnist():
    import os
    from pathlib import Path

    root = Path(
        os.environ.get("SIMPLEXITY_DATA_DIR") or Path(__file__).parents[2] / "shared" / "data"
    )
    return root if (root / "mnist").is_dir() else None


@pytest.mark.skipif(_real_mnist() is None, reason="needs SIMPLEXITY_DATA_DIR with mnist")
def test_vqvae_smoke_budget_runs(tmp_path):
    args = ["run", "vqvae", "--out", str(tmp_path), "--no-progress", "--name", "v",
            "--data-dir", str(_real_mnist()), "--set", "normalizer=sparsemax"]  # fmt: skip
    assert main(args) == 0
    metrics = _metrics(tmp_path / "v")
    assert 1 <= metrics["test/nonzero"] <= 16  # smoke: 16 codes
    assert metrics["test/accuracy_top1"] <= metrics["test/accuracy_topk"] <= 1
    assert (tmp_path / "v" / "plots" / "samples.png").exists()
    with pytest.raises(ValueError, match="dataset must be"):
        experiments.get("vqvae").make_config("smoke", ["dataset=digits"])
