"""A study's trials as one flat table (one row per trial), and its export to CSV/Parquet."""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from ..metrics import MetricTable

__all__ = [
    "OBJECTIVE_ATTRS",
    "DEFAULT_DIRECTIONS",
    "ATTR_COLUMNS",
    "Objectives",
    "study_objectives",
    "normalize_objectives",
    "trials_frame",
    "save_frame",
    "load_frame",
]

#: Objective name -> the trial user attr that holds the same measure.
OBJECTIVE_ATTRS: Mapping[str, str] = MetricTable(lambda m: m.key)

#: Natural direction of each known objective.
DEFAULT_DIRECTIONS: Mapping[str, str] = MetricTable(lambda m: m.direction)

#: Scalar user attrs of the data contract: always present as columns (NaN/None when a trial lacks them).
ATTR_COLUMNS: tuple[str, ...] = (
    "family", "baseline", "budget_fraction", "val_acc", "val_top5", "val_loss",
    "compression", "params", "dense_params", "macs", "dense_macs", "latency_ms",
    "wall_seconds", "reason", "artifact_dir",
)

_NUMERIC = (
    "budget_fraction", "val_acc", "val_top5", "val_loss", "compression", "params", "dense_params",
    "macs", "dense_macs", "latency_ms", "wall_seconds", "duration_s",
)

_STATE_STATUS = {
    "COMPLETE": "completed",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}

#: A list of ``(name, direction)`` pairs, direction ``"maximize"`` or ``"minimize"``.
Objectives = list[tuple[str, str]]


def _direction(d: Any) -> str:
    if isinstance(d, optuna.study.StudyDirection):
        return "maximize" if d == optuna.study.StudyDirection.MAXIMIZE else "minimize"
    s = str(d).lower()
    if s in ("maximize", "max"):
        return "maximize"
    if s in ("minimize", "min"):
        return "minimize"
    raise ValueError(f"unknown objective direction {d!r}")


def normalize_objectives(objectives: Iterable[Any]) -> Objectives:
    """``(name, direction)`` pairs from pairs, ``{"name", "direction"}`` dicts, objects with
    ``.name``/``.direction`` or bare names (known objectives take their natural direction)."""
    out: Objectives = []
    for o in objectives:
        if isinstance(o, str):
            if o not in DEFAULT_DIRECTIONS:
                raise ValueError(f"objective {o!r} needs an explicit direction")
            out.append((o, DEFAULT_DIRECTIONS[o]))
        elif isinstance(o, Mapping):
            out.append((str(o["name"]), _direction(o.get("direction", DEFAULT_DIRECTIONS.get(o["name"])))))
        elif isinstance(o, Sequence) and len(o) == 2:
            out.append((str(o[0]), _direction(o[1])))
        elif hasattr(o, "name") and hasattr(o, "direction"):
            out.append((str(o.name), _direction(o.direction)))
        else:
            raise ValueError(f"cannot read an objective from {o!r}")
    if not out:
        raise ValueError("no objectives given")
    return out


def study_objectives(study: optuna.Study) -> Objectives:
    """The study's objectives: ``user_attrs["objectives"]`` if set, else ``value0..`` with the study's directions."""
    declared = study.user_attrs.get("objectives")
    if declared:
        return normalize_objectives(declared)
    return [(f"value{i}", _direction(d)) for i, d in enumerate(study.directions)]


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str, np.generic))


def _constraints(trial: optuna.trial.FrozenTrial) -> tuple[float, ...] | None:
    c = trial.user_attrs.get("constraints", trial.system_attrs.get("constraints"))
    if c is None:
        return None
    if isinstance(c, (int, float)):
        c = [c]
    return tuple(float(x) for x in c)


def _plan_family(plan: Any) -> str | None:
    if not isinstance(plan, Mapping):
        return None
    fams = {str(lp.get("family", "dense")) for lp in (plan.get("layers") or {}).values() if isinstance(lp, Mapping)}
    fams.discard("dense")
    if not fams:
        return "dense"
    return fams.pop() if len(fams) == 1 else "mixed"


def _row(trial: optuna.trial.FrozenTrial, objectives: Objectives) -> dict[str, Any]:
    ua = trial.user_attrs
    state = trial.state.name
    status = ua.get("status") or _STATE_STATUS.get(state, state.lower())
    cons = _constraints(trial)
    feasible = status != "infeasible" and (cons is None or all(c <= 0 for c in cons))
    if "full_budget" in ua and ua["full_budget"] is not None:
        full = bool(ua["full_budget"])
    elif ua.get("budget_fraction") is not None:
        full = float(ua["budget_fraction"]) >= 1.0 - 1e-9
    else:
        full = state == "COMPLETE" and status == "completed"
    start, end = trial.datetime_start, trial.datetime_complete
    row: dict[str, Any] = {
        "number": trial.number,
        "state": state,
        "status": status,
        "full_budget": full,
        "feasible": feasible,
        "baseline": ua.get("baseline") or None,
        "family": ua.get("family") or _plan_family(ua.get("plan")),
    }
    values = trial.values if trial.values is not None and len(trial.values) == len(objectives) else None
    for i, (name, _) in enumerate(objectives):
        v = values[i] if values is not None else ua.get(OBJECTIVE_ATTRS.get(name, name))
        row[name] = float(v) if v is not None else math.nan
    for k in ATTR_COLUMNS:
        row.setdefault(k, ua.get(k))
    for k, v in ua.items():
        if k not in row and _scalar(v):
            row[k] = v
    for k, v in trial.params.items():
        row[f"param:{k}"] = v
    row["datetime_start"] = start
    row["datetime_complete"] = end
    row["duration_s"] = (end - start).total_seconds() if start is not None and end is not None else math.nan
    row["constraints"] = cons
    row["plan"] = ua.get("plan")
    return row


def trials_frame(study: optuna.Study, objectives: Iterable[Any] | None = None) -> pd.DataFrame:
    """One row per trial of ``study``.

    Columns: ``number``, ``state`` (Optuna state name), ``status`` (the trial's
    ``status`` attr, else derived from the state), ``full_budget``, ``feasible``
    (every constraint <= 0 and status not ``infeasible``), ``baseline``, ``family``,
    one column per objective named after it (the trial's value, else the matching
    user attr, e.g. ``accuracy`` <- ``val_acc`` for pruned trials), every scalar user
    attr, Optuna params as ``param:<name>``, ``datetime_start``,
    ``datetime_complete``, ``duration_s``, ``constraints`` (tuple or None) and
    ``plan`` (dict or None).  ``df.attrs`` holds ``objectives`` and ``study_name``.

    Missing attrs are filled as follows: ``full_budget`` from ``budget_fraction >= 1``,
    else true only for a COMPLETE trial with status ``completed``; ``family`` from the
    plan's layers; constraints are read from the user attr ``constraints``, else from
    Optuna's system attr of the same name.
    """
    objs = normalize_objectives(objectives) if objectives is not None else study_objectives(study)
    rows = [_row(t, objs) for t in study.get_trials(deepcopy=False)]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["number", "state", "status", "full_budget", "feasible", "baseline", "family",
                                   *[n for n, _ in objs], *ATTR_COLUMNS, "datetime_start", "datetime_complete",
                                   "duration_s", "constraints", "plan"])
    df = df.loc[:, ~df.columns.duplicated()]
    for col in [*(n for n, _ in objs), *_NUMERIC]:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in ("full_budget", "feasible"):
        df[col] = df[col].astype(bool)
    df["number"] = df["number"].astype(int)
    df = df.sort_values("number", kind="stable").reset_index(drop=True)
    df.attrs["objectives"] = objs
    df.attrs["study_name"] = study.study_name
    return df


def _to_text(v: Any) -> Any:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or str(out[col].dtype) in ("str", "string"):
            vals = out[col].map(_to_text)
            kinds = {type(v) for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))}
            if len(kinds) > 1:
                vals = vals.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
            out[col] = vals
    return out


def save_frame(df: pd.DataFrame, directory: str | Path) -> list[Path]:
    """Write ``trials.csv`` and ``trials.parquet`` into ``directory``; ``plan`` and
    ``constraints`` (and any other list/dict cell) are stored as JSON text. Returns the paths."""
    from ..search.storage import make_folder

    directory = make_folder(directory, "the trials table's folder (the study's folder under --results-dir)")
    flat = _flat(df)
    flat.attrs = {k: (json.loads(json.dumps(v, default=str))) for k, v in df.attrs.items()}
    csv, pq = directory / "trials.csv", directory / "trials.parquet"
    # Atomic: several workers of one study may write these at once, and a reader never sees half a file.
    for path, write in ((csv, lambda f: flat.to_csv(f, index=False)), (pq, lambda f: flat.to_parquet(f, index=False))):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return [csv, pq]


def load_frame(path: str | Path) -> pd.DataFrame:
    """Read a frame written by :func:`save_frame` (a ``.csv``/``.parquet`` file or their
    directory), decoding ``plan`` and ``constraints`` back from JSON."""
    path = Path(path)
    if path.is_dir():
        path = path / "trials.parquet" if (path / "trials.parquet").exists() else path / "trials.csv"
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if "objectives" in df.attrs:
        df.attrs["objectives"] = normalize_objectives(df.attrs["objectives"])
    for col in ("plan", "constraints"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: json.loads(v) if isinstance(v, str) and v else None)
    if "constraints" in df.columns:
        df["constraints"] = df["constraints"].map(lambda v: tuple(v) if v is not None else None)
    return df
