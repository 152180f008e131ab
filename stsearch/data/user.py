"""User datasets: ``register_dataset`` names and ``package.module:callable`` import paths.

A *loader* is a callable returning ``(train_dataset, val_dataset)`` (or ``(train, val, meta)``
with ``meta`` a mapping holding ``num_classes`` and/or ``input_shape``). It is called with
those of ``data_dir``, ``split_seed``, ``val_fraction``, ``augment`` and ``transforms`` its
signature names (all of them when it takes ``**kwargs``). Each sample is ``(input, label)``
with ``input`` a tensor and ``label`` an int.

What the model needs is read from the datasets unless the loader declares it: the number of
classes from ``num_classes``, else ``len(classes)``, else the largest label + 1 (of the
``targets`` / ``labels`` attribute, else of every sample); the input shape from
``train[0][0]``. ``limit`` is applied here, after that, so a loader never sees it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .base import RESERVED_NAMES, DatasetInfo, subsample

__all__ = ["LOADER_ARGS", "DatasetEntry", "register_dataset", "registered_datasets", "registered_entry",
           "load_user_dataset", "declared_meta"]

#: Keyword arguments a loader may take (by naming them in its signature).
LOADER_ARGS = ("data_dir", "split_seed", "val_fraction", "augment", "transforms")

Loader = Callable[..., Any]
F = TypeVar("F", bound=Loader)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class DatasetEntry:
    """A registered loader and what it declares (``None``: read from the datasets)."""

    name: str
    loader: Loader
    num_classes: int | None
    input_shape: tuple[int, ...] | None
    description: str


_REGISTRY: dict[str, DatasetEntry] = {}


def _origin(fn: Loader) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def register_dataset(name: str, *, num_classes: int | None = None, input_shape: Sequence[int] | None = None,
                     description: str | None = None) -> Callable[[F], F]:
    """Decorator registering a loader (see the module doc) as dataset ``name``.

    ``num_classes`` and ``input_shape`` declared here are used without calling the loader
    (a space is checked, and an export loaded, without reading the data).
    """
    if not isinstance(name, str) or not _NAME.match(name) or name.lower() in RESERVED_NAMES:
        raise ValueError(f"dataset name {name!r} is taken or not a plain name; use letters, digits, _ . - "
                         f"and none of {', '.join(RESERVED_NAMES)}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"register_dataset({name!r}): num_classes must be an int >= 1, got {num_classes!r}")
    shape = None if input_shape is None else tuple(int(v) for v in input_shape)
    if shape is not None and (not shape or min(shape) < 1):
        raise ValueError(f"register_dataset({name!r}): input_shape must be positive ints, got {input_shape!r}")

    def decorator(fn: F) -> F:
        old = _REGISTRY.get(name)
        if old is not None and _origin(old.loader) != _origin(fn):  # a re-imported module registers again
            raise ValueError(f"dataset {name!r} is already registered (by {_origin(old.loader)}); pick another name")
        doc = (description or (fn.__doc__ or "").strip().splitlines() or [""])
        text = doc if isinstance(doc, str) else doc[0]
        _REGISTRY[name] = DatasetEntry(name, fn, num_classes, shape, text)
        return fn

    return decorator


def registered_datasets() -> list[str]:
    """Sorted names of the datasets registered with :func:`register_dataset`."""
    return sorted(_REGISTRY)


def registered_entry(name: str) -> DatasetEntry | None:
    """The registration of ``name`` (``None`` if not registered)."""
    return _REGISTRY.get(name)


def declared_meta(entry: DatasetEntry) -> tuple[int, tuple[int, ...]] | None:
    """``(num_classes, input_shape)`` when the registration declares both, else ``None``."""
    if entry.num_classes is None or entry.input_shape is None:
        return None
    return entry.num_classes, entry.input_shape


def _kwargs_for(fn: Loader, available: Mapping[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(available)
    return {k: v for k, v in available.items() if k in params}


def _fail(what: str, problem: str, fix: str) -> Exception:
    from ..plugins import UserCodeError

    return UserCodeError(f"dataset {what}: {problem}; {fix}")


def _call(fn: Loader, what: str, available: Mapping[str, Any]) -> tuple[Dataset, Dataset, dict[str, Any]]:
    kwargs = _kwargs_for(fn, available)
    try:
        out = fn(**kwargs)
    except FileNotFoundError:
        raise  # the loader's own "where is my data" message, as it wrote it
    except Exception as err:  # noqa: BLE001  (user code: one line, with the arguments it got)
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise _fail(what, f"the loader called with {kwargs} raised {type(err).__name__}: {detail}",
                    "fix the loader") from None
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise _fail(what, f"the loader returned a {type(out).__name__}, not (train_dataset, val_dataset)",
                    "return a tuple of two datasets")
    meta = out[2] if len(out) == 3 else {}
    if isinstance(meta, DatasetInfo):
        meta = {"num_classes": meta.num_classes, "input_shape": meta.input_shape}
    if not isinstance(meta, Mapping):
        raise _fail(what, f"the third item returned is a {type(meta).__name__}",
                    "return {num_classes: ..., input_shape: ...} or only (train, val)")
    for i, ds in enumerate(out[:2]):
        if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
            raise _fail(what, f"{('train', 'val')[i]} is a {type(ds).__name__}, not a map-style dataset",
                        "return torch.utils.data.Dataset objects (with __getitem__ and __len__)")
        if len(ds) == 0:
            raise _fail(what, f"the {('train', 'val')[i]} dataset is empty", "return datasets with samples")
    return out[0], out[1], dict(meta)


def _base(ds: Any) -> Any:
    while isinstance(ds, Subset):
        ds = ds.dataset
    return ds


def _label(value: Any, what: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    raise _fail(what, f"a sample's label is {type(value).__name__} {str(value)[:40]!r}, not an int",
                "return (input, class index) samples")


def _labels(ds: Any, what: str) -> np.ndarray:
    """Every label of ``ds``: its ``targets`` / ``labels`` attribute (a Subset's indices applied), else
    read sample by sample."""
    base, idx = _base(ds), None
    if isinstance(ds, Subset) and base is not ds.dataset:
        base = None  # nested subsets: read the samples
    elif isinstance(ds, Subset):
        idx = np.asarray(ds.indices)
    for attr in ("targets", "labels", "tensors"):
        raw = getattr(base, attr, None) if base is not None else None
        if attr == "tensors" and isinstance(raw, tuple) and raw:  # a TensorDataset: labels come last
            raw = raw[-1]
        if raw is not None and not isinstance(raw, str):
            arr = raw.numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
            if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
                return arr[idx] if idx is not None else arr
    return np.array([_label(ds[i][1], what) for i in range(len(ds))], dtype=np.int64)


def _num_classes(train: Any, val: Any, what: str) -> int:
    for ds in (_base(train), _base(val)):
        n = getattr(ds, "num_classes", None)
        if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
            return n
        classes = getattr(ds, "classes", None)
        if isinstance(classes, (list, tuple)) and classes:
            return len(classes)
    top = max(int(_labels(train, what).max()), int(_labels(val, what).max()))
    return top + 1


def _input_shape(train: Any, what: str) -> tuple[int, ...]:
    sample = train[0]
    if not isinstance(sample, (tuple, list)) or len(sample) < 2:
        raise _fail(what, f"train[0] is a {type(sample).__name__}, not an (input, label) pair",
                    "make __getitem__ return (input_tensor, label)")
    x = sample[0]
    if not isinstance(x, torch.Tensor):
        hint = "add transforms.ToTensor() to the dataset" if type(x).__module__.startswith("PIL") else \
            "make the input a torch.Tensor"
        raise _fail(what, f"a sample's input is a {type(x).__name__}, not a tensor", hint)
    _label(sample[1], what)
    return tuple(int(d) for d in x.shape)


def load_user_dataset(name: str, loader: Loader, *, declared: Mapping[str, Any] | None = None,
                      data_dir: Any = None, split_seed: int = 0, val_fraction: float = 0.2, augment: bool = True,
                      transforms: Mapping[str, Any] | None = None,
                      limit: int | None = None) -> tuple[Dataset, Dataset, DatasetInfo]:
    """(train, validation, info) of a loader (see the module doc); ``name`` is how the space wrote it."""
    what = repr(name)
    available = dict(data_dir=None if data_dir is None else str(data_dir), split_seed=split_seed,
                     val_fraction=val_fraction, augment=augment, transforms=None if transforms is None else dict(transforms))
    train, val, meta = _call(loader, what, available)
    meta = {**{k: v for k, v in (declared or {}).items() if v is not None}, **meta}
    shape = tuple(int(v) for v in meta["input_shape"]) if meta.get("input_shape") else _input_shape(train, what)
    n = int(meta["num_classes"]) if meta.get("num_classes") else _num_classes(train, val, what)
    if limit is not None:
        def cut(ds: Any, seed: int) -> Any:
            return ds if limit >= len(ds) else Subset(ds, subsample(_labels(ds, what), limit, seed).tolist())

        train, val = cut(train, split_seed + 1), cut(val, split_seed + 2)
    c = shape[0] if len(shape) == 3 else 1
    info = DatasetInfo(name=name, num_classes=n, input_shape=shape, train_size=len(train),  # type: ignore[arg-type]
                       val_size=len(val), mean=(0.0,) * c, std=(1.0,) * c)
    return train, val, info
