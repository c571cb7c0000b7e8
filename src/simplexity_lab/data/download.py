"""Fetching the data sets' files: a thin layer over pooch that adds mirrors and one-line errors.

Each data set is a table of :class:`Resource` s, one per file of the data directory
(:mod:`simplexity_lab.data.paths`; the layout of ``../shared/data``). pooch (Uieda et al., 2020)
does the transfer: it streams a file into a temporary file beside the target, checks its known
hash, moves it into place only if the hash matches, retries failed transfers, and shows a tqdm
progress bar when tqdm is installed. This module adds what pooch does not:

* several sources per file, tried in order: the **mirror** ``{base_url}/{resource.path}``
  (``base_url=``, else ``$SIMPLEXITY_DATA_MIRROR``; a server with the data directory's layout,
  e.g. ``python -m http.server`` in ``../shared/data``), else the **official URLs**;
* conversions where the official format differs from the data directory's: binarized MNIST is
  served as plain ``.amat`` and gzipped here (``convert="gzip"``); Omniglot is served as zips of
  PNGs and turned into the ``.npz`` layout (``convert="omniglot"``, see
  :mod:`simplexity_lab.data.omniglot`);
* checks of files already present (:func:`verify_file`): a corrupted one is deleted and fetched
  again, never returned;
* one-line errors (:class:`DownloadError`) naming the data set, the files, the URLs tried and how
  to place the files by hand.

References:
    Uieda, Soler, Rampin, van Kemenade, Turk, Shapero, Banihirwe and Leeman (2020). Pooch: a friend
    to fetch your data files. Journal of Open Source Software 5(45), 1943.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import shutil
import sys
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from simplexity._checks import check_int
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


class DownloadError(MissingDataError):
    """Files could not be fetched (offline, unreachable host, or checksum mismatch)."""


@dataclass(frozen=True)
class Resource:
    """One file of the data directory and where it comes from.

    Attributes:
        path: the file's path relative to the data directory, e.g.
            ``"mnist/train-images-idx3-ubyte.gz"``; also its path below a mirror's base URL.
        sha256: SHA-256 of the reference copy of the file (as in ``../shared/data``); a mirror
            must serve exactly that file.
        urls: official source URLs, tried in order.
        source_checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"`` of what ``urls`` serve; ``None``
            when they serve the reference file itself (checked against ``sha256``).
        convert: how to turn the official file into ``path``: ``None`` (as is), ``"gzip"``
            (gzip it; the file is then checked by the SHA-256 of its decompressed bytes, which is
            ``source_checksum``) or ``"omniglot"`` (zip of PNGs to the ``.npz`` layout, checked by
            a full read).
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


def _file_digest(path: Path, algorithm: str = "sha256", *, gunzip: bool = False) -> str:
    digest = hashlib.new(algorithm)
    with (gzip.open if gunzip else open)(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(resource: Resource, path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a good copy of ``resource``.

    A good copy has the reference SHA-256; a locally gzipped ``.amat.gz`` may instead have the
    official ``.amat``'s checksum once decompressed; a converted Omniglot ``.npz`` must read in full
    (zip CRCs and the array layout).

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
            algorithm, _, value = resource.source_checksum.partition(":")
            return _file_digest(path, algorithm, gunzip=True) == value
        if resource.convert == "omniglot":
            read_omniglot(path)
            return True
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error):
        return False  # an unreadable file is simply not a good copy
    return False


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
        known = {r.path for r in resources} | {r.name for r in resources}
        if unknown := set(files) - known:
            raise ValueError(
                f"files {sorted(unknown)} are not in {label}; expected some of "
                f"{[r.path for r in resources]}"
            )
        resources = tuple(r for r in resources if r.path in files or r.name in files)
    return label, resources


def _mirror(base_url: str | None) -> str | None:
    base = base_url if base_url is not None else os.environ.get(ENV_MIRROR) or None
    if base is not None and (not isinstance(base, str) or "://" not in base):
        raise ValueError(f"base_url must be a URL such as 'http://host/data/', got {base!r}")
    return None if base is None else base.rstrip("/") + "/"


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


_Failures = list[tuple[str, BaseException]]  # (URL or step, error)


def _fetch(
    urls: Sequence[str], target: Path, known_hash: str, retries: int, downloader: Any
) -> _Failures:
    """Fetch the first of ``urls`` whose file has ``known_hash`` into ``target`` with pooch.

    Returns:
        The failed URLs with their errors; empty on success.
    """
    import pooch  # lazily: keeps ``import simplexity_lab.data`` light

    failures: _Failures = []
    for url in urls:
        fetcher = pooch.create(path=target.parent, base_url="", registry={target.name: known_hash},
                               urls={target.name: url}, retry_if_failed=retries)  # fmt: skip
        try:
            fetcher.fetch(target.name, downloader=downloader)
            return []
        except (OSError, ValueError) as error:  # requests' errors are OSErrors
            failures.append((url, error))
    return failures


def _convert(resource: Resource, source: Path, target: Path) -> None:
    """Turn the official file ``source`` into ``target`` through a temporary file and
    ``os.replace``; raise ``ValueError`` if the result does not verify."""
    tmp = target.with_name(f".{target.name}.part")
    try:
        with open(tmp, "wb") as out:
            if resource.convert == "gzip":
                with open(source, "rb") as raw, gzip.GzipFile("", "wb", fileobj=out, mtime=0) as gz:
                    shutil.copyfileobj(raw, gz, 1 << 20)
            else:
                images, labels = convert_omniglot_zip(source)
                digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
                digest.update(np.ascontiguousarray(labels.astype("<i8")).tobytes())
                if resource.content_sha256 not in (None, digest.hexdigest()):
                    warnings.warn(f"{target.name}: converted arrays differ from the reference "
                                  "copy's (ordering or decoding may differ)", stacklevel=4)  # fmt: skip
                np.savez_compressed(out, images=images, labels=labels)
        if not verify_file(resource, tmp):
            raise ValueError(f"converted {target.name} does not verify")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _get(
    resource: Resource, target: Path, mirror: str | None, retries: int, downloader: Any
) -> _Failures:
    """Fetch one resource from the mirror, else from its official URLs (converting it)."""
    if mirror is not None or resource.convert is None:
        urls = [mirror + resource.path] if mirror is not None else resource.urls
        return _fetch(urls, target, f"sha256:{resource.sha256}", retries, downloader)
    if resource.source_checksum is None:
        raise ValueError(f"{resource.path}: a converted resource needs a source_checksum")
    source = target.with_name(f".{target.name}.source")
    try:
        failures = _fetch(resource.urls, source, resource.source_checksum, retries, downloader)
        if not failures:
            _convert(resource, source, target)
        return failures
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        return [(f"converting {source.name}", error)]
    finally:
        source.unlink(missing_ok=True)


def download(
    group: str | Sequence[Resource],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    files: Sequence[str] | None = None,
    base_url: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool | None = None,
) -> list[Path]:
    """Fetch a data set's files into the data directory, verifying every file.

    Files already present and verified are kept; a corrupted one is deleted (with a warning) and
    fetched again.

    Args:
        group: a key of :data:`RESOURCES` (``"mnist"``, ``"fashion_mnist"``,
            ``"binarized_mnist"``, ``"omniglot"``) or a sequence of :class:`Resource`.
        data_dir: the data directory (see :func:`~simplexity_lab.data.paths.resolve_data_dir`).
        files: only these files (paths relative to the data dir, or file names).
        base_url: a mirror of the data directory's layout; overrides ``$SIMPLEXITY_DATA_MIRROR``.
            Without either, the official sources are used, in order.
        retries: extra attempts per URL after a failed transfer or a wrong checksum (pooch's
            ``retry_if_failed``: it waits 1 s, 2 s, ... up to 10 s between attempts).
        timeout: socket timeout per request, in seconds.
        progress: show a progress bar per file (only when ``tqdm`` is installed); ``None`` means
            when stderr is a terminal.

    Returns:
        The absolute paths of the group's (selected) files.

    Raises:
        DownloadError: one line naming the data set, the missing files, the data dir, the URLs
            tried, the last error and how to place the files by hand.
    """
    import pooch  # lazily: keeps ``import simplexity_lab.data`` light
    import requests  # pooch's HTTP client

    label, resources = _select(group, files)
    check_int("retries", retries, min=0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    show = sys.stderr.isatty() if progress is None else bool(progress)
    show = show and importlib.util.find_spec("tqdm") is not None
    downloader = pooch.HTTPDownloader(
        progressbar=show, timeout=timeout, headers={"User-Agent": "simplexity-data"}
    )
    root = resolve_data_dir(data_dir)
    mirror = _mirror(base_url)
    missing: list[Path] = []
    failures: _Failures = []
    offline = False
    for resource in resources:
        target = root / resource.path
        if verify_file(resource, target):
            continue
        if target.exists():
            warnings.warn(f"{target} failed its checksum; fetching it again", stacklevel=2)
            target.unlink()  # a corrupted file is never used, even if fetching it fails
        new = [] if offline else _get(resource, target, mirror, retries, downloader)
        if offline or new:
            missing.append(target)
            failures += new
            # No server answered at all: the network is unreachable, so do not wait on the rest.
            offline = all(isinstance(e, requests.ConnectionError) for _, e in failures)
    if missing:
        tried = ", ".join(dict.fromkeys(url for url, _ in failures if "://" in url))
        hint = (
            f"could not fetch them (tried {tried}; last error: {_one_line(failures[-1][1])}); "
            "place them there by hand (downloaded from those URLs, or copied from "
            f"../shared/data or another machine), or set ${ENV_MIRROR} to a server with the same "
            "layout"
        )
        raise DownloadError(missing_files_message(label, missing, data_dir, hint=hint))
    return [root / r.path for r in resources]


_download = download  # ensure_files' ``download`` flag shadows the function's name


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
