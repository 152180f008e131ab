"""Pareto front, hypervolume, knee point and constrained best of a trials frame.

Every function takes a frame from :func:`stsearch.results.frame.trials_frame` and an
``objectives`` argument: ``(name, direction)`` pairs, ``{"name", "direction"}`` dicts
or bare known names; ``None`` means ``df.attrs["objectives"]`` (set by ``trials_frame``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import pandas as pd

from ..metrics import Metric, MetricTable, get_metric
from .frame import DEFAULT_DIRECTIONS, Objectives, normalize_objectives, trials_frame

__all__ = [
    "resolve_objectives",
    "eligible_mask",
    "nondominated_mask",
    "pareto_front",
    "hypervolume",
    "default_reference",
    "hypervolume_history",
    "knee_point",
    "LOG_OBJECTIVES",
    "best_at_constraint",
    "pareto_table",
]

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}


def resolve_objectives(df: pd.DataFrame, objectives: Iterable[Any] | None = None) -> Objectives:
    """``objectives`` as ``(name, direction)`` pairs, defaulting to ``df.attrs["objectives"]``."""
    if objectives is None:
        objectives = df.attrs.get("objectives")
        if not objectives:
            raise ValueError("no objectives given and the frame has no attrs['objectives']")
    return normalize_objectives(objectives)


def _signs(objs: Objectives) -> np.ndarray:
    """+1 for minimized, -1 for maximized: multiplying gives a minimization problem."""
    return np.array([1.0 if d == "minimize" else -1.0 for _, d in objs])


def eligible_mask(df: pd.DataFrame, objectives: Iterable[Any] | None = None) -> pd.Series:
    """Trials that may enter a front: state COMPLETE, status ``completed``, trained with the
    full budget, feasible, and with a finite value for every objective."""
    objs = resolve_objectives(df, objectives)
    if df.empty:
        return pd.Series([], dtype=bool, index=df.index)
    mask = (
        (df["state"] == "COMPLETE")
        & (df["status"] == "completed")
        & df["full_budget"].astype(bool)
        & df["feasible"].astype(bool)
    )
    for name, _ in objs:
        if name not in df.columns:
            raise KeyError(f"objective column {name!r} not in frame")
        mask &= np.isfinite(pd.to_numeric(df[name], errors="coerce").to_numpy(float))
    return mask


def nondominated_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points`` (all objectives minimized).
    Equal rows do not dominate each other, so duplicates on the front are all kept."""
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    order = np.lexsort(pts.T[::-1])  # lexicographic: any dominator of a point comes before it
    front = np.empty((0, pts.shape[1]))
    for i in order:
        p = pts[i]
        if len(front) and np.any(np.all(front <= p, axis=1) & np.any(front < p, axis=1)):
            continue
        mask[i] = True
        front = np.vstack([front, p])
    return mask


def pareto_front(df: pd.DataFrame, objectives: Iterable[Any] | None = None) -> pd.DataFrame:
    """The non-dominated eligible trials (see :func:`eligible_mask`) for any number of
    objectives with mixed directions; rows equal in every objective are all kept.
    Sorted best-first by the first objective, ties by the next ones, then trial number."""
    objs = resolve_objectives(df, objectives)
    names = [n for n, _ in objs]
    cand = df[eligible_mask(df, objs)]
    if cand.empty:
        return cand.copy()
    keep = nondominated_mask(cand[names].to_numpy(float) * _signs(objs))
    front = cand[keep]
    return front.sort_values(
        [*names, "number"], ascending=[d == "minimize" for _, d in objs] + [True], kind="stable"
    ).copy()


def _hv_min(pts: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume dominated by ``pts`` (minimized) up to ``ref``: a sweep in 2-D, a
    prefix-minimum grid in 3-D, slices along the last axis above that."""
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    m = pts.shape[1]
    if m == 1:
        return float(ref[0] - pts[:, 0].min())
    if m == 2:
        pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
        widths = np.diff(np.append(pts[:, 0], ref[0]))
        heights = ref[1] - np.minimum.accumulate(pts[:, 1])
        return float(np.sum(widths * heights))
    if m == 3 and len(pts) <= _GRID_LIMIT:
        return _hv3(pts, ref)
    pts = pts[np.argsort(pts[:, -1], kind="stable")]
    zs = np.append(pts[:, -1], ref[-1])
    total = 0.0
    for k in range(len(pts)):
        dz = zs[k + 1] - zs[k]
        if dz > 0:
            total += _hv_min(pts[: k + 1, :-1], ref[:-1]) * dz
    return total


_GRID_LIMIT = 2000  # 3-D grid has up to n^2 cells


def _hv3(pts: np.ndarray, ref: np.ndarray) -> float:
    """3-D hypervolume: over the grid of x/y breakpoints, each cell is covered from the
    lowest z of the points whose (x, y) is at or below the cell's corner."""
    xs, ix = np.unique(pts[:, 0], return_inverse=True)
    ys, iy = np.unique(pts[:, 1], return_inverse=True)
    low = np.full((len(xs), len(ys)), ref[2])
    np.minimum.at(low, (ix, iy), pts[:, 2])
    low = np.minimum.accumulate(np.minimum.accumulate(low, axis=0), axis=1)
    dx = np.diff(np.append(xs, ref[0]))
    dy = np.diff(np.append(ys, ref[1]))
    return float(np.sum(dx[:, None] * dy[None, :] * (ref[2] - low)))


def hypervolume(points: Any, directions: Sequence[Any], reference: Sequence[float]) -> float:
    """Exact hypervolume of ``points`` (rows, objective space) against ``reference``.

    ``directions`` holds ``"maximize"``/``"minimize"`` per column. Only the part of
    each point's box that is better than the reference in every objective counts;
    points not strictly better than the reference in all objectives add nothing.
    Exact for any number of objectives; cost grows as n^(m-2) 2-D sweeps for a
    front of n points in m objectives (fine for m <= 4 and fronts of hundreds).
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim == 1:
        pts = pts.reshape(1, -1) if pts.size else pts.reshape(0, len(directions))
    signs = _signs([("", normalize_objectives([("", d)])[0][1]) for d in directions])
    ref = np.asarray(reference, dtype=float)
    if pts.shape[1] != len(signs) or ref.shape != (len(signs),):
        raise ValueError("points, directions and reference disagree on the number of objectives")
    pts = pts[np.all(np.isfinite(pts), axis=1)] * signs
    ref = ref * signs
    pts = pts[np.all(pts < ref, axis=1)]
    return _hv_min(pts[nondominated_mask(pts)], ref)


def _metric_or_none(name: str) -> Metric | None:
    try:
        return get_metric(name)
    except ValueError:
        return None


def default_reference(df: pd.DataFrame, objectives: Iterable[Any] | None = None) -> list[float]:
    """The reference point used when none is given, one value per objective:

    * ``accuracy`` (maximized): 0.0;
    * ``compression`` (maximized): 1.0, i.e. the dense network;
    * a minimized objective (``macs``, ``params``, ``latency_ms``...): the worst
      observed value x 1.1 (worst + 10 % of its magnitude; 1.0 if it is 0);
    * any other maximized objective: the worst observed value - 10 % of its magnitude.

    "Observed" means among eligible trials, or among all trials with a finite value
    if none is eligible. Keep the reference fixed when comparing studies.
    """
    objs = resolve_objectives(df, objectives)
    elig = df[eligible_mask(df, objs)] if not df.empty else df
    ref: list[float] = []
    for name, direction in objs:
        metric = _metric_or_none(name)
        if metric is not None and metric.reference is not None and direction == metric.direction:
            ref.append(float(metric.reference))  # accuracy 0, compression 1 (the dense network)
            continue
        vals = pd.to_numeric(elig[name], errors="coerce").to_numpy(float) if name in elig else np.array([])
        vals = vals[np.isfinite(vals)]
        if vals.size == 0 and name in df:
            vals = pd.to_numeric(df[name], errors="coerce").to_numpy(float)
            vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            ref.append(1.0 if direction == "minimize" else 0.0)
            continue
        worst = float(vals.max() if direction == "minimize" else vals.min())
        pad = 0.1 * abs(worst)
        if direction == "minimize":
            ref.append(worst + pad if worst != 0 else 1.0)
        else:
            ref.append(worst - pad if worst != 0 else -1.0)
    return ref


def hypervolume_history(
    df: pd.DataFrame, objectives: Iterable[Any] | None = None, reference: Sequence[float] | None = None
) -> pd.DataFrame:
    """Per trial number (ascending): the hypervolume of the front of eligible trials with
    that number or lower. Columns: ``number``, ``hypervolume``,
    ``front_size`` (distinct objective vectors on the front), ``eligible`` (this trial
    counts), ``improved`` (this trial raised the hypervolume). ``reference`` defaults to
    :func:`default_reference`; the result's ``attrs`` record ``reference`` and ``objectives``."""
    objs = resolve_objectives(df, objectives)
    ref = list(reference) if reference is not None else default_reference(df, objs)
    signs = _signs(objs)
    ref_min = np.asarray(ref, dtype=float) * signs
    ordered = df.sort_values("number", kind="stable")
    elig = eligible_mask(ordered, objs).to_numpy(bool) if not ordered.empty else np.array([], dtype=bool)
    pts = ordered[[n for n, _ in objs]].to_numpy(float) * signs if not ordered.empty else np.empty((0, len(objs)))
    front = np.empty((0, len(objs)))
    hv = 0.0
    rows = []
    for num, ok, p in zip(ordered["number"].to_numpy(int), elig, pts):
        improved = False
        if ok and np.all(p < ref_min) and not np.any(np.all(front <= p, axis=1)):
            # p's exclusive contribution: its box less the part the front already covers
            covered = _hv_min(np.maximum(front, p), ref_min) if len(front) else 0.0
            gain = max(float(np.prod(ref_min - p)) - covered, 0.0)
            front = np.vstack([front[~np.all(p <= front, axis=1)], p])
            improved = gain > 0
            hv += gain
        rows.append((int(num), hv, len(front), bool(ok), improved))
    out = pd.DataFrame(rows, columns=["number", "hypervolume", "front_size", "eligible", "improved"])
    out.attrs["reference"] = ref
    out.attrs["objectives"] = objs
    return out


#: Objectives that are ratios or counts spanning decades: the knee is found on their logarithm.
LOG_OBJECTIVES: Mapping[str, bool] = MetricTable(lambda m: True, where=lambda m: m.log)


def knee_point(
    front: pd.DataFrame, objectives: Iterable[Any] | None = None, *, log: Iterable[str] = LOG_OBJECTIVES
) -> pd.Series:
    """The knee of a front: the point farthest beyond the line (2 objectives) or
    hyperplane (more) through the front's extreme points.

    Objectives named in ``log`` (default: compression, MACs, parameters) are taken as
    logarithms when all positive, matching the log axes they are plotted on. Each
    objective is then rescaled over the front to [0, 1] with 1 = best (a constant
    objective maps to 1); the extreme point of an objective is the front point best in
    it. Distances are signed so that "beyond" means away from the nadir (0, ..., 0); a
    front with no point beyond the line gives the least-inside point, ties go to the
    earlier row. A one-point front returns that point.
    """
    if front.empty:
        raise ValueError("knee_point of an empty front")
    if len(front) == 1:
        return front.iloc[0]
    objs = resolve_objectives(front, objectives)
    vals = front[[n for n, _ in objs]].to_numpy(float).copy()
    logs = set(log)
    for j, (name, _) in enumerate(objs):
        if name in logs and np.all(vals[:, j] > 0):
            vals[:, j] = np.log(vals[:, j])
    good = vals * -_signs(objs)
    lo, hi = good.min(axis=0), good.max(axis=0)
    span = hi - lo
    norm = np.where(span > 0, (good - lo) / np.where(span > 0, span, 1.0), 1.0)
    m = norm.shape[1]
    extremes = norm[[int(np.argmax(norm[:, j])) for j in range(m)]]
    normal, *_ = np.linalg.lstsq(extremes, np.ones(m), rcond=None)
    length = float(np.linalg.norm(normal))
    if not np.all(np.isfinite(normal)) or length < 1e-12:
        normal, length = np.ones(m), math.sqrt(m)
    dist = (norm @ normal - 1.0) / length
    return front.iloc[int(np.argmax(dist))]


def best_at_constraint(
    df: pd.DataFrame,
    objective: str = "accuracy",
    where: Mapping[str, Any] | None = None,
    *,
    direction: str | None = None,
    eligible_only: bool = True,
) -> pd.Series | None:
    """The trial best in ``objective`` among those meeting every condition in ``where``,
    e.g. ``{"compression": (">=", 10), "family": "stt"}`` (a bare value means ``==``;
    operators ``>= > <= < == !=``). ``direction`` defaults to the frame's objective
    direction, else the objective's natural one. Only eligible trials (see
    :func:`eligible_mask`, objective finite) unless ``eligible_only=False``. Ties go to the
    trial better in the frame's other objectives (in their order), then to the lowest trial
    number, so the answer is never dominated by a qualifying trial: under a floor on objectives
    (``compression >= 10``) it is a point of the Pareto front. ``None`` if nothing qualifies."""
    if direction is None:
        declared = dict(_declared(df))
        direction = declared.get(objective) or DEFAULT_DIRECTIONS.get(objective)
        if direction is None:
            raise ValueError(f"give the direction of objective {objective!r}")
    direction = normalize_objectives([(objective, direction)])[0][1]
    if df.empty:
        return None
    mask = eligible_mask(df, [(objective, direction)]) if eligible_only else np.isfinite(
        pd.to_numeric(df[objective], errors="coerce").to_numpy(float))
    for col, cond in (where or {}).items():
        op, value = cond if isinstance(cond, (tuple, list)) and len(cond) == 2 and cond[0] in _OPS else ("==", cond)
        col_vals = df[col]
        mask &= col_vals.notna() & _OPS[op](col_vals, value).fillna(False).astype(bool)
    sel = df[np.asarray(mask, dtype=bool)]
    if sel.empty:
        return None
    order = [(objective, direction)] + [(n, d) for n, d in _declared(df) if n != objective and n in sel.columns]
    keys = pd.DataFrame({f"k{i}": pd.to_numeric(sel[n], errors="coerce") * (1.0 if d == "minimize" else -1.0)
                         for i, (n, d) in enumerate(order)}).assign(number=sel["number"]).reset_index(drop=True)
    return sel.iloc[int(keys.sort_values(list(keys.columns), na_position="last", kind="stable").index[0])]


def _declared(df: pd.DataFrame) -> Objectives:
    """The frame's objectives (``df.attrs["objectives"]``), or none."""
    return normalize_objectives(df.attrs["objectives"]) if df.attrs.get("objectives") else []


def pareto_table(study: optuna.Study, objectives: Iterable[Any] | None = None) -> pd.DataFrame:
    """The study's Pareto front as a readable table: ``number``, ``family``, ``accuracy``,
    ``compression``, ``macs``, ``params``, any other objective, ``baseline``, ``status``;
    ordered as :func:`pareto_front` orders it."""
    df = trials_frame(study, objectives)
    front = pareto_front(df)
    if "accuracy" not in front.columns:
        front = front.assign(accuracy=front["val_acc"])
    cols = ["number", "family", "accuracy", "compression", "macs", "params"]
    cols += [n for n, _ in df.attrs["objectives"] if n not in cols]
    cols += ["baseline", "status"]
    return front[[c for c in cols if c in front.columns]].reset_index(drop=True)
