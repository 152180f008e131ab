"""Search cost: hypervolume of (accuracy, compression) against the training epochs spent, from-scratch
searches versus a warm-start study (``pretrained: train``).

What it measures
----------------
On the embedded datasets (``digits`` with ``resnet8_digits``, ``mnist5k`` with ``resnet8_mnist``), with the
searchable layers, families, ranks, ``t`` and constraint of ``search_spaces/digits.yaml``:

* ``grid``: the paper's uniform-rank grid, every point trained from scratch for ``--epochs``
  (:mod:`benchmarks.search_efficiency` builds it: every family x rank x ``t``, the infeasible points
  dropped, the rest in an order shuffled with the seed);
* ``stsearch``: today's from-scratch stsearch (the space's sampler with its screening and baselines),
  as many trials as the grid, each ``--epochs``;
* ``warm``: the same sampler in a warm-start study: trial 0 trains the dense model for
  ``--dense-epochs`` (8), every other trial starts from the decomposition of that checkpoint and
  fine-tunes for ``--finetune-epochs`` (2); as many trials as the grid, the dense one included.

The cost of a run is the sum of the epochs its trials trained (the dense pretraining included), read
from each trial's ``trial.json``. Hypervolume as in ``search_efficiency.py``: accuracy (max) x
compression (max) against the reference (accuracy 0, CF 1), finished full-budget feasible trials only.

Reported per dataset, method and seed: the final hypervolume, the epochs spent, the epochs each run
needed to reach the grid's final hypervolume of that seed (and that as a fraction of the grid's epochs:
the target is at most 1/5 for ``warm``), how many front points are per-layer plans (layers of a plan not
all alike), and, at the accuracy of the most accurate uniform plan with CF >= 10, the compression of the
best per-layer plan at least as accurate, over that uniform plan's (target >= 1.5).

Not yet measured (not built): the per-layer sensitivity screening and the multi-fidelity scheduler of the
issue; the rows for them are missing, not zero.

How to run
----------
::

    .venv/bin/python benchmarks/search_cost.py                               # both datasets, 3 seeds
    .venv/bin/python benchmarks/search_cost.py --datasets digits --seeds 0   # shorter

Outputs (``--out-dir``, default ``benchmarks/results/``): ``search_cost.csv`` (one row per trained trial),
``search_cost.md`` (settings, machine, tables), ``search_cost.png`` (hypervolume vs epochs spent).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from search_efficiency import (  # noqa: E402  (this folder is on sys.path when run as a script)
    ROOT, RunResult, base_dict, feasible_grid, method_space, run_method,
)
from machine import available_cores, cpu_model, load_average, report_header, versions  # noqa: E402

from stsearch.space import SearchSpace  # noqa: E402

METHODS = ("grid", "stsearch", "warm")
DATASETS = {"digits": "resnet8_digits", "mnist5k": "resnet8_mnist"}
COLOURS = {"grid": "#7f7f7f", "stsearch": "#d62728", "warm": "#1f77b4"}


def dataset_base(dataset: str, *, epochs: float, ranks: dict[str, int], threads: int, seed: int) -> dict[str, Any]:
    data = base_dict(ROOT / "search_spaces" / "digits.yaml", epochs=epochs, ranks=ranks, threads=threads, seed=seed)
    data.update(model=DATASETS[dataset], dataset=dataset)
    return data


def warm_space(base: dict[str, Any], grid: list[dict[str, Any]], seed: int, dense_epochs: float,
               finetune_epochs: float) -> SearchSpace:
    data = copy.deepcopy(method_space("stsearch", base, grid, seed).to_dict())
    data.update(name=f"warm-s{seed}", pretrained="train", pretrained_train={"epochs": dense_epochs}, init="decompose")
    data["train"] = {**data["train"], "epochs": finetune_epochs}
    data.pop("dataset_info", None)
    return SearchSpace.from_dict(data)


def _per_layer(plan: dict[str, Any]) -> bool:
    """Whether the layers of a plan differ in family, rank, t or number of modes (a uniform plan differs
    only in the channel splits, which follow each layer's channel counts)."""
    layers = list((plan or {}).get("layers", {}).values())
    return len({(lp.get("family"), lp.get("rank"), lp.get("t"), lp.get("n_modes")) for lp in layers}) > 1


def enrich(res: RunResult) -> pd.DataFrame:
    """The run's curve with each trained trial's epochs, cumulative epochs, and whether it is per-layer."""
    curve = res.curve.copy()
    rows = res.frame.set_index("number")
    epochs, per_layer = [], []
    for num in curve["number"]:
        folder = Path(rows.loc[num, "artifact_dir"])
        spec = json.loads((folder / "trial.json").read_text())
        epochs.append(float(spec["train"]["epochs"]))
        per_layer.append(_per_layer(spec.get("plan", {})))
    curve["epochs"] = epochs
    curve["epochs_spent"] = curve["epochs"].cumsum()
    curve["per_layer"] = per_layer
    return curve


def front_stats(curve: pd.DataFrame) -> dict[str, Any]:
    """Per-layer points on the final front, and the per-layer-vs-uniform compression ratio at CF >= 10."""
    from stsearch.results.pareto import nondominated_mask

    elig = curve[curve["eligible"]].reset_index(drop=True)
    front = elig[nondominated_mask(-elig[["accuracy", "compression"]].to_numpy())]
    uniform = elig[(~elig["per_layer"]) & (elig["compression"] >= 10)]
    ratio: float | None = None
    if len(uniform):
        best = uniform.sort_values(["accuracy", "compression"], ascending=False).iloc[0]
        rivals = elig[elig["per_layer"] & (elig["accuracy"] >= best["accuracy"])]
        ratio = float(rivals["compression"].max() / best["compression"]) if len(rivals) else 0.0
    return {"front": len(front), "front_per_layer": int(front["per_layer"].sum()), "per_layer_cf_ratio": ratio}


def epochs_to_reach(curve: pd.DataFrame, target: float) -> float | None:
    hit = curve[curve["hypervolume"] >= target * (1 - 1e-9)]
    return float(hit["epochs_spent"].iloc[0]) if len(hit) else None


def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "never"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def plot(path: Path, curves: pd.DataFrame, datasets: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        sub = curves[curves["dataset"] == ds]
        for (method, seed), c in sub.groupby(["method", "seed"]):
            ax.step(c["epochs_spent"], c["hypervolume"], where="post", color=COLOURS[method], alpha=0.8,
                    label=method if seed == sub["seed"].min() else None)
        ax.set_xscale("log")
        ax.set_xlabel("training epochs spent (log)")
        ax.set_ylabel("hypervolume (accuracy x compression)")
        ax.set_title(f"{ds}: hypervolume vs training cost")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--epochs", type=float, default=4.0, help="epochs of a from-scratch trial (default 4)")
    p.add_argument("--dense-epochs", type=float, default=8.0, help="epochs of the warm study's dense trial (8)")
    p.add_argument("--finetune-epochs", type=float, default=2.0, help="epochs of a warm-started trial (2)")
    p.add_argument("--ranks", type=int, nargs=3, default=[4, 16, 4], metavar=("LOW", "HIGH", "STEP"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--work-dir", type=Path, default=None)
    args = p.parse_args(argv)
    if "grid" not in args.methods:
        p.error("--methods must include grid (it sets the number of trials and the target)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = ".venv/bin/python " + shlex.join(["benchmarks/search_cost.py", *(sys.argv[1:] if argv is None else argv)])
    started, load_start, t0 = dt.datetime.now().astimezone().isoformat(timespec="seconds"), load_average(), time.perf_counter()
    ranks = {"low": args.ranks[0], "high": args.ranks[1], "step": args.ranks[2]}
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="stsearch-cost-"))).resolve()
    curves, rows = [], []
    try:
        for ds in args.datasets:
            for seed in args.seeds:
                base = dataset_base(ds, epochs=args.epochs, ranks=ranks, threads=args.threads, seed=seed)
                grid, _ = feasible_grid(SearchSpace.from_dict(base), seed)
                for method in args.methods:
                    space = (warm_space(base, grid, seed, args.dense_epochs, args.finetune_epochs) if method == "warm"
                             else method_space(method, base, grid, seed))
                    space.name = f"{ds}-{space.name}"
                    res = run_method(method, space, seed, work, args.threads)
                    curve = enrich(res).assign(dataset=ds, method=method, seed=seed)
                    curves.append(curve)
                    rows.append({"dataset": ds, "method": method, "seed": seed, "trials": len(curve),
                                 "epochs": float(curve["epochs"].sum()),
                                 "final_hv": float(curve["hypervolume"].iloc[-1]), "wall_s": res.wall_s,
                                 **front_stats(curve)})
                    print(f"{ds} {method:8s} seed {seed}: HV {rows[-1]['final_hv']:.3f} after {rows[-1]['epochs']:.0f} "
                          f"epochs, {res.wall_s:.0f} s (load {load_average()})", flush=True)
        all_curves = pd.concat(curves, ignore_index=True)
        table = pd.DataFrame(rows)
        grid_rows = table[table["method"] == "grid"].set_index(["dataset", "seed"])
        reach, frac = [], []
        for _, r in table.iterrows():
            g = grid_rows.loc[(r["dataset"], r["seed"])]
            c = all_curves[(all_curves["dataset"] == r["dataset"]) & (all_curves["method"] == r["method"])
                           & (all_curves["seed"] == r["seed"])]
            e = epochs_to_reach(c, float(g["final_hv"]))
            reach.append(e)
            frac.append(None if e is None else e / float(g["epochs"]))
        table["epochs_to_grid_hv"], table["fraction_of_grid_epochs"] = reach, frac
        args.out_dir.mkdir(parents=True, exist_ok=True)
        all_curves.to_csv(args.out_dir / "search_cost.csv", index=False)
        plot(args.out_dir / "search_cost.png", all_curves, args.datasets)
        total = time.perf_counter() - t0
        lines = [*report_header("Search cost: hypervolume against training epochs, from scratch vs warm start", command),
                 f"- date: {started}",
                 f"- machine: {cpu_model()}, {available_cores()} cores available; load average (1/5/15 min) at start "
                 f"{load_start}, at end {load_average()}",
                 f"- {versions()}",
                 f"- total wall time {total / 60:.1f} min", "",
                 "## Settings", "",
                 f"- space: `search_spaces/digits.yaml`'s layers, families, t, splits and constraint, ranks {ranks}; "
                 f"digits with resnet8_digits, mnist5k with resnet8_mnist; `train.num_threads: {args.threads}`",
                 f"- grid and stsearch: every trial from scratch, {args.epochs:g} epochs; warm: trial 0 the dense "
                 f"model, {args.dense_epochs:g} epochs, then every trial from its decomposition, "
                 f"{args.finetune_epochs:g} epoch(s); every method as many trials as the grid has feasible points",
                 "- epochs spent: the sum of the trials' `train.epochs` (the dense pretraining counted); hypervolume: "
                 "accuracy x compression, reference (0, 1), finished full-budget feasible trials",
                 "- targets: warm reaches the grid's final hypervolume with at most 1/5 of the grid's epochs, every "
                 "dataset and seed; at the best uniform plan's accuracy (CF >= 10) a per-layer plan with >= 1.5x its "
                 "compression (`per-layer CF ratio`)",
                 "- not measured (not built yet): sensitivity screening, the multi-fidelity scheduler", "",
                 "## Results", "",
                 "| dataset | method | seed | trials | epochs | final HV | epochs to grid HV | fraction of grid epochs "
                 "| front | per-layer on front | per-layer CF ratio | wall s |",
                 "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for _, r in table.iterrows():
            lines.append(f"| {r['dataset']} | {r['method']} | {r['seed']} | {r['trials']} | {r['epochs']:g} | "
                         f"{r['final_hv']:.3f} | {fmt(r['epochs_to_grid_hv'], 1)} | {fmt(r['fraction_of_grid_epochs'])} "
                         f"| {r['front']} | {r['front_per_layer']} | {fmt(r['per_layer_cf_ratio'], 2)} | "
                         f"{r['wall_s']:.0f} |")
        (args.out_dir / "search_cost.md").write_text("\n".join(lines) + "\n")
        print(table.to_string(index=False))
        print(f"written: {args.out_dir / 'search_cost.md'} ({total / 60:.1f} min)")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
