"""Tests of the data loaders, the registry and the data-dir resolution (simplexity_lab.data)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import simplexity_lab.data as data
from simplexity_lab.data import cache
from simplexity_lab.data.amat import parse_amat, read_amat
from simplexity_lab.data.idx import parse_idx
from simplexity_lab.data.omniglot import area_weights, downsample, read_omniglot
from simplexity_lab.data.paths import ENV_DATA_DIR, default_data_dir, resolve_data_dir

REPO = Path(__file__).resolve().parents[1]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _real_data_dir() -> Path | None:
    root = Path(os.environ.get(ENV_DATA_DIR) or REPO.parent / "shared" / "data")
    return root if (root / "mnist").is_dir() else None


REAL = _real_data_dir()
needs_real = pytest.mark.skipif(
    REAL is None,
    reason=f"real data sets not found (set {ENV_DATA_DIR}, e.g. to ../shared/data)",
)


@pytest.fixture(scope="module")
def real_dir() -> Path:
    assert REAL is not None
    return REAL


# ---------------------------------------------------------------------------- data dir


def test_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv(ENV_DATA_DIR)
    assert resolve_data_dir() == tmp_path / "xdg" / "simplexity"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert resolve_data_dir() == Path.home() / ".cache" / "simplexity"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == Path.home() / ".cache" / "simplexity"


def test_data_dir_relative_and_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_DATA_DIR, "../shared/data")
    assert resolve_data_dir() == tmp_path / ".." / "shared" / "data"
    assert resolve_data_dir("~/x") == Path.home() / "x"
    monkeypatch.setenv(ENV_DATA_DIR, "")  # empty counts as unset
    assert resolve_data_dir().name == "simplexity"
    with pytest.raises(TypeError, match="data_dir"):
        resolve_data_dir(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data_dir"):
        resolve_data_dir("")


def test_missing_files_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        data.get("fashion_mnist", "test")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path) in message and ENV_DATA_DIR in message
    assert str(tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz") in message
    assert "download=True" in message
    assert isinstance(info.value, data.MissingDataError)


# ---------------------------------------------------------------------------- formats


def test_parse_idx() -> None:
    header = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2])
    assert parse_idx(
        header + (7).to_bytes(4, "big") + (-1).to_bytes(4, "big", signed=True)
    ).tolist() == [7, -1]
    with pytest.raises(ValueError, match="magic"):
        parse_idx(b"\x01\x00\x08\x01")
    with pytest.raises(ValueError, match="dtype code"):
        parse_idx(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 0]))
    with pytest.raises(ValueError, match="payload"):
        parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2]))


def test_parse_amat() -> None:
    regular = b"0 1 1\n1 0 0\n"
    irregular = b"0  1\t1 \r\n1 0 0"
    for text in (regular, irregular):
        assert parse_amat(text, num_features=3).tolist() == [[0, 1, 1], [1, 0, 0]]
    with pytest.raises(ValueError, match="0/1"):
        parse_amat(b"0 2 1\n", num_features=3)
    with pytest.raises(ValueError, match="multi-digit"):
        parse_amat(b"0 10 1\n", num_features=3)
    with pytest.raises(ValueError, match="expected 3 a line"):
        parse_amat(b"0 1\n1 0\n", num_features=3)


def test_plain_amat_is_accepted(tmp_path: Path) -> None:
    rows = np.random.default_rng(0).integers(0, 2, size=(3, 784))
    folder = tmp_path / "binarized-mnist"
    folder.mkdir()
    text = "".join(" ".join(map(str, r)) + "\n" for r in rows).encode()
    (folder / "binarized_mnist_test.amat").write_bytes(text)
    split = data.get("binarized_mnist", "test", data_dir=tmp_path, flatten=True)
    assert split.labels is None and split.data.shape == (3, 784)
    assert torch.equal(split.data, torch.from_numpy(rows.astype(np.float32)))
    with gzip.open(folder / "binarized_mnist_valid.amat.gz", "wb") as f:
        f.write(text)
    assert read_amat(folder / "binarized_mnist_valid.amat.gz").tolist() == rows.tolist()


def test_area_weights_and_downsample() -> None:
    weights = area_weights(105, 28)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(weights.sum(axis=0), 28 / 105)  # every input pixel counted once
    blank = np.ones((2, 105, 105), dtype=bool)
    assert downsample(blank).shape == (2, 28, 28) and downsample(blank).max() == 0
    assert downsample(~blank).min() == pytest.approx(1.0)
    # An exact 4×4 block of strokes covers output pixel (0, 0) on 3.75×3.75 of its area.
    img = np.ones((105, 105), dtype=bool)
    img[:4, :4] = False
    out = downsample(img, 28)
    assert out[0, 0] == pytest.approx(1.0) and out[1, 1] == pytest.approx(0.25**2 / 3.75**2)
    assert out.sum() == pytest.approx(16 / 3.75**2)  # mass is preserved
    np.testing.assert_array_equal(downsample(img, 105), (~img).astype(np.float32))
    with pytest.raises(ValueError, match="size"):
        downsample(img, 0)


# ---------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def mnist_test(real_dir: Path) -> data.Split:
    return data.get("mnist", "test", data_dir=real_dir)


@needs_real
def test_mnist_test(mnist_test: data.Split) -> None:
    images, labels = mnist_test.images, mnist_test.labels
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.float32
    assert labels is not None and labels.dtype == torch.int64
    assert images.min() == 0 and images.max() == 1
    assert torch.bincount(labels).tolist() == MNIST_TEST_COUNTS
    assert (labels == 0).sum() == 980
    x, y = mnist_test[3]
    assert x.shape == (1, 28, 28) and y.dim() == 0
    assert len(mnist_test) == 10_000 and len(mnist_test.tensors) == 2


@needs_real
def test_mnist_train_valid_and_cache(real_dir: Path) -> None:
    train = data.get("mnist", "train", data_dir=real_dir)
    hits = cache.cached_idx.cache_info().hits
    valid = data.get("mnist", "valid", data_dir=real_dir, flatten=True)
    trainval = data.load_mnist("trainval", data_dir=real_dir)
    assert cache.cached_idx.cache_info().hits >= hits + 4  # parsed once per process
    assert len(train) == 50_000 and valid.data.shape == (10_000, 784)
    assert torch.bincount(trainval.labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.equal(trainval.data[50_000:].reshape(-1, 784), valid.data)
    train.data.fill_(0)  # callers get their own tensors: the cache is unaffected
    assert data.get("mnist", "train", data_dir=real_dir).data.max() == 1


@needs_real
def test_fashion_mnist(real_dir: Path) -> None:
    test = data.get("fashion_mnist", "test", data_dir=real_dir)
    assert test.data.shape == (10_000, 1, 28, 28) and 0 <= test.data.min() < test.data.max() <= 1
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    valid = data.get("fashion_mnist", "valid", data_dir=real_dir)
    assert len(valid) == 10_000 and valid.labels.max() == 9


@needs_real
def test_binarized_mnist(real_dir: Path) -> None:
    for split, n in (("valid", 10_000), ("test", 10_000)):
        s = data.get("binarized_mnist", split, data_dir=real_dir)
        assert s.data.shape == (n, 1, 28, 28) and s.labels is None
        assert set(s.data.unique().tolist()) == {0.0, 1.0}
        assert 0.1 < s.data.mean() < 0.16
        assert len(s[0]) == 1


@needs_real
def test_dynamic_mnist(real_dir: Path, mnist_test: data.Split) -> None:
    dyn = data.get("dynamic_mnist", "test", data_dir=real_dir, seed=3)
    assert isinstance(dyn, data.DynamicallyBinarized) and len(dyn) == 10_000
    x1, y1 = dyn[7]
    x2, _ = dyn[7]
    assert set(x1.unique().tolist()) <= {0.0, 1.0} and y1 == mnist_test.labels[7]
    assert not torch.equal(x1, x2)  # resampled on each access
    again = data.get("dynamic_mnist", "test", data_dir=real_dir, seed=3)
    assert torch.equal(again[7][0], x1)  # but reproducible from the seed
    fixed = dyn.sample(torch.Generator().manual_seed(0))
    assert fixed.data.shape == mnist_test.data.shape
    assert abs(fixed.data.mean() - mnist_test.data.mean()) < 0.01
    assert ((fixed.data == 1) <= (mnist_test.data > 0)).all()  # never on a black pixel


@needs_real
def test_omniglot_test(real_dir: Path) -> None:
    test = data.get("omniglot", "test", data_dir=real_dir)
    assert test.data.shape == (13_180, 1, 28, 28) and test.data.dtype == torch.float32
    assert test.labels.min() == 0 and test.labels.max() == 658
    assert torch.bincount(test.labels).tolist() == [20] * 659
    raw, _ = read_omniglot(real_dir / "omniglot" / "images_evaluation.npz")
    # Strokes are 1, background 0: the mean equals the fraction of stroke pixels.
    assert test.data.mean().item() == pytest.approx(1 - raw.mean(), rel=1e-4)
    assert test.data.min() == 0 and test.data.max() == 1
    assert (test.data[:, :, 0, :] == 0).float().mean() > 0.9  # borders are background
    first = torch.from_numpy(downsample(raw[0, 0]))
    torch.testing.assert_close(test.data[0, 0], first)  # character-major, then drawer
    torch.testing.assert_close(test.data[21, 0], torch.from_numpy(downsample(raw[1, 1])))


@needs_real
def test_omniglot_train_valid(real_dir: Path) -> None:
    train = data.get("omniglot", "train", data_dir=real_dir)
    valid = data.get("omniglot", "valid", data_dir=real_dir)
    assert train.data.shape == (17_352, 1, 28, 28) and valid.data.shape == (1_928, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [18] * 964
    assert torch.bincount(valid.labels).tolist() == [2] * 964


def test_digits() -> None:
    pytest.importorskip("sklearn")
    splits = {s: data.get("digits", s) for s in ("train", "valid", "test", "trainval")}
    assert [len(splits[s]) for s in ("train", "valid", "test", "trainval")] == [
        1297,
        200,
        300,
        1497,
    ]
    train = splits["train"]
    assert train.data.shape == (1297, 1, 8, 8) and train.labels.dtype == torch.int64
    assert train.data.min() == 0 and train.data.max() == 1
    assert data.get("digits", "test", flatten=True).data.shape == (300, 64)


def test_digits_does_not_import_sklearn_at_import_time() -> None:
    import subprocess
    import sys

    code = "import sys, simplexity_lab.data; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_toy2d() -> None:
    toy2d = pytest.importorskip("simplexity_lab.data.toy2d")
    name = sorted(toy2d.NAMES)[0]
    assert f"toy2d:{name}" in data.names()
    train = data.get(f"toy2d:{name}", "train", num=500, seed=1)
    assert train.data.shape == (500, 2) and train.data.dtype == torch.float32
    assert train.labels is None and torch.isfinite(train.data).all()
    assert torch.equal(data.get(f"toy2d:{name}", "train", num=500, seed=1).data, train.data)
    assert not torch.equal(data.get(f"toy2d:{name}", "test", num=500, seed=1).data, train.data)
    with pytest.raises(ValueError, match="unknown data set 'toy2d:no-such-density'"):
        data.get("toy2d:no-such-density", "train")


# ---------------------------------------------------------------------------- registry


def test_registry() -> None:
    names = data.names()
    for name in ("mnist", "fashion_mnist", "binarized_mnist", "dynamic_mnist", "omniglot"):
        assert name in names
        assert data.info(name).files in data.RESOURCES
    assert "digits" in names and data.info("digits").files is None
    with pytest.raises(ValueError, match="unknown data set 'cifar10'; expected one of: mnist"):
        data.get("cifar10", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        data.get("mnist", "training")
    with pytest.raises(TypeError, match="split must be a str"):
        data.get("mnist", 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not accepted"):
        data.get("mnist", "test", size=28)
    with pytest.raises(TypeError, match="flatten"):
        data.get("mnist", "test", flatten="yes")
    with pytest.raises(ValueError, match="size"):
        data.get("omniglot", "test", size=200)
    with pytest.raises(ValueError, match="already registered"):
        data.register("mnist", description="again")
    with pytest.raises(ValueError, match="toy2d:"):
        data.register("toy2d:mine", description="a toy name")


def test_register_custom(tmp_path: Path) -> None:
    @data.register("tiny_custom_test_set", description="a test entry")
    def load_tiny(split: str, *, scale: float = 1.0) -> data.Split:
        return data.Split(torch.ones(2, 3) * scale, None, name="tiny", split=split)

    try:
        assert "tiny_custom_test_set" in data.names()
        assert data.get("tiny_custom_test_set", "valid", scale=2.0).data.max() == 2
    finally:
        del data.DATASETS._entries["tiny_custom_test_set"]  # the Registry has no public removal


def test_split_container() -> None:
    split = data.Split(torch.zeros(4, 2), torch.arange(4), name="demo", split="train")
    assert isinstance(split, torch.utils.data.Dataset)
    batch = next(iter(torch.utils.data.DataLoader(split, batch_size=4)))
    assert batch[0].shape == (4, 2) and batch[1].tolist() == [0, 1, 2, 3]
    assert "demo" in repr(split)
    with pytest.raises(ValueError, match="labels"):
        data.Split(torch.zeros(4, 2), torch.arange(3))
    with pytest.raises(TypeError, match="data"):
        data.Split(np.zeros(3))  # type: ignore[arg-type]


def test_dynamic_binarization_workers_differ() -> None:
    probs = data.Split(torch.full((8, 64), 0.5), torch.arange(8), name="demo", split="train")
    dyn = data.DynamicallyBinarized(probs, seed=0)
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(dyn, batch_size=1, num_workers=0)
    first = torch.cat([x for x, _ in loader])
    second = torch.cat([x for x, _ in loader])
    assert not torch.equal(first, second)  # a new binarization every epoch
    with pytest.raises(TypeError, match="seed"):
        data.DynamicallyBinarized(probs, seed=1.5)  # type: ignore[arg-type]
