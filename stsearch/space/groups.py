"""Validation of a space's ``layers`` groups: their keys, ranks, ``t`` values, splits and bounds, and the
checks across groups (``tie``, whether each ``t`` reduces some mode)."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..layers.costs import FORWARD_MODES
from ..tensors.spec import BASE_FAMILY, ST_FAMILIES, mode_is_reduced
from .types import (_CHOICE_FIELDS, ALL_FAMILIES, GROUP_KEYS, LayerGroup, Path_, RankSpec, _check_keys, _fail, _int,
                    _ints, _is_int, _names)

if TYPE_CHECKING:
    from .schema import SearchSpace

__all__ = ["parse_groups", "check_tie", "check_t_reduces"]


def check_tie(space: SearchSpace) -> None:
    """A ``tie`` of only ``uniform`` needs every sampling unit to offer the same choices."""
    from .sampling import tie_choices

    if "per_layer" in space.tie or "uniform" in tie_choices(space) or len(space.units()) < 2:
        return
    first = space.units()[0]
    other = next(u for u in space.units() if u.group is not first.group)
    diff = [f for f in _CHOICE_FIELDS if getattr(first.group, f) != getattr(other.group, f)]
    where = [f"layers[{space.groups.index(u.group)}] ({u.group.name})" for u in (first, other)]
    raise _fail(("tie",), f"[uniform] alone needs every searchable layer to have the same choices, but {where[0]} "
                          f"and {where[1]} differ in {', '.join(diff)}; make the groups' choices identical "
                          f"or add per_layer to tie")


def _reduces(family: str, ins: tuple[int, ...], outs: tuple[int, ...], kernel: tuple[int, int], t: int) -> bool:
    """Whether a semi-tensor ``family`` with factor ``t`` stores any factor of this split reduced."""
    from ..layers.layout import Layout

    base = BASE_FAMILY[family]
    modes = Layout(base, outs, ins, kernel).modes()
    factored = modes[: len(outs) + len(ins)] if base == "tucker" else modes  # Tucker: no factor on the kernel mode
    return any(mode_is_reduced(base, k, m, t) for k, m in enumerate(factored))


def check_t_reduces(space: SearchSpace) -> None:
    """Every ``t`` of a group must reduce some factor of some offered semi-tensor family on some
    layer of the group: one that reduces none trains the classical family under the ST label."""
    from .sampling import parse_split, split_choices

    for gi, group in enumerate(space.groups):
        st = [f for f in group.families if f in ST_FAMILIES]
        geoms = list({(g.c_in, g.c_out, g.kernel): g for n, g in space.layers().items()
                      if space.assignment[n] is group}.values())
        if not st or not geoms:
            continue

        def useful(t: int) -> bool:
            return any(_reduces(fam, *parse_split(s, g.c_in, g.c_out, d), g.kernel, t)
                       for fam in st for g in geoms for d in group.d_choices(fam)
                       for s in split_choices(group, g.c_in, g.c_out, d))

        for t in group.t:
            if useful(t):
                continue
            others = [x for x in range(2, 17) if x != t and useful(x)][:4]
            fix = f"use t values that divide them, e.g. t: {others}" if others else "remove the semi-tensor families"
            channels = sorted({c for g in geoms for c in (g.c_in, g.c_out)})
            raise _fail(("layers", gi, "t"), f"t={t} divides none of the mode sizes of {', '.join(st)} on the layers "
                                             f"of {group.name} (channels {channels}), so they would train as the "
                                             f"classical families under the semi-tensor label; {fix}")


def parse_groups(raw: Any, layer_names: list[str], model: Any = None) -> list[LayerGroup]:
    if not isinstance(raw, list) or not raw:
        raise _fail(("layers",), f"expected a non-empty list of groups, got {raw!r}; "
                                 f"e.g. [{{match: 'layer*.conv*', families: [tt, stt]}}]")
    from .user import blocked_layers, check_group_layers

    blocked = blocked_layers(model) if model is not None else {}
    groups = [_group(item, ("layers", i), i, layer_names, blocked) for i, item in enumerate(raw)]
    if model is not None:
        for i, g in enumerate(groups):
            check_group_layers(g, ("layers", i), model)
    names = [g.name for g in groups]
    for i, g in enumerate(groups):
        if g.name in names[:i]:
            raise _fail(("layers", i, "name"), f"group name {g.name!r} is used twice; give each group its own name")
        if g.share and g.name in layer_names:
            raise _fail(("layers", i, "name"), f"group name {g.name!r} is also a layer path; rename the group")
    return groups


def _group(item: Any, path: Path_, index: int, layer_names: list[str],
           blocked: Mapping[str, str] | None = None) -> LayerGroup:
    item = _check_keys(item, GROUP_KEYS, path, "{match: 'layer*.conv*', families: [tt, stt]}")
    from .user import check_types, unrepresentable

    if "match" not in item and "types" not in item:
        raise _fail(path, "missing match; add match: '<glob on dotted layer paths>', e.g. 'layer*.conv*', "
                          "and/or types: [Conv2d, Linear]")
    types = check_types(item.get("types"), (*path, "types"))
    match = _names(item.get("match", "*"), (*path, "match"), "match", "['layer*.conv*']")
    for pattern in match:
        if not any(n == pattern or fnmatch.fnmatchcase(n, pattern) for n in layer_names):
            hit = {n: r for n, r in (blocked or {}).items() if n == pattern or fnmatch.fnmatchcase(n, pattern)}
            if hit:
                raise _fail((*path, "match"), f"{pattern!r} {unrepresentable(hit)}")
            sample = ", ".join(layer_names[:8]) + (", ..." if len(layer_names) > 8 else "")
            raise _fail((*path, "match"), f"{pattern!r} matches no conv/linear layer of the model; "
                                          f"layer paths look like: {sample}")
    name = item.get("name", f"group{index}")
    if not isinstance(name, str) or not name or ":" in name:
        raise _fail((*path, "name"), f"expected a non-empty string without ':', got {name!r}; e.g. name: stage1")
    share = item.get("share", False)
    if not isinstance(share, bool):
        raise _fail((*path, "share"), f"expected true or false, got {share!r}; write share: true or share: false")
    families = tuple(f.lower() for f in _names(item.get("families", list(ALL_FAMILIES)), (*path, "families"),
                                                "families", "[tt, stt]"))
    for fam in families:
        if fam not in ALL_FAMILIES:
            raise _fail((*path, "families"), f"unknown family {fam!r}; allowed: {', '.join(ALL_FAMILIES)}")
    t = _t_values(item.get("t", [2]), (*path, "t"))
    lo, hi = _bounds(item.get("split_bounds"), (*path, "split_bounds"))
    forward = item.get("forward", "auto")
    if forward not in FORWARD_MODES:
        raise _fail((*path, "forward"), f"unknown forward mode {forward!r}; allowed: {', '.join(FORWARD_MODES)}")
    return LayerGroup(
        match=match, types=types, name=name, share=share, families=families, ranks=_ranks(item.get("ranks"), (*path, "ranks")),
        t=t, n_modes=_ints(item.get("n_modes", [3]), (*path, "n_modes"), 1, "n_modes"),
        tucker_n_modes=_ints(item.get("tucker_n_modes", [1]), (*path, "tucker_n_modes"), 1, "tucker_n_modes"),
        mode_splits=_mode_splits(item.get("mode_splits", "auto"), (*path, "mode_splits")),
        split_bounds=(lo, hi), forward=forward,
    )


def _t_values(raw: Any, path: Path_) -> tuple[int, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise _fail(path, "the list is empty; give STP factors >= 2, e.g. [2, 4]")
    for x in items:
        if not _is_int(x) or x < 2:
            raise _fail(path, f"t={x!r} is not an STP factor; t values must be ints >= 2, e.g. [2, 4] "
                              f"(classical families always use t=1)")
    return tuple(sorted(set(items)))


def _ranks(raw: Any, path: Path_) -> RankSpec:
    if raw is None:
        return RankSpec(2, 16, 2)
    if _is_int(raw) or isinstance(raw, list):
        vals = tuple(sorted(_ints(raw, path, 1, "ranks")))
        return RankSpec(vals[0], vals[-1], 1, vals)
    raw = _check_keys(raw, ("low", "high", "step"), path, "{low: 2, high: 16, step: 2}")
    for key in ("low", "high"):
        if key not in raw:
            raise _fail(path, f"missing {key}; give {{low: 2, high: 16, step: 2}} or a list [4, 8, 12]")
    low = _int(raw["low"], (*path, "low"), 1, "low")
    high = _int(raw["high"], (*path, "high"), 1, "high")
    step = _int(raw.get("step", 1), (*path, "step"), 1, "step")
    if low > high:
        raise _fail((*path, "low"), f"low {low} > high {high}; swap them")
    if (high - low) % step:
        fixed = low + (high - low) // step * step
        raise _fail((*path, "high"), f"high {high} is not low {low} plus a multiple of step {step}; use high: {fixed}")
    return RankSpec(low, high, step)


def _bounds(raw: Any, path: Path_) -> tuple[int, int]:
    if raw is None:
        return 2, 16
    raw = _check_keys(raw, ("min", "max"), path, "{min: 2, max: 16}")
    lo = _int(raw.get("min", 2), (*path, "min"), 1, "min")
    hi = _int(raw.get("max", 16), (*path, "max"), 1, "max")
    if lo > hi:
        raise _fail((*path, "min"), f"min {lo} > max {hi}; swap them")
    return lo, hi


def _mode_splits(raw: Any, path: Path_) -> Any:
    if raw in ("auto", "default"):
        return raw
    if not isinstance(raw, Mapping):
        raise _fail(path, f"expected auto, default or a mapping {{channels: [[split], ...]}}, got {raw!r}; "
                          f"e.g. mode_splits: auto")
    out = []
    for c, splits in raw.items():
        try:
            ch = int(c)
        except (TypeError, ValueError):
            raise _fail((*path, c), f"key {c!r} is not a channel count; use e.g. 16: [[4, 2, 2]]") from None
        if not isinstance(splits, list) or not splits:
            raise _fail((*path, c), f"expected a non-empty list of splits; e.g. {c}: [[4, 2, 2], [2, 2, 4]]")
        clean = []
        for j, s in enumerate(splits):
            if not isinstance(s, list) or not s or not all(_is_int(x) and x >= 1 for x in s) or math.prod(s) != ch:
                raise _fail((*path, c, j), f"split {s!r} does not multiply to {ch}; give positive ints "
                                           f"whose product is {ch}")
            clean.append(tuple(s))
        out.append((ch, tuple(clean)))
    return tuple(out)

