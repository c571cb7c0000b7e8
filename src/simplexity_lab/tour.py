"""A short tour of the normalizers: what each one keeps of a multimodal set of logits.

Run with ``simplexity demo`` (or ``python -m simplexity_lab.tour``); prints markdown tables.
"""

from __future__ import annotations

import torch

from simplexity import normalizers

__all__ = ["normalizer_tour"]

TOUR_NAMES = ("softmax", "sparsemax", "entmax15", "ev_softmax")


def _row(values: torch.Tensor) -> str:
    return " ".join(f"{v:.2f}" for v in values.tolist())


def normalizer_tour(seed: int = 0) -> str:
    """Return the tour as markdown: a bimodal example, support sizes, and the padding defect."""
    out: list[str] = []
    bimodal = torch.tensor([3.0, 1.8, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3, -0.4, -0.5])
    out += [
        "### A bimodal set of logits (two modes 1.2 apart, eight weak classes)",
        "",
        f"logits: `{_row(bimodal)}`",
        "",
        "| normalizer | probabilities | nonzero | mass on the two modes |",
        "|---|---|---|---|",
    ]
    for name in TOUR_NAMES:
        p = normalizers.get(name)(bimodal)
        out.append(f"| {name} | `{_row(p)}` | {int((p > 0).sum())} | {float(p[:2].sum()):.3f} |")

    g = torch.Generator().manual_seed(seed)
    out += [
        "",
        "### Mean number of nonzero probabilities on random logits (standard normal, 256 rows)",
        "",
        "| K | " + " | ".join(TOUR_NAMES) + " |",
        "|---|" + "---|" * len(TOUR_NAMES),
    ]
    for k in (10, 100, 1000):
        x = torch.randn(256, k, generator=g)
        cells = [
            f"{float((normalizers.get(n)(x) > 0).sum(-1).double().mean()):.1f}" for n in TOUR_NAMES
        ]
        out.append(f"| {k} | " + " | ".join(cells) + " |")

    x = torch.tensor([2.0, 1.0, 0.5, 0.1, -1.0, -1e18])
    mask = torch.tensor([True] * 5 + [False])
    ref = torch.softmax(x, -1) * (x >= x.mean())
    ref = ref / ref.sum()
    out += [
        "",
        "### Padding: logits `2 1 .5 .1 -1` plus one pad filled with -1e18",
        "",
        "| implementation | probabilities |",
        "|---|---|",
        f"| reference algorithm (mean over the pad too) | `{_row(ref)}` |",
        f"| simplexity `ev_softmax(x, mask=mask)` | `{_row(normalizers.ev_softmax(x, mask=mask))}` |",
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(normalizer_tour())
