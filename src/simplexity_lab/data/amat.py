"""Reader for the ``.amat`` text format of statically binarized MNIST (Larochelle & Murray).

Each line is one image: 784 space-separated ``0``/``1`` values (28×28, row-major). The shared data
folder stores the files gzipped (``.amat.gz``, whose decompressed bytes are identical to the
originals); both the plain and the gzipped form are read.

References:
    Larochelle and Murray, *The Neural Autoregressive Distribution Estimator*, AISTATS 2011.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["parse_amat", "read_amat"]

# Byte classes: 0 = whitespace, 1 = a 0/1 digit, 2 = anything else.
_KIND = np.full(256, 2, dtype=np.uint8)
_KIND[[ord(" "), ord("\t"), ord("\n"), ord("\r")]] = 0
_KIND[[ord("0"), ord("1")]] = 1


def _parse_regular(raw: np.ndarray, num_features: int) -> np.ndarray | None:
    """Fast path for the official layout: ``"v v ... v\\n"``, one separator after each value."""
    line = 2 * num_features
    if raw.size == 0 or raw.size % line:
        return None
    rows = raw.reshape(-1, line)
    values = rows[:, 0::2] - np.uint8(ord("0"))  # uint8 wraps, so bytes below "0" become large
    seps = rows[:, 1::2]
    if np.any(values > 1) or np.any(seps[:, :-1] != ord(" ")) or np.any(seps[:, -1] != ord("\n")):
        return None
    return values


def parse_amat(data: bytes, *, num_features: int = 784, source: str = "<bytes>") -> np.ndarray:
    """Parse binary ``.amat`` text (one row a line, whitespace-separated ``0``/``1`` values).

    Args:
        data: the (uncompressed) file's bytes.
        num_features: the number of values on each line.
        source: a name for error messages.

    Returns:
        A ``uint8`` array of shape ``(num_lines, num_features)`` with values in {0, 1}.

    Raises:
        ValueError: if a value is not ``0``/``1`` or a line has the wrong number of values.

    Example:
        >>> parse_amat(b"0 1 1\\n1 0 0\\n", num_features=3).tolist()
        [[0, 1, 1], [1, 0, 0]]
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    fast = _parse_regular(raw, num_features)
    if fast is not None:
        return fast
    kind = _KIND[raw]
    if np.any(kind == 2):
        bad = int(np.flatnonzero(kind == 2)[0])
        raise ValueError(
            f"{source}: byte {bad} is {data[bad : bad + 1]!r}; expected only 0/1 values"
        )
    is_digit = kind == 1
    # Two digits in a row would be a multi-digit value such as "10".
    if np.any(is_digit[1:] & is_digit[:-1]):
        raise ValueError(f"{source}: found a multi-digit value; expected single 0/1 values")
    values = raw[is_digit] - ord("0")
    num_lines = sum(1 for line in data.splitlines() if line.strip())
    if values.size != num_lines * num_features:
        raise ValueError(
            f"{source}: {values.size} values on {num_lines} lines; expected {num_features} a line"
        )
    return values.reshape(num_lines, num_features)


def read_amat(path: str | os.PathLike[str], *, num_features: int = 784) -> np.ndarray:
    """Read a binarized-MNIST ``.amat`` or ``.amat.gz`` file.

    Args:
        path: the file; gunzipped first if its name ends in ``.gz``.
        num_features: the number of values on each line (784 for 28×28 images).

    Returns:
        A ``uint8`` array of shape ``(N, num_features)`` with values in {0, 1}.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    return parse_amat(data, num_features=num_features, source=str(path))
