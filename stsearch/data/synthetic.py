"""Random tensors with random labels, for throughput and smoke tests only.

Not for accuracy: the labels carry no information about the inputs, so a
model can do no better than chance on the validation split.
Spec strings: ``synthetic[:CxHxW[:CLASSES[:SIZE]]]``, e.g. ``synthetic:3x32x32:10:2048``.
"""

from __future__ import annotations

import torch

from .base import ArrayDataset, DatasetInfo, check_split_args

__all__ = ["SYNTHETIC_FORMAT", "parse_synthetic_spec", "load_synthetic"]

SYNTHETIC_FORMAT = "synthetic[:CxHxW[:CLASSES[:SIZE]]]"
_DEFAULT_SHAPE = (3, 32, 32)


def parse_synthetic_spec(spec: str) -> dict[str, object]:
    """Keyword arguments of :func:`load_synthetic` encoded in a spec string."""
    parts = spec.strip().lower().split(":")
    if parts[0] != "synthetic" or len(parts) > 4:
        raise ValueError(f"bad synthetic dataset spec {spec!r}; expected {SYNTHETIC_FORMAT}")
    try:
        kwargs: dict[str, object] = {}
        if len(parts) > 1 and parts[1]:
            dims = tuple(int(d) for d in parts[1].split("x"))
            if len(dims) != 3:
                raise ValueError
            kwargs["shape"] = dims
        if len(parts) > 2 and parts[2]:
            kwargs["num_classes"] = int(parts[2])
        if len(parts) > 3 and parts[3]:
            kwargs["size"] = int(parts[3])
    except ValueError:
        raise ValueError(f"bad synthetic dataset spec {spec!r}; expected {SYNTHETIC_FORMAT}") from None
    return kwargs


def load_synthetic(
    shape: tuple[int, int, int] = _DEFAULT_SHAPE, num_classes: int = 10, size: int = 1024, *,
    val_fraction: float = 0.2, split_seed: int = 0, limit: int | None = None,
) -> tuple[ArrayDataset, ArrayDataset, DatasetInfo]:
    """Standard-normal inputs of ``shape`` with uniform random labels.

    Train has ``size`` samples (at most ``limit``), validation
    ``round(train_size * val_fraction)`` (at least 1); fixed by ``split_seed``.
    """
    check_split_args(val_fraction, limit)
    shape = tuple(int(d) for d in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 1 or num_classes < 1 or size < 1:
        raise ValueError(
            f"synthetic: need a positive (C, H, W) shape, num_classes and size; got {shape}, {num_classes}, {size}"
        )
    n_train = min(size, limit) if limit is not None else size
    n_val = max(1, round(n_train * val_fraction))
    gen = torch.Generator().manual_seed(split_seed)

    def make(n: int) -> ArrayDataset:
        return ArrayDataset(torch.randn(n, *shape, generator=gen), torch.randint(num_classes, (n,), generator=gen))

    train, val = make(n_train), make(n_val)
    name = f"synthetic:{'x'.join(map(str, shape))}:{num_classes}:{size}"
    info = DatasetInfo(
        name=name, num_classes=num_classes, input_shape=shape,  # type: ignore[arg-type]
        train_size=n_train, val_size=n_val, mean=(0.0,) * shape[0], std=(1.0,) * shape[0],
    )
    return train, val, info
