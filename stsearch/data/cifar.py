"""The on-disk layout of a local CIFAR-10 / CIFAR-100 copy (the official python archives).

:func:`cifar_root` checks a folder before torchvision sees it, so a missing or
unextracted copy gives one actionable line instead of torchvision's generic error.
The sets are loaded by :mod:`stsearch.data.tvsets` (``torchvision:CIFAR10``, alias ``cifar10``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CIFAR_URL", "cifar_root"]

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class _Variant:
    title: str
    class_name: str  # attribute of torchvision.datasets


_VARIANTS = {"cifar10": _Variant("CIFAR-10", "CIFAR10"), "cifar100": _Variant("CIFAR-100", "CIFAR100")}


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
