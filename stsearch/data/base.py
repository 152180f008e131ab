"""Shared pieces of the data layer: dataset metadata, in-memory datasets, splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = ["RESERVED_NAMES", "DatasetInfo", "ArrayDataset", "stratified_split", "subsample", "check_split_args"]


#: Dataset names and prefixes stsearch itself resolves (a registered dataset may not take one).
RESERVED_NAMES = ("digits", "mnist5k", "cifar10", "cifar100", "synthetic", "imagefolder", "torchvision")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a trainer need to know about a loaded dataset.

    ``mean`` / ``std`` are the per-channel statistics the inputs were
    normalized with, in units of the [0, 1]-scaled pixels.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W) of one sample
    train_size: int
    val_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


class ArrayDataset(TensorDataset):
    """An in-memory dataset of ``(N, C, H, W)`` float32 inputs and int64 labels."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        if inputs.ndim != 4:
            raise ValueError(f"ArrayDataset: inputs must be (N, C, H, W), got shape {tuple(inputs.shape)}")
        if labels.shape != (inputs.shape[0],):
            raise ValueError(f"ArrayDataset: labels must be ({inputs.shape[0]},), got {tuple(labels.shape)}")
        super().__init__(inputs.to(torch.float32), labels.to(torch.int64))

    @property
    def inputs(self) -> torch.Tensor:
        """All inputs, ``(N, C, H, W)`` float32."""
        return self.tensors[0]

    @property
    def labels(self) -> torch.Tensor:
        """All labels, ``(N,)`` int64."""
        return self.tensors[1]


def check_split_args(val_fraction: float, limit: int | None) -> None:
    """Raise ``ValueError`` for a ``val_fraction`` outside (0, 1) or a non-positive ``limit``."""
    if not (isinstance(val_fraction, (int, float)) and 0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")


def stratified_split(labels: np.ndarray, n_second: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices ``0..N-1`` into two sorted parts, the second of size ``n_second``.

    Each class is shared between the parts in proportion to its size; the
    result depends only on ``labels``, ``n_second`` and ``seed`` (numpy's
    PCG64 generator), not on library versions that could change a split.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if not 0 <= n_second <= n:
        raise ValueError(f"cannot take {n_second} of {n} samples")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (n_second / n) if n else counts.astype(float)
    take = np.floor(quota).astype(np.int64)
    # Hand the remaining samples to the classes with the largest remainders.
    extra = n_second - int(take.sum())
    if extra > 0:
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:extra]] += 1
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    for cls, k in zip(classes, take):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        second.append(idx[:k])
        first.append(idx[k:])
    empty = np.empty(0, dtype=np.int64)
    return (np.sort(np.concatenate(first or [empty])), np.sort(np.concatenate(second or [empty])))


def subsample(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``limit`` samples, stratified by label and fixed by ``seed``."""
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n)
    return stratified_split(labels, limit, seed)[1]
