"""``imagefolder:PATH``: torchvision ``ImageFolder`` over ``PATH/train`` and ``PATH/val``, with the
space's ``transforms``.

``transforms`` (all optional): ``resize`` (int or ``[H, W]``), ``center_crop`` (int or ``[H, W]``,
train and validation), ``random_crop`` (int, or ``{size, padding}``; train only, validation takes
the center crop of that size), ``flip`` (``true``: random horizontal flip, train only),
``normalize`` (``{mean: [...], std: [...]}``, per channel, of [0, 1] pixels). Without ``normalize``
the pixels stay in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset, Subset

from .base import DatasetInfo, subsample

__all__ = ["PREFIX", "TRANSFORM_KEYS", "image_folders", "build_transforms", "load_imagefolder"]

PREFIX = "imagefolder:"
TRANSFORM_KEYS = ("resize", "center_crop", "random_crop", "flip", "normalize")
_HOW = "put one sub-folder of images per class in PATH/train and in PATH/val (torchvision ImageFolder layout)"


def image_folders(name: str) -> tuple[Path, Path]:
    """``(PATH/train, PATH/val)`` of ``imagefolder:PATH``; a missing folder raises ``FileNotFoundError``
    naming it and the layout expected."""
    root = Path(name[len(PREFIX):]).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset {name!r}: folder {root} does not exist; {_HOW}")
    folders = (root / "train", root / "val")
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"dataset {name!r}: {root} has no {folder.name}/ folder; {_HOW}")
    return folders


def _size(value: Any, key: str) -> Any:
    ok = isinstance(value, int) and value > 0 or (
        isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value))
    if not ok or isinstance(value, bool):
        raise ValueError(f"transforms.{key}: expected a size (int or [H, W]), got {value!r}; e.g. {key}: 32")
    return value if isinstance(value, int) else tuple(value)


def build_transforms(spec: Mapping[str, Any] | None) -> tuple[Any, Any]:
    """(train, validation) torchvision transforms of a ``transforms`` mapping (``ValueError`` naming a bad key)."""
    from torchvision import transforms as T

    spec = dict(spec or {})
    for key in spec:
        if key not in TRANSFORM_KEYS:
            raise ValueError(f"transforms.{key}: unknown key; allowed: {', '.join(TRANSFORM_KEYS)}")
    head: list[Any] = [T.Resize(_size(spec["resize"], "resize"))] if "resize" in spec else []
    train, val = list(head), list(head)
    if "center_crop" in spec:
        crop = T.CenterCrop(_size(spec["center_crop"], "center_crop"))
        train.append(crop)
        val.append(crop)
    if "random_crop" in spec:
        rc = spec["random_crop"]
        size, padding = (rc.get("size"), rc.get("padding", 0)) if isinstance(rc, Mapping) else (rc, 0)
        size = _size(size, "random_crop")
        train.append(T.RandomCrop(size, padding=int(padding)))
        val.append(T.CenterCrop(size))
    flip = spec.get("flip", False)
    if not isinstance(flip, bool):
        raise ValueError(f"transforms.flip: expected true or false, got {flip!r}; e.g. flip: true")
    if flip:
        train.append(T.RandomHorizontalFlip())
    tail: list[Any] = [T.ToTensor()]
    if "normalize" in spec:
        norm = spec["normalize"]
        if not (isinstance(norm, Mapping) and isinstance(norm.get("mean"), list) and isinstance(norm.get("std"), list)):
            raise ValueError(f"transforms.normalize: expected {{mean: [...], std: [...]}}, got {norm!r}; "
                             f"e.g. normalize: {{mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}")
        tail.append(T.Normalize(norm["mean"], norm["std"]))
    return T.Compose(train + tail), T.Compose(val + tail)


def load_imagefolder(name: str, transforms: Mapping[str, Any] | None = None, *, augment: bool = True,
                     split_seed: int = 0, limit: int | None = None) -> tuple[Dataset, Dataset, DatasetInfo]:
    """(train, validation, info) of ``imagefolder:PATH``; ``augment=False`` gives train the validation transform."""
    from torchvision.datasets import ImageFolder

    train_dir, val_dir = image_folders(name)
    train_tf, val_tf = build_transforms(transforms)
    try:
        train = ImageFolder(str(train_dir), transform=train_tf if augment else val_tf)
        val = ImageFolder(str(val_dir), transform=val_tf)
    except (FileNotFoundError, RuntimeError) as err:
        raise FileNotFoundError(f"dataset {name!r}: {str(err).strip().splitlines()[0]}; {_HOW}") from None
    if train.classes != val.classes:
        raise ValueError(f"dataset {name!r}: train/ has classes {train.classes[:8]} but val/ has {val.classes[:8]}; "
                         f"give both folders the same class sub-folders")
    shape = tuple(val[0][0].shape)
    if len(shape) != 3:
        raise ValueError(f"dataset {name!r}: a transformed image has shape {list(shape)}, not [C, H, W]")
    if limit is not None:
        train = Subset(train, subsample(train.targets, limit, split_seed + 1).tolist())  # type: ignore[assignment]
        val = Subset(val, subsample(val.targets, limit, split_seed + 2).tolist())  # type: ignore[assignment]
    norm = (transforms or {}).get("normalize") or {}
    c = shape[0]
    info = DatasetInfo(name=name, num_classes=len(val.dataset.classes if isinstance(val, Subset) else val.classes),
                       input_shape=shape, train_size=len(train), val_size=len(val),  # type: ignore[arg-type]
                       mean=tuple(norm.get("mean", [0.0] * c)), std=tuple(norm.get("std", [1.0] * c)))
    return train, val, info
