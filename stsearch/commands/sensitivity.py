"""``stsearch sensitivity STUDY``: the per-layer sensitivity of a study's dense model (:mod:`stsearch.sensitivity`),
as a table (CSV in the study's folder) and a layer x candidate heat map."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .plugin_args import add_plugin_arg, import_cli_plugins
from .registry import command, positive_int

FILE = "sensitivity.csv"


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="study name: a warm-start study (pretrained: train) or one with pretrained: PATH")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///results/<study>/study.db)")
    p.add_argument("--results-dir", default="results", help="where studies write (default: results)")
    p.add_argument("--samples", type=positive_int, default=512, help="validation samples (fixed, stratified; 512)")
    p.add_argument("--refresh", action="store_true", help=f"measure again instead of reading the study's {FILE}")
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    p.add_argument("--out", help="heat map file (default: <study folder>/sensitivity.png; .svg works too)")
    add_plugin_arg(p)


def _checkpoint(run: object) -> str:
    from ..search.pretrain import pretrain_state, wants_pretraining

    space = run.space  # type: ignore[attr-defined]
    if wants_pretraining(space):
        state = pretrain_state(run.trials())  # type: ignore[attr-defined]
        if state.kind != "done":
            raise ValueError(f"study {run.name}'s dense trial is not trained yet ({state.kind}); "  # type: ignore[attr-defined]
                             f"run the search (or 'stsearch resume {run.name}') first")  # type: ignore[attr-defined]
        return str(state.checkpoint)
    if space.pretrained:
        return str(space.pretrained)
    raise ValueError(f"study {run.name} has no trained dense model; give its space pretrained: PATH or "  # type: ignore[attr-defined]
                     f"pretrained: train")


def _heatmap(table: object, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = table  # type: ignore[assignment]
    cols = df.assign(candidate=df["family"] + " r" + df["rank"].astype(str) + df["t"].map(lambda t: f" t{t}" if t > 1 else ""))
    grid = cols.pivot_table(index="layer", columns="candidate", values="delta_accuracy", sort=False)
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * grid.shape[1] + 3), max(3, 0.4 * grid.shape[0] + 1.5)))
    low = min(100 * float(grid.min().min()), -1.0)
    im = ax.imshow(grid.to_numpy() * 100, cmap="RdYlGn", vmin=low, vmax=0, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="accuracy change (points)")
    ax.set_xlabel("candidate, only this layer decomposed (no training)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@command("sensitivity", _args)
def sensitivity(args: argparse.Namespace) -> int:
    """Validation loss/accuracy with one layer at a time replaced by its decomposition (no training)."""
    import pandas as pd
    import torch

    from ..data import load_dataset
    from ..search.run import SearchRun
    from ..sensitivity import layer_candidates, measure_sensitivity
    from ..trial import load_state_dict_file

    import_cli_plugins(args)
    run = SearchRun.open(args.name, storage=args.storage, results_dir=args.results_dir)
    space = run.space
    csv = run.folder / FILE
    if csv.is_file() and not args.refresh:
        table = pd.read_csv(csv)
        print(f"read {csv} ({len(table)} rows; --refresh measures again)")
    else:
        from ..models.reference import build_model

        checkpoint = _checkpoint(run)
        _, val, info = load_dataset(space.dataset, space.data_dir, transforms=space.transforms, limit=args.samples,
                                    augment=False, paths=space.python_path)
        xs, ys = zip(*(val[i] for i in range(len(val))))
        x, y = torch.stack(list(xs)), torch.tensor([int(v) for v in ys])
        model = build_model(space.model, space.model_kwargs, num_classes=info.num_classes, paths=space.python_path)
        model.load_state_dict(load_state_dict_file(checkpoint))
        cands = layer_candidates(space)
        start = time.perf_counter()
        table = measure_sensitivity(model, cands, x, y, progress=None if args.no_progress else
                                    lambda k, n: print(f"\r{k}/{n} candidates", end="", flush=True))
        if not args.no_progress:
            print()
        seconds = time.perf_counter() - start
        table.to_csv(csv, index=False)
        print(f"{len(table)} candidates on {len(x)} validation samples in {seconds:.1f} s "
              f"(dense accuracy {table.attrs['dense_accuracy']:.3f}); written {csv}")
    worst = table.sort_values("delta_accuracy").groupby("layer", sort=False).head(1)
    show = table.groupby("layer", sort=False).agg(candidates=("family", "size"), mean_delta_acc=("delta_accuracy", "mean"),
                                                  worst_delta_acc=("delta_accuracy", "min"))
    show["worst"] = worst.set_index("layer").apply(lambda r: f"{r['family']} r{r['rank']} t{r['t']}", axis=1)
    print(show.to_string(float_format=lambda v: f"{v:+.3f}"))
    out = Path(args.out) if args.out else run.folder / "sensitivity.png"
    _heatmap(table, out, f"study {run.name}: per-layer sensitivity")
    print(f"heat map: {out}")
    return 0
