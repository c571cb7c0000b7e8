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

from simplexity_lab.data.datasets import (
    SPLITS,
    TOY_PREFIX,
    DatasetInfo,
    DynamicallyBinarized,
    Split,
    clear_cache,
    get,
    info,
    load_binarized_mnist,
    load_digits,
    load_dynamic_mnist,
    load_fashion_mnist,
    load_mnist,
    load_omniglot,
    load_toy2d,
    names,
    register,
)
from simplexity_lab.data.download import RESOURCES, DownloadError, Resource, download, verify_file
from simplexity_lab.data.paths import ENV_DATA_DIR, MissingDataError, resolve_data_dir

__all__ = [
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
