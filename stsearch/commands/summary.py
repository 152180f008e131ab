"""``stsearch summary``: per-layer params/MACs/CF of a plan on a registered model."""

from __future__ import annotations

import argparse
import json

from .registry import command


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="registered model name (see --list; default: the --plan file's model)", nargs="?")
    p.add_argument("--plan", help="JSON or YAML plan file; without it the dense model is summarized")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print totals as JSON instead of the table")
    p.add_argument("--csv", help="also write the per-layer table to this CSV file")
    p.add_argument("--list", action="store_true", help="list the registered models and exit")


@command("summary", _args)
def run(args: argparse.Namespace) -> int:
    """Per-layer parameters, MACs and compression factor of a plan (no weights are built)."""
    from ..models import list_models
    from ..plan import NetworkPlan
    from ..summary import summarize

    plan = NetworkPlan.load(args.plan) if args.plan and not args.list else None
    if plan is not None and not args.model:
        args.model = plan.model  # a plan file that names its model needs no model argument
    if args.list or not args.model:
        print("\n".join(list_models()))
        if args.list:
            return 0
        raise ValueError("no model given; name one of the models listed above, e.g. stsearch summary resnet8_digits")
    if args.num_classes is not None and args.num_classes < 1:
        raise ValueError(f"--num-classes must be an int >= 1, got {args.num_classes}; e.g. --num-classes 10")
    if plan is not None and plan.model and plan.model != args.model:
        raise ValueError(f"plan {args.plan} is for model {plan.model!r}, not {args.model!r}; pass the matching model")
    kwargs = {"num_classes": args.num_classes} if args.num_classes is not None else {}
    summary = summarize(args.model, plan, **kwargs)
    if args.csv:
        summary.table.to_csv(args.csv, index=False)
    if args.json:
        print(json.dumps(summary.totals(), indent=2))
    else:
        print(summary.format())
    return 0
