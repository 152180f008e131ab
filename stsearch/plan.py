"""Compression plans: which layers to factorize, and how.

A :class:`LayerPlan` says, for one layer, the family, the ranks, the STP factor
``t``, how the channels split into modes and which forward mode to use. A
:class:`NetworkPlan` maps dotted layer paths (or glob patterns over them) to
layer plans. Plans are plain data: they round-trip through JSON and YAML.
"""

from __future__ import annotations

import fnmatch
import json
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .layers.costs import FORWARD_MODES
from .layers.layout import Layout, default_split
from .tensors.spec import BASE_FAMILY, FactorSpec

__all__ = ["LayerPlan", "NetworkPlan", "DENSE"]

DENSE = "dense"


def _positive_int(v: Any) -> bool:
    """Whether ``v`` is an int >= 1 (bools and floats are not ints)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1


@dataclass(frozen=True)
class LayerPlan:
    """How to factorize one layer.

    ``rank``: an int (uniform) or a list. A uniform rank gives every TT/TR bond
    that rank and every factored Tucker mode ``min(rank, mode size)``.
    ``in_modes``/``out_modes``: channel splits; ``None`` picks
    :func:`default_split` with ``n_modes`` factors (Tucker: 1, i.e. Tucker-2).
    ``forward``: ``auto`` (cheaper by MAC count at ``batch_hint``), ``dense`` or ``factorized``.
    """

    family: str
    rank: int | tuple[int, ...] = 8
    t: int = 1
    in_modes: tuple[int, ...] | None = None
    out_modes: tuple[int, ...] | None = None
    n_modes: int | None = None
    forward: str = "auto"
    reading: str = "B"

    def __post_init__(self) -> None:
        fam = str(self.family).lower()
        if fam != DENSE and fam not in BASE_FAMILY:
            allowed = ", ".join([*BASE_FAMILY, DENSE])
            raise ValueError(f"unknown family {self.family!r}; allowed: {allowed}")
        object.__setattr__(self, "family", fam)
        if isinstance(self.rank, (list, tuple)):
            if not self.rank or not all(_positive_int(r) for r in self.rank):
                raise ValueError(f"rank must be a positive int or a non-empty list of positive ints, "
                                 f"got {list(self.rank)!r}; e.g. rank: 8 or rank: [8, 8]")
            object.__setattr__(self, "rank", tuple(int(r) for r in self.rank))
        elif _positive_int(self.rank):
            object.__setattr__(self, "rank", int(self.rank))
        else:
            raise ValueError(f"rank must be a positive int or a list of positive ints, got {self.rank!r}; "
                             f"e.g. rank: 8")
        if not _positive_int(self.t):
            raise ValueError(f"t must be an int >= 1 (1 for classical families), got {self.t!r}; e.g. t: 2")
        object.__setattr__(self, "t", int(self.t))
        if self.n_modes is not None:
            if not _positive_int(self.n_modes):
                raise ValueError(f"n_modes must be an int >= 1 or null, got {self.n_modes!r}; e.g. n_modes: 3")
            object.__setattr__(self, "n_modes", int(self.n_modes))
        for key in ("in_modes", "out_modes"):
            val = getattr(self, key)
            if val is None:
                continue
            if not isinstance(val, (list, tuple)) or not val or not all(_positive_int(v) for v in val):
                raise ValueError(f"{key} must be a non-empty list of positive ints (channel factors) or null, "
                                 f"got {val!r}; e.g. {key}: [4, 2, 2]")
            object.__setattr__(self, key, tuple(int(v) for v in val))
        if self.forward not in FORWARD_MODES:
            raise ValueError(f"forward mode {self.forward!r} is not one of {', '.join(FORWARD_MODES)}")

    @property
    def is_dense(self) -> bool:
        return self.family == DENSE

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "") -> "LayerPlan":
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}expected a layer plan mapping, got {data!r}; e.g. {{family: tt, rank: 8}}")
        known = {f.name for f in fields(cls)}
        extra = set(data) - known
        if extra:
            raise ValueError(
                f"{where}unknown layer-plan key(s) {sorted(extra)}; allowed: {sorted(known)}"
            )
        if "family" not in data:
            raise ValueError(f"{where}layer plan needs a 'family' (one of {', '.join([*BASE_FAMILY, DENSE])})")
        try:
            return cls(**dict(data))
        except ValueError as err:
            raise ValueError(f"{where}{err}") from None

    # ------------------------------------------------------------- resolve
    def resolve(self, c_out: int, c_in: int, kernel: tuple[int, int], name: str = "") -> tuple[Layout, FactorSpec]:
        """Layout and factor spec of this plan on a layer of the given geometry."""
        if self.is_dense:
            raise ValueError(f"layer {name!r}: a dense plan has no factorization")
        where = f"layer {name!r}: "
        base = BASE_FAMILY[self.family]
        default_d = self.n_modes or (1 if base == "tucker" else 3)
        in_modes = self.in_modes or default_split(c_in, default_d)
        out_modes = self.out_modes or default_split(c_out, len(in_modes) if base == "tt" else default_d)
        for label, modes, size in (("in_modes", in_modes, c_in), ("out_modes", out_modes, c_out)):
            if math.prod(modes) != size:
                raise ValueError(
                    f"{where}{label} {list(modes)} multiply to {math.prod(modes)}, not the {size} channels; "
                    f"give factors whose product is {size}, e.g. {list(default_split(size, len(modes)))}"
                )
        try:
            layout = Layout(base, tuple(out_modes), tuple(in_modes), tuple(kernel))  # type: ignore[arg-type]
        except ValueError as err:
            raise ValueError(f"{where}{err}") from None
        modes = layout.modes()
        ranks = self._ranks(base, layout, modes, where)
        spec = FactorSpec(self.family, modes, ranks, t=self.t, reading=self.reading, name=name)
        return layout, spec

    def _ranks(self, base: str, layout: Layout, modes: tuple[int, ...], where: str) -> tuple[int | None, ...]:
        p, q = len(layout.out_modes), len(layout.in_modes)
        if base == "tucker":
            n_chan = p + q
            if isinstance(self.rank, tuple):
                if len(self.rank) != n_chan:
                    raise ValueError(
                        f"{where}tucker needs {n_chan} ranks (output modes then input modes), got {list(self.rank)}"
                    )
                chan: list[int | None] = list(self.rank)
            else:
                chan = [min(self.rank, m) for m in modes[:n_chan]]
            return tuple(chan + [None] * (len(modes) - n_chan))
        n = len(modes) - 1 if base == "tt" else len(modes)
        if isinstance(self.rank, tuple):
            if len(self.rank) != n:
                raise ValueError(f"{where}{self.family} over modes {list(modes)} needs {n} ranks, got {list(self.rank)}")
            return self.rank
        return (self.rank,) * n


@dataclass
class NetworkPlan:
    """Per-layer plans keyed by dotted path or glob pattern (later entries override earlier ones)."""

    layers: dict[str, LayerPlan] = field(default_factory=dict)
    model: str | None = None
    batch_hint: int = 128

    def __post_init__(self) -> None:
        if not _positive_int(self.batch_hint):
            raise ValueError(f"plan: batch_hint must be an int >= 1 (the batch size forward: auto costs for), "
                             f"got {self.batch_hint!r}; e.g. batch_hint: 128")
        self.batch_hint = int(self.batch_hint)

    def match(self, names: Iterable[str]) -> dict[str, LayerPlan]:
        """Plan of each of ``names`` that some entry matches (dense plans included)."""
        out: dict[str, LayerPlan] = {}
        names = list(names)
        for pattern, plan in self.layers.items():
            hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
            for n in hits:
                out[n] = plan
        return out

    def unmatched(self, names: Iterable[str]) -> list[str]:
        """Patterns that match none of ``names``."""
        names = list(names)
        return [p for p in self.layers if not any(n == p or fnmatch.fnmatchcase(n, p) for n in names)]

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "batch_hint": self.batch_hint,
            "layers": {k: v.to_dict() for k, v in self.layers.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NetworkPlan":
        if not isinstance(data, Mapping):
            raise ValueError(f"plan: expected a mapping {{model, batch_hint, layers: {{<glob>: <layer plan>}}}}, "
                             f"got {data!r}")
        allowed = {"model", "batch_hint", "layers"}
        extra = set(data) - allowed
        if extra:
            raise ValueError(f"plan: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")
        layers_raw = data.get("layers") or {}
        if not isinstance(layers_raw, Mapping):
            raise ValueError("plan: 'layers' must be a mapping of dotted path (or glob) -> layer plan")
        layers = {
            str(k): LayerPlan.from_dict(v, where=f"plan layer {k!r}: ") for k, v in layers_raw.items()
        }
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise ValueError(f"plan: model must be a registered model name or null, got {model!r}")
        return cls(layers=layers, model=model, batch_hint=data.get("batch_hint", 128))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        path.write_text(text)

    @classmethod
    def load(cls, path: str | Path) -> "NetworkPlan":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"plan file {path} does not exist; pass the path of a JSON or YAML plan")
        if path.is_dir():
            raise ValueError(f"plan file {path} is a folder; pass the path of a JSON or YAML plan")
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise ValueError(f"plan file {path} is not UTF-8 text; pass a JSON or YAML plan") from None
        if path.suffix in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
                line = f":{mark.line + 1}" if mark is not None else ""
                problem = getattr(err, "problem", None) or str(err).splitlines()[0]
                raise ValueError(f"plan file {path}{line}: YAML syntax error: {problem}; fix the YAML syntax") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"plan file {path}: invalid JSON at line {err.lineno}: {err.msg}") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"plan file {path}: expected a mapping with a 'layers' key")
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f"plan file {path}: {err}") from None

    @classmethod
    def uniform(cls, patterns: Iterable[str], plan: LayerPlan, **kwargs: Any) -> "NetworkPlan":
        """The same layer plan on every pattern."""
        return cls(layers={p: plan for p in patterns}, **kwargs)
