"""User trainers: a search trains each trial with the user's own ``fit`` instead of the built-in loop.

A space names one with ``trainer:``, either an import path ``package.module:callable`` or a name a
plugin registered with :func:`register_trainer`. It is called once per trial as::

    def fit(model, train_dataset, val_dataset, context) -> dict:
        ...                                   # train `model` in place, on context.device
        for epoch in range(1, int(context.config.epochs) + 1):
            ...
            if context.report(epoch, {"val_acc": acc, "train_loss": loss}):
                break                          # the scheduler (ASHA) stops the trial: return what you have
        return {"accuracy": acc}

``model`` is the trial's compressed model (warm-started when the space sets ``init: decompose``) on
``context.device``; ``context`` is a :class:`TrainContext` (device, seed, checkpoint ``folder``, the
budget ``config``, the dense ``teacher`` when the space distills, and :meth:`TrainContext.report`).
The returned dict holds the trained model's metrics: the ``accuracy`` objective is read from
``accuracy`` (or ``val_acc``), ``latency_ms`` from its name (else stsearch measures it), and
``compression``, ``macs``, ``params`` are always stsearch's analytic counts. A trainer that raises,
returns something other than a dict, or leaves out an objective's metric fails its trial only, with
a one-line reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..fence import check_active
from ..plugins import UserCodeError, import_object, is_import_path
from .config import TrainConfig

__all__ = ["TrainContext", "register_trainer", "list_trainers", "resolve_trainer", "trainer_module",
           "call_trainer", "TrainerOutcome", "ACCURACY_KEYS"]

F = TypeVar("F", bound=Callable[..., Any])
_TRAINERS: dict[str, Callable[..., Any]] = {}
#: Keys of a trainer's result read as the ``accuracy`` objective, in order.
ACCURACY_KEYS = ("accuracy", "val_acc")


def register_trainer(name: str) -> Callable[[F], F]:
    """Decorator registering ``fit(model, train_dataset, val_dataset, context)`` as trainer ``name``
    (for ``trainer: name`` in a space whose ``plugins`` import the registering module)."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"trainer name must be a non-empty string without ':', got {name!r}")

    def decorator(fn: F) -> F:
        old = _TRAINERS.get(name)
        if old is not None and _origin(old) != _origin(fn):  # a re-imported module may register again
            raise ValueError(f"trainer {name!r} is already registered (by {_origin(old)}); pick another name")
        _TRAINERS[name] = fn
        return fn

    return decorator


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def list_trainers() -> list[str]:
    """Names of the registered trainers."""
    return sorted(_TRAINERS)


def resolve_trainer(ref: str, paths: tuple[str, ...] | list[str] = ()) -> Callable[..., Any]:
    """The callable a ``trainer:`` reference names; :class:`~stsearch.plugins.UserCodeError` (one line) if none."""
    if not isinstance(ref, str) or not ref.strip():
        raise UserCodeError(f"expected a trainer reference, got {ref!r}; write package.module:callable "
                            f"or a name registered with register_trainer")
    ref = ref.strip()
    if ":" in ref:
        obj = import_object(ref, "trainer", paths)
    elif ref in _TRAINERS:
        obj = _TRAINERS[ref]
    else:
        known = ", ".join(list_trainers()) or "none registered"
        raise UserCodeError(f"unknown trainer {ref!r} (registered: {known}); write package.module:callable, "
                            f"or list the module calling register_trainer({ref!r}) under plugins")
    if not callable(obj):
        raise UserCodeError(f"trainer {ref!r} is a {type(obj).__name__}, not a callable; name a function "
                            f"fit(model, train_dataset, val_dataset, context) returning a dict of metrics")
    return obj


def trainer_module(ref: str) -> str | None:
    """The module of an import-path trainer reference (``None`` for a registered name)."""
    return ref.partition(":")[0] if is_import_path(ref) else None


@dataclass
class TrainContext:
    """What a user trainer gets besides the model and the data.

    ``device``: where the model is (train there); ``seed``: the trial's seed (global RNGs are
    seeded with it before the call); ``folder``: the trial's checkpoint folder (``<trial>/ckpt``,
    created; ``None`` outside a search) for the trainer's own checkpoints; ``config``: the trial's
    :class:`~stsearch.train.TrainConfig` (the budget: ``epochs``, ``batch_size``, ``lr``...);
    ``teacher``: the pretrained dense model (eval mode, on ``device``) when the space sets ``distill``,
    else ``None``. ``history`` holds every :meth:`report`.
    """

    device: torch.device
    seed: int
    folder: Path | None
    config: TrainConfig
    teacher: nn.Module | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    callback: Callable[[dict[str, Any]], bool | None] | None = field(default=None, repr=False)
    stopped: bool = False
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def report(self, epoch: float, metrics: Mapping[str, Any] | None = None) -> bool:
        """Record the metrics after ``epoch`` (1-based) and pass them on (progress, Ray Tune / ASHA).

        Returns True when the trial should stop (a scheduler pruned it): the trainer should then
        return its metrics so far; the trial ends as ``pruned``. ``val_acc`` (or ``accuracy``) is
        what schedulers compare.
        """
        if self.folder is not None:
            check_active(self.folder)  # an attempt that lost its trial folder stops here
        rec: dict[str, Any] = {k: _plain(v) for k, v in dict(metrics or {}).items()}
        if rec.get("val_acc") is None and rec.get("accuracy") is not None:
            rec["val_acc"] = rec["accuracy"]
        rec.update(epoch=epoch, epochs_done=epoch, seconds=time.perf_counter() - self._t0)
        self.history.append(rec)
        stop = bool(self.callback(dict(rec))) if self.callback is not None else False
        self.stopped = self.stopped or stop
        return stop


def _plain(v: Any) -> Any:
    """A tensor scalar as a Python number (history is JSON)."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.item()
    return v


@dataclass
class TrainerOutcome:
    """What :func:`call_trainer` found: status, reason, the returned metrics and the seconds it took."""

    status: str  # "completed" | "pruned" | "failed"
    reason: str | None
    metrics: dict[str, Any]
    seconds: float


def call_trainer(fn: Callable[..., Any], ref: str, model: nn.Module, train_ds: Any, val_ds: Any,
                 context: TrainContext, required: tuple[str, ...] = ("accuracy",)) -> TrainerOutcome:
    """Call ``fn`` and check its result; never raises for the user's errors (a failed outcome instead),
    except :class:`~stsearch.fence.StaleAttempt` and ``KeyboardInterrupt``."""
    from ..fence import StaleAttempt

    t0 = time.perf_counter()
    try:
        out = fn(model, train_ds, val_ds, context)
    except (StaleAttempt, KeyboardInterrupt):
        raise
    except Exception as err:  # noqa: BLE001  (user code: one line)
        detail = (str(err).strip().splitlines() or [""])[0][:300]
        return TrainerOutcome("failed", f"trainer {ref!r} raised {type(err).__name__}: {detail}", {},
                              time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    if not isinstance(out, Mapping):
        return TrainerOutcome("failed", f"trainer {ref!r} returned a {type(out).__name__}, not a dict of metrics; "
                                        f"return e.g. {{'accuracy': 0.93}}", {}, seconds)
    metrics = {str(k): _plain(v) for k, v in out.items()}
    for name in required:
        keys = ACCURACY_KEYS if name == "accuracy" else (name,)
        if not any(metrics.get(k) is not None for k in keys):
            return TrainerOutcome("failed", f"trainer {ref!r} returned no {' or '.join(keys)} (the {name} "
                                            f"objective); it returned keys {sorted(metrics)}", metrics, seconds)
    if context.stopped:
        last = context.history[-1]["epoch"] if context.history else "?"
        return TrainerOutcome("pruned", f"stopped by epoch_callback after epoch {last}", metrics, seconds)
    return TrainerOutcome("completed", None, metrics, seconds)


def accuracy_of(metrics: Mapping[str, Any]) -> float | None:
    """The accuracy a trainer returned (``accuracy``, else ``val_acc``)."""
    for key in ACCURACY_KEYS:
        if metrics.get(key) is not None:
            return float(metrics[key])
    return None

