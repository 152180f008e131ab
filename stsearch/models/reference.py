"""Models by reference: the one place that turns a space's ``model:`` string into a module.

A reference is one of

* a registered name (``resnet20``, or one a plugin registered with :func:`register_model`);
* ``torchvision:NAME``: a classification model of ``torchvision.models``, built with
  ``torchvision.models.get_model(NAME, weights=None, **model_kwargs)`` (no weights are downloaded);
* an import path ``package.module:callable``, called with ``model_kwargs``, returning an ``nn.Module``.

``num_classes`` is passed to the factory (unless ``model_kwargs`` sets it) when the factory takes
it: a registered or torchvision model always does, a user callable when its signature names it or
takes ``**kwargs``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..plugins import UserCodeError, import_object, is_import_path
from .registry import list_models, model_info

__all__ = ["ModelRef", "parse_model_ref", "build_model", "meta_model", "registered_input_shape", "ref_module", "model_factory"]

TORCHVISION = "torchvision:"


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: ``kind`` is ``registered``, ``torchvision`` or ``import``."""

    text: str
    kind: str
    target: str  # the registered name, the torchvision name or the import path


def parse_model_ref(text: Any) -> ModelRef:
    """Parse a ``model:`` value; an unknown name raises ``ValueError`` with the accepted forms."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected a model reference, got {text!r}; give a registered name "
                         f"({', '.join(list_models())}), torchvision:NAME or package.module:callable")
    text = text.strip()
    if text.startswith(TORCHVISION):
        return ModelRef(text, "torchvision", text[len(TORCHVISION):])
    if ":" in text:
        if not is_import_path(text):
            raise ValueError(f"model {text!r} is not an import path; write package.module:callable "
                             f"(or torchvision:NAME)")
        return ModelRef(text, "import", text)
    if text not in list_models():
        close = difflib.get_close_matches(text, list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown model {text!r}; known: {', '.join(list_models())}{hint}; or give "
                         f"torchvision:NAME, or package.module:callable (with plugins: for a registering module)")
    return ModelRef(text, "registered", text)


def _torchvision_factory(name: str) -> Callable[..., nn.Module]:
    import torchvision.models as tvm

    known = tvm.list_models(module=tvm)  # the classification models
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join('torchvision:' + c for c in close)}? " if close else ""
        raise ValueError(f"unknown torchvision model {name!r}; {hint}see torchvision.models.list_models() "
                         f"for the classification models")

    def factory(**kwargs: Any) -> nn.Module:
        return tvm.get_model(name, weights=None, **kwargs)

    return factory


def model_factory(ref: ModelRef, paths: tuple[str, ...]) -> Callable[..., nn.Module]:
    if ref.kind == "registered":
        from .registry import create_model

        return lambda **kw: create_model(ref.target, **kw)
    if ref.kind == "torchvision":
        return _torchvision_factory(ref.target)
    obj = import_object(ref.target, "model", paths)
    if not callable(obj):
        raise UserCodeError(f"model {ref.text!r} is a {type(obj).__name__}, not a callable; "
                            f"name a function or class returning an nn.Module")
    return obj


def _takes(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def build_model(ref: str | ModelRef, model_kwargs: Mapping[str, Any] | None = None, *,
                num_classes: int | None = None, paths: tuple[str, ...] | list[str] = ()) -> nn.Module:
    """The model a reference names, built with ``model_kwargs`` (and ``num_classes``, see the module doc).

    A factory that cannot be imported, raises, or returns something else than an ``nn.Module``
    raises ``ValueError`` (a :class:`~stsearch.plugins.UserCodeError` for user code) in one line.
    """
    ref = ref if isinstance(ref, ModelRef) else parse_model_ref(ref)
    factory = model_factory(ref, tuple(paths))
    kwargs = dict(model_kwargs or {})
    if num_classes is not None and "num_classes" not in kwargs and (ref.kind != "import" or _takes(factory, "num_classes")):
        kwargs["num_classes"] = int(num_classes)
    if ref.kind != "import":  # stsearch's or torchvision's own errors: about the kwargs, raised as they are
        return factory(**kwargs)
    try:
        model = factory(**kwargs)
    except Exception as err:  # noqa: BLE001  (user code: one line, with the arguments it got)
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UserCodeError(f"model {ref.text!r} called with {kwargs} raised {type(err).__name__}: {detail}; "
                            f"fix the factory or model_kwargs") from None
    if not isinstance(model, nn.Module):
        raise UserCodeError(f"model {ref.text!r} returned a {type(model).__name__}, not a torch.nn.Module; "
                            f"make the factory return the network")
    return model


def meta_model(ref: str | ModelRef, model_kwargs: Mapping[str, Any] | None = None, *,
               num_classes: int | None = None, paths: tuple[str, ...] | list[str] = ()) -> nn.Module:
    """:func:`build_model` on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        return build_model(ref, model_kwargs, num_classes=num_classes, paths=paths)


def registered_input_shape(ref: str | ModelRef) -> tuple[int, int, int] | None:
    """(C, H, W) a registered model is meant for, ``None`` for torchvision and import paths."""
    ref = ref if isinstance(ref, ModelRef) else parse_model_ref(ref)
    return tuple(model_info(ref.target).input_shape) if ref.kind == "registered" else None  # type: ignore[return-value]


def ref_module(ref: str | ModelRef) -> str | None:
    """The module an import-path reference lives in (``None`` for the other kinds)."""
    ref = ref if isinstance(ref, ModelRef) else parse_model_ref(ref)
    return ref.target.partition(":")[0] if ref.kind == "import" else None
