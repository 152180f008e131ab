"""Validation of a space's user-code keys: ``plugins``, ``python_path``, ``model`` (a reference),
``input_shape``, and the model's output against the dataset's class count.

Each check raises :class:`~stsearch.space.schema.SpaceError` at its key, so a loaded file reports
``<file>:<line>: <key>: <problem>; <fix>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from ..plugins import import_plugins, user_roots

if TYPE_CHECKING:
    from .schema import SearchSpace

__all__ = ["check_plugins", "check_model", "check_input_shape", "record_roots", "check_output", "check_dataset",
           "check_dataset_info", "dataset_meta_of"]


def _fail(path: tuple[Any, ...], message: str) -> Exception:
    from .types import SpaceError

    return SpaceError(path, message)


def _str_list(raw: Any, key: str, example: str) -> list[str]:
    items = [raw] if isinstance(raw, str) else raw
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
        raise _fail((key,), f"expected a list of strings, got {raw!r}; e.g. {key}: {example}")
    return list(dict.fromkeys(items))


def check_plugins(data: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``(plugins, python_path)`` of the space, the plugins imported (the folders first on ``sys.path``)."""
    python_path = _str_list(data.get("python_path"), "python_path", "[/home/me/project]")
    plugins = _str_list(data.get("plugins"), "plugins", "[my_models]")
    for i, name in enumerate(plugins):
        try:
            import_plugins([name], python_path)
        except ValueError as err:
            raise _fail(("plugins", i), f"{err}") from None
    return plugins, python_path


def check_model(raw: Any, python_path: list[str]) -> str:
    """The model reference, parsed and its factory importable (it is built later, on the meta device)."""
    from ..models.reference import model_factory, parse_model_ref

    if raw is None:
        from ..models import list_models

        raise _fail(("model",), f"missing; add model: <name>, one of {', '.join(list_models())}, "
                                f"or torchvision:NAME, or package.module:callable")
    try:
        ref = parse_model_ref(raw)
        model_factory(ref, tuple(python_path))
    except ValueError as err:
        raise _fail(("model",), str(err)) from None
    return ref.text


def record_roots(plugins: list[str], model: str, python_path: list[str], extra: list[str] = ()) -> list[str]:
    """``python_path`` plus the folders the plugins, an import-path model and ``extra`` modules came from."""
    from ..models.reference import ref_module

    modules = [*plugins, *([m] if (m := ref_module(model)) else []), *extra]
    return list(dict.fromkeys([*python_path, *user_roots(modules)]))


def check_input_shape(raw: Any) -> tuple[int, int, int] | None:
    """``input_shape: [C, H, W]`` (positive ints) or ``None``."""
    if raw is None:
        return None
    ok = isinstance(raw, list) and len(raw) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                          for v in raw)
    if not ok:
        raise _fail(("input_shape",), f"expected [C, H, W] (three positive ints), got {raw!r}; "
                                      f"e.g. input_shape: [3, 32, 32]")
    return tuple(raw)  # type: ignore[return-value]


def check_output(space: "SearchSpace", meta: torch.nn.Module) -> None:
    """The model maps one ``input_shape`` sample to one logit per dataset class."""
    want = space.num_classes
    shape = space.input_shape()
    try:
        with torch.no_grad():
            out = meta.eval()(torch.empty((1, *shape), device="meta"))
    except Exception as err:  # noqa: BLE001  (user code)
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        key = "input_shape" if "input_shape" in space.raw else "model"
        raise _fail((key,), f"{space.model} fails on an input of shape {list(shape)} ({type(err).__name__}: "
                            f"{detail}); set input_shape: [C, H, W] to what the model takes") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise _fail(("model",), f"{space.model} returns {got} for one sample, not (1, classes) logits; "
                                f"return a (batch, classes) tensor from forward")
    if want is not None and out.shape[1] != want:
        raise _fail(("model",), f"{space.model} outputs {out.shape[1]} classes but dataset {space.dataset!r} has "
                                f"{want}; drop num_classes from model_kwargs so the dataset sets it, or make "
                                f"the factory accept num_classes")


def _resolve_type(name: str) -> type | None:
    """The class a ``types:`` entry names: a ``torch.nn`` class (``Conv2d``, ``nn.Linear``) or an import path."""
    from torch import nn

    from ..plugins import import_object, is_import_path

    if is_import_path(name):
        try:
            obj = import_object(name, "types entry")
        except ValueError:
            return None
    else:
        obj = getattr(nn, name.removeprefix("torch.").removeprefix("nn."), None)
    return obj if isinstance(obj, type) and issubclass(obj, nn.Module) else None


def is_of_types(module: Any, types: tuple[str, ...]) -> bool:
    """Whether ``module`` is an instance of one of the (valid) ``types`` names."""
    return any(isinstance(module, cls) for cls in map(_resolve_type, types) if cls is not None)


def check_types(raw: Any, path: tuple[Any, ...]) -> tuple[str, ...]:
    """A group's ``types``: each a module class, e.g. ``[Conv2d, Linear]`` or ``package.module:Class``."""
    if raw is None or raw == []:  # [] as to_dict writes "any type"
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise _fail(path, f"expected a list of module class names, got {raw!r}; e.g. types: [Conv2d, Linear]")
    for i, name in enumerate(items):
        if _resolve_type(name) is None:
            raise _fail((*path, i), f"{name!r} is not a module class (of torch.nn, or package.module:Class "
                                    f"subclassing nn.Module); use e.g. types: [Conv2d, Linear]")
    return tuple(dict.fromkeys(items))


def blocked_layers(model: torch.nn.Module) -> dict[str, str]:
    """Dotted path -> why it cannot be factorized, for the model's conv/linear-like layers no family represents."""
    from .inventory import unfactorizable_reason

    return {n: r for n, m in model.named_modules() if (r := unfactorizable_reason(m))}


def unrepresentable(hit: Mapping[str, str]) -> str:
    """``selects only layers no family can represent: <path> (<reason>), ...; <fix>``."""
    named = ", ".join(f"{n} ({r})" for n, r in list(hit.items())[:6]) + (", ..." if len(hit) > 6 else "")
    return (f"selects only layers no family can represent: {named}; select Conv2d (groups=1) or Linear "
            f"layers, see 'stsearch layers SPACE'")


def check_group_layers(group: Any, path: tuple[Any, ...], model: torch.nn.Module) -> None:
    """A group must select some factorizable layer; one that selects only layers no family can represent
    (grouped convolutions, Conv1d, ...) is an error naming them and why."""
    from ..compress import factorizable_layers

    if any(group.matches(n, m) for n, m in factorizable_layers(model).items()):
        return
    modules = dict(model.named_modules())
    hit = {n: r for n, r in blocked_layers(model).items() if group.matches(n, modules[n])}
    if hit:
        raise _fail(path, f"{group.name} {unrepresentable(hit)}")
    raise _fail(path, f"{group.name} selects no conv/linear layer (match {list(group.match)}, types "
                      f"{list(group.types)}); see 'stsearch layers SPACE' for the layers and their types")


def check_dataset(raw: Any, transforms: Any, python_path: list[str]) -> tuple[str, dict[str, Any] | None, str | None]:
    """``(dataset, transforms, module)`` of a space: the reference parsed (an import path imported: ``module``
    is its module, for ``python_path``), an ``imagefolder:PATH`` made absolute (trials may run in another
    folder) with its ``train/`` and ``val/`` present, and ``transforms`` valid where they apply."""
    from pathlib import Path

    from ..data import list_datasets, parse_dataset_ref
    from ..data.imagefolder import PREFIX, build_transforms, image_folders
    from ..plugins import import_object

    if raw is None:
        raise _fail(("dataset",), f"missing; add dataset: <name>, one of {', '.join(list_datasets())}")
    try:
        ref = parse_dataset_ref(raw)
    except ValueError as err:
        raise _fail(("dataset",), str(err)) from None
    dataset, module = ref.text, None
    if transforms is not None and ref.kind == "builtin":
        raise _fail(("transforms",), f"transforms apply to imagefolder:, torchvision: and user datasets, not "
                                     f"{dataset!r}; remove them")
    if transforms is not None and not isinstance(transforms, Mapping):
        raise _fail(("transforms",), f"expected a mapping, got {transforms!r}; e.g. transforms: {{resize: 32}}")
    if ref.kind == "import":
        try:
            loader = import_object(dataset, "dataset", python_path)
        except ValueError as err:
            raise _fail(("dataset",), str(err)) from None
        if not callable(loader):
            raise _fail(("dataset",), f"dataset {dataset!r} is a {type(loader).__name__}, not a callable; name a "
                                      f"function returning (train_dataset, val_dataset)")
        module = dataset.partition(":")[0]
    if ref.kind == "imagefolder":
        dataset = PREFIX + str(Path(dataset[len(PREFIX):]).expanduser().resolve())
        try:
            image_folders(dataset)
        except FileNotFoundError as err:
            raise _fail(("dataset",), str(err)) from None
    if transforms is not None and ref.kind in ("imagefolder", "torchvision"):
        try:
            build_transforms(transforms)
        except ValueError as err:
            key = str(err).split(":", 1)[0].split(".", 1)[-1]
            raise _fail(("transforms", key) if key in transforms else ("transforms",), str(err)) from None
    return dataset, None if transforms is None else dict(transforms), module


def check_dataset_info(raw: Any) -> tuple[int, tuple[int, ...]] | None:
    """``dataset_info: {num_classes: N, input_shape: [C, H, W]}`` as ``(N, (C, H, W))``, or ``None``."""
    if raw is None:
        return None

    def pos(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    shape = raw.get("input_shape") if isinstance(raw, Mapping) else None
    ok = (isinstance(raw, Mapping) and set(raw) == {"num_classes", "input_shape"} and pos(raw["num_classes"])
          and isinstance(shape, list) and shape and all(pos(v) for v in shape))
    if not ok:
        raise _fail(("dataset_info",), f"expected {{num_classes: N, input_shape: [C, H, W]}} (positive ints), got "
                                       f"{raw!r}; e.g. dataset_info: {{num_classes: 10, input_shape: [3, 32, 32]}}")
    return int(raw["num_classes"]), tuple(int(v) for v in shape)


def dataset_meta_of(dataset: str, data_dir: str | None, transforms: Mapping[str, Any] | None,
                    python_path: list[str]) -> tuple[int, tuple[int, ...]] | None:
    """``(num_classes, input_shape)`` of a checked dataset; ``None`` when its files are missing and no
    ``data_dir`` is given yet (the run checks them once it has one); other failures fail at ``dataset``."""
    from ..data import dataset_meta

    try:
        return dataset_meta(dataset, data_dir, transforms, paths=python_path)
    except FileNotFoundError as err:
        if data_dir is None:
            return None
        raise _fail(("dataset",), str(err).strip().splitlines()[0]) from None
    except (ValueError, RuntimeError, TypeError) as err:
        raise _fail(("dataset",), (str(err).strip().splitlines() or [type(err).__name__])[0]) from None
