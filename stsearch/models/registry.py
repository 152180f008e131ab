"""A small timm-style registry of model factories, looked up by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

__all__ = ["ModelInfo", "register_model", "create_model", "list_models", "model_info"]

Factory = Callable[..., nn.Module]
F = TypeVar("F", bound=Factory)


@dataclass(frozen=True)
class ModelInfo:
    """Registration metadata: the input a model is meant for."""

    name: str
    input_shape: tuple[int, int, int]  # (C, H, W) of one sample
    num_classes: int
    description: str


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    info: ModelInfo


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str,
    *,
    input_shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
) -> Callable[[F], F]:
    """Decorator registering ``fn(num_classes=..., in_channels=..., **kwargs)`` as ``name``."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")

    def decorator(fn: F) -> F:
        old = _REGISTRY.get(name)
        if old is not None and _origin(old.factory) != _origin(fn):  # a re-imported module may register again
            raise ValueError(f"model {name!r} is already registered (by {_origin(old.factory)}); pick another name")
        doc = (fn.__doc__ or "").strip().splitlines()
        info = ModelInfo(
            name=name,
            input_shape=tuple(int(d) for d in input_shape),  # type: ignore[arg-type]
            num_classes=int(num_classes),
            description=doc[0] if doc else "",
        )
        _REGISTRY[name] = _Entry(factory=fn, info=info)
        return fn

    return decorator


def _origin(fn: Factory) -> str:
    """``module.qualname`` of a factory: the same function re-imported has the same origin."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_models())
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; ``kwargs`` go to its factory."""
    return _entry(name).factory(**kwargs)


def list_models() -> list[str]:
    """Sorted names of all registered models."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """Default input shape and class count of the registered model ``name``."""
    return _entry(name).info
