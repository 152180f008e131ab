"""Define-by-run sampling of a search space, decoding of params into plans, baseline params.

Parameter names (``K`` is the layer's dotted path, or the group's ``name`` when ``share: true``):

=============================  ==============================================================
``K:family``                   categorical over the group's ``families``
``K:t``                        categorical over the group's ``t`` (ST families only)
``K:rank``                     int ``low..high`` by ``step`` (categorical for an explicit list);
                               not for ``dense``
``K:n_modes``                  categorical over ``n_modes`` (``tt``, ``tr``, ``stt``, ``str``)
``K:tucker_n_modes``           categorical over ``tucker_n_modes`` (``tucker``, ``sttu``)
``K:split<d>``                 categorical over ``"in|out"`` channel-split pairs, e.g.
                               ``"4x2x2|4x4x2"`` (input split first), for ``d`` modes
``K:split<d>:<cin>to<cout>``   the same in a shared group: one per distinct channel pair
``plan:tie``                   ``per_layer`` or ``uniform`` (see below)
=============================  ==============================================================

Uniform plans are a branch of the space: when ``tie`` offers ``uniform`` and every
sampling unit has the same choices, ``plan:tie`` picks between the per-layer parameters
above and one shared set ``uniform:family``, ``uniform:t``, ``uniform:rank``, ... applied
to every searchable layer (splits per channel pair, ``uniform:split<d>:<cin>to<cout>``).
The paper's uniform-rank grid is thus a subspace the sampler can reach directly, and the
baselines are points of that branch.

A choice with a single option is not sampled and is not a parameter. Input and output
are split into the same number ``d`` of modes (TT requires it). A channel count with no
candidate split (e.g. 3 channels with factors >= 2) uses ``default_split``.

Decoding the rank of one layer (so that any sampled params give a valid plan):

* ST families: the rank is rounded **up** to a multiple of ``t``.
* Tucker families: no clamp; ``LayerPlan`` caps a uniform rank at each mode's size.
* Train/ring families: the rank is clamped to the family's bound on the layer's modes
  (TT: the largest cut bound; TR: ``isqrt`` of the tensor size), rounded down to a
  multiple of ``t`` when some bond must be divisible by ``t``. If no multiple of ``t``
  fits under the bound, ``t`` falls back to the largest smaller allowed ``t`` that fits,
  else 1 (the classical decomposition).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..compress import LayerGeometry
from ..layers.layout import Layout, default_split, factorizations
from ..plan import DENSE, LayerPlan, NetworkPlan
from ..tensors.spec import BASE_FAMILY, ST_FAMILIES
from .types import LayerGroup, RankSpec, SpaceError

if TYPE_CHECKING:
    import optuna

    from .schema import SearchSpace

__all__ = [
    "Unit", "Slot", "units", "suggest", "decode", "baseline_params", "check_baseline",
    "split_candidates", "split_choices", "format_split", "parse_split", "fit_rank",
]


@dataclass(frozen=True)
class Unit:
    """Layers that share one family/t/rank/n_modes choice: one layer, or a shared group."""

    key: str
    group: LayerGroup
    layers: tuple[LayerGeometry, ...]

    @property
    def shared(self) -> bool:
        return self.group.share


@dataclass(frozen=True)
class Slot:
    """One choice: its parameter name, kind and options (and the layer geometry for splits)."""

    name: str
    kind: str  # "tie" | "family" | "t" | "rank" | "n_modes" | "split"
    choices: tuple[Any, ...] | RankSpec
    d: int = 0
    c_in: int = 0
    c_out: int = 0

    @property
    def fixed(self) -> Any:
        """The only option when there is one (then it is not a parameter), else ``None``."""
        if isinstance(self.choices, RankSpec):
            return self.choices.fixed
        return self.choices[0] if len(self.choices) == 1 else None

    def contains(self, value: Any) -> bool:
        if isinstance(self.choices, RankSpec):
            return isinstance(value, int) and self.choices.contains(value)
        return value in self.choices


Chooser = Callable[[Slot], Any]
TIE = "plan:tie"
UNIFORM = "uniform"


# ------------------------------------------------------------------ structure
def units(space: "SearchSpace") -> list[Unit]:
    """Sampling units in model order (a shared group sits at its first layer)."""
    members: dict[str, list[LayerGeometry]] = {}
    groups: dict[str, LayerGroup] = {}
    for name, group in space.assignment.items():
        key = group.name if group.share else name
        members.setdefault(key, []).append(space.all_layers[name])
        groups[key] = group
    return [Unit(k, groups[k], tuple(v)) for k, v in members.items()]


@lru_cache(maxsize=None)
def split_candidates(group: LayerGroup, channels: int, d: int) -> tuple[tuple[int, ...], ...]:
    """Candidate splits of ``channels`` into ``d`` modes under the group's ``mode_splits``."""
    dflt = default_split(channels, d)
    if d == 1 or group.mode_splits == "default":
        return (dflt,)
    if group.mode_splits == "auto":
        lo, hi = group.split_bounds
        found = factorizations(channels, d, min_factor=lo, max_factor=hi)
        return (dflt, *[f for f in found if f != dflt])
    listed = dict(group.mode_splits).get(channels, ())  # type: ignore[arg-type]
    return tuple(s for s in listed if len(s) == d) or (dflt,)


def format_split(in_modes: tuple[int, ...], out_modes: tuple[int, ...]) -> str:
    """``(4, 2, 2), (4, 4, 2)`` -> ``"4x2x2|4x4x2"``."""
    return "x".join(map(str, in_modes)) + "|" + "x".join(map(str, out_modes))


def parse_split(value: str, c_in: int, c_out: int, d: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``"4x2x2|4x4x2"`` -> input and output modes, checked against the layer's channels."""
    try:
        left, right = str(value).split("|")
        ins, outs = (tuple(int(x) for x in part.split("x")) for part in (left, right))
    except ValueError:
        raise ValueError(f"split {value!r} is not of the form '4x2x2|4x4x2' (input|output)") from None
    if len(ins) != d or len(outs) != d or math.prod(ins) != c_in or math.prod(outs) != c_out:
        raise ValueError(f"split {value!r} does not split {c_in}|{c_out} channels into {d} modes each")
    return ins, outs


def split_choices(group: LayerGroup, c_in: int, c_out: int, d: int) -> tuple[str, ...]:
    """All ``"in|out"`` pairs of candidate splits of a layer."""
    outs = split_candidates(group, c_out, d)
    return tuple(format_split(i, o) for i in split_candidates(group, c_in, d) for o in outs)


def _split_slot(unit: Unit, geom: LayerGeometry, d: int) -> Slot:
    suffix = f":{geom.c_in}to{geom.c_out}" if unit.shared else ""
    choices = split_choices(unit.group, geom.c_in, geom.c_out, d)
    return Slot(f"{unit.key}:split{d}{suffix}", "split", choices, d, geom.c_in, geom.c_out)


# ------------------------------------------------------------------ ranks
def _round_up(rank: int, t: int) -> int:
    return max(t, -(-int(rank) // t) * t)


def _limits(base: str, modes: tuple[int, ...], t: int) -> tuple[int | None, bool]:
    """(bound on a uniform rank or None when there is no bond, whether ranks must divide by t)."""
    if base == "tt":
        if len(modes) < 2:
            return None, False
        bound = max(min(math.prod(modes[: j + 1]), math.prod(modes[j + 1 :])) for j in range(len(modes) - 1))
    else:
        bound = max(1, math.isqrt(math.prod(modes)))
    needs = t > 1 and any(m % t == 0 for m in modes[1:])
    return bound, needs


def fit_rank(family: str, rank: int, t: int, allowed_t: tuple[int, ...], layout: Layout) -> tuple[int, int]:
    """(rank, t) actually used on a layer: the module's decoding rules."""
    if BASE_FAMILY[family] == "tucker":
        return (_round_up(rank, t) if t > 1 else int(rank)), t
    for tt in dict.fromkeys([t, *sorted((x for x in allowed_t if x < t), reverse=True), 1]):
        r = _round_up(rank, tt) if tt > 1 else int(rank)
        bound, needs = _limits(BASE_FAMILY[family], layout.modes(), tt)
        if bound is None:
            return r, tt
        cap = bound // tt * tt if needs else bound
        if cap >= 1:
            return min(r, cap), tt
    raise AssertionError("unreachable: t=1 always fits")


# ------------------------------------------------------------------ the walk
def _walk(space: "SearchSpace", choose: Chooser) -> dict[str, LayerPlan]:
    """Visit every choice in define-by-run order; ``choose`` answers each slot."""
    memo: dict[str, Any] = {}

    def pick(slot: Slot) -> Any:
        if slot.name not in memo:
            memo[slot.name] = choose(slot)
        return memo[slot.name]

    plans: dict[str, LayerPlan] = {}
    all_units = space.units()
    if pick(Slot(TIE, "tie", tie_choices(space))) == "uniform":
        first = all_units[0]
        group = dataclasses.replace(first.group, share=True)
        all_units = [Unit(UNIFORM, group, tuple(g for u in all_units for g in u.layers))]
    for unit in all_units:
        g, k = unit.group, unit.key
        fam = pick(Slot(f"{k}:family", "family", g.families))
        if fam == DENSE:
            plans.update({geom.name: LayerPlan(DENSE) for geom in unit.layers})
            continue
        t = int(pick(Slot(f"{k}:t", "t", g.t))) if fam in ST_FAMILIES else 1
        rank = int(pick(Slot(f"{k}:rank", "rank", g.ranks)))
        base = BASE_FAMILY[fam]
        d_name = "tucker_n_modes" if base == "tucker" else "n_modes"
        d = int(pick(Slot(f"{k}:{d_name}", "n_modes", g.d_choices(fam))))
        for geom in unit.layers:
            slot = _split_slot(unit, geom, d)
            ins, outs = parse_split(pick(slot), geom.c_in, geom.c_out, d)
            layout = Layout(base, outs, ins, geom.kernel)
            r, tt = fit_rank(fam, rank, t, g.t, layout)
            plans[geom.name] = LayerPlan(fam, rank=r, t=tt, in_modes=ins, out_modes=outs, n_modes=d, forward=g.forward)
    return {n: plans[n] for n in space.assignment}


def tie_choices(space: "SearchSpace") -> tuple[str, ...]:
    """``plan:tie`` options: ``uniform`` only when several units offer identical choices."""
    us = space.units()
    same = len(us) > 1 and all(_choices(u.group) == _choices(us[0].group) for u in us)
    return tuple(m for m in space.tie if m == "per_layer" or same) or ("per_layer",)


def _choices(group: LayerGroup) -> tuple[Any, ...]:
    return (group.families, group.ranks, group.t, group.n_modes, group.tucker_n_modes, group.mode_splits,
            group.split_bounds, group.forward)


def suggest(space: "SearchSpace", trial: "optuna.trial.BaseTrial") -> dict[str, Any]:
    """Sample every choice on ``trial``; the flat params (as in ``trial.params``)."""
    params: dict[str, Any] = {}

    def choose(slot: Slot) -> Any:
        if slot.fixed is not None:
            return slot.fixed
        spec = slot.choices
        if isinstance(spec, RankSpec) and spec.choices is None:
            value: Any = trial.suggest_int(slot.name, spec.low, spec.high, step=spec.step)
        else:
            options = spec.values() if isinstance(spec, RankSpec) else list(spec)
            value = trial.suggest_categorical(slot.name, options)
        params[slot.name] = value
        return value

    _walk(space, choose)
    return params


def decode(space: "SearchSpace", params: Mapping[str, Any]) -> NetworkPlan:
    """The plan of ``params`` (keys that no choice uses are ignored)."""

    def choose(slot: Slot) -> Any:
        if slot.fixed is not None:
            return slot.fixed
        if slot.name not in params:
            if slot.kind == "tie":
                return "per_layer"  # params written without the tie choice are per-layer params
            raise ValueError(f"params lack {slot.name!r}; params must come from SearchSpace.suggest on this space")
        return params[slot.name]

    return NetworkPlan(layers=_walk(space, choose), model=space.model)


def _baseline_chooser(
    space: "SearchSpace", b: Mapping[str, Any], params: dict[str, Any], path: tuple[Any, ...]
) -> Chooser:
    def choose(slot: Slot) -> Any:
        if slot.kind == "split":
            value: Any = format_split(default_split(slot.c_in, slot.d), default_split(slot.c_out, slot.d))
        elif slot.kind == "tie":
            value = "uniform" if "uniform" in slot.choices else "per_layer"
        else:
            value = b[slot.kind]
        if not slot.contains(value):
            where = path if slot.kind == "split" else (*path, slot.kind)
            raise SpaceError(where, _not_a_choice(space, slot, value))
        if slot.fixed is None:
            params[slot.name] = value
        return value

    return choose


def _not_a_choice(space: "SearchSpace", slot: Slot, value: Any) -> str:
    key = slot.name.split(":", 1)[0]
    unit = next((u for u in space.units() if u.key == key), space.units()[0])  # "uniform": the first unit
    where = f"layers[{space.groups.index(unit.group)}] (layer {unit.layers[0].name})"
    if slot.kind == "split":
        return (f"the default split {value} of {slot.c_in}|{slot.c_out} channels is not a mode_splits candidate of "
                f"{where}; add it to mode_splits or drop this baseline")
    options = slot.choices.to_yaml() if isinstance(slot.choices, RankSpec) else list(slot.choices)
    return f"{slot.kind} {value!r} is not a choice of {where}: {options}; add it there or change the baseline"


def baseline_params(space: "SearchSpace", baseline: Mapping[str, Any]) -> dict[str, Any]:
    """Params that decode to the uniform plan of ``baseline`` (default splits)."""
    params: dict[str, Any] = {}
    _walk(space, _baseline_chooser(space, baseline, params, ("baselines",)))
    return params


def check_baseline(space: "SearchSpace", baseline: Mapping[str, Any], path: tuple[Any, ...]) -> None:
    """Raise :class:`SpaceError` unless ``baseline`` is a point of the space that resolves on every layer."""
    params: dict[str, Any] = {}
    decoded = _walk(space, _baseline_chooser(space, baseline, params, path))
    uniform = space.uniform_plan(baseline).layers
    for name, geom in space.layers().items():
        if uniform[name].is_dense:
            continue
        try:
            want = uniform[name].resolve(geom.c_out, geom.c_in, geom.kernel, name)
        except ValueError as err:
            raise SpaceError(path, f"{err}; pick a rank valid on every searchable layer") from None
        if decoded[name].resolve(geom.c_out, geom.c_in, geom.kernel, name) != want:
            raise SpaceError(path, f"decodes to {decoded[name]} on layer {name!r}, not the uniform plan; "
                                   f"adjust the baseline to the space's choices")
