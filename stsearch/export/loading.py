"""Rebuild an exported (or trial) model without the data set, and load its traced program."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..trial import WEIGHTS_FILE, TrialSpec, build_model, load_state_dict_file

__all__ = ["EXPORT_FILE", "PROGRAM_FILES", "dataset_meta", "read_meta", "load", "load_program", "jit_load"]

EXPORT_FILE = "export.json"
#: Program file name -> format, in the order they are looked for.
PROGRAM_FILES = {"program.pt2": "torch.export", "program.ts": "torchscript"}

def dataset_meta(spec: TrialSpec) -> tuple[int, tuple[int, int, int]]:
    """``(num_classes, input_shape)`` of the trial's data set: as its spec recorded them, else (older
    trial folders) from the dataset, without loading the sets stsearch knows."""
    from ..data import dataset_meta as meta

    if spec.num_classes is not None and spec.input_shape is not None:
        return int(spec.num_classes), tuple(spec.input_shape)  # type: ignore[return-value]
    spec.import_user_code()  # a plugin may register the dataset
    return meta(spec.dataset, spec.data_dir, spec.transforms, paths=spec.python_path)  # type: ignore[return-value]


def jit_load(path: str | Path) -> nn.Module:
    """A TorchScript file on the CPU in eval mode (``torch.jit.load``, its deprecation warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def _folder(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist; pass an export folder or a trial folder")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The folder's ``export.json``; for a trial folder, ``num_classes`` and ``input_shape`` derived from its spec."""
    folder = _folder(path)
    meta_file = folder / EXPORT_FILE
    if meta_file.exists():
        return json.loads(meta_file.read_text())
    num_classes, input_shape = dataset_meta(TrialSpec.load(folder))
    return {"num_classes": num_classes, "input_shape": list(input_shape)}


def load(path: str | Path, *, fold: bool = False) -> nn.Module:
    """The factorized model of an export folder or a trial folder, weights loaded (strict), in eval mode.

    The model is rebuilt from ``trial.json`` (model, kwargs, plan) and the
    class count recorded in ``export.json`` (for a trial folder, derived from
    the data set's name), so no data are needed. The caller's RNG state is kept.
    ``fold=True`` returns it as the exported program runs: each ``auto`` layer's mode measured
    for inference at batch 1, and the layers in the ``dense`` mode replaced by plain layers
    holding their rebuilt weights (:func:`stsearch.compress.fold_for_inference`); for
    inference, not for training the factors further.
    """
    folder = _folder(path)
    spec = TrialSpec.load(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{weights} does not exist: {folder} holds no trained weights "
                                "(the trial failed or has not finished)")
    meta = read_meta(folder)
    with torch.random.fork_rng(devices=[]):  # the throw-away random init must not move the caller's RNG
        model, _ = build_model(spec, num_classes=int(meta["num_classes"]), load_pretrained=False)
    model.load_state_dict(load_state_dict_file(weights), strict=True)
    if fold:
        from ..compress import fold_for_inference

        model, _ = fold_for_inference(model, tuple(int(d) for d in meta["input_shape"]))
    return model.eval()


def load_program(path: str | Path) -> nn.Module:
    """The torch-only program of an export folder (``program.pt2`` via ``torch.export.load``,
    else ``program.ts`` via ``torch.jit.load``), or of such a file; needs no stsearch code."""
    path = Path(path)
    if path.is_file():
        files = [path]
    else:
        folder = _folder(path)
        files = [folder / name for name in PROGRAM_FILES if (folder / name).exists()]
        if not files:
            raise FileNotFoundError(f"{folder} holds no program.pt2 or program.ts; export it with 'stsearch export'")
    file = files[0]
    if file.suffix == ".pt2":
        return torch.export.load(str(file)).module()
    if file.suffix == ".ts":
        return jit_load(file)
    raise ValueError(f"{file}: not a program file (expected .pt2 or .ts)")
