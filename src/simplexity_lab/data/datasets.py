r"""Data set loaders, the :class:`Split` they return, and the registry by name.

Every loader returns one split of a data set as a :class:`Split`: ``data`` (images as ``float32``
in [0, 1] of shape ``(N, 1, H, W)``, or ``(N, H·W)`` with ``flatten=True``; points ``(N, 2)`` for
the toy densities) and ``labels`` (``int64`` of shape ``(N,)``, or ``None``). A :class:`Split` is a
``torch.utils.data.Dataset`` that indexes like ``TensorDataset(data, labels)``.

=====================  ==========================================  =============================
name                   splits (sizes)                              labels
=====================  ==========================================  =============================
``mnist``              train 50,000 / valid 10,000 / test 10,000    digit 0–9
``fashion_mnist``      train 50,000 / valid 10,000 / test 10,000    class 0–9
``binarized_mnist``    train 50,000 / valid 10,000 / test 10,000    none (``labels is None``)
``dynamic_mnist``      as ``mnist``, resampled on every access      digit 0–9
``omniglot``           train 17,352 / valid 1,928 / test 13,180     character index in its file
``digits``             train 1,297 / valid 200 / test 300           digit 0–9
``toy2d:<name>``       train 50,000 / valid 10,000 / test 10,000    none
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

Parsed arrays are cached in memory per process (keyed by file path, size and modification time),
so repeated loads are fast; nothing is written to the data directory except by the downloader.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from simplexity_lab.data.amat import read_amat
from simplexity_lab.data.download import RESOURCES, ensure_files
from simplexity_lab.data.idx import read_idx
from simplexity_lab.data.omniglot import downsample, read_omniglot

__all__ = [
    "SPLITS",
    "TOY_PREFIX",
    "DatasetInfo",
    "DynamicallyBinarized",
    "Split",
    "clear_cache",
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
]

SPLITS: tuple[str, ...] = ("train", "valid", "test", "trainval")
"""The split names every data set accepts."""

TOY_PREFIX = "toy2d:"
"""Registry names ``"toy2d:<name>"`` are the 2-D toy densities of :mod:`simplexity_lab.data.toy2d`."""

PathLike = str | os.PathLike[str]


# ------------------------------------------------------------------------------ containers


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
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
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


# ---------------------------------------------------------------------------- checks, cache


def _check_split(name: str, split: object) -> str:
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, one of {SPLITS}, got {type(split).__name__}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} for {name!r}, got {split!r}")
    return split


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=16)
def _cached_idx(key: tuple[str, int, int]) -> np.ndarray:
    return _readonly(read_idx(key[0]))


@functools.lru_cache(maxsize=6)
def _cached_amat(key: tuple[str, int, int]) -> np.ndarray:
    return _readonly(read_amat(key[0]))


@functools.lru_cache(maxsize=4)
def _cached_omniglot(key: tuple[str, int, int], size: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_omniglot(key[0])
    return _readonly(downsample(images, size)), _readonly(labels)


def clear_cache() -> None:
    """Forget the arrays parsed so far in this process."""
    for cached in (_cached_idx, _cached_amat, _cached_omniglot):
        cached.cache_clear()


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


# ----------------------------------------------------------------------------------- loaders

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _load_idx_pair(
    name: str, group: str, folder: str, split: str, data_dir: PathLike | None, download: bool,
    flatten: bool,
) -> Split:  # fmt: skip
    _check_split(name, split)
    _check_bool("download", download)
    _check_bool("flatten", flatten)
    part = "test" if split == "test" else "train"
    rel = [f"{folder}/{f}" for f in _IDX_FILES[part]]
    paths = ensure_files(group, rel, data_dir, download=download, dataset=name)
    images = _cached_idx(_file_key(paths[rel[0]]))
    labels = _cached_idx(_file_key(paths[rel[1]]))
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
    _check_split(name, split)
    _check_bool("download", download)
    _check_bool("flatten", flatten)
    parts = ("train", "valid") if split == "trainval" else (split,)
    rel = [f"binarized-mnist/binarized_mnist_{p}.amat.gz" for p in parts]
    plain = {r: r.removesuffix(".gz") for r in rel}
    paths = ensure_files(name, rel, data_dir, download=download, accept_alternatives=plain)
    arrays = [_cached_amat(_file_key(paths[r])) for r in rel]
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
    _check_split(name, split)
    _check_bool("download", download)
    _check_bool("flatten", flatten)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 105:
        raise ValueError(f"size must be an int in [1, 105], got {size!r}")
    part = "evaluation" if split == "test" else "background"
    rel = f"omniglot/images_{part}.npz"
    path = ensure_files(name, [rel], data_dir, download=download)[rel]
    images, labels = _cached_omniglot(_file_key(path), size)
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
    _check_split(name, split)
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


def _toy2d_module() -> Any:
    return importlib.import_module("simplexity_lab.data.toy2d")


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
    _check_split(f"{TOY_PREFIX}{name}", split)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if num is not None and (isinstance(num, bool) or not isinstance(num, int) or num < 1):
        raise ValueError(f"num must be a positive int or None, got {num!r}")
    toy2d = _toy2d_module()
    if name not in toy2d.NAMES:
        raise ValueError(f"name must be one of {sorted(toy2d.NAMES)}, got {name!r}")
    if split == "trainval":
        parts = [load_toy2d(name, s, num=num, seed=seed).data for s in ("train", "valid")]
        return Split(torch.cat(parts), None, name=f"{TOY_PREFIX}{name}", split=split)
    state = np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(2, np.uint32)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    points = toy2d.sample(name, num or _TOY_SIZES[split], generator=generator)
    return Split(points.to(torch.float32), None, name=f"{TOY_PREFIX}{name}", split=split)


# ---------------------------------------------------------------------------------- registry


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


_REGISTRY: dict[str, DatasetInfo] = {}


def register(
    name: str, *, description: str, files: str | None = None
) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator that registers ``loader(split, **options)`` under ``name``.

    Args:
        name: the registry name (must be new and not start with ``"toy2d:"``).
        description: one line for listings.
        files: the download group of its files, if it has any.
    """
    if not isinstance(name, str) or not name or name.startswith(TOY_PREFIX) or name in _REGISTRY:
        raise ValueError(f"name must be a new non-empty name not starting with {TOY_PREFIX!r}, "
                         f"got {name!r}")  # fmt: skip
    if files is not None and files not in RESOURCES:
        raise ValueError(f"files must be one of {sorted(RESOURCES)} or None, got {files!r}")

    def decorate(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        params = inspect.signature(loader).parameters
        options = tuple(p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY)
        _REGISTRY[name] = DatasetInfo(name, loader, description, files, options)
        return loader

    return decorate


register("mnist", description="MNIST, grey levels in [0, 1]", files="mnist")(load_mnist)
register("fashion_mnist", description="Fashion-MNIST, grey levels", files="fashion_mnist")(
    load_fashion_mnist
)
register(
    "binarized_mnist",
    description="statically binarized MNIST (Larochelle & Murray), unlabelled",
    files="binarized_mnist",
)(load_binarized_mnist)
register("dynamic_mnist", description="MNIST resampled as Bernoulli on each access", files="mnist")(
    load_dynamic_mnist
)
register(
    "omniglot",
    description="Omniglot-28: background = train/valid, evaluation = test, area-averaged",
    files="omniglot",
)(load_omniglot)
register("digits", description="scikit-learn 8×8 digits (needs scikit-learn)")(load_digits)


def _toy_names() -> list[str]:
    try:
        toy2d = _toy2d_module()
    except ModuleNotFoundError as error:
        if error.name == "simplexity_lab.data.toy2d":
            return []
        raise
    return [f"{TOY_PREFIX}{n}" for n in toy2d.NAMES]


def names() -> list[str]:
    """All registry names: the data sets above, then ``"toy2d:<name>"`` for each toy density."""
    return list(_REGISTRY) + _toy_names()


def info(name: str) -> DatasetInfo:
    """The registry entry of ``name`` (toy densities included)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name.startswith(TOY_PREFIX):
        toy = name.removeprefix(TOY_PREFIX)
        return DatasetInfo(
            name,
            functools.partial(load_toy2d, toy),
            f"2-D toy density {toy!r}",
            None,
            ("num", "seed"),
        )
    if name not in _REGISTRY:
        raise ValueError(f"name must be one of {names()}, got {name!r}")
    return _REGISTRY[name]


def get(
    name: str, split: str, *, data_dir: PathLike | None = None, **options: Any
) -> Split | DynamicallyBinarized:
    """Load split ``split`` of the data set registered as ``name``.

    Args:
        name: one of :func:`names`, e.g. ``"mnist"`` or ``"toy2d:two_moons"``.
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"trainval"``.
        data_dir: the data directory (argument > ``SIMPLEXITY_DATA_DIR`` > per-user cache); data
            sets that need none ignore it.
        **options: the loader's keyword options (e.g. ``download=True``, ``flatten=True``,
            ``seed=`` for ``dynamic_mnist``, ``size=`` for ``omniglot``, ``num=`` for the toys).

    Raises:
        ValueError: unknown name or split. TypeError: an option the loader does not take.
        FileNotFoundError: files missing from the data directory (one line saying where).

    Example:
        >>> import simplexity_lab.data as data
        >>> "mnist" in data.names()
        True
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
