"""Diagnostics of the finished translation runs: what the output layer does, beyond BLEU.

    SIMPLEXITY_DATA_DIR=../shared/data .venv/bin/python docs/results/evsoftmax/translation_diagnostics.py [RUNS_DIR [PATTERN]]

For every finished run ``RUNS_DIR/PATTERN`` (default ``runs/evsoftmax``, ``translation-*``) this loads the final
weights (``checkpoints/last.ckpt``, the weights ``metrics.json`` was computed with), recomputes the test
BLEU by greedy decoding and checks it against ``metrics.json`` (so the numbers below are of the same
model), and measures on the whole ``test_2016_flickr`` split:

- ``tf_accuracy``: teacher-forced token accuracy (argmax of the output distribution = reference token);
- ``p_reference``: mean probability of the reference token under teacher forcing;
- ``output_support``: mean number of nonzero output probabilities per position (of the vocabulary);
- ``repeats``: % of greedy hypotheses that contain some word trigram twice (degenerate loops).

Writes one ``translation_diagnostics.json`` per run into its kept folder ``runs/NAME/`` next to
this script (a run whose JSON is already there for the same ``metrics.json`` is not measured
again); ``simplexity report evsoftmax`` then writes the table ``translation-diagnostics`` from
every kept JSON (keep the runs first: ``simplexity report evsoftmax --runs runs/evsoftmax``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from simplexity_lab import experiments
from simplexity_lab.engine.lightning import load_checkpoint
from simplexity_lab.engine.runs import write_json_atomic
from simplexity_lab.experiments.translation import _encode, _trim
from simplexity_lab.models.transformer import PAD

HERE = Path(__file__).parent


def _repeats(text: str) -> bool:
    words = text.split()
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    return len(set(trigrams)) < len(trigrams)


@torch.no_grad()
def diagnose(run: Path) -> dict[str, float]:
    import sacrebleu

    record = json.loads((run / "metrics.json").read_text())
    exp = experiments.get("translation")
    task = exp.build(exp.make_config("paper", record["config"]))
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    task.load_state_dict({k.removeprefix("task."): v for k, v in state.items()})
    task.model.eval()
    src, ref = task.eval_text["test"]
    hyps, _ = task.translate(src)
    bleu = float(sacrebleu.corpus_bleu(hyps, [ref]).score)
    if abs(bleu - record["metrics"]["test/bleu"]) > 1e-6:
        raise RuntimeError(
            f"{run}: BLEU {bleu} from last.ckpt differs from metrics.json "
            f"({record['metrics']['test/bleu']}): not the same model"
        )
    max_len = task.config.max_len
    correct = total = 0
    p_ref = support = 0.0
    for start in range(0, len(src), 200):
        s = _trim(_encode(task.tokenizer, src[start : start + 200], max_len))
        t = _trim(_encode(task.tokenizer, ref[start : start + 200], max_len))
        probs = task.model.output.probs(task.model.teacher_forced(s, t))
        keep = t != PAD
        correct += int((probs.argmax(-1) == t)[keep].sum())
        total += int(keep.sum())
        p_ref += float(probs.gather(-1, t.unsqueeze(-1)).squeeze(-1)[keep].sum())
        support += float((probs > 0).sum(-1)[keep].float().sum())
    return {
        "test/bleu": bleu,
        "tf_accuracy": correct / total,
        "p_reference": p_ref / total,
        "output_support": support / total,
        "repeats": 100 * sum(map(_repeats, hyps)) / len(hyps),
        "vocabulary": task.tokenizer.get_piece_size(),
        "finished_at": record.get("finished_at"),
    }


def main(runs: Path, pattern: str = "translation-*") -> None:
    for run in sorted(runs.glob(pattern)):
        if not (run / "metrics.json").exists() or not (run / "checkpoints" / "last.ckpt").exists():
            continue
        kept = HERE / "runs" / run.name / "translation_diagnostics.json"
        finished = json.loads((run / "metrics.json").read_text()).get("finished_at")
        if kept.exists() and json.loads(kept.read_text()).get("finished_at") == finished:
            continue
        print(f"{run.name} ...", flush=True)
        result = diagnose(run)
        kept.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(kept, result)
    print("measured; the table: simplexity report evsoftmax")


if __name__ == "__main__":
    torch.set_num_threads(1)  # as the runs (--threads 1): the same greedy decoding
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/evsoftmax"), *sys.argv[2:3])
