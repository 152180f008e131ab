"""Which trial of a study to export: by number, most accurate, knee of the front, or best above a CF."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from ..trial import METRICS_FILE, WEIGHTS_FILE

__all__ = ["select_trial", "trial_folder", "study_of", "read_trial_metrics"]

#: Keys every trained trial's ``metrics.json`` holds (the model card and the run check read them).
REQUIRED_METRICS = ("val_acc", "compression", "params", "family")


def study_of(run_or_study: Any) -> optuna.Study:
    """The Optuna study of a :class:`~stsearch.search.run.SearchRun` or of a study itself."""
    return run_or_study.study if hasattr(run_or_study, "study") and not isinstance(run_or_study, optuna.Study) else run_or_study


def select_trial(
    study: Any,
    *,
    trial: int | None = None,
    knee: bool = False,
    min_cf: float | None = None,
) -> FrozenTrial:
    """The trial to export (``study``: an Optuna study or a ``SearchRun``).

    No selector: the most accurate eligible trial (finished, full budget,
    feasible); ``trial``: that trial number; ``knee``: the knee point of the
    Pareto front over the study's objectives; ``min_cf``: the most accurate
    eligible trial with compression >= ``min_cf``. The trial's folder and
    weights must exist (``FileNotFoundError`` otherwise); any other problem is
    a one-line ``ValueError`` naming the fix.
    """
    chosen = sum([trial is not None, bool(knee), min_cf is not None])
    if chosen > 1:
        raise ValueError("give at most one of --trial, --knee and --min-cf")
    st = study_of(study)
    trials = st.get_trials(deepcopy=False)
    if trial is not None:
        frozen = _by_number(st, trials, int(trial))
    else:
        frozen = _by_rule(st, knee=knee, min_cf=min_cf)
    trial_folder(study, frozen)  # raises when the folder or its weights are gone
    return frozen


def _by_number(st: optuna.Study, trials: list[FrozenTrial], number: int) -> FrozenTrial:
    name = st.study_name
    by_number = {t.number: t for t in trials}
    if number not in by_number:
        if not trials:
            raise ValueError(f"study {name} has no trials yet; run 'stsearch status {name}'")
        raise ValueError(
            f"study {name} has no trial {number}; valid trial numbers are {min(by_number)}-{max(by_number)} "
            f"(see 'stsearch status {name}')"
        )
    t = by_number[number]
    status = t.user_attrs.get("status") or ("completed" if t.state == TrialState.COMPLETE else t.state.name.lower())
    if t.state in (TrialState.RUNNING, TrialState.WAITING):
        raise ValueError(f"trial {number} of study {name} is {t.state.name.lower()}, not trained yet; "
                         f"wait for it ('stsearch status {name}') or pick another --trial")
    if t.state != TrialState.COMPLETE or status != "completed":
        reason = t.user_attrs.get("reason")
        why = f" ({reason})" if reason else ""
        raise ValueError(f"trial {number} of study {name} is {status}{why}, it has no trained model; "
                         f"pick a completed trial, e.g. from 'stsearch pareto {name}'")
    return t


def _frame(st: optuna.Study) -> pd.DataFrame:
    from ..results.frame import trials_frame

    df = trials_frame(st)
    if "accuracy" not in df.columns:
        df = df.assign(accuracy=pd.to_numeric(df["val_acc"], errors="coerce").astype(float))
    return df


def _by_rule(st: optuna.Study, *, knee: bool, min_cf: float | None) -> FrozenTrial:
    from ..results.pareto import best_at_constraint, eligible_mask, knee_point, pareto_front

    name = st.study_name
    df = _frame(st)
    objs = df.attrs["objectives"]
    eligible = df[eligible_mask(df, objs)] if len(df) else df
    if eligible.empty:
        raise ValueError(f"study {name} has no finished full-budget trial yet; run 'stsearch status {name}'")
    if knee:
        row = knee_point(pareto_front(df, objs), objs)
    elif min_cf is not None:
        row = best_at_constraint(df, "accuracy", {"compression": (">=", float(min_cf))}, direction="maximize")
        if row is None:
            top = eligible.sort_values(["compression", "number"], ascending=[False, True]).iloc[0]
            raise ValueError(
                f"no finished full-budget trial of study {name} has compression >= {min_cf:g}; the highest is "
                f"{float(top['compression']):.2f}x (trial {int(top['number'])}); lower --min-cf"
            )
    else:
        row = best_at_constraint(df, "accuracy", direction="maximize")
        if row is None:
            raise ValueError(f"study {name} has no finished full-budget trial yet; run 'stsearch status {name}'")
    number = int(row["number"])
    return next(t for t in st.get_trials(deepcopy=False) if t.number == number)


def trial_folder(run_or_study: Any, trial: FrozenTrial) -> Path:
    """The folder of a trained trial, checked to hold its weights and its run.

    Looked for first as ``<run.folder>/trials/<name>`` (the study's own results folder, also
    after it was moved), then at the stored ``artifact_dir``. A folder whose ``metrics.json``
    disagrees with the study's record of the trial holds another run (a results folder reused by
    a newer study of the same name) and is passed over.
    """
    name = study_of(run_or_study).study_name
    stored = trial.user_attrs.get("artifact_dir")
    if not stored:
        raise FileNotFoundError(f"trial {trial.number} of study {name} records no folder (artifact_dir); "
                                "it was never trained")
    run_folder = getattr(run_or_study, "folder", None)
    own = [Path(run_folder) / "trials" / Path(stored).name] if run_folder is not None else []
    candidates = [c for c in dict.fromkeys([*own, Path(stored)]) if c.is_dir()]
    if not candidates:
        raise FileNotFoundError(f"folder {stored} of trial {trial.number} of study {name} does not exist; "
                                "pass --results-dir where the study's trials/ folder lives")
    folder = next((c for c in candidates if _holds_run_of(c, trial)), None)
    if folder is None:
        raise FileNotFoundError(f"{', '.join(map(str, candidates))} holds another run than trial {trial.number} of "
                                f"study {name} (its metrics.json differs from the study's record); the folder was "
                                "reused by a newer study: pass --results-dir where this study's trials/ folder lives")
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{weights} does not exist: trial {trial.number} of study {name} has no saved "
                                "weights; re-run it or export another trial")
    return folder


def _holds_run_of(folder: Path, trial: FrozenTrial) -> bool:
    """Whether ``folder``'s ``metrics.json`` agrees with what the study recorded for ``trial``
    (a folder without one cannot be checked and is taken)."""
    metrics = read_trial_metrics(folder)
    if metrics is None:
        return True
    return all(metrics[k] == trial.user_attrs[k] for k in ("val_acc", "params", "family")
               if k in metrics and k in trial.user_attrs)


def read_trial_metrics(folder: Path) -> dict[str, Any] | None:
    """The trial folder's ``metrics.json`` (``None`` when there is none); a one-line ``ValueError``
    naming the file when it is not UTF-8 JSON, not an object, or lacks a key of :data:`REQUIRED_METRICS`."""
    path = Path(folder) / METRICS_FILE
    try:
        metrics = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else f"not JSON ({err})"
        raise ValueError(_bad_metrics(path, problem)) from None
    if not isinstance(metrics, dict):
        kind = {list: "an array", type(None): "null", str: "a string", bool: "a boolean"}.get(type(metrics), "a number")
        raise ValueError(_bad_metrics(path, f"it holds {kind}, not an object"))
    missing = [k for k in REQUIRED_METRICS if k not in metrics]
    if missing:
        raise ValueError(_bad_metrics(path, f"it lacks {', '.join(missing)}"))
    return metrics


def _bad_metrics(path: Path, problem: str) -> str:
    return (f"{path} is not a trial's metrics file: {problem}; delete it to export with the study's record of "
            "the trial instead, or export another trial")
