"""``stsearch layers``: every conv/linear layer of a model, what a search may do with each, and why not."""

from __future__ import annotations

import argparse

from .registry import command, positive_int
from .plugin_args import add_plugin_arg, import_cli_plugins


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", nargs="?", help="search space (YAML path or name); or give --model")
    p.add_argument("--model", help="model reference: a registered name, torchvision:NAME or package.module:callable")
    p.add_argument("--input-shape", type=positive_int, nargs=3, metavar=("C", "H", "W"),
                   help="one sample's shape (with --model, when the registry does not know it)")
    p.add_argument("--num-classes", type=positive_int, help="classes of the model's output (with --model)")
    p.add_argument("--n-modes", type=positive_int, default=3, help="modes per channel count for the split counts")
    add_plugin_arg(p)


def _table(rows: list, assignment: dict[str, str]) -> str:
    head = ("layer", "type", "in", "out", "kernel", "stride", "groups", "dilation", "params", "share", "splits",
            "group", "note")
    body = [head] + [(r.path, r.type, str(r.c_in), str(r.c_out), "x".join(map(str, r.kernel)),
                      "x".join(map(str, r.stride)), str(r.groups), "x".join(map(str, r.dilation)), f"{r.params:,}",
                      f"{100 * r.share:.1f}%", r.splits or "-", assignment.get(r.path, "-"), r.reason)
                     for r in rows]
    widths = [max(len(row[i]) for row in body) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in body).rstrip()


@command("layers", _args)
def layers(args: argparse.Namespace) -> int:
    """List a model's conv/linear layers: shapes, splits offered, parameter share, why one is not searchable."""
    from ..models.reference import meta_model, registered_input_shape
    from ..space import load_space
    from ..space.inventory import layer_rows

    import_cli_plugins(args)
    if args.space:
        space = load_space(args.space)
        model, shape = space._meta, space.input_shape()
        assignment = {n: g.name for n, g in space.assignment.items()}
        title = f"{space.model} on {space.dataset}, input {list(shape)}"
    elif args.model:
        shape = tuple(args.input_shape) if args.input_shape else registered_input_shape(args.model)
        if shape is None:
            raise ValueError(f"--model {args.model}: its input shape is unknown; pass --input-shape C H W")
        model = meta_model(args.model, num_classes=args.num_classes)
        assignment, title = {}, f"{args.model}, input {list(shape)}"
    else:
        raise ValueError("give a search space (stsearch layers SPACE) or --model REF [--input-shape C H W]")
    rows = layer_rows(model, shape, n_modes=args.n_modes)
    searchable = sum(1 for r in rows if not r.reason)
    print(f"{title}: {len(rows)} conv/linear layers, {searchable} factorizable "
          f"(splits: ordered factorizations into {args.n_modes} modes within [2, 16])")
    print(_table(rows, assignment))
    return 0
