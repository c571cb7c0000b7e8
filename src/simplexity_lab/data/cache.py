"""The in-process cache of parsed data files: each file is parsed once while it is unchanged.

Arrays are cached per process, keyed by the file's path, size and modification time
(:func:`file_key`), and returned read-only; nothing is written to the data directory.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from simplexity_lab.data.amat import read_amat
from simplexity_lab.data.idx import read_idx
from simplexity_lab.data.omniglot import downsample, read_omniglot

__all__ = ["cached_amat", "cached_idx", "cached_omniglot", "clear_cache", "file_key"]


def file_key(path: Path) -> tuple[str, int, int]:
    """What identifies a file's contents here: its path, size and modification time."""
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=16)
def cached_idx(key: tuple[str, int, int]) -> np.ndarray:
    """The array of an IDX file (MNIST's format), parsed once per :func:`file_key`."""
    return _readonly(read_idx(key[0]))


@functools.lru_cache(maxsize=6)
def cached_amat(key: tuple[str, int, int]) -> np.ndarray:
    """The array of a ``.amat`` file (binarized MNIST), parsed once per :func:`file_key`."""
    return _readonly(read_amat(key[0]))


@functools.lru_cache(maxsize=4)
def cached_omniglot(key: tuple[str, int, int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Omniglot's images downsampled to ``size`` and labels, parsed once per :func:`file_key`."""
    images, labels = read_omniglot(key[0])
    return _readonly(downsample(images, size)), _readonly(labels)


def clear_cache() -> None:
    """Forget the arrays parsed so far in this process."""
    for cached in (cached_idx, cached_amat, cached_omniglot):
        cached.cache_clear()
