"""``stsearch export``: one trial of a study as a standalone model folder (weights, program, model card)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .registry import command
from .plugin_args import add_plugin_arg, import_cli_plugins


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="study name")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--trial", type=int, help="trial number (default: the most accurate finished trial)")
    pick.add_argument("--knee", action="store_true", help="the knee point of the Pareto front")
    pick.add_argument("--min-cf", type=float, metavar="X", help="the most accurate trial with compression >= X")
    p.add_argument("--out", help="export folder (default: results/<study>/export/trial-<N>)")
    p.add_argument("--finetune", type=float, metavar="E", help="train E more epochs (the trial's config) before saving")
    p.add_argument("--fold-weights", action=argparse.BooleanOptionalAction, default=True,
                   help="the program holds the rebuilt weight of each layer that runs its dense mode (default): "
                        "no rebuild per call, those layers' dense weights on disk; --no-fold-weights keeps every "
                        "factor in the program (model.safetensors stays factorized either way)")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="inference batch size the program's layers are tuned for before folding (default 1)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///results/<study>/study.db)")
    p.add_argument("--results-dir", default="results", help="where studies write (default: results)")
    add_plugin_arg(p)


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (from ``sys.argv`` when run as ``stsearch export``), else rebuilt from ``args``."""
    if sys.argv[1:2] == ["export"]:
        return shlex.join(["stsearch", *sys.argv[1:]])
    words = ["stsearch", "export", args.name]
    for flag, value in (("--trial", args.trial), ("--min-cf", args.min_cf), ("--out", args.out),
                        ("--finetune", args.finetune), ("--storage", args.storage)):
        if value is not None:
            words += [flag, str(value)]
    if args.knee:
        words.append("--knee")
    if not args.fold_weights:
        words.append("--no-fold-weights")
    if args.batch != 1:
        words += ["--batch", str(args.batch)]
    if args.results_dir != "results":
        words += ["--results-dir", args.results_dir]
    return shlex.join(words)


@command("export", _args)
def export(args: argparse.Namespace) -> int:
    """Export a trial of a study (most accurate, --knee, --min-cf or --trial) as a standalone model."""
    from ..export import export_trial, select_trial
    from ..search.run import SearchRun

    import_cli_plugins(args)
    run = SearchRun.open(args.name, storage=args.storage, results_dir=args.results_dir)
    trial = select_trial(run, trial=args.trial, knee=args.knee, min_cf=args.min_cf)
    out = Path(args.out) if args.out else run.folder / "export" / f"trial-{trial.number}"
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    export_trial(run, trial, out, finetune_epochs=args.finetune, command=command_line(args),
                 fold_weights=args.fold_weights, batch=args.batch)
    metrics = json.loads((out / "metrics.json").read_text())
    acc, cf = metrics.get("val_acc"), metrics.get("compression")
    print(out)
    print(f"trial {trial.number} of study {run.name}: {metrics.get('family')}, "
          f"accuracy {'n/a' if acc is None else f'{acc:.4f}'}, CF {'n/a' if cf is None else f'{cf:.2f}x'}"
          + (f" (fine-tuned {args.finetune:g} epochs)" if args.finetune is not None else ""))
    return 0
