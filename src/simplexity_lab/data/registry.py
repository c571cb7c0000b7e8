"""The registry of data sets by name, and loading a split by name (:func:`get`).

Every data set of :mod:`simplexity_lab.data.loaders` is registered here, and each 2-D toy density
as ``"toy2d:<name>"``; :data:`DATASETS` is a :class:`simplexity._registry.Registry`, so an unknown
name raises the same error as an unknown normalizer or experiment.

Example:
    >>> "mnist" in names() and "toy2d:moons" in names()
    True
    >>> info("toy2d:moons").options
    ('num', 'seed')
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from simplexity._registry import Registry
from simplexity_lab.data import loaders, toy2d
from simplexity_lab.data.binarized import DynamicallyBinarized
from simplexity_lab.data.download import RESOURCES
from simplexity_lab.data.loaders import TOY_PREFIX
from simplexity_lab.data.split import Split

__all__ = ["DATASETS", "DatasetInfo", "get", "info", "names", "register"]


@dataclass(frozen=True)
class DatasetInfo:
    """A registered data set.

    Attributes:
        name: the registry name.
        loader: ``loader(split, **options)`` returning a :class:`Split` (or a
            :class:`DynamicallyBinarized`).
        description: one line.
        files: the download group (a key of ``simplexity_lab.data.download.RESOURCES``), if any.
        options: the keyword options ``loader`` accepts.
    """

    name: str
    loader: Callable[..., Dataset]
    description: str
    files: str | None = None
    options: tuple[str, ...] = field(default=())


DATASETS: Registry[DatasetInfo] = Registry("data set")
"""Every data set by name: the real ones, then ``"toy2d:<name>"`` for each toy density."""


def register(
    name: str, *, description: str, files: str | None = None
) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator that registers ``loader(split, **options)`` under ``name``.

    Args:
        name: the registry name (new, and not starting with ``"toy2d:"``).
        description: one line for listings.
        files: the download group of its files, if it has any.
    """
    if isinstance(name, str) and name.startswith(TOY_PREFIX):
        raise ValueError(f"name must not start with {TOY_PREFIX!r}, got {name!r}")
    if files is not None and files not in RESOURCES:
        raise ValueError(f"files must be one of {sorted(RESOURCES)} or None, got {files!r}")
    if name in DATASETS:
        raise ValueError(f"a data set named {name!r} is already registered")

    def decorate(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        params = inspect.signature(loader).parameters
        options = tuple(p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY)
        DATASETS.add(name, DatasetInfo(name, loader, description, files, options))
        return loader

    return decorate


register("mnist", description="MNIST, grey levels in [0, 1]", files="mnist")(loaders.load_mnist)
register("fashion_mnist", description="Fashion-MNIST, grey levels", files="fashion_mnist")(
    loaders.load_fashion_mnist
)
register(
    "binarized_mnist",
    description="statically binarized MNIST (Larochelle & Murray), unlabelled",
    files="binarized_mnist",
)(loaders.load_binarized_mnist)
register("dynamic_mnist", description="MNIST resampled as Bernoulli on each access", files="mnist")(
    loaders.load_dynamic_mnist
)
register(
    "omniglot",
    description="Omniglot-28: background = train/valid, evaluation = test, area-averaged",
    files="omniglot",
)(loaders.load_omniglot)
register("digits", description="scikit-learn 8×8 digits (needs scikit-learn)")(loaders.load_digits)
for _toy in toy2d.NAMES:
    DATASETS.add(
        f"{TOY_PREFIX}{_toy}",
        DatasetInfo(
            f"{TOY_PREFIX}{_toy}",
            functools.partial(loaders.load_toy2d, _toy),
            f"2-D toy density {_toy!r}",
            None,
            ("num", "seed"),
        ),
    )


def names() -> list[str]:
    """All registry names: the data sets above, then ``"toy2d:<name>"`` for each toy density."""
    return DATASETS.names()


def info(name: str) -> DatasetInfo:
    """The registry entry of ``name`` (``ValueError`` naming the known ones if there is none)."""
    return DATASETS[name]


def get(
    name: str, split: str, *, data_dir: str | os.PathLike[str] | None = None, **options: Any
) -> Split | DynamicallyBinarized:
    """Load split ``split`` of the data set registered as ``name``.

    Args:
        name: one of :func:`names`, e.g. ``"mnist"`` or ``"toy2d:moons"``.
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"trainval"``.
        data_dir: the data directory (argument > ``SIMPLEXITY_DATA_DIR`` > per-user cache); data
            sets that need none ignore it.
        **options: the loader's keyword options (e.g. ``download=True``, ``flatten=True``,
            ``seed=`` for ``dynamic_mnist``, ``size=`` for ``omniglot``, ``num=`` for the toys).

    Raises:
        ValueError: unknown name or split. TypeError: an option the loader does not take.
        FileNotFoundError: files missing from the data directory (one line saying where).

    Example:
        >>> get("toy2d:moons", "test", num=5).data.shape
        torch.Size([5, 2])
    """
    entry = info(name)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise TypeError(
            f"options {unknown} are not accepted by {name!r}; "
            f"expected some of {list(entry.options)}"
        )
    if "data_dir" in entry.options:
        options["data_dir"] = data_dir
    return entry.loader(split, **options)
