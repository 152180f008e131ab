"""The value types of a search space and the small validators every space module shares.

:class:`SpaceError` (a one-line error at a key path), the key tables, :class:`Objective`,
:class:`Constraint`, :class:`RankSpec` and :class:`LayerGroup`. The space modules import in one
direction: ``types`` <- ``groups`` / ``user`` / ``training`` <- ``sampling`` <- ``screening``, and
``schema`` (the :class:`~stsearch.space.schema.SearchSpace` and its parser) on top.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..metrics import MetricTable
from ..plan import DENSE
from ..tensors.spec import BASE_FAMILY, FAMILIES

__all__ = ["OBJECTIVES", "ANALYTIC_METRICS", "ALL_FAMILIES", "TOP_KEYS", "TIE_MODES", "GROUP_KEYS", "SpaceError",
           "format_path", "Objective", "Constraint", "RankSpec", "LayerGroup"]

#: Objective / constraint metric -> its natural direction.
OBJECTIVES: Mapping[str, str] = MetricTable(lambda m: m.direction)  # live views of stsearch.metrics
#: Metrics known from shapes alone (before training).
ANALYTIC_METRICS: Mapping[str, bool] = MetricTable(lambda m: True, where=lambda m: m.analytic)
ALL_FAMILIES = (*FAMILIES, DENSE)
TOP_KEYS = ("name", "model", "model_kwargs", "dataset", "data_dir", "layers", "objectives", "constraints",
            "train", "sampler", "baselines", "trials", "tie", "plugins", "python_path", "input_shape", "transforms",
            "trainer", "pretrained", "pretrained_train", "init", "distill", "dataset_info")
TIE_MODES = ("per_layer", "uniform")
GROUP_KEYS = ("match", "types", "name", "share", "families", "ranks", "t", "n_modes", "tucker_n_modes", "mode_splits",
              "split_bounds", "forward")
#: Group keys that make up a group's choices (``tie: [uniform]`` needs them equal across groups).
_CHOICE_FIELDS = ("families", "ranks", "t", "n_modes", "tucker_n_modes", "mode_splits", "split_bounds", "forward")

Path_ = tuple[Any, ...]


class SpaceError(ValueError):
    """A one-line validation error located by key path (and file and line once loaded)."""

    def __init__(self, path: Path_, message: str, *, source: str | None = None, line: int | None = None) -> None:
        self.path, self.message, self.source, self.line = tuple(path), message, source, line
        where = f"{source}:{line}: " if source is not None else ""
        key = f"{format_path(self.path)}: " if self.path else ""
        super().__init__(f"{where}{key}{message}")


def format_path(path: Path_) -> str:
    """``("layers", 0, "ranks")`` -> ``layers[0].ranks``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ------------------------------------------------------------------ value types
@dataclass(frozen=True)
class Objective:
    """One objective of the study."""

    name: str
    direction: str  # "maximize" | "minimize"


@dataclass(frozen=True)
class Constraint:
    """``min <= metric <= max`` (either bound may be ``None``)."""

    metric: str
    min: float | None = None
    max: float | None = None

    def violation(self, value: float) -> float:
        """Optuna's convention: ``<= 0`` feasible, ``> 0`` the amount by which a bound is violated."""
        terms = []
        if self.min is not None:
            terms.append(self.min - value)
        if self.max is not None:
            terms.append(value - self.max)
        return float(max(terms)) if terms else 0.0

    @property
    def analytic(self) -> bool:
        return self.metric in ANALYTIC_METRICS

    @property
    def key(self) -> str:
        """A readable name, e.g. ``compression>=2`` (for ``trial.set_constraint``)."""
        if self.min is not None and self.max is not None:
            return f"{self.min:g}<={self.metric}<={self.max:g}"
        if self.min is not None:
            return f"{self.metric}>={self.min:g}"
        return f"{self.metric}<={self.max:g}"


@dataclass(frozen=True)
class RankSpec:
    """Rank choices of a group: the range ``low..high`` by ``step``, or explicit ``choices``."""

    low: int
    high: int
    step: int = 1
    choices: tuple[int, ...] | None = None

    def values(self) -> list[int]:
        return list(self.choices) if self.choices is not None else list(range(self.low, self.high + 1, self.step))

    def contains(self, rank: int) -> bool:
        if self.choices is not None:
            return rank in self.choices
        return self.low <= rank <= self.high and (rank - self.low) % self.step == 0

    @property
    def fixed(self) -> int | None:
        """The only rank when there is one choice, else ``None``."""
        vals = self.values()
        return vals[0] if len(vals) == 1 else None

    def to_yaml(self) -> Any:
        if self.choices is not None:
            return list(self.choices)
        return {"low": self.low, "high": self.high, "step": self.step}


@dataclass(frozen=True)
class LayerGroup:
    """One entry of ``layers``: which layers, and the choices offered to them."""

    match: tuple[str, ...]
    name: str
    share: bool = False
    families: tuple[str, ...] = ALL_FAMILIES
    ranks: RankSpec = RankSpec(2, 16, 2)
    t: tuple[int, ...] = (2,)
    n_modes: tuple[int, ...] = (3,)
    tucker_n_modes: tuple[int, ...] = (1,)
    mode_splits: str | tuple[tuple[int, tuple[tuple[int, ...], ...]], ...] = "auto"
    split_bounds: tuple[int, int] = (2, 16)
    forward: str = "auto"
    types: tuple[str, ...] = ()  # module classes (torch.nn names or import paths); empty: any

    def matches(self, layer: str, module: Any = None) -> bool:
        """Whether the layer's dotted path matches a glob and (with ``types``, given its module) its class one type."""
        from .user import is_of_types

        named = any(layer == p or fnmatch.fnmatchcase(layer, p) for p in self.match)
        return named and (not self.types or module is None or is_of_types(module, self.types))

    def d_choices(self, family: str) -> tuple[int, ...]:
        """Allowed numbers of modes per channel count for ``family``."""
        return self.tucker_n_modes if BASE_FAMILY[family] == "tucker" else self.n_modes

    def to_dict(self) -> dict[str, Any]:
        splits: Any = self.mode_splits
        if not isinstance(splits, str):
            splits = {c: [list(s) for s in ss] for c, ss in splits}
        return {
            "match": list(self.match), "types": list(self.types), "name": self.name, "share": self.share, "families": list(self.families),
            "ranks": self.ranks.to_yaml(), "t": list(self.t), "n_modes": list(self.n_modes),
            "tucker_n_modes": list(self.tucker_n_modes), "mode_splits": splits,
            "split_bounds": {"min": self.split_bounds[0], "max": self.split_bounds[1]}, "forward": self.forward,
        }


def _fail(path: Path_, message: str) -> SpaceError:
    return SpaceError(path, message)


def _check_keys(data: Any, allowed: Sequence[str], path: Path_, example: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _fail(path, f"expected a mapping, got {data!r}; e.g. {example}")
    for key in data:
        if key not in allowed:
            raise _fail((*path, key), f"unknown key {key!r}; allowed: {', '.join(allowed)}")
    return data


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(v: Any, path: Path_, minimum: int, what: str) -> int:
    if not _is_int(v) or v < minimum:
        raise _fail(path, f"{what} must be an int >= {minimum}, got {v!r}; e.g. {max(minimum, 2)}")
    return int(v)


def _ints(v: Any, path: Path_, minimum: int, what: str) -> tuple[int, ...]:
    items = v if isinstance(v, list) else [v]
    if not items:
        raise _fail(path, f"{what}: the list is empty; give at least one value, e.g. [{max(minimum, 2)}]")
    out: list[int] = []
    for i, x in enumerate(items):
        if not _is_int(x) or x < minimum:
            where = (*path, i) if isinstance(v, list) else path
            raise _fail(where, f"{what} must be ints >= {minimum}, got {x!r}; e.g. [{max(minimum, 2)}]")
        if x not in out:
            out.append(int(x))
    return tuple(out)


def _names(v: Any, path: Path_, what: str, example: str) -> tuple[str, ...]:
    items = v if isinstance(v, list) else [v]
    if not items or not all(isinstance(x, str) and x for x in items):
        raise _fail(path, f"{what} must be a non-empty string or list of strings, got {v!r}; e.g. {example}")
    return tuple(dict.fromkeys(items))
