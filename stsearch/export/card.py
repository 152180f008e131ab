"""``MODEL_CARD.md`` of an export: what the model is, how good and small it is, where it came from, how to load it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..trial import TrialSpec

__all__ = ["model_card", "LAYER_COLUMNS"]

LAYER_COLUMNS = ("layer", "family", "ranks", "t", "in_modes", "out_modes", "mode", "params", "cf", "macs")


def _num(value: Any, fmt: str, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:{fmt}}{unit}"


def _acc(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f} ({100 * float(value):.2f} %)"


def _layers(table: pd.DataFrame) -> str:
    cols = [c for c in LAYER_COLUMNS if c in table.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            cells.append(f"{v:.2f}" if c == "cf" else f"{v:,}" if c in ("params", "macs") else str(v or "-"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _budget(spec: TrialSpec, metrics: Mapping[str, Any]) -> str:
    cfg = spec.train_config()
    parts = [f"{k} {getattr(cfg, k)}" for k in ("epochs", "max_steps", "max_seconds") if getattr(cfg, k) is not None]
    parts += [f"batch {cfg.batch_size}", f"{cfg.optimizer} lr {cfg.lr:g}", f"{cfg.schedule} schedule", f"seed {cfg.seed}"]
    done = f"; {_num(metrics.get('epochs_done'), 'g')} epochs, {_num(metrics.get('steps_done'), ',')} steps done"
    where = f" on {metrics['device']}" if metrics.get("device") else ""
    took = f" in {metrics['train_seconds']:.1f} s" if metrics.get("train_seconds") is not None else ""
    return ", ".join(parts) + done + where + took


def _weights_note(meta: Mapping[str, Any]) -> str:
    """How the program stores the weights: factorized (rebuilt per call) or folded."""
    folded = meta.get("folded_layers")
    if meta.get("program_weights") != "folded" or folded is None:
        return ", factorized weights rebuilt per call"
    at = f" (modes measured at batch {meta['program_batch']})" if meta.get("program_batch") else ""
    if not folded:
        return f", no factorized layer runs its dense mode{at}: nothing to fold"
    return f", rebuilt weights of {len(folded)} layer{'s' if len(folded) != 1 else ''} folded in{at}"


def model_card(spec: TrialSpec, metrics: Mapping[str, Any], meta: Mapping[str, Any], layers: pd.DataFrame) -> str:
    """The card's markdown: ``metrics`` as in ``metrics.json``, ``meta`` as in ``export.json``,
    ``layers`` the per-layer table of :func:`stsearch.summary.summarize`."""
    study, number = meta.get("study"), meta.get("trial")
    finetune = meta.get("finetune") or {}
    family = metrics.get("family", "?")
    title = f"# {spec.model} on {spec.dataset}, {family} compressed ({_num(metrics.get('compression'), '.2f', 'x')})"
    acc_note = ""
    if finetune:
        acc_note = (f" after fine-tuning {finetune['epochs']:g} more epochs "
                    f"(before: {_acc(finetune.get('val_acc_before'))})")
    rows = [
        ("Model", f"`{spec.model}`" + (f" with {dict(spec.model_kwargs)}" if spec.model_kwargs else "")),
        ("Dataset", f"`{spec.dataset}` ({meta.get('num_classes')} classes, input {tuple(meta.get('input_shape', ()))})"),
        ("Family", family),
        ("Parameters", _num(metrics.get("params"), ",")),
        ("Dense parameters", _num(metrics.get("dense_params"), ",")),
        ("Compression factor", _num(metrics.get("compression"), ".2f", "x")),
        ("MACs / sample", f"{_num(metrics.get('macs'), ',')} (dense {_num(metrics.get('dense_macs'), ',')})"),
        ("Top-1 accuracy (validation)", _acc(metrics.get("val_acc")) + acc_note),
        ("Top-5 accuracy (validation)", _acc(metrics.get("val_top5"))),
        ("Latency (batch 1, fastest of 10 runs)", _num(metrics.get("latency_ms"), ".3f", " ms")
         + (f" on {metrics['device']}" if metrics.get("device") else "")),
        ("Training budget", _budget(spec, metrics)),
        ("Fine-tuned", f"yes, {finetune['epochs']:g} epochs with the trial's training config" if finetune else "no"),
        ("Study / trial", f"`{study}` / trial {number}" + (f" ({meta['baseline']} baseline)" if meta.get("baseline") else "")),
        ("Source folder", f"`{meta.get('source_dir')}`"),
        ("Program", f"`{meta['program']}` ({meta.get('program_format')}"
         + (", dynamic batch" if meta.get("dynamic_batch") else ", fixed batch") + _weights_note(meta) + ")"
         if meta.get("program") else f"none ({meta.get('program_error')})"),
    ]
    if meta.get("program_format") == "torchscript":
        rows.append(("torch.export", f"failed, TorchScript used instead: {meta.get('export_error')}"))
    out = [title, "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    out += ["", "## Layers", "", _layers(layers), ""]
    out += ["## How it was made", "", "```sh", str(meta.get("command") or "(not recorded)"), "```", "",
            f"stsearch {meta.get('stsearch_version')}, torch {meta.get('torch_version')}, "
            f"exported {meta.get('created')}.", ""]
    out += ["## How to load it", "", "The factorized model (needs `stsearch`):", "", "```python", "import stsearch",
            "", "model = stsearch.load(\"<this folder>\")  # nn.Module in eval mode", "```", ""]
    if meta.get("program_format") == "torchscript":
        out += ["Torch only (TorchScript):", "", "```python", "import torch", "",
                "model = torch.jit.load(\"<this folder>/program.ts\")", "```", ""]
    else:
        out += ["Torch only (no stsearch code):", "", "```python", "import torch", "",
                "model = torch.export.load(\"<this folder>/program.pt2\").module()", "```", ""]
    out += [f"Input: float32 tensors of shape (batch, {', '.join(str(d) for d in meta.get('input_shape', ()))}), "
            "normalized as in training; output: class logits.", ""]
    return "\n".join(out)
