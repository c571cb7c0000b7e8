r"""Omniglot: the ``.npz`` layout, its conversion from the official zips, and Omniglot-28.

The data directory holds ``omniglot/images_background.npz`` (964 characters × 20 drawers) and
``omniglot/images_evaluation.npz`` (659 × 20), each with two arrays:

* ``images``: ``bool``, shape ``(characters, 20, 105, 105)``, **True = white background** (so the
  strokes are False), exactly the pixel values of the official 1-bit PNGs;
* ``labels``: ``int64``, shape ``(characters, 20)``, the character index within the file
  (``labels[c, d] == c``).

:func:`convert_omniglot_zip` builds this layout from the official ``images_background.zip`` /
``images_evaluation.zip`` (``<set>/<alphabet>/characterNN/<id>_<drawer>.png``) with a small PNG
decoder written with :mod:`zlib` and numpy (no Pillow).

"Omniglot-28" (:func:`downsample`) is the 105×105 images taken to 28×28 by exact area averaging
with strokes as 1: each output pixel is the mean of the stroke indicator over its 3.75×3.75 block
of input pixels (partial pixels weighted by their overlap), so values are grey levels in [0, 1].
It is *not* the 28×28 Omniglot of Burda et al. (``chardata.mat``), which is not available here.

References:
    Lake, Salakhutdinov and Tenenbaum, *Human-level concept learning through probabilistic program
    induction*, Science 2015. https://github.com/brendenlake/omniglot
"""

from __future__ import annotations

import functools
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from simplexity._checks import check_int

__all__ = [
    "area_weights",
    "convert_omniglot_zip",
    "decode_png",
    "downsample",
    "read_omniglot",
    "validate_omniglot",
]

_NUM_DRAWERS = 20
_SIZE = 105
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILE_NAME = re.compile(r"^(\d+)_(\d+)\.png$")


def validate_omniglot(images: np.ndarray, labels: np.ndarray, *, source: str = "<arrays>") -> None:
    """Check the ``.npz`` layout: bool images ``(C, 20, 105, 105)``, int labels ``(C, 20)``.

    Raises:
        ValueError: naming ``source`` and the expected form.
    """
    expected = f"(characters, {_NUM_DRAWERS}, {_SIZE}, {_SIZE})"
    if (
        images.dtype != np.bool_
        or images.ndim != 4
        or images.shape[1:]
        != (
            _NUM_DRAWERS,
            _SIZE,
            _SIZE,
        )
    ):
        raise ValueError(
            f"{source}: 'images' must be bool of shape {expected}, "
            f"got {images.dtype} {images.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != images.shape[:2]:
        raise ValueError(
            f"{source}: 'labels' must be integers of shape {images.shape[:2]}, "
            f"got {labels.dtype} {labels.shape}"
        )


def read_omniglot(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read an Omniglot ``.npz`` file (no pickle) and check its layout.

    Reading every member in full also checks the zip's CRC-32s, so a corrupted file raises.

    Args:
        path: ``images_background.npz`` or ``images_evaluation.npz``.

    Returns:
        ``(images, labels)``: bool ``(C, 20, 105, 105)`` with True = background, and int64
        ``(C, 20)`` character indices.
    """
    with np.load(Path(path), allow_pickle=False) as npz:
        missing = {"images", "labels"} - set(npz.files)
        if missing:
            raise ValueError(f"{path}: missing array(s) {sorted(missing)}; expected images, labels")
        images, labels = npz["images"], npz["labels"]
    validate_omniglot(images, labels, source=str(path))
    return images, labels.astype(np.int64, copy=False)


@functools.lru_cache(maxsize=8)
def area_weights(size_in: int, size_out: int) -> np.ndarray:
    r"""Matrix ``A`` (``size_out × size_in``) of exact area averaging along one axis.

    ``A[i, j]`` is the length of the overlap of input pixel ``[j, j + 1)`` with output pixel
    ``[i s, (i + 1) s)``, :math:`s = \text{size\_in} / \text{size\_out}`, divided by ``s``;
    every row sums to one, so ``A @ X @ A.T`` averages an image over each output pixel's area.

    Example:
        >>> area_weights(4, 2).tolist()
        [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]
    """
    if not 1 <= size_out <= size_in:
        raise ValueError(f"size_out must be in [1, {size_in}], got {size_out}")
    scale = size_in / size_out
    lo = np.arange(size_out)[:, None] * scale
    hi = lo + scale
    j = np.arange(size_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    weights = overlap / scale
    weights.setflags(write=False)
    return weights


def downsample(background: np.ndarray, size: int = 28) -> np.ndarray:
    """Omniglot-28: strokes as 1, area-averaged from 105×105 to ``size × size``.

    Args:
        background: bool images ``(..., 105, 105)`` with True = background.
        size: output side length, in ``[1, 105]``; 105 returns the stroke indicator unchanged.

    Returns:
        ``float32`` array ``(..., size, size)`` in [0, 1]: the fraction of each output pixel
        covered by strokes.
    """
    side = background.shape[-1]
    size = check_int("size", size, min=1, max=side)
    strokes = (~background).astype(np.float32)
    if size == side:
        return strokes
    height, batch = background.shape[-2], background.shape[:-2]
    rows = area_weights(height, size).astype(np.float32)
    cols = area_weights(side, size).astype(np.float32)
    # Two plain 2-D GEMMs (faster than a batched matmul): columns first, then rows.
    out = strokes.reshape(-1, side) @ cols.T  # (images * height, size)
    out = out.reshape(-1, height, size).transpose(0, 2, 1).reshape(-1, height) @ rows.T
    out = np.ascontiguousarray(out.reshape(-1, size, size).transpose(0, 2, 1))
    out = out.reshape(*batch, size, size)
    return np.clip(out, 0.0, 1.0, out=out)


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the PNG row filters (None, Sub, Up, Average, Paeth); bytes wrap modulo 256."""
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = int(rows[y, 0]), rows[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:
            # Sub is a running sum along each of the bpp byte lanes.
            cur = np.empty(stride, dtype=np.uint8)
            for lane in range(bpp):
                cur[lane::bpp] = np.cumsum(line[lane::bpp], dtype=np.uint8)
        elif kind == 2:
            cur = line + prev
        elif kind in (3, 4):
            # Average and Paeth depend on the decoded byte to the left: a sequential loop.
            done, up, filt = bytearray(stride), prev.tobytes(), line.tobytes()
            for x in range(stride):
                left = done[x - bpp] if x >= bpp else 0
                if kind == 3:
                    pred = (left + up[x]) >> 1
                else:
                    up_left = up[x - bpp] if x >= bpp else 0
                    p = left + up[x] - up_left
                    pa, pb, pc = abs(p - left), abs(p - up[x]), abs(p - up_left)
                    pred = left if pa <= pb and pa <= pc else (up[x] if pb <= pc else up_left)
                done[x] = (filt[x] + pred) & 0xFF
            cur = np.frombuffer(bytes(done), dtype=np.uint8)
        else:
            raise ValueError(f"unknown PNG filter type {kind} on row {y}")
        out[y] = cur
        prev = cur
    return out


def decode_png(data: bytes, *, source: str = "<png>") -> np.ndarray:
    """Decode a non-interlaced grayscale or palette PNG into a ``uint8`` grey-level array.

    Enough of PNG for the Omniglot files (1-bit grayscale): colour types 0 (grayscale, bit depths 1,
    2, 4, 8, 16) and 3 (palette, converted to grey as the mean of R, G, B), all five row filters,
    CRC-checked chunks. Interlaced and colour (RGB) images raise ``ValueError``.

    Args:
        data: the PNG file's bytes.
        source: a name for error messages.

    Returns:
        ``(height, width)`` ``uint8`` array, scaled so that the maximum sample value is 255.
    """
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{source}: not a PNG file (bad signature)")
    pos, header, palette, idat = len(_PNG_SIGNATURE), None, None, []
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if len(body) != length or zlib.crc32(kind + body) != crc:
            raise ValueError(f"{source}: corrupted PNG chunk {kind!r} (bad length or CRC)")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise ValueError(f"{source}: PNG without IHDR or IDAT chunk")
    width, height, depth, color, _, _, interlace = header
    if color not in (0, 3) or interlace != 0:
        raise ValueError(
            f"{source}: unsupported PNG (colour type {color}, interlace {interlace}); "
            "expected non-interlaced grayscale (0) or palette (3)"
        )
    if depth not in (1, 2, 4, 8, 16) or (color == 3 and depth == 16):
        raise ValueError(f"{source}: unsupported PNG bit depth {depth}")
    stride = (width * depth + 7) // 8
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    if raw.size != height * (stride + 1):
        raise ValueError(
            f"{source}: PNG image data has {raw.size} bytes, expected {height * (stride + 1)}"
        )
    rows = _unfilter(raw, height, stride, max(1, depth // 8))
    if depth == 16:
        samples = rows.view(">u2").reshape(height, width)
        return (samples >> 8).astype(np.uint8)
    if depth == 8:
        samples = rows
    else:
        bits = np.unpackbits(rows, axis=1)[:, : width * depth].reshape(height, width, depth)
        samples = (bits * (1 << np.arange(depth - 1, -1, -1, dtype=np.uint8))).sum(-1)
        samples = samples.astype(np.uint8)
    if color == 3:
        if palette is None:
            raise ValueError(f"{source}: palette PNG without PLTE chunk")
        grey = palette.astype(np.uint16).mean(axis=1).round().astype(np.uint8)
        return grey[samples]
    return (samples.astype(np.uint16) * 255 // ((1 << depth) - 1)).astype(np.uint8)


def convert_omniglot_zip(
    zip_path: str | os.PathLike[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Convert an official Omniglot zip of PNGs into the ``.npz`` arrays.

    Files are named ``<id>_<drawer>.png`` with a global 1-based character ``id`` and a 1-based
    ``drawer``. Characters are numbered from 0 by increasing ``id`` (which follows the alphabets'
    order), drawers by their number; a pixel is True (background) where its grey level is at
    least half of white.

    Args:
        zip_path: ``images_background.zip`` or ``images_evaluation.zip``.

    Returns:
        ``(images, labels)`` in the layout described in the module docstring.

    Raises:
        ValueError: if a character does not have exactly 20 drawers or a file is not a valid PNG.
    """
    found: dict[int, dict[int, str]] = {}
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            match = _FILE_NAME.match(name.rsplit("/", 1)[-1])
            if match:
                char_id, drawer = int(match.group(1)), int(match.group(2))
                found.setdefault(char_id, {})[drawer] = name
        if not found:
            raise ValueError(f"{zip_path}: no <id>_<drawer>.png files found")
        ids = sorted(found)
        images = np.empty((len(ids), _NUM_DRAWERS, _SIZE, _SIZE), dtype=np.bool_)
        for c, char_id in enumerate(ids):
            drawers = found[char_id]
            if sorted(drawers) != list(range(1, _NUM_DRAWERS + 1)):
                raise ValueError(
                    f"{zip_path}: character {char_id} has drawers {sorted(drawers)}, "
                    f"expected 1..{_NUM_DRAWERS}"
                )
            for d in range(_NUM_DRAWERS):
                name = drawers[d + 1]
                grey = decode_png(archive.read(name), source=f"{zip_path}:{name}")
                if grey.shape != (_SIZE, _SIZE):
                    raise ValueError(f"{zip_path}:{name}: image is {grey.shape}, expected 105×105")
                images[c, d] = grey >= 128
    labels = np.repeat(np.arange(len(ids), dtype=np.int64)[:, None], _NUM_DRAWERS, axis=1)
    return images, labels
