"""Write an export folder for one trial: spec, plan, weights, metrics, traced program and model card."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from optuna.trial import FrozenTrial
from torch import nn

from .. import __version__
from ..search.storage import make_folder
from ..trial import METRICS_FILE, WEIGHTS_FILE, TrialSpec, jsonable, save_weights
from .loading import EXPORT_FILE, dataset_meta, load
from .selection import read_trial_metrics, select_trial, study_of, trial_folder

__all__ = ["EXPORT_FILE", "PLAN_FILE", "CARD_FILE", "export_trial", "finetune"]

PLAN_FILE = "plan.json"
CARD_FILE = "MODEL_CARD.md"


def finetune(model: nn.Module, spec: TrialSpec, epochs: float) -> dict[str, Any]:
    """Train ``model`` (weights already loaded) ``epochs`` more epochs with the trial's TrainConfig
    (its step and time caps dropped); returns the new metrics. A failed run raises ``ValueError``."""
    from ..data import load_dataset
    from ..train import train

    _check_epochs(epochs)
    cfg = dataclasses.replace(spec.train_config(), epochs=float(epochs), max_steps=None, max_seconds=None)
    spec.import_user_code()  # a plugin may register the dataset
    train_ds, val_ds, _ = load_dataset(spec.dataset, spec.data_dir, split_seed=0, transforms=spec.transforms,
                                       paths=spec.python_path)
    teacher = None
    if cfg.distill_alpha > 0 and spec.pretrained:
        from ..trial import dense_model, load_state_dict_file

        teacher = dense_model(spec, dataset_meta(spec)[0])
        teacher.load_state_dict(load_state_dict_file(spec.pretrained))
        teacher.eval()
    elif cfg.distill_alpha > 0:
        cfg = dataclasses.replace(cfg, distill_alpha=0.0)
    result = train(model, train_ds, val_ds, cfg, teacher=teacher, checkpoint_dir=None, progress=False)
    model.to("cpu").eval()
    if result.status == "failed":
        raise ValueError(f"fine-tuning failed: {result.reason}; export without --finetune, or lower the trial's lr")
    return {"val_acc": result.val_acc, "val_top5": result.val_top5, "val_loss": result.val_loss,
            "epochs": float(epochs), "steps": result.steps_done, "seconds": result.wall_seconds,
            "device": result.device, "history": result.history}


def _check_epochs(epochs: float) -> None:
    if not epochs > 0:
        raise ValueError(f"--finetune must be a positive number of epochs, got {epochs:g}")


def _read_metrics(folder: Path, trial: FrozenTrial) -> dict[str, Any]:
    metrics = read_trial_metrics(folder)
    if metrics is not None:
        return metrics
    return {k: v for k, v in trial.user_attrs.items() if k not in ("plan", "constraints", "heartbeat", "owner")}


def export_trial(
    run_or_study: Any,
    trial: FrozenTrial | int,
    out_dir: str | Path,
    *,
    finetune_epochs: float | None = None,
    command: str | None = None,
    fold_weights: bool = True,
    batch: int = 1,
) -> Path:
    """Export ``trial`` (a FrozenTrial or a trial number) of a study (or ``SearchRun``) to ``out_dir``.

    Writes ``plan.json``, ``trial.json``, ``model.safetensors`` (copied from
    the trial folder, or fine-tuned ``finetune_epochs`` more epochs),
    ``metrics.json``, ``export.json`` (study, trial, class count, input shape,
    program format, ``command``), ``program.pt2`` (or ``program.ts``) and
    ``MODEL_CARD.md``, all into a sibling folder first, renamed to ``out_dir`` once complete: a failed
    export leaves nothing (an earlier export at ``out_dir`` is replaced only by a complete one).
    Returns ``out_dir``. With ``fold_weights`` (the default) each layer's mode is
    measured for inference at ``batch`` samples and the program holds the rebuilt weights of the
    layers in the dense mode, so no call rebuilds them; without, it keeps every factor (smaller
    where those layers are large, slower). The safetensors weights stay factorized either way.
    """
    if finetune_epochs is not None:
        _check_epochs(finetune_epochs)
    frozen = trial if isinstance(trial, FrozenTrial) else select_trial(run_or_study, trial=int(trial))
    folder = trial_folder(run_or_study, frozen)
    spec = TrialSpec.load(folder)
    metrics = _read_metrics(folder, frozen)
    out = Path(out_dir)
    if out.resolve() == folder.resolve():
        raise ValueError(f"--out {out} is the trial's own folder; export to another folder")
    _check_out(out)
    with _written_aside(out) as tmp:
        _write_export(run_or_study, frozen, folder, spec, metrics, tmp, finetune_epochs=finetune_epochs,
                      command=command, fold_weights=fold_weights, batch=batch)
    return out


def _write_export(run_or_study: Any, frozen: FrozenTrial, folder: Path, spec: TrialSpec, metrics: dict[str, Any],
                  out: Path, *, finetune_epochs: float | None, command: str | None, fold_weights: bool,
                  batch: int) -> None:
    """Every file of the export of trial ``frozen`` (its ``folder``) into the empty folder ``out``."""
    from ..summary import summarize

    num_classes, input_shape = dataset_meta(spec)
    meta: dict[str, Any] = {
        "format_version": 1,
        "study": study_of(run_or_study).study_name,
        "trial": frozen.number,
        "baseline": frozen.user_attrs.get("baseline"),
        "source_dir": str(folder.resolve()),
        "num_classes": num_classes,
        "input_shape": list(input_shape),
        "command": command,
        "stsearch_version": __version__,
        "torch_version": torch.__version__,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "finetune": None,
    }
    model = load(folder)
    if finetune_epochs is not None:
        tuned = finetune(model, spec, finetune_epochs)
        meta["finetune"] = {**{k: v for k, v in tuned.items() if k != "history"},
                            "val_acc_before": metrics.get("val_acc"), "val_top5_before": metrics.get("val_top5")}
        metrics = {**metrics, "val_acc": tuned["val_acc"], "val_top5": tuned["val_top5"],
                   "val_loss": tuned["val_loss"], "finetuned": True, "finetune_history": tuned["history"]}
        save_weights(model, out / WEIGHTS_FILE)
    else:
        shutil.copyfile(folder / WEIGHTS_FILE, out / WEIGHTS_FILE)
    spec.save(out)
    (out / PLAN_FILE).write_text(json.dumps(spec.plan, indent=2))
    (out / METRICS_FILE).write_text(json.dumps(jsonable(metrics), indent=2))
    write_program_meta(model, input_shape, out, meta, fold=fold_weights, batch=batch)
    (out / EXPORT_FILE).write_text(json.dumps(jsonable(meta), indent=2))
    layers = summarize(spec.model, spec.network_plan(), input_shape=input_shape,
                       **{**spec.model_kwargs, "num_classes": num_classes}).table
    from .card import model_card

    (out / CARD_FILE).write_text(model_card(spec, metrics, meta, layers))


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder holding other files than an earlier export
    (which the new export replaces whole), before anything is written."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the exported model")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_FILE).exists():
        raise ValueError(f"--out {out} holds other files and no export ({EXPORT_FILE}); give a new or empty "
                         "folder, or the folder of an earlier export to replace it")


@contextmanager
def _written_aside(out: Path) -> Iterator[Path]:
    """A fresh sibling folder of ``out`` to write an export into, put in place of ``out`` only once
    complete; if anything fails it is removed, with the parents of ``out`` made for it."""
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # deepest first
    make_folder(out.parent, "the folder of --out")
    if out.is_dir():  # an earlier export (or an empty folder) to be replaced: it must be writable too
        make_folder(out, "--out folder")
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = out.parent / f".{out.name}.{tag}.partial"
    try:
        tmp.mkdir()
        yield tmp
        _swap_in(tmp, out, out.parent / f".{out.name}.{tag}.old")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in made:
            try:
                parent.rmdir()
            except OSError:
                break
        raise


def _swap_in(new: Path, out: Path, old: Path) -> None:
    """Rename folder ``new`` to ``out``; an earlier export at ``out`` is moved aside first, then removed."""
    if out.is_dir() and any(out.iterdir()):
        os.replace(out, old)
        try:
            os.replace(new, out)
        except OSError:
            os.replace(old, out)  # the earlier export stays as it was
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)  # onto a missing or empty folder


def write_program_meta(model: nn.Module, input_shape: tuple[int, ...], out: Path, meta: dict[str, Any], *,
                       fold: bool = True, batch: int = 1) -> None:
    """Write the traced program into ``out`` and record its file, format and folded layers in ``meta``."""
    from .program import write_program

    info = write_program(model, input_shape, out, fold=fold, batch=batch)
    meta.update(program=info.file, program_format=info.format, dynamic_batch=info.dynamic_batch,
                export_error=info.export_error, program_error=info.error,
                program_weights="folded" if fold else "factorized", folded_layers=info.folded,
                program_batch=batch if fold else None)
