"""One split of a data set: the :class:`Split` container every loader returns, and the split names.

A :class:`Split` holds ``data`` (images as ``float32`` in [0, 1] of shape ``(N, 1, H, W)``, or
``(N, H·W)`` with ``flatten=True``; points ``(N, 2)`` for the toy densities) and ``labels``
(``int64`` of shape ``(N,)``, or ``None``). It is a ``torch.utils.data.Dataset`` that indexes like
``TensorDataset(data, labels)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["SPLITS", "Split", "check_split"]

SPLITS: tuple[str, ...] = ("train", "valid", "test", "trainval")
"""The split names every data set accepts (``"trainval"`` = train ∪ valid)."""


def check_split(name: str, split: object) -> str:
    """Return ``split`` if it is one of :data:`SPLITS`, else raise naming the data set ``name``."""
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, one of {SPLITS}, got {type(split).__name__}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} for {name!r}, got {split!r}")
    return split


@dataclass(frozen=True, eq=False, repr=False)
class Split(Dataset):
    """One split of a data set: a ``TensorDataset``-like pair of tensors.

    Attributes:
        data: ``float32`` inputs; images in [0, 1] of shape ``(N, 1, H, W)`` or ``(N, H·W)``.
        labels: ``int64`` of shape ``(N,)``, or ``None`` for unlabelled data.
        name: the registry name of the data set.
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"trainval"``.

    Example:
        >>> s = Split(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 2]), name="demo", split="test")
        >>> len(s), s[1][1].item(), s.images.shape
        (3, 1, torch.Size([3, 1, 2, 2]))
    """

    data: torch.Tensor
    labels: torch.Tensor | None = None
    name: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.data, torch.Tensor):
            raise TypeError(f"data must be a torch.Tensor, got {type(self.data).__name__}")
        if self.labels is not None:
            if not isinstance(self.labels, torch.Tensor) or self.labels.shape != (len(self.data),):
                raise ValueError(f"labels must be a tensor of shape ({len(self.data)},) or None")

    @property
    def images(self) -> torch.Tensor:
        """Alias of :attr:`data` for the image data sets."""
        return self.data

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """``(data, labels)``, or ``(data,)`` without labels (as ``TensorDataset.tensors``)."""
        return (self.data,) if self.labels is None else (self.data, self.labels)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __repr__(self) -> str:
        labels = "None" if self.labels is None else f"{tuple(self.labels.shape)}"
        return (
            f"Split(name={self.name!r}, split={self.split!r}, data={tuple(self.data.shape)} "
            f"{self.data.dtype}, labels={labels})"
        )
