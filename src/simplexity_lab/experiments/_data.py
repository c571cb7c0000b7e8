"""Loading a data split for an experiment through the data registry."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from simplexity_lab.engine.task import derived_seed

__all__ = ["ArraySplit", "load_split"]


@dataclass
class ArraySplit:
    """A split as tensors: ``data`` ``(N, D)``, ``labels`` ``(N,)`` or ``None``.

    ``binarize`` says the training data are probabilities to binarize afresh at each step.
    """

    data: Tensor
    labels: Tensor | None
    binarize: bool = False


def load_split(
    name: str, split: str, *, data_dir: str | None, seed: int, binarize: str = "auto"
) -> ArraySplit:
    """Load ``split`` of data set ``name`` flattened to ``(N, D)``.

    ``binarize="dynamic"`` (or ``"auto"`` for ``dynamic_mnist``): training data are binarized at
    every step (:class:`~simplexity_lab.engine.task.StepBatches`), evaluation splits once, with a
    seeded generator.
    """
    import simplexity_lab.data as data

    options = {"flatten": True} if "flatten" in data.info(name).options else {}
    loaded = data.get(name, split, data_dir=data_dir, **options)
    dynamic = binarize == "dynamic" or (binarize == "auto" and name == "dynamic_mnist")
    if isinstance(loaded, data.DynamicallyBinarized):
        loaded = loaded.probs
    x = loaded.data.reshape(len(loaded.data), -1)
    labels = loaded.labels
    if dynamic and split != "train":
        salt = ("valid", "test", "trainval").index(split)
        generator = torch.Generator().manual_seed(derived_seed(seed, 5, salt))
        x = torch.bernoulli(x, generator=generator)
    return ArraySplit(x, labels, binarize=dynamic and split == "train")


def eval_subset(num: int, size: int | None) -> slice | Tensor:
    """Indices of a fixed random subset of ``size`` of ``num`` examples (all if ``size`` is None).

    The same subset for every run and seed (generator seeded with 0), so runs stay comparable;
    random rather than the first rows because some test splits are ordered by label.
    """
    if size is None or size >= num:
        return slice(None)
    return torch.randperm(num, generator=torch.Generator().manual_seed(0))[:size].sort().values
