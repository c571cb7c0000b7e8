"""Dynamic binarization: a view of a grey-level :class:`~simplexity_lab.data.split.Split` that
draws new binary images at every access (Salakhutdinov and Murray, ICML 2008)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from simplexity._checks import check_int
from simplexity_lab.data.split import Split

__all__ = ["DynamicallyBinarized"]


class DynamicallyBinarized(Dataset):
    r"""Dynamic binarization: each access draws :math:`x \sim \mathrm{Bernoulli}(p)` afresh.

    ``p`` are the grey levels of a :class:`Split` (e.g. MNIST); item ``i`` is
    ``(bernoulli(p[i]), label[i])``, resampled at every access, so every epoch sees new binary
    images. The draws come from a ``torch.Generator`` seeded with ``seed``, so a run that accesses
    items in the same order is reproducible; in a ``DataLoader`` worker the generator is reseeded
    once from ``(seed, worker seed)``, so workers do not repeat each other and follow the loader's
    own seeding.

    Args:
        probs: the grey-level split whose pixels are the Bernoulli probabilities.
        seed: seed of the generator.

    Example:
        >>> probs = Split(torch.full((4, 3), 0.5), torch.arange(4), name="demo", split="train")
        >>> x, y = DynamicallyBinarized(probs, seed=0)[2]
        >>> sorted(set(x.tolist()) | {0.0, 1.0}), y.item()
        ([0.0, 1.0], 2)
    """

    def __init__(self, probs: Split, *, seed: int = 0) -> None:
        if not isinstance(probs, Split):
            raise TypeError(f"probs must be a Split, got {type(probs).__name__}")
        check_int("seed", seed)
        self.probs = probs
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self._worker_seed: int | None = None

    @property
    def labels(self) -> torch.Tensor | None:
        """The labels of the underlying split."""
        return self.probs.labels

    @property
    def name(self) -> str:
        """Registry name of the data set."""
        return self.probs.name

    @property
    def split(self) -> str:
        """Split name."""
        return self.probs.split

    def __len__(self) -> int:
        return len(self.probs)

    def _reseed_in_worker(self) -> None:
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self._worker_seed != worker.seed:
            self._worker_seed = worker.seed
            state = np.random.SeedSequence([self.seed, worker.seed]).generate_state(2, np.uint32)
            self.generator.manual_seed(int(state[0]) << 32 | int(state[1]))

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, ...]:
        self._reseed_in_worker()
        p = self.probs.data[index]
        x = torch.bernoulli(p, generator=self.generator)
        return (x,) if self.labels is None else (x, self.labels[index])

    def sample(self, generator: torch.Generator | None = None) -> Split:
        """Binarize the whole split once (e.g. a fixed binarization of a test set).

        Args:
            generator: the generator to draw from; defaults to this data set's own.
        """
        data = torch.bernoulli(self.probs.data, generator=generator or self.generator)
        return Split(data, self.labels, name=self.name, split=self.split)

    def __repr__(self) -> str:
        return f"DynamicallyBinarized({self.probs!r}, seed={self.seed})"
