"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzipped).

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
``uint32`` dimension sizes, then the array in C order and big-endian byte order.

References:
    LeCun, Cortes and Burges, *The MNIST database of handwritten digits*,
    http://yann.lecun.com/exdb/mnist/ (section "File formats for the MNIST database").
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["parse_idx", "read_idx"]

_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file.

    Args:
        data: the file's bytes.
        source: a name for error messages.

    Returns:
        A read-only-safe copy of the array in native byte order, with the file's shape.

    Raises:
        ValueError: if the header is malformed or the payload has the wrong size.

    Example:
        >>> raw = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
        >>> parse_idx(raw).tolist()
        [[0, 1, 2], [3, 4, 5]]
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{source}: not an IDX file (the magic number must start with 0x00 0x00)")
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        raise ValueError(
            f"{source}: unknown IDX dtype code 0x{code:02X} "
            f"(expected one of {', '.join(f'0x{c:02X}' for c in _DTYPES)})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source}: truncated IDX header ({len(data)} bytes for {ndim} dims)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{source}: IDX payload has {len(data) - header} bytes, expected "
            f"{expected - header} for shape {shape} and dtype {dtype}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gunzipping it first if its name ends in ``.gz``.

    Args:
        path: the file (``train-images-idx3-ubyte.gz`` and the like).

    Returns:
        The array: ``uint8`` of shape ``(N, 28, 28)`` for MNIST images, ``(N,)`` for labels.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    return parse_idx(data, source=str(path))
