"""CIFAR-10 / CIFAR-100 from a local copy of the official python archives.

Loaded through torchvision's own ``CIFAR10`` / ``CIFAR100`` classes with
``download=False``; the folder layout is checked first so a missing or
unextracted copy gives one actionable line instead of torchvision's generic
error. Train = the CIFAR train set, validation = the CIFAR test set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Subset

from .base import DatasetInfo, check_split_args, subsample

__all__ = ["CIFAR_URL", "load_cifar", "cifar_root"]

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class _Variant:
    title: str
    class_name: str  # attribute of torchvision.datasets
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_VARIANTS = {
    "cifar10": _Variant("CIFAR-10", "CIFAR10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": _Variant("CIFAR-100", "CIFAR100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _tv_class(name: str) -> Any:
    import torchvision.datasets  # imported lazily: ~1-3 s, unneeded for the embedded datasets

    return getattr(torchvision.datasets, _VARIANTS[name].class_name)


def cifar_root(name: str, data_dir: str | os.PathLike | None) -> Path:
    """The folder to pass to torchvision as ``root`` (parent of ``cifar-10-batches-py`` etc.).

    ``data_dir`` may be that parent or the extracted folder itself. Raises
    ``FileNotFoundError`` (one line, with how to get the data) if files are missing.
    """
    var, cls = _VARIANTS[name], _tv_class(name)
    base, archive = cls.base_folder, cls.filename
    get = f"download {archive} from {CIFAR_URL} and extract it"
    if data_dir is None:
        raise FileNotFoundError(
            f"{var.title} needs a data folder: {get} into a folder (it creates {base}/), then pass --data-dir FOLDER"
        )
    given = Path(data_dir).expanduser()
    root = given.parent if given.name == base else given
    needed = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [f for f in needed if not (root / base / f).is_file()]
    if not missing:
        return root
    if (root / archive).is_file() and not (root / base).is_dir():
        raise FileNotFoundError(
            f"{var.title} not extracted in {root}: run `tar xzf {root / archive} -C {root}`, then pass --data-dir {root}"
        )
    if (root / base).is_dir():
        raise FileNotFoundError(
            f"{var.title} incomplete in {root / base} (missing {', '.join(missing)}): {get} again into {root}"
        )
    raise FileNotFoundError(
        f"{var.title} not found in {root}: {get} there (it creates {base}/), then pass --data-dir {root}"
    )


def _transforms(var: _Variant, augment: bool) -> tuple[Any, Any]:
    """(train, validation) transforms: standard crop+flip augmentation, then normalization."""
    from torchvision import transforms as T

    tail = [T.ToTensor(), T.Normalize(var.mean, var.std)]
    head = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    return T.Compose(head + tail), T.Compose(tail)


def load_cifar(
    name: str, data_dir: str | os.PathLike | None, *, split_seed: int = 0,
    augment: bool = True, limit: int | None = None,
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """CIFAR train set (optionally augmented) and test set as validation, both normalized.

    ``limit`` keeps at most that many samples of each split, stratified by
    class and fixed by ``split_seed``.
    """
    if name not in _VARIANTS:
        raise ValueError(f"unknown CIFAR variant {name!r}; known: {', '.join(_VARIANTS)}")
    check_split_args(0.5, limit)
    var, cls = _VARIANTS[name], _tv_class(name)
    root = cifar_root(name, data_dir)
    train_tf, val_tf = _transforms(var, augment)
    try:
        train: Dataset = cls(root=str(root), train=True, transform=train_tf, download=False)
        val: Dataset = cls(root=str(root), train=False, transform=val_tf, download=False)
    except RuntimeError as err:
        if "corrupted" not in str(err):  # only torchvision's md5-check failure is reworded
            raise
        raise RuntimeError(
            f"{var.title} in {root / cls.base_folder} failed torchvision's checksum check "
            f"(corrupted or partial copy: {err}); re-download {cls.filename} from {CIFAR_URL}"
        ) from None
    if limit is not None:
        train = Subset(train, subsample(train.targets, limit, split_seed + 1).tolist())
        val = Subset(val, subsample(val.targets, limit, split_seed + 2).tolist())
    info = DatasetInfo(
        name=name, num_classes=var.num_classes, input_shape=(3, 32, 32),
        train_size=len(train), val_size=len(val), mean=var.mean, std=var.std,
    )
    return train, val, info
