r"""The loaders of the data sets: one function per data set, each returning one :class:`Split`.

=====================  ==========================================  =============================
loader                 splits (sizes)                              labels
=====================  ==========================================  =============================
``load_mnist``         train 50,000 / valid 10,000 / test 10,000    digit 0–9
``load_fashion_mnist`` train 50,000 / valid 10,000 / test 10,000    class 0–9
``load_binarized_mnist`` train 50,000 / valid 10,000 / test 10,000  none (``labels is None``)
``load_dynamic_mnist`` as ``mnist``, resampled on every access      digit 0–9
``load_omniglot``      train 17,352 / valid 1,928 / test 13,180     character index in its file
``load_digits``        train 1,297 / valid 200 / test 300           digit 0–9
``load_toy2d``         train 50,000 / valid 10,000 / test 10,000    none
=====================  ==========================================  =============================

Every data set also has ``"trainval"`` = train ∪ valid (the full official training set).

Splits: MNIST and Fashion-MNIST use the first 50,000 official training images as ``train`` and the
last 10,000 as ``valid`` (the split of the statically binarized MNIST of Larochelle & Murray).
Omniglot-28 uses the *background* set for training and the *evaluation* set as ``test``; ``valid``
holds drawers 19 and 20 of every background character, ``train`` drawers 1–18 (images ordered by
character, then drawer). The images are downsampled from 105×105 by area averaging with strokes as
1 (grey levels; see :mod:`simplexity_lab.data.omniglot`), not Burda et al.'s 28×28 Omniglot.
scikit-learn's digits (values 0–16, scaled by 1/16) are split by position: ``[0, 1297)``,
``[1297, 1497)``, ``[1497, 1797)``. The binarized MNIST test split is ordered by label: shuffle it.
Parsed files are cached in memory (:mod:`simplexity_lab.data.cache`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from simplexity._checks import check_int
from simplexity_lab.data import toy2d
from simplexity_lab.data.binarized import DynamicallyBinarized
from simplexity_lab.data.cache import cached_amat, cached_idx, cached_omniglot, file_key
from simplexity_lab.data.download import ensure_files
from simplexity_lab.data.split import SPLITS, Split, check_split

__all__ = [
    "TOY_PREFIX",
    "load_binarized_mnist",
    "load_digits",
    "load_dynamic_mnist",
    "load_fashion_mnist",
    "load_mnist",
    "load_omniglot",
    "load_toy2d",
]

TOY_PREFIX = "toy2d:"
"""The data-set names ``"toy2d:<name>"`` are the 2-D toy densities of :mod:`simplexity_lab.data.toy2d`."""

PathLike = str | os.PathLike[str]


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _images(array: np.ndarray, scale: float, flatten: bool) -> torch.Tensor:
    """``(N, H, W)`` numbers to ``float32`` ``(N, 1, H, W)`` (or ``(N, H·W)``) times ``scale``."""
    data = torch.from_numpy(np.asarray(array, dtype=np.float32) * np.float32(scale))
    n, h, w = data.shape
    return data.reshape(n, h * w) if flatten else data.reshape(n, 1, h, w)


def _rows(split: str, num_train: int, num_total: int) -> slice:
    return {
        "train": slice(0, num_train),
        "valid": slice(num_train, num_total),
        "trainval": slice(0, num_total),
    }[split]


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _load_idx_pair(
    name: str, group: str, folder: str, split: str, data_dir: PathLike | None, download: bool,
    flatten: bool,
) -> Split:  # fmt: skip
    check_split(name, split)
    _check_bool("download", download)
    _check_bool("flatten", flatten)
    part = "test" if split == "test" else "train"
    rel = [f"{folder}/{f}" for f in _IDX_FILES[part]]
    paths = ensure_files(group, rel, data_dir, download=download, dataset=name)
    images = cached_idx(file_key(paths[rel[0]]))
    labels = cached_idx(file_key(paths[rel[1]]))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"{name}: images {images.shape} and labels {labels.shape} do not match")
    if split != "test":
        rows = _rows(split, len(images) - 10_000, len(images))
        images, labels = images[rows], labels[rows]
    return Split(
        _images(images, 1 / 255, flatten),
        torch.from_numpy(labels.astype(np.int64)),
        name=name,
        split=split,
    )


def load_mnist(
    split: str = "train",
    *,
    data_dir: PathLike | None = None,
    download: bool = False,
    flatten: bool = False,
) -> Split:
    """MNIST (grey levels / 255): train 50,000, valid 10,000 (the last of the official train), test
    10,000.

    Args:
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"trainval"``.
        data_dir: the data directory (argument > ``SIMPLEXITY_DATA_DIR`` > per-user cache).
        download: fetch missing files (see :func:`simplexity_lab.data.download.download`).
        flatten: return ``(N, 784)`` instead of ``(N, 1, 28, 28)``.

    References:
        LeCun, Bottou, Bengio and Haffner, *Gradient-based learning applied to document
        recognition*, Proc. IEEE 1998.
    """
    return _load_idx_pair("mnist", "mnist", "mnist", split, data_dir, download, flatten)


def load_fashion_mnist(
    split: str = "train",
    *,
    data_dir: PathLike | None = None,
    download: bool = False,
    flatten: bool = False,
) -> Split:
    """Fashion-MNIST: as :func:`load_mnist`, from the ``fashion-mnist/`` folder.

    References:
        Xiao, Rasul and Vollgraf, *Fashion-MNIST: a novel image dataset for benchmarking machine
        learning algorithms*, arXiv:1708.07747, 2017.
    """
    return _load_idx_pair(
        "fashion_mnist", "fashion_mnist", "fashion-mnist", split, data_dir, download, flatten
    )


def load_binarized_mnist(
    split: str = "train",
    *,
    data_dir: PathLike | None = None,
    download: bool = False,
    flatten: bool = False,
) -> Split:
    """Statically binarized MNIST (values in {0, 1}), unlabelled; 50,000 / 10,000 / 10,000.

    Reads ``binarized-mnist/binarized_mnist_<split>.amat.gz``, or the plain ``.amat`` where only
    that is present. The test split is ordered by digit: shuffle it before use in batches.

    References:
        Larochelle and Murray, *The Neural Autoregressive Distribution Estimator*, AISTATS 2011.
    """
    name = "binarized_mnist"
    check_split(name, split)
    _check_bool("download", download)
    _check_bool("flatten", flatten)
    parts = ("train", "valid") if split == "trainval" else (split,)
    rel = [f"binarized-mnist/binarized_mnist_{p}.amat.gz" for p in parts]
    plain = {r: r.removesuffix(".gz") for r in rel}
    paths = ensure_files(name, rel, data_dir, download=download, accept_alternatives=plain)
    arrays = [cached_amat(file_key(paths[r])) for r in rel]
    array = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    return Split(_images(array.reshape(-1, 28, 28), 1.0, flatten), None, name=name, split=split)


def load_dynamic_mnist(
    split: str = "train",
    *,
    data_dir: PathLike | None = None,
    download: bool = False,
    flatten: bool = False,
    seed: int = 0,
) -> DynamicallyBinarized:
    """Dynamically binarized MNIST: MNIST's grey levels as Bernoulli probabilities, resampled.

    Same splits and labels as :func:`load_mnist`; see :class:`DynamicallyBinarized` (use its
    ``sample()`` for a fixed binarization, e.g. of the test set).

    Args:
        seed: seed of the Bernoulli draws.

    References:
        Salakhutdinov and Murray, *On the quantitative analysis of deep belief networks*,
        ICML 2008.
    """
    probs = load_mnist(split, data_dir=data_dir, download=download, flatten=flatten)
    return DynamicallyBinarized(
        Split(probs.data, probs.labels, name="dynamic_mnist", split=split), seed=seed
    )


def load_omniglot(
    split: str = "train",
    *,
    data_dir: PathLike | None = None,
    download: bool = False,
    flatten: bool = False,
    size: int = 28,
) -> Split:
    """Omniglot-28: background set = train/valid, evaluation set = test, area-averaged to 28×28.

    ``train`` holds drawers 1–18 of the 964 background characters (17,352 images), ``valid``
    drawers 19–20 (1,928), ``trainval`` all 19,280, ``test`` the 13,180 images of the 659
    evaluation characters. Strokes are 1 and background 0; downsampled pixels are grey levels
    (the stroke coverage of their 3.75×3.75 area). Labels are character indices within each file
    (0–963 background, 0–658 evaluation), so train and test labels refer to different characters.

    Args:
        size: side of the output images, in [1, 105] (105 keeps the originals).

    References:
        Lake, Salakhutdinov and Tenenbaum, *Human-level concept learning through probabilistic
        program induction*, Science 2015.
    """
    name = "omniglot"
    check_split(name, split)
    _check_bool("download", download)
    _check_bool("flatten", flatten)
    check_int("size", size, min=1, max=105)
    part = "evaluation" if split == "test" else "background"
    rel = f"omniglot/images_{part}.npz"
    path = ensure_files(name, [rel], data_dir, download=download)[rel]
    images, labels = cached_omniglot(file_key(path), size)
    if split in ("train", "valid"):
        drawers = slice(0, 18) if split == "train" else slice(18, 20)
        images, labels = images[:, drawers], labels[:, drawers]
    return Split(
        _images(images.reshape(-1, size, size), 1.0, flatten),
        torch.from_numpy(np.ascontiguousarray(labels).reshape(-1).astype(np.int64)),
        name=name,
        split=split,
    )


def load_digits(split: str = "train", *, flatten: bool = False) -> Split:
    """scikit-learn's 8×8 digits (1,797 images, values 0–16 scaled to [0, 1]); needs scikit-learn.

    Splits by position: train ``[0, 1297)``, valid ``[1297, 1497)``, test ``[1497, 1797)``.
    The data ship inside scikit-learn, so no data directory is used.

    References:
        Alpaydin and Kaynak, *Optical Recognition of Handwritten Digits*, UCI ML Repository, 1998.
    """
    name = "digits"
    check_split(name, split)
    _check_bool("flatten", flatten)
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:  # optional extra
        raise ImportError(
            "the 'digits' data set needs scikit-learn: pip install 'simplexity[train]' "
            "or pip install scikit-learn"
        ) from error
    bunch = sklearn_digits()
    images, labels = bunch.images, bunch.target
    rows = slice(1497, 1797) if split == "test" else _rows(split, 1297, 1497)
    return Split(
        _images(images[rows], 1 / 16, flatten),
        torch.from_numpy(labels[rows].astype(np.int64)),
        name=name,
        split=split,
    )


_TOY_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}


def load_toy2d(name: str, split: str = "train", *, num: int | None = None, seed: int = 0) -> Split:
    """Samples of a 2-D toy density (:mod:`simplexity_lab.data.toy2d`) as a fixed, seeded split.

    Each split is drawn with its own generator, seeded from ``(seed, split)`` (via
    ``numpy.random.SeedSequence``), so splits never share points and a seed reproduces them.

    Args:
        name: a name in ``simplexity_lab.data.toy2d.NAMES`` (without the ``"toy2d:"`` prefix).
        split: ``"train"`` (50,000 points by default), ``"valid"`` or ``"test"`` (10,000 each), or
            ``"trainval"`` (the two concatenated).
        num: number of points instead of the default.
        seed: base seed.
    """
    check_split(f"{TOY_PREFIX}{name}", split)
    check_int("seed", seed)
    if num is not None:
        check_int("num", num, min=1)
    if name not in toy2d.NAMES:
        raise ValueError(f"name must be one of {sorted(toy2d.NAMES)}, got {name!r}")
    if split == "trainval":
        parts = [load_toy2d(name, s, num=num, seed=seed).data for s in ("train", "valid")]
        return Split(torch.cat(parts), None, name=f"{TOY_PREFIX}{name}", split=split)
    state = np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(2, np.uint32)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    points = toy2d.sample(name, num or _TOY_SIZES[split], generator=generator)
    return Split(points.to(torch.float32), None, name=f"{TOY_PREFIX}{name}", split=split)
