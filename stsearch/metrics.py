"""Metrics a search can optimize or constrain, registered by name: one table read by the space schema,
the screening predictor, the study, the trials frame, the Pareto tools, the plots and the model card.

A metric is *analytic* when stsearch knows it from the plan's shapes before training (compression,
parameters, MACs) and *measured* otherwise: read after training from the trial's metrics under
:attr:`Metric.key` (``accuracy`` is the trainer's ``val_acc``), or from what a user trainer
(``trainer:``) returned. User code adds a measured metric with :func:`register_metric`, e.g.
``register_metric(Metric("f1", "maximize", label="F1 score"))`` in a plugin, and a trainer that
returns ``{"accuracy": ..., "f1": ...}``; then ``objectives: [f1, compression]`` works.
This module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Metric", "register_metric", "get_metric", "list_metrics", "is_analytic", "MetricTable"]

DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Metric:
    """One metric: its direction, whether it is analytic, where a trial's value is read, and how it is drawn.

    ``attr``: the key of the value in a trial's metrics and user attrs (default: ``name``).
    ``label``: the axis label of plots (default: ``name``). ``log``: drawn (and its knee found) on a
    log scale. ``reference``: the hypervolume reference value (default: from the observed values).
    """

    name: str
    direction: str
    analytic: bool = False
    attr: str | None = None
    label: str | None = None
    log: bool = False
    reference: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"metric name {self.name!r} must be an identifier, e.g. 'f1'")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name}: direction must be maximize or minimize, got {self.direction!r}")

    @property
    def key(self) -> str:
        """Where a trial's value of this metric is read (metrics dict, user attrs)."""
        return self.attr or self.name

    @property
    def axis_label(self) -> str:
        return self.label or self.name


_REGISTRY: dict[str, Metric] = {}


def register_metric(metric: Metric, *, replace: bool = False) -> Metric:
    """Add ``metric`` to the table (``replace`` to redefine one); user metrics must be measured."""
    if metric.analytic and metric.name not in _BUILTIN:
        raise ValueError(f"metric {metric.name}: only stsearch's own metrics are analytic (compression, macs, "
                         f"params); register a measured one and have the trainer return it")
    if metric.name in _REGISTRY and _REGISTRY[metric.name] != metric and not replace:
        raise ValueError(f"metric {metric.name!r} is already registered; pass replace=True to redefine it")
    _REGISTRY[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """The metric called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(_REGISTRY)} (register_metric adds one)") from None


def list_metrics() -> list[str]:
    """Names of the registered metrics, built-in ones first."""
    return list(_REGISTRY)


def is_analytic(name: str) -> bool:
    """Whether ``name`` is known before training (False for an unknown name)."""
    m = _REGISTRY.get(name)
    return bool(m and m.analytic)


class MetricTable(Mapping[str, Any]):
    """A live read-only view of the registry, ``name -> field(metric)`` (for the older table names)."""

    def __init__(self, field: Callable[[Metric], Any], where: Callable[[Metric], bool] = lambda m: True) -> None:
        self._field, self._where = field, where

    def __getitem__(self, name: str) -> Any:
        m = _REGISTRY.get(name)
        if m is None or not self._where(m):
            raise KeyError(name)
        return self._field(m)

    def __iter__(self) -> Iterator[str]:
        return (n for n, m in _REGISTRY.items() if self._where(m))

    def __len__(self) -> int:
        return sum(1 for m in _REGISTRY.values() if self._where(m))


for _m in (
    Metric("accuracy", "maximize", attr="val_acc", label="Top-1 validation accuracy (%)", reference=0.0),
    Metric("compression", "maximize", analytic=True, label="Compression factor (dense params / params, log scale)",
           log=True, reference=1.0),
    Metric("macs", "minimize", analytic=True, label="MACs per sample (log scale)", log=True),
    Metric("latency_ms", "minimize", label="Latency (ms)"),
    Metric("params", "minimize", analytic=True, label="Parameters (log scale)", log=True),
):
    _REGISTRY[_m.name] = _m
_BUILTIN = frozenset(_REGISTRY)
