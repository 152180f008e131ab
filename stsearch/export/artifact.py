"""Write an export folder for one trial: spec, plan, weights, metrics, traced program and model card."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from optuna.trial import FrozenTrial
from torch import nn

from .. import __version__
from ..trial import METRICS_FILE, WEIGHTS_FILE, TrialSpec, jsonable, save_weights
from .loading import EXPORT_FILE, dataset_meta, load
from .selection import select_trial, study_of, trial_folder

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
    train_ds, val_ds, _ = load_dataset(spec.dataset, spec.data_dir, split_seed=0)
    teacher = None
    if cfg.distill_alpha > 0 and spec.pretrained:
        from ..models import create_model
        from ..trial import load_state_dict_file

        teacher = create_model(spec.model, **{"num_classes": dataset_meta(spec)[0], **spec.model_kwargs})
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
    path = folder / METRICS_FILE
    if path.exists():
        return json.loads(path.read_text())
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
    ``MODEL_CARD.md``. Returns ``out_dir``. With ``fold_weights`` (the default) each layer's mode is
    measured for inference at ``batch`` samples and the program holds the rebuilt weights of the
    layers in the dense mode, so no call rebuilds them; without, it keeps every factor (smaller
    where those layers are large, slower). The safetensors weights stay factorized either way.
    """
    from ..summary import summarize

    if finetune_epochs is not None:
        _check_epochs(finetune_epochs)
    frozen = trial if isinstance(trial, FrozenTrial) else select_trial(run_or_study, trial=int(trial))
    folder = trial_folder(run_or_study, frozen)
    spec = TrialSpec.load(folder)
    num_classes, input_shape = dataset_meta(spec)
    metrics = _read_metrics(folder, frozen)
    out = Path(out_dir)
    if out.resolve() == folder.resolve():
        raise ValueError(f"--out {out} is the trial's own folder; export to another folder")
    out.mkdir(parents=True, exist_ok=True)
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
    return out


def write_program_meta(model: nn.Module, input_shape: tuple[int, ...], out: Path, meta: dict[str, Any], *,
                       fold: bool = True, batch: int = 1) -> None:
    """Write the traced program into ``out`` and record its file, format and folded layers in ``meta``."""
    from .program import write_program

    info = write_program(model, input_shape, out, fold=fold, batch=batch)
    meta.update(program=info.file, program_format=info.format, dynamic_batch=info.dynamic_batch,
                export_error=info.export_error, program_error=info.error,
                program_weights="folded" if fold else "factorized", folded_layers=info.folded,
                program_batch=batch if fold else None)
