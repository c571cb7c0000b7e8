"""Data sets: loaders for the real data sets, the downloader and the generated 2-D toy densities.

Load a split by name with :func:`get` (``names()`` lists them)::

    import simplexity_lab.data as data
    train = data.get("mnist", "train")  # Split: train.images (N, 1, 28, 28), train.labels (N,)

Files are read from one data directory: the ``data_dir`` argument (``--data-dir``) >
``SIMPLEXITY_DATA_DIR`` > ``$XDG_CACHE_HOME/simplexity`` (or ``~/.cache/simplexity``); see
:mod:`simplexity_lab.data.paths`. Its layout mirrors the shared data folder, so
``SIMPLEXITY_DATA_DIR=../shared/data`` works as is. Missing files raise one clear
``FileNotFoundError``; pass ``download=True`` to fetch them (:mod:`simplexity_lab.data.download`).
"""

from __future__ import annotations

from simplexity_lab.data.binarized import DynamicallyBinarized
from simplexity_lab.data.cache import clear_cache
from simplexity_lab.data.download import RESOURCES, DownloadError, Resource, download, verify_file
from simplexity_lab.data.loaders import (
    TOY_PREFIX,
    load_binarized_mnist,
    load_digits,
    load_dynamic_mnist,
    load_fashion_mnist,
    load_mnist,
    load_omniglot,
    load_toy2d,
)
from simplexity_lab.data.paths import ENV_DATA_DIR, MissingDataError, resolve_data_dir
from simplexity_lab.data.registry import DATASETS, DatasetInfo, get, info, names, register
from simplexity_lab.data.split import SPLITS, Split

__all__ = [
    "DATASETS",
    "ENV_DATA_DIR",
    "RESOURCES",
    "SPLITS",
    "TOY_PREFIX",
    "DatasetInfo",
    "DownloadError",
    "DynamicallyBinarized",
    "MissingDataError",
    "Resource",
    "Split",
    "clear_cache",
    "download",
    "get",
    "info",
    "load_binarized_mnist",
    "load_digits",
    "load_dynamic_mnist",
    "load_fashion_mnist",
    "load_mnist",
    "load_omniglot",
    "load_toy2d",
    "names",
    "register",
    "resolve_data_dir",
    "verify_file",
]
