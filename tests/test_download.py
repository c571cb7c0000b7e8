"""Tests of the downloader against a local HTTP server on 127.0.0.1 (simplexity_lab.data.download)."""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import socket
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import simplexity_lab.data as data
from simplexity_lab.data.download import ENV_MIRROR, RESOURCES, Resource, download, verify_file
from simplexity_lab.data.omniglot import convert_omniglot_zip, decode_png, read_omniglot

REPO = Path(__file__).resolve().parents[1]
SMALL = [
    "mnist/t10k-labels-idx1-ubyte.gz",
    "mnist/train-labels-idx1-ubyte.gz",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz",
]


def _sha256(data_bytes: bytes) -> str:
    return hashlib.sha256(data_bytes).hexdigest()


def _shared_dir() -> Path | None:
    import os

    root = Path(os.environ.get("SIMPLEXITY_DATA_DIR") or REPO.parent / "shared" / "data")
    return root if (root / SMALL[0]).is_file() else None


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the served folder; ``/truncate/<path>`` sends half a file and hangs up,
    ``/flaky/<path>`` answers 503 on the first request for each path, ``/corrupt/<path>`` sends
    the file with its last byte changed."""

    failures: dict[str, int] = {}  # noqa: RUF012
    requests: list[str] = []  # noqa: RUF012

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.path.startswith("/truncate/"):
            body = (Path(self.directory) / self.path.removeprefix("/truncate/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path.startswith("/corrupt/"):
            body = bytearray(
                (Path(self.directory) / self.path.removeprefix("/corrupt/")).read_bytes()
            )
            body[-1] ^= 0xFF
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(bytes(body))
            return
        if self.path.startswith("/flaky/"):
            seen = type(self).failures.get(self.path, 0)
            type(self).failures[self.path] = seen + 1
            if seen == 0:
                self.send_error(503, "try again")
                return
            self.path = self.path.removeprefix("/flaky")
        super().do_GET()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary folder with a few small files in the data-dir layout."""
    root = tmp_path_factory.mktemp("served")
    shared = _shared_dir()
    if shared is None:
        pytest.skip("shared data folder not found (set SIMPLEXITY_DATA_DIR to ../shared/data)")
    for rel in [*SMALL, "mnist/t10k-images-idx3-ubyte.gz"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / rel, root / rel)
    rng = np.random.default_rng(0)
    (root / "big.bin").write_bytes(rng.integers(0, 256, 3 << 20, dtype=np.uint8).tobytes())
    rows = rng.integers(0, 2, size=(4, 784))
    (root / "tiny.amat").write_bytes("".join(" ".join(map(str, r)) + "\n" for r in rows).encode())
    (root / "tiny_omniglot.zip").write_bytes(_omniglot_zip(num_chars=2))
    return root


@pytest.fixture(scope="module")
def server(served: Path) -> Iterator[str]:
    def handler(*args: object, **kwargs: object) -> _Handler:
        return _Handler(*args, directory=str(served), **kwargs)  # type: ignore[arg-type]

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _resources(*paths: str) -> list[Resource]:
    table = {r.path: r for group in RESOURCES.values() for r in group}
    return [table[p] for p in paths]


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- PNG helpers


def _png(pixels: np.ndarray, depth: int, filters: list[int]) -> bytes:
    """Encode a grayscale PNG with the given bit depth and row filter types (a test encoder)."""
    height, width = pixels.shape
    if depth < 8:
        bits = np.unpackbits(pixels.astype(np.uint8)[..., None], axis=-1)[..., 8 - depth :]
        rows = np.packbits(bits.reshape(height, -1), axis=1)
    else:
        rows = pixels.astype(np.uint8)
    stride = rows.shape[1]
    prev = np.zeros(stride, dtype=np.int32)
    raw = bytearray()
    for y in range(height):
        kind = filters[y % len(filters)]
        cur = rows[y].astype(np.int32)
        left = np.concatenate([[0], cur[:-1]])
        up_left = np.concatenate([[0], prev[:-1]])
        if kind == 0:
            pred = np.zeros_like(cur)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - up_left
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - up_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
        raw.append(kind)
        raw.extend(((cur - pred) % 256).astype(np.uint8).tobytes())
        prev = cur

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


def _omniglot_image(char: int, drawer: int) -> np.ndarray:
    white = np.ones((105, 105), dtype=bool)
    white[10 + char : 30 + char, 20 + drawer : 25 + drawer] = False
    return white


def _omniglot_zip(num_chars: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for c in range(num_chars):
            for d in range(20):
                name = f"images_background/Alpha/character{c + 1:02d}/{c + 101:04d}_{d + 1:02d}.png"
                archive.writestr(name, _png(_omniglot_image(c, d), 1, [0, 2]))
    return buffer.getvalue()


def test_decode_png_all_filters() -> None:
    rng = np.random.default_rng(1)
    for depth in (1, 2, 4, 8):
        pixels = rng.integers(0, 2**depth, size=(9, 13))
        decoded = decode_png(_png(pixels, depth, [0, 1, 2, 3, 4]))
        assert np.array_equal(decoded, pixels * 255 // (2**depth - 1))
    with pytest.raises(ValueError, match="not a PNG"):
        decode_png(b"GIF89a")
    broken = bytearray(_png(pixels, 8, [0]))
    broken[30] ^= 0xFF
    with pytest.raises(ValueError, match="CRC"):
        decode_png(bytes(broken))


def test_convert_omniglot_zip(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(_omniglot_zip(num_chars=2))
    images, labels = convert_omniglot_zip(path)
    assert images.shape == (2, 20, 105, 105) and images.dtype == np.bool_
    assert labels.tolist() == [[0] * 20, [1] * 20]
    assert np.array_equal(images[1, 5], _omniglot_image(1, 5))
    with zipfile.ZipFile(path, "a") as archive:  # a 21st drawer is an error
        archive.writestr("images_background/Alpha/character01/0101_21.png", b"")
    with pytest.raises(ValueError, match="drawers"):
        convert_omniglot_zip(path)


# ------------------------------------------------------------------------------ downloads


def test_download_from_mirror_verifies(server: str, tmp_path: Path) -> None:
    paths = download("mnist", tmp_path, files=SMALL[:2], base_url=server)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == sorted(SMALL[:2])
    for resource in _resources(*SMALL[:2]):
        target = tmp_path / resource.path
        assert _sha256(target.read_bytes()) == resource.sha256
        assert verify_file(resource, target)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "mnist",
        *sorted(Path(f).name for f in SMALL[:2]),
    ]
    # Present and verified files are not fetched again.
    before = len(_Handler.requests)
    download("mnist", tmp_path, files=SMALL[:2], base_url=server)
    assert len(_Handler.requests) == before


def test_corrupted_file_is_fetched_again(server: str, tmp_path: Path) -> None:
    target = tmp_path / SMALL[2]
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the labels")
    (resource,) = _resources(SMALL[2])
    assert not verify_file(resource, target)
    with pytest.warns(UserWarning, match="failed its checksum"):
        (path,) = download("fashion_mnist", tmp_path, files=[target.name], base_url=server)
    assert path == target and _sha256(path.read_bytes()) == resource.sha256


def test_corrupted_download_is_never_used(server: str, tmp_path: Path) -> None:
    (resource,) = _resources(SMALL[0])
    corrupt = f"{server}/corrupt/{resource.path}"
    good = f"{server}/{resource.path}"
    # A corrupted first source: the next one is tried and only its good copy lands.
    (path,) = download(
        [Resource(resource.path, resource.sha256, (corrupt, good))], tmp_path, retries=0
    )
    assert _sha256(path.read_bytes()) == resource.sha256
    # Every source corrupted: an error, and neither the download nor an old bad copy is left.
    path.write_bytes(b"an old bad copy")
    with pytest.warns(UserWarning, match="failed its checksum"):
        with pytest.raises(data.DownloadError, match="does not match the known hash"):
            download([Resource(resource.path, resource.sha256, (corrupt,))], tmp_path, retries=1)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sum(r == f"/corrupt/{resource.path}" for r in _Handler.requests) >= 3  # 1 + 2 attempts


def test_truncated_transfer_leaves_no_partial_file(server: str, tmp_path: Path) -> None:
    (resource,) = _resources(SMALL[1])
    before = sum("/truncate/" in r for r in _Handler.requests)
    with pytest.raises(data.DownloadError) as info:
        download([resource], tmp_path, base_url=f"{server}/truncate", retries=1)
    target = tmp_path / resource.path
    assert not target.exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no temporary leftovers
    assert str(target) in str(info.value) and f"{server}/truncate/{resource.path}" in str(
        info.value
    )
    assert sum("/truncate/" in r for r in _Handler.requests) - before == 2  # retried, bounded


def test_wrong_checksum_is_rejected(server: str, tmp_path: Path) -> None:
    bad = Resource("mnist/t10k-labels-idx1-ubyte.gz", "0" * 64, ())
    with pytest.raises(data.DownloadError, match="does not match the known hash"):
        download([bad], tmp_path, base_url=server, retries=0)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_next_url_after_missing_file_and_retry_after_server_error(
    server: str, tmp_path: Path
) -> None:
    (resource,) = _resources(SMALL[0])
    flaky = Resource(
        resource.path,
        resource.sha256,
        (f"{server}/no/such/file.gz", f"{server}/flaky/{resource.path}"),
    )
    start = len(_Handler.requests)
    download([flaky], tmp_path, retries=1)
    assert verify_file(resource, tmp_path / resource.path)
    flaky_path = f"/flaky/{resource.path}"
    assert _Handler.requests[start:] == ["/no/such/file.gz"] * 2 + [flaky_path] * 2


def test_official_source_with_gzip_conversion(server: str, served: Path, tmp_path: Path) -> None:
    amat = (served / "tiny.amat").read_bytes()
    resource = Resource(
        "binarized-mnist/tiny.amat.gz",
        "f" * 64,  # the reference .gz differs; the decompressed content is what is checked
        (f"{server}/tiny.amat",),
        source_checksum=f"sha256:{_sha256(amat)}",
        convert="gzip",
    )
    (path,) = download([resource], tmp_path)
    assert verify_file(resource, path)
    assert data.amat.read_amat(path).shape == (4, 784)
    assert [p.name for p in path.parent.iterdir()] == ["tiny.amat.gz"]  # no source, no temporary
    wrong = Resource(resource.path, "f" * 64, resource.urls, f"sha256:{'0' * 64}", "gzip")
    path.unlink()
    with pytest.raises(data.DownloadError, match=r"tiny\.amat"):
        download([wrong], tmp_path, retries=0)
    assert not list(path.parent.iterdir())


def test_official_source_with_omniglot_conversion(
    server: str, served: Path, tmp_path: Path
) -> None:
    digest = hashlib.md5((served / "tiny_omniglot.zip").read_bytes()).hexdigest()
    resource = Resource(
        "omniglot/images_tiny.npz",
        "f" * 64,
        (f"{server}/tiny_omniglot.zip",),
        source_checksum=f"md5:{digest}",
        convert="omniglot",
    )
    (path,) = download([resource], tmp_path)
    images, labels = read_omniglot(path)
    assert images.shape == (2, 20, 105, 105) and labels[1, 0] == 1
    assert [p.name for p in path.parent.iterdir()] == ["images_tiny.npz"]
    path.write_bytes(path.read_bytes()[:-100])  # a damaged .npz no longer verifies
    assert not verify_file(resource, path)


def test_progress_bar(server: str, served: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("tqdm")
    resource = Resource("big.bin", _sha256((served / "big.bin").read_bytes()), ())
    download([resource], tmp_path / "quiet", base_url=server, progress=False)
    assert "100%" not in capsys.readouterr().err
    download([resource], tmp_path / "loud", base_url=server, progress=True)
    err = capsys.readouterr().err
    assert "100%" in err and "3.15M" in err


def test_data_dir_order(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where files land: ``data_dir`` > ``$SIMPLEXITY_DATA_DIR`` > ``$XDG_CACHE_HOME/simplexity``."""
    arg, env, xdg = tmp_path / "arg", tmp_path / "env", tmp_path / "xdg"
    monkeypatch.setenv(ENV_MIRROR, server)
    monkeypatch.setenv("SIMPLEXITY_DATA_DIR", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    assert download("mnist", arg, files=SMALL[:1]) == [arg / SMALL[0]]
    assert download("mnist", files=SMALL[:1]) == [env / SMALL[0]]
    monkeypatch.delenv("SIMPLEXITY_DATA_DIR")
    assert download("mnist", files=SMALL[:1]) == [xdg / "simplexity" / SMALL[0]]
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.gz"))
    assert files == sorted(f"{d}/{SMALL[0]}" for d in ("arg", "env", "xdg/simplexity"))


def test_env_mirror_and_loader_download(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_MIRROR, server)
    monkeypatch.setenv("SIMPLEXITY_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.get("mnist", "test")
    test = data.get("mnist", "test", download=True)
    assert len(test) == 10_000 and (test.labels == 0).sum() == 980
    assert (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()


def test_offline_error_is_one_clear_line(tmp_path: Path) -> None:
    offline = _closed_port_url()
    resources = [
        Resource("mnist/a.gz", "0" * 64, (f"{offline}/a.gz", f"{offline}/a2.gz")),
        Resource("mnist/b.gz", "0" * 64, (f"{offline}/b.gz",)),
    ]
    with pytest.raises(data.DownloadError) as info:
        download(resources, tmp_path, retries=0)
    assert info.value.__cause__ is None and info.value.__context__ is None  # no chained traceback
    message = str(info.value)
    assert "\n" not in message and message.startswith("resources: 2 file(s) missing")
    assert str(tmp_path) in message and "data dir" in message
    assert (
        str(tmp_path / "mnist" / "a.gz") in message and str(tmp_path / "mnist" / "b.gz") in message
    )
    assert f"{offline}/a.gz" in message and f"{offline}/a2.gz" in message  # the URLs tried
    assert f"{offline}/b.gz" not in message  # offline after the first file: b is not tried
    assert "by hand" in message and ENV_MIRROR in message
    assert isinstance(info.value, FileNotFoundError)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="group must be one of"):
        download("cifar", tmp_path)
    with pytest.raises(ValueError, match="files"):
        download("mnist", tmp_path, files=["nope.gz"])
    with pytest.raises(ValueError, match="base_url"):
        download("mnist", tmp_path, base_url="not a url")
    with pytest.raises(ValueError, match="retries"):
        download("mnist", tmp_path, retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        download("mnist", tmp_path, timeout=0)
    with pytest.raises(TypeError, match="group"):
        download(["mnist/a.gz"], tmp_path)  # type: ignore[list-item]


def test_import_is_light() -> None:
    """pooch (and requests) are imported only when something is downloaded."""
    code = (
        "import sys, simplexity_lab.data, simplexity_lab.data.download; "
        "print(sorted(m for m in ('pooch', 'requests') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_resource_tables_match_shared_checksums() -> None:
    shared = _shared_dir()
    if shared is None:
        pytest.skip("shared data folder not found")
    sums = dict(reversed(line.split()) for line in (shared / "SHA256SUMS").read_text().splitlines())
    for group in RESOURCES.values():
        for resource in group:
            assert sums[resource.path] == resource.sha256
            assert resource.urls and all(u.startswith("http") for u in resource.urls)
            assert verify_file(resource, shared / resource.path)
