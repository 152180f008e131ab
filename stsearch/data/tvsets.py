"""``torchvision:NAME``: a torchvision dataset read from a local ``data_dir``, never downloaded.

Supported: CIFAR10, CIFAR100, MNIST, FashionMNIST, KMNIST, SVHN (the table :data:`TV_SETS`).
Train is the set's train split, validation its test split. The folder is checked before torchvision
sees it, so a missing or still-compressed copy is one line naming the missing files and how to get
them. Without ``transforms`` in the space, inputs are normalized with the set's usual per-channel
statistics and ``augment`` adds the usual augmentation (crop + flip for CIFAR, crop for SVHN, none
for the MNIST family); with ``transforms`` the space's pipeline (:mod:`stsearch.data.imagefolder`)
replaces it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Subset

from .base import DatasetInfo, check_split_args, subsample

__all__ = ["PREFIX", "TV_SETS", "tv_name", "tv_meta", "tv_root", "load_torchvision"]

PREFIX = "torchvision:"


@dataclass(frozen=True)
class TvSet:
    """What stsearch knows about one torchvision dataset class."""

    class_name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str  # "cifar" | "mnist" | "svhn": where the files live
    crop_padding: int  # augmentation: random crop with this padding (0: none)
    flip: bool  # augmentation: random horizontal flip


TV_SETS: dict[str, TvSet] = {s.class_name: s for s in (
    TvSet("CIFAR10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar", 4, True),
    TvSet("CIFAR100", 100, (3, 32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar", 4, True),
    TvSet("MNIST", 10, (1, 28, 28), (0.1307,), (0.3081,), "mnist", 0, False),
    TvSet("FashionMNIST", 10, (1, 28, 28), (0.2860,), (0.3530,), "mnist", 0, False),
    TvSet("KMNIST", 10, (1, 28, 28), (0.1918,), (0.3483,), "mnist", 0, False),
    TvSet("SVHN", 10, (3, 32, 32), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), "svhn", 4, False),
)}


def tv_name(name: str) -> str:
    """The torchvision class name of ``torchvision:NAME`` (case-insensitive); ``ValueError`` if unsupported."""
    given = name[len(PREFIX):] if name.startswith(PREFIX) else name
    for key in TV_SETS:
        if key.lower() == given.strip().lower():
            return key
    lower = {k.lower(): k for k in TV_SETS}
    close = [lower[c] for c in difflib.get_close_matches(given.strip().lower(), list(lower), n=2, cutoff=0.6)]
    hint = f" (did you mean {', '.join(PREFIX + c for c in close)}?)" if close else ""
    raise ValueError(f"dataset {name!r}: torchvision dataset {given!r} is not supported{hint}; supported: "
                     f"{', '.join(PREFIX + k for k in TV_SETS)}, or give package.module:callable for another")


def tv_meta(name: str, transforms: Mapping[str, Any] | None = None) -> tuple[int, tuple[int, ...]]:
    """``(num_classes, input_shape)`` of ``torchvision:NAME`` without its files (``transforms`` are applied
    to a blank image of the set's size)."""
    s = TV_SETS[tv_name(name)]
    if transforms is None:
        return s.num_classes, s.input_shape
    from PIL import Image

    from .imagefolder import build_transforms

    c, h, w = s.input_shape
    blank = Image.new("L" if c == 1 else "RGB", (w, h))
    return s.num_classes, tuple(build_transforms(transforms)[1](blank).shape)


def _cls(key: str) -> Any:
    import torchvision.datasets as tvd  # imported lazily: ~1-3 s, unneeded for the embedded datasets

    return getattr(tvd, key)


def _download_hint(key: str, where: str) -> str:
    split = "split='train'" if key == "SVHN" else "train=True"
    return (f"on a machine with internet run python -c \"import torchvision; torchvision.datasets.{key}('{where}', "
            f"{split}, download=True)\" (and the test split) and copy {where} here")


def _needed(key: str, root: Path) -> tuple[Path, list[str], list[str]]:
    """(folder the files must be in, file names, URLs to get them) for ``root`` as torchvision's ``root``."""
    cls, s = _cls(key), TV_SETS[key]
    if s.layout == "cifar":
        return root / cls.base_folder, [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]], [cls.url]
    if s.layout == "mnist":
        files = [f for f, _ in cls.resources]
        return root / key / "raw", [f.removesuffix(".gz") for f in files], [cls.mirrors[0] + f for f in files]
    parts = [cls.split_list[p] for p in ("train", "test")]
    return root, [p[1] for p in parts], [p[0] for p in parts]


def _candidates(key: str, given: Path) -> list[Path]:
    """The ``root`` folders ``data_dir`` may mean: itself, or its parents when it names the set's own folder."""
    out = [given]
    if given.name in (key, "raw", "cifar-10-batches-py", "cifar-100-python"):
        out.append(given.parent)
        if given.name == "raw":
            out.append(given.parent.parent)
    return out


def tv_root(name: str, data_dir: str | os.PathLike | None) -> Path:
    """The folder to pass to torchvision as ``root``. ``data_dir`` may be that folder or the set's own
    sub-folder. Missing files raise ``FileNotFoundError`` (one line: what is missing, how to get it)."""
    key = tv_name(name)
    if TV_SETS[key].layout == "cifar":
        from .cifar import cifar_root

        return cifar_root(key.lower(), data_dir)
    if data_dir is None:
        folder, files, urls = _needed(key, Path("DATA"))
        raise FileNotFoundError(f"dataset {name!r} needs a data folder: put {', '.join(files)} in DATA/"
                                f"{folder.relative_to('DATA')} (from {urls[0]}), then pass --data-dir DATA or set "
                                f"data_dir: in the space; or {_download_hint(key, 'DATA')}".replace("DATA/.", "DATA"))
    given = Path(data_dir).expanduser().resolve()
    for root in _candidates(key, given):
        folder, files, _ = _needed(key, root)
        if all((folder / f).is_file() for f in files):
            return root
    folder, files, urls = _needed(key, given)
    missing = [f for f in files if not (folder / f).is_file()]
    packed = [f for f in missing if (folder / (f + ".gz")).is_file()]
    if packed:
        raise FileNotFoundError(f"dataset {name!r}: {', '.join(f + '.gz' for f in packed)} in {folder} are still "
                                f"compressed: run `gunzip {folder}/*.gz`")
    raise FileNotFoundError(f"dataset {name!r}: {folder} lacks {', '.join(missing)}; get them from "
                            f"{' / '.join(urls[:2])}{' ...' if len(urls) > 2 else ''} into {folder}, or "
                            f"{_download_hint(key, str(given))}")


def _default_transforms(s: TvSet, augment: bool) -> tuple[Any, Any]:
    from torchvision import transforms as T

    tail = [T.ToTensor(), T.Normalize(s.mean, s.std)]
    head: list[Any] = []
    if augment and s.crop_padding:
        head.append(T.RandomCrop(s.input_shape[1], padding=s.crop_padding))
    if augment and s.flip:
        head.append(T.RandomHorizontalFlip())
    return T.Compose(head + tail), T.Compose(tail)


def _targets(ds: Any) -> Any:
    return ds.labels if hasattr(ds, "labels") and not hasattr(ds, "targets") else ds.targets


def load_torchvision(name: str, data_dir: str | os.PathLike | None, *, split_seed: int = 0, augment: bool = True,
                     limit: int | None = None, transforms: Mapping[str, Any] | None = None,
                     ) -> tuple[Dataset, Dataset, DatasetInfo]:
    """(train, validation, info) of ``torchvision:NAME`` (see the module doc); ``limit`` keeps at most that many
    samples of each split, stratified by class and fixed by ``split_seed``."""
    key = tv_name(name)
    check_split_args(0.5, limit)
    s, cls = TV_SETS[key], _cls(key)
    root = tv_root(name, data_dir)
    if transforms is not None:
        from .imagefolder import build_transforms

        train_tf, val_tf = build_transforms(transforms)
        if not augment:
            train_tf = val_tf
    else:
        train_tf, val_tf = _default_transforms(s, augment)

    def make(train: bool, tf: Any) -> Dataset:
        if s.layout == "svhn":
            return cls(root=str(root), split="train" if train else "test", transform=tf, download=False)
        return cls(root=str(root), train=train, transform=tf, download=False)

    try:
        train_ds, val_ds = make(True, train_tf), make(False, val_tf)
    except RuntimeError as err:  # torchvision's md5 check (CIFAR, SVHN) or an unreadable file
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RuntimeError(f"dataset {name!r} in {root} failed torchvision's checksum check ({text}): the copy is "
                           f"corrupted or partial; {_download_hint(key, str(root))}") from None
    shape, norm = s.input_shape, (s.mean, s.std)
    if transforms is not None:
        shape = tuple(val_ds[0][0].shape)  # type: ignore[assignment]
        given = transforms.get("normalize") or {}
        norm = (tuple(given.get("mean", [0.0] * shape[0])), tuple(given.get("std", [1.0] * shape[0])))
    if limit is not None:
        train_ds = Subset(train_ds, subsample(_targets(train_ds), limit, split_seed + 1).tolist())
        val_ds = Subset(val_ds, subsample(_targets(val_ds), limit, split_seed + 2).tolist())
    info = DatasetInfo(name=f"{PREFIX}{key}", num_classes=s.num_classes, input_shape=shape,  # type: ignore[arg-type]
                       train_size=len(train_ds), val_size=len(val_ds), mean=norm[0], std=norm[1])
    return train_ds, val_ds, info
