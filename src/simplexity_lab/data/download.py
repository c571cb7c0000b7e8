"""Downloader: official sources, SHA-256 checks, atomic writes, bounded retries, a mirror override.

Each data set is a table of :class:`Resource` s, one per file of the data directory (the layout of
``../shared/data``). A resource is fetched either

* from a **mirror** of that layout, ``{base_url}/{resource.path}`` (``base_url=`` argument, else the
  ``SIMPLEXITY_DATA_MIRROR`` environment variable), e.g. ``python -m http.server`` run in a folder
  such as ``../shared/data``; or
* from the **official sources** (tried in order), then converted where the official format differs
  from the data directory's: binarized MNIST is served as plain ``.amat`` and gzipped here
  (``convert="gzip"``); Omniglot is served as zips of PNGs and turned into the ``.npz`` layout
  (``convert="omniglot"``, see :mod:`simplexity_lab.data.omniglot`).

Every file is checked after download: against the SHA-256 of the reference copy (``SHA256SUMS`` of
the shared data folder, byte-identical to the originals for MNIST and Fashion-MNIST); a locally
gzipped ``.amat.gz`` by the SHA-256 of its decompressed bytes (the original ``.amat``); a converted
Omniglot ``.npz`` by the MD5 published for the official zip plus a full read of the result (zip
CRCs and array layout). Existing files are checked the same way, and a corrupted one is fetched
again. Writes are atomic: a temporary file in the target's folder, ``fsync``, then ``os.replace``,
so an interrupted transfer never leaves a partial file at the final path.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np

from simplexity_lab.data.omniglot import convert_omniglot_zip, read_omniglot
from simplexity_lab.data.paths import MissingDataError, missing_files_message, resolve_data_dir

__all__ = [
    "ENV_MIRROR",
    "RESOURCES",
    "DownloadError",
    "Resource",
    "download",
    "ensure_files",
    "verify_file",
]

ENV_MIRROR = "SIMPLEXITY_DATA_MIRROR"
"""Environment variable with the base URL of a mirror of the data directory's layout."""

_CHUNK = 1 << 20
_MAX_BACKOFF = 30.0


class DownloadError(MissingDataError):
    """Files could not be fetched (offline, unreachable host, or checksum mismatch)."""


@dataclass(frozen=True)
class Resource:
    """One file of the data directory and where it comes from.

    Attributes:
        path: the file's path relative to the data directory, e.g.
            ``"mnist/train-images-idx3-ubyte.gz"``; also its path below a mirror's base URL.
        sha256: SHA-256 of the reference copy of the file (as in ``../shared/data``).
        urls: official source URLs, tried in order.
        source_checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"`` of what ``urls`` serve; ``None``
            when they serve the reference file itself (checked against ``sha256``).
        convert: how to turn the official file into ``path``: ``None`` (as is), ``"gzip"``
            (gzip it; the file is then checked by the SHA-256 of its decompressed bytes, which is
            ``source_checksum``) or ``"omniglot"`` (zip of PNGs to the ``.npz`` layout).
        content_sha256: for ``"omniglot"``, SHA-256 of the reference arrays' bytes (``images``
            then ``labels`` as little-endian int64); a converted file that differs only warns.
    """

    path: str
    sha256: str
    urls: tuple[str, ...]
    source_checksum: str | None = None
    convert: Literal["gzip", "omniglot"] | None = None
    content_sha256: str | None = None

    @property
    def name(self) -> str:
        """The file name (last component of :attr:`path`)."""
        return self.path.rsplit("/", 1)[-1]


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_LAROCHELLE = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_OMNIGLOT_MIRRORS = (
    "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/",
    "https://github.com/brendenlake/omniglot/raw/master/python/",
)


def _idx(folder: str, mirrors: tuple[str, ...], name: str, sha256: str) -> Resource:
    return Resource(f"{folder}/{name}", sha256, tuple(m + name for m in mirrors))


RESOURCES: dict[str, tuple[Resource, ...]] = {
    "mnist": (
        _idx("mnist", _MNIST_MIRRORS, "train-images-idx3-ubyte.gz",
             "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        _idx("mnist", _MNIST_MIRRORS, "train-labels-idx1-ubyte.gz",
             "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        _idx("mnist", _MNIST_MIRRORS, "t10k-images-idx3-ubyte.gz",
             "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        _idx("mnist", _MNIST_MIRRORS, "t10k-labels-idx1-ubyte.gz",
             "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ),
    "fashion_mnist": (
        _idx("fashion-mnist", _FASHION_MIRRORS, "train-images-idx3-ubyte.gz",
             "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        _idx("fashion-mnist", _FASHION_MIRRORS, "train-labels-idx1-ubyte.gz",
             "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        _idx("fashion-mnist", _FASHION_MIRRORS, "t10k-images-idx3-ubyte.gz",
             "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        _idx("fashion-mnist", _FASHION_MIRRORS, "t10k-labels-idx1-ubyte.gz",
             "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ),
    "binarized_mnist": tuple(
        Resource(
            f"binarized-mnist/binarized_mnist_{split}.amat.gz",
            gz_sha,
            (f"{_LAROCHELLE}binarized_mnist_{split}.amat",),
            source_checksum=f"sha256:{amat_sha}",
            convert="gzip",
        )
        for split, gz_sha, amat_sha in (
            ("train", "af247bd6075cf9adc4715459dcd5f13eaa99a2c92d8d81379a05da94770b6c0e",
             "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
            ("valid", "533b71bc0198f4d73c54ae5fe6c96fc08dc3cf1b3fae24c5521dbc0452507e38",
             "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
            ("test", "32a3c54d03504632bf9f131b4a148c7567aa6fc87da017049b044bdc14c2a0f2",
             "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
        )
    ),
    "omniglot": tuple(
        Resource(
            f"omniglot/images_{part}.npz",
            npz_sha,
            tuple(f"{m}images_{part}.zip" for m in _OMNIGLOT_MIRRORS),
            source_checksum=f"md5:{zip_md5}",
            convert="omniglot",
            content_sha256=arrays_sha,
        )
        for part, npz_sha, zip_md5, arrays_sha in (
            ("background", "8bf84167413cd00beacdce3fe582f780ab538d8dbef043a6d688f2527bbce199",
             "68d2efa1b9178cc56df9314c21c6e718",
             "dffd3fcb31b4931cd9a807b399fb61e35c244a8dca494e22af4b1bb6e7b46d14"),
            ("evaluation", "0b84c7ffd94c4841c0040e529c86a82eaaccb986d8eadad5673f7991b7475276",
             "6b91aef0f799c5bb55b94e3f2daec811",
             "afe2d7948b26cbd6202db4836892b9bb6950bc12f5ed6865f21f72e57eef2777"),
        )
    ),
}  # fmt: skip
"""Files of each downloadable group, keyed by the data sets' registry names."""


# ----------------------------------------------------------------------------------- checks


def _file_digest(path: Path, algorithm: str = "sha256", *, gunzip: bool = False) -> str:
    digest = hashlib.new(algorithm)
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _split_checksum(checksum: str) -> tuple[str, str]:
    algorithm, _, value = checksum.partition(":")
    if algorithm not in ("sha256", "md5") or not value:
        raise ValueError(f"checksum must look like 'sha256:<hex>' or 'md5:<hex>', got {checksum!r}")
    return algorithm, value.lower()


def _arrays_digest(images: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels.astype("<i8")).tobytes())
    return digest.hexdigest()


def verify_file(resource: Resource, path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a good copy of ``resource`` (see the module docstring for the rules).

    Args:
        resource: the expected file.
        path: the file on disk.

    Returns:
        ``True`` if the file matches; ``False`` if it is missing, corrupted or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        if _file_digest(path) == resource.sha256:
            return True
        if resource.convert == "gzip" and resource.source_checksum:
            algorithm, value = _split_checksum(resource.source_checksum)
            return _file_digest(path, algorithm, gunzip=True) == value
        if resource.convert == "omniglot":
            read_omniglot(path)  # full read: zip CRCs and the array layout
            return True
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error):
        return False  # an unreadable file is simply not a good copy
    return False


# ------------------------------------------------------------------------------ file writes


@contextlib.contextmanager
def _atomic_target(target: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """Yield a temporary file next to ``target``; on success fsync it and ``os.replace`` it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # persist the rename; not possible on every platform
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class _Progress:
    """Throttled one-line progress on stderr for files larger than 1 MiB."""

    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        self.label, self.total = label, total
        self.enabled = enabled and (total is None or total > _CHUNK)
        self.last = 0.0
        self.started = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.25:
            return
        self.last = now
        if self.total:
            text = f"{100 * done / self.total:5.1f}% ({done / 1e6:.1f}/{self.total / 1e6:.1f} MB)"
        else:
            text = f"{done / 1e6:.1f} MB"
        sys.stderr.write(f"\r  {self.label}: {text}")
        sys.stderr.flush()

    def close(self, done: int) -> None:
        if self.enabled:
            seconds = time.monotonic() - self.started
            sys.stderr.write(f"\r  {self.label}: {done / 1e6:.1f} MB in {seconds:.1f} s\n")
            sys.stderr.flush()


def _stream(url: str, out: IO[bytes], *, timeout: float, label: str, progress: bool) -> None:
    """Copy ``url`` into ``out``; raise if the body is shorter than its Content-Length."""
    request = urllib.request.Request(url, headers={"User-Agent": "simplexity-data"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = _Progress(label, total, progress)
        done = 0
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            done += len(chunk)
            bar.update(done)
        if total is not None and done != total:
            raise http.client.IncompleteRead(b"", total - done)
        bar.close(done)


def _retryable(error: BaseException) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code in (408, 425, 429) or error.code >= 500
    return True


class _ChecksumError(Exception):
    pass


@dataclass(frozen=True)
class _Failure:
    message: str
    reached: bool  # whether any server answered (False: unreachable network, likely offline)


def _fetch(
    urls: Sequence[str],
    target: Path,
    accept: Callable[[Path], bool],
    *,
    retries: int,
    backoff: float,
    timeout: float,
    progress: bool,
) -> _Failure | None:
    """Fetch the first URL that yields a file passing ``accept(tmp_path)`` into ``target``.

    Returns:
        ``None`` on success, else the last error.
    """
    last, reached = "no URL to try", False
    for url in urls:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(min(backoff * 2 ** (attempt - 1), _MAX_BACKOFF))
            try:
                with _atomic_target(target) as (out, tmp):
                    _stream(url, out, timeout=timeout, label=target.name, progress=progress)
                    out.flush()
                    if not accept(tmp):
                        raise _ChecksumError(f"checksum mismatch for {url}")
                return None
            except (OSError, http.client.HTTPException, _ChecksumError) as error:
                last = f"{type(error).__name__}: {error} ({url})"
                reached = (
                    reached
                    or not isinstance(error, urllib.error.URLError)
                    or isinstance(error, urllib.error.HTTPError)
                )
                if not _retryable(error):
                    break
    return _Failure(last, reached)


# ------------------------------------------------------------------------------- public API


def _mirror(base_url: str | None) -> str | None:
    base = base_url if base_url is not None else os.environ.get(ENV_MIRROR) or None
    if base is not None:
        if not isinstance(base, str) or "://" not in base:
            raise ValueError(f"base_url must be a URL such as 'http://host/data/', got {base!r}")
        base = base.rstrip("/") + "/"
    return base


def _select(
    group: str | Sequence[Resource], files: Sequence[str] | None
) -> tuple[str, tuple[Resource, ...]]:
    if isinstance(group, str):
        if group not in RESOURCES:
            raise ValueError(
                f"group must be one of {sorted(RESOURCES)} (a data set with files), got {group!r}"
            )
        label, resources = group, RESOURCES[group]
    else:
        resources = tuple(group)
        if not all(isinstance(r, Resource) for r in resources):
            raise TypeError("group must be a registry name or a sequence of Resource")
        label = "resources"
    if files is not None:
        wanted = set(files)
        known = {r.path for r in resources} | {r.name for r in resources}
        unknown = wanted - known
        if unknown:
            raise ValueError(
                f"files {sorted(unknown)} are not in {label}; expected some of "
                f"{[r.path for r in resources]}"
            )
        resources = tuple(r for r in resources if r.path in wanted or r.name in wanted)
    return label, resources


def download(
    group: str | Sequence[Resource],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    files: Sequence[str] | None = None,
    base_url: str | None = None,
    force: bool = False,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool | None = None,
) -> list[Path]:
    """Fetch a data set's files into the data directory, verifying every file.

    Files already present and verified are kept; corrupted ones are fetched again.

    Args:
        group: a key of :data:`RESOURCES` (``"mnist"``, ``"fashion_mnist"``,
            ``"binarized_mnist"``, ``"omniglot"``) or a sequence of :class:`Resource`.
        data_dir: the data directory (see :func:`~simplexity_lab.data.paths.resolve_data_dir`).
        files: only these files (paths relative to the data dir, or file names).
        base_url: a mirror of the data directory's layout; overrides ``SIMPLEXITY_DATA_MIRROR``.
            Without either, the official sources are used.
        force: fetch even files that are present and verified.
        retries: extra attempts per URL after a failure (transient errors only), with exponential
            backoff ``backoff * 2**k`` seconds (capped at 30 s).
        backoff: first delay between attempts, in seconds.
        timeout: socket timeout per request, in seconds.
        progress: print progress for large files on stderr; ``None`` means when stderr is a TTY.

    Returns:
        The absolute paths of the group's (selected) files.

    Raises:
        DownloadError: one line naming the files still missing, the data dir and the last error.
    """
    label, resources = _select(group, files)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    if not backoff >= 0 or not timeout > 0:
        raise ValueError(f"backoff must be >= 0 and timeout > 0, got {backoff}, {timeout}")
    show = sys.stderr.isatty() if progress is None else bool(progress)
    root = resolve_data_dir(data_dir)
    mirror = _mirror(base_url)
    failed: list[Path] = []
    errors: list[str] = []
    offline = False
    for resource in resources:
        target = root / resource.path
        if not force and verify_file(resource, target):
            continue
        if target.exists():
            warnings.warn(f"{target} failed its checksum; fetching it again", stacklevel=2)
        if offline:
            failed.append(target)
            continue
        if show:
            sys.stderr.write(f"downloading {resource.path} into {root}\n")
        error = _get(resource, target, mirror, retries=retries, backoff=backoff,
                     timeout=timeout, progress=show)  # fmt: skip
        if error is not None:
            failed.append(target)
            errors.append(error.message)
            # No server answered at all: the network is unreachable, so do not wait on the rest.
            offline = not error.reached
    if failed:
        where = f"mirror {mirror}" if mirror else "the official sources"
        hint = (
            f"could not fetch them from {where} (last error: {errors[-1]}); copy them there from a "
            f"machine that is online (or from ../shared/data), or set ${ENV_MIRROR} to a server "
            "with the same layout"
        )
        raise DownloadError(missing_files_message(label, failed, data_dir, hint=hint))
    return [root / r.path for r in resources]


_download = download  # ensure_files' ``download`` flag shadows the function's name


def _get(
    resource: Resource,
    target: Path,
    mirror: str | None,
    *,
    retries: int,
    backoff: float,
    timeout: float,
    progress: bool,
) -> _Failure | None:
    kwargs = {"retries": retries, "backoff": backoff, "timeout": timeout, "progress": progress}
    if mirror is not None:
        return _fetch(
            [mirror + resource.path], target, lambda p: verify_file(resource, p), **kwargs
        )
    if resource.convert is None:
        return _fetch(resource.urls, target, lambda p: verify_file(resource, p), **kwargs)
    if resource.source_checksum is None:
        raise ValueError(f"{resource.path}: a converted resource needs a source_checksum")
    algorithm, value = _split_checksum(resource.source_checksum)
    # The official file goes to a hidden name next to the target, then is converted atomically.
    source = target.with_name(f".{resource.urls[0].rsplit('/', 1)[-1]}.source")
    try:
        error = _fetch(resource.urls, source, lambda p: _file_digest(p, algorithm) == value,
                       **kwargs)  # fmt: skip
        if error is not None:
            return error
        if progress:
            sys.stderr.write(f"  converting {source.name} -> {target.name}\n")
        with _atomic_target(target) as (out, _):
            if resource.convert == "gzip":
                with (
                    open(source, "rb") as raw,
                    gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as packed,
                ):
                    shutil.copyfileobj(raw, packed, _CHUNK)
            else:
                images, labels = convert_omniglot_zip(source)
                if resource.content_sha256 and _arrays_digest(images, labels) != (
                    resource.content_sha256
                ):
                    warnings.warn(
                        f"{target.name}: converted arrays differ from the reference copy's "
                        "content hash (ordering or decoding may differ)",
                        stacklevel=3,
                    )
                np.savez_compressed(out, images=images, labels=labels)
        if not verify_file(resource, target):
            target.unlink(missing_ok=True)
            return _Failure(f"converted {target.name} does not verify", reached=True)
        return None
    finally:
        source.unlink(missing_ok=True)


def ensure_files(
    group: str,
    files: Sequence[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    dataset: str | None = None,
    accept_alternatives: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Return the paths of ``files`` of ``group``; fetch missing ones only when asked.

    Presence is checked, not checksums (that is the downloader's job), so loading stays fast.

    Args:
        group: a key of :data:`RESOURCES`.
        files: paths relative to the data dir.
        data_dir: the data directory argument.
        download: fetch (and verify) missing files with :func:`download`.
        dataset: the name to show in error messages (defaults to ``group``).
        accept_alternatives: ``{path: other_path}`` accepted in place of a missing ``path``
            (e.g. a plain ``.amat`` for an ``.amat.gz``).

    Returns:
        ``{relative path: absolute path}`` (the alternative's path where one was used).

    Raises:
        MissingDataError: one line naming the missing files, the data dir and what to do.
    """
    root = resolve_data_dir(data_dir)
    alternatives = accept_alternatives or {}
    found: dict[str, Path] = {}
    missing: list[str] = []
    for rel in files:
        path = root / rel
        if path.is_file():
            found[rel] = path
        elif rel in alternatives and (root / alternatives[rel]).is_file():
            found[rel] = root / alternatives[rel]
        else:
            missing.append(rel)
    if missing and download:
        _download(group, data_dir, files=missing)
        found.update({rel: root / rel for rel in missing})
        missing = []
    if missing:
        raise MissingDataError(
            missing_files_message(dataset or group, [root / m for m in missing], data_dir)
        )
    return found
