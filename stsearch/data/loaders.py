"""DataLoaders with deterministic, seeded shuffling."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["make_loaders"]


def make_loaders(
    train_ds: Dataset, val_ds: Dataset, batch_size: int, *,
    num_workers: int = 0, seed: int = 0, drop_last: bool = False,
) -> tuple[DataLoader, DataLoader]:
    """(train, validation) loaders; train is shuffled in an order fixed by ``seed``.

    The same ``seed`` gives the same sequence of epochs. Validation is not
    shuffled and keeps its last partial batch. Memory is pinned when CUDA is
    available. ``num_workers=0`` suits in-memory tensor datasets; use workers
    for datasets with per-sample transforms (CIFAR augmentation).
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers!r}")
    common = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )
    train = DataLoader(
        train_ds, shuffle=True, drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed), **common,
    )
    val = DataLoader(val_ds, shuffle=False, drop_last=False, **common)
    return train, val
