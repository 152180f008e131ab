"""Search efficiency: hypervolume per trained trial of stsearch's sampler, random search and the paper's grid.

What it measures
----------------
Three ways of spending the same number of trained trials, with the same trial function
(:func:`stsearch.trial.run_trial` through :class:`stsearch.search.run.SearchRun` and
:func:`stsearch.search.local.run_local`), the same per-trial budget and the same metrics, on the
embedded default (``resnet8_digits`` on scikit-learn's 8x8 digits):

* ``grid``: the paper's uniform-rank grid. Every family in {tucker, tt, tr, sttu, stt, str} x every rank
  of the space's rank range x ``t`` in the space's ``t`` values for the ST families (``t = 1`` for the
  classical ones), each applied uniformly to every searchable layer with the default channel splits,
  exactly as the space's ``baselines`` are (the grid points are given to the study as its baselines, so
  they are enqueued with their params and decoded by the space's decoder). Grid points that violate an
  analytic constraint of the space (``compression >= 2``) are dropped before the run: every method skips
  such a configuration without training it (stsearch's ``claim`` tells it to the study as infeasible),
  so the grid does not pay for them either. The remaining points are trained in an order shuffled with
  the seed (``random.Random(seed).shuffle``), so that the grid's hypervolume-vs-trials curve is not an
  artefact of a family-by-family order; its final hypervolume does not depend on the order.
* ``random``: Optuna's ``RandomSampler`` (seeded) on the same per-layer space (each searchable layer its
  own family, rank, ``t``, number of modes and channel split), no baselines.
* ``stsearch``: the space's own sampler (multivariate TPE with constraints, wrapped in stsearch's analytic
  screening, :mod:`stsearch.space.screening`) with the space's baselines enqueued first, as in a real study.
* ``tpe``: the ablation of ``stsearch`` without screening (``screen: false``): the same TPE, baselines
  and space (its ``plan:tie`` uniform branch included).

Every method runs for as many trained trials as the grid has points (infeasible samples of ``random``
and ``stsearch`` are told to the study and replaced, as in a real study; they are not trained and not
counted). A seed sets the sampler's seed, the grid's order and the training seed (``train.seed``).

The space is ``search_spaces/digits.yaml`` with a short per-trial budget: ``train.epochs`` from
``--epochs`` and the rank range from ``--ranks`` (both for every method), ``train.num_threads`` from
``--threads``. Hypervolume: objectives accuracy (max) and compression factor (max), one reference point
for every run: accuracy 0, compression 1 (the dense network); only finished, full-budget, feasible trials
count (``stsearch.results.hypervolume_history``). Reported: the hypervolume after each trained trial per
method and seed (CSV), the mean final hypervolume per method, and per seed the number of trained trials
each method needs to reach the grid's final hypervolume of that seed ("never" if it does not within the
run); the issue's target is that stsearch gets there with at most 1/3 of the grid's trials.

Outputs (``--out-dir``, default ``benchmarks/results/``): ``search_efficiency.csv`` (one row per trained
trial), ``search_efficiency.md`` (settings, machine, summary tables), ``search_efficiency.png`` (hypervolume
vs trained trials: mean and min/max over seeds per method) and ``search_efficiency_fronts.png`` (the three
fronts of the first seed, ``stsearch.results.plot_compare``). The studies (SQLite) and trial folders go to
``--work-dir`` (default: a temporary folder, removed at the end unless ``--keep``).

How to run
----------
::

    .venv/bin/python benchmarks/search_efficiency.py --estimate        # time one trial, print the estimate
    .venv/bin/python benchmarks/search_efficiency.py                    # 3 seeds, 2 epochs, ranks 4..16 step 4
    .venv/bin/python benchmarks/search_efficiency.py --epochs 1 --seeds 0 1 --out-dir /tmp/se   # shorter

Dispatch is local and in-process (``run_local``, no Ray), one trial at a time, ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime as dt
import math
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stsearch.search.local import run_local  # noqa: E402
from stsearch.search.run import TRAINED, SearchRun  # noqa: E402
from stsearch.space import SearchSpace  # noqa: E402
from stsearch.space.sampling import baseline_params  # noqa: E402
from stsearch.trial import TrialSpec, run_trial  # noqa: E402
from machine import available_cores, cpu_model, load_average, report_header, versions  # noqa: E402  (this folder is on sys.path when run as a script)

METHODS = ("grid", "random", "tpe", "stsearch")
GRID_FAMILIES = ("tucker", "tt", "tr", "sttu", "stt", "str")
ST_FAMILIES = ("sttu", "stt", "str")
OBJECTIVES = [("accuracy", "maximize"), ("compression", "maximize")]
REFERENCE = [0.0, 1.0]  # accuracy 0, compression 1 (dense): one reference point for every run
COLOURS = {"grid": "#7f7f7f", "random": "#1f77b4", "tpe": "#2ca02c", "stsearch": "#d62728"}
CSV_COLUMNS = [
    "method", "seed", "trial", "number", "family", "baseline", "status", "eligible", "accuracy", "compression",
    "hypervolume", "hypervolume_log_cf", "front_size", "wall_s",
]


# --------------------------------------------------------------------------- spaces
def base_dict(space_path: Path, *, epochs: float, ranks: dict[str, int], threads: int, seed: int) -> dict[str, Any]:
    """``digits.yaml`` with the short budget: epochs, rank range, threads and training seed replaced."""
    data = yaml.safe_load(space_path.read_text())
    for group in data["layers"]:
        group["ranks"] = dict(ranks)
    data["train"] = {**data.get("train", {}), "epochs": epochs, "seed": seed, "num_threads": threads}
    return data


def grid_points(space: SearchSpace) -> list[dict[str, Any]]:
    """Every uniform (family, rank, t) of the paper's grid on ``space``'s first group, in a fixed order."""
    group = space.groups[0]
    points = []
    for fam in GRID_FAMILIES:
        for rank in group.ranks.values():
            for t in (group.t if fam in ST_FAMILIES else (1,)):
                point: dict[str, Any] = {"family": fam, "rank": int(rank), "n_modes": 1 if fam in ("tucker", "sttu") else 3}
                if t > 1:
                    point["t"] = int(t)
                points.append(point)
    return points


def feasible_grid(space: SearchSpace, seed: int) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], float]]]:
    """(feasible grid points shuffled with ``seed``, dropped points with their compression)."""
    keep, dropped = [], []
    for point in grid_points(space):
        metrics = space.analytic_metrics(space.plan_from_params(baseline_params(space, point)))
        if space.is_feasible(metrics):
            keep.append(point)
        else:
            dropped.append((point, float(metrics["compression"])))
    random.Random(seed).shuffle(keep)
    return keep, dropped


def method_space(method: str, base: dict[str, Any], grid: list[dict[str, Any]], seed: int) -> SearchSpace:
    data = copy.deepcopy(base)
    data["name"] = f"{method}-s{seed}"
    data["trials"] = len(grid)
    if method == "grid":
        data["baselines"] = [dict(p) for p in grid]  # every grid point is a fixed, uniform trial
        data["sampler"] = {"name": "random", "seed": seed}  # never asked: every slot has its params
    elif method == "random":
        data["baselines"] = []
        data["sampler"] = {"name": "random", "seed": seed}
    elif method == "stsearch":
        data["sampler"] = {**data.get("sampler", {"name": "tpe"}), "seed": seed}
    elif method == "tpe":  # the ablation: stsearch's sampler and baselines without analytic screening
        data["sampler"] = {**data.get("sampler", {"name": "tpe"}), "seed": seed, "screen": False}
    else:
        raise ValueError(method)
    return SearchSpace.from_dict(data)


# --------------------------------------------------------------------------- runs
@dataclass
class RunResult:
    method: str
    seed: int
    frame: pd.DataFrame
    curve: pd.DataFrame  # per trained trial: trial (1-based), number, hypervolume, ...
    wall_s: float
    infeasible: int
    counts: dict[str, int] = field(default_factory=dict)


def hv_curve(df: pd.DataFrame) -> pd.DataFrame:
    """Hypervolume after each *trained* trial (infeasible ones are skipped: they were never trained)."""
    from stsearch.results import eligible_mask, hypervolume_history

    hist = hypervolume_history(df, OBJECTIVES, reference=REFERENCE).set_index("number")
    logged = df.assign(compression=np.log10(df["compression"].where(df["compression"] > 0)))
    logged.attrs = dict(df.attrs)
    hist_log = hypervolume_history(logged, OBJECTIVES, reference=[REFERENCE[0], math.log10(REFERENCE[1])])
    hist_log = hist_log.set_index("number")
    trained = df[df["status"].isin(TRAINED)].sort_values("number", kind="stable")
    elig = eligible_mask(df, OBJECTIVES)
    rows = []
    for k, (_, r) in enumerate(trained.iterrows(), start=1):
        num = int(r["number"])
        rows.append({
            "trial": k, "number": num, "family": r.get("family"), "baseline": r.get("baseline") or "",
            "status": r["status"], "eligible": bool(elig.loc[r.name]), "accuracy": float(r["accuracy"]),
            "compression": float(r["compression"]), "hypervolume": float(hist.loc[num, "hypervolume"]),
            "hypervolume_log_cf": float(hist_log.loc[num, "hypervolume"]),
            "front_size": int(hist.loc[num, "front_size"]),
            "wall_s": float(r["duration_s"]) if pd.notna(r.get("duration_s")) else math.nan,
        })
    return pd.DataFrame(rows)


def run_method(method: str, space: SearchSpace, seed: int, work_dir: Path, threads: int) -> RunResult:
    from stsearch.results import trials_frame

    name = space.name
    if (work_dir / name).exists():
        shutil.rmtree(work_dir / name)
    run = SearchRun.create(space, name=name, results_dir=work_dir, trials=space.trials, seed=seed)
    start = time.perf_counter()
    done = run_local(run, num_threads=threads)
    wall = time.perf_counter() - start
    counts = run.counts()
    if done != space.trials or counts["trained"] != space.trials:
        raise RuntimeError(f"{name}: trained {counts['trained']} of {space.trials} trials: {counts}")
    df = trials_frame(run.study)
    return RunResult(method, seed, df, hv_curve(df), wall, counts["infeasible"], counts)


def estimate(space: SearchSpace, threads: int, work_dir: Path) -> float:
    """Seconds of one trial (the stt-r8-t2 baseline, or the first baseline) with the benchmark's budget."""
    point = next((b for b in space.baselines if b["family"] == "stt"), space.baselines[0])
    plan = space.plan_from_params(baseline_params(space, point))
    train = {**space.train, "num_threads": threads}
    spec = TrialSpec(model=space.model, dataset=space.dataset, plan=plan.to_dict(), train=train,
                     model_kwargs=dict(space.model_kwargs), data_dir=space.data_dir)
    start = time.perf_counter()
    run_trial(spec, workdir=work_dir / "estimate", progress=False)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- analysis
def trials_to_reach(curve: pd.DataFrame, target: float, column: str = "hypervolume") -> int | None:
    """First trained-trial count whose hypervolume is >= ``target`` (relative tolerance 1e-9)."""
    hit = curve[curve[column] >= target * (1 - 1e-9)]
    return int(hit["trial"].iloc[0]) if len(hit) else None


def summarize(results: list[RunResult], n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per method and seed, per method) summaries."""
    grid_final = {r.seed: float(r.curve["hypervolume"].iloc[-1]) for r in results if r.method == "grid"}
    grid_log = {r.seed: float(r.curve["hypervolume_log_cf"].iloc[-1]) for r in results if r.method == "grid"}
    rows = []
    for r in results:
        final = float(r.curve["hypervolume"].iloc[-1])
        reach = trials_to_reach(r.curve, grid_final[r.seed]) if r.seed in grid_final else None
        reach_log = trials_to_reach(r.curve, grid_log[r.seed], "hypervolume_log_cf") if r.seed in grid_log else None
        best = r.curve[r.curve["eligible"]]
        rows.append({
            "method": r.method, "seed": r.seed, "final_hv": final, "grid_final_hv": grid_final.get(r.seed, math.nan),
            "trials_to_grid_hv": reach, "within_third": reach is not None and reach <= n / 3,
            "final_hv_log_cf": float(r.curve["hypervolume_log_cf"].iloc[-1]),
            "grid_final_hv_log_cf": grid_log.get(r.seed, math.nan), "trials_to_grid_hv_log_cf": reach_log,
            "eligible": int(r.curve["eligible"].sum()), "front_size": int(r.curve["front_size"].iloc[-1]),
            "infeasible_skipped": r.infeasible, "best_acc": float(best["accuracy"].max()) if len(best) else math.nan,
            "max_cf": float(best["compression"].max()) if len(best) else math.nan, "wall_s": r.wall_s,
        })
    per_seed = pd.DataFrame(rows)
    agg = []
    for method in METHODS:
        sel = per_seed[per_seed["method"] == method]
        if sel.empty:
            continue
        reached = [int(x) for x in sel["trials_to_grid_hv"] if x is not None and not pd.isna(x)]
        reached_log = [int(x) for x in sel["trials_to_grid_hv_log_cf"] if x is not None and not pd.isna(x)]
        agg.append({
            "method": method, "seeds": len(sel), "mean_final_hv": sel["final_hv"].mean(),
            "min_final_hv": sel["final_hv"].min(), "max_final_hv": sel["final_hv"].max(),
            "reached_grid_hv": f"{len(reached)}/{len(sel)}",
            "median_trials_to_grid_hv": float(np.median(reached)) if len(reached) == len(sel) else math.nan,
            "mean_final_hv_log_cf": sel["final_hv_log_cf"].mean(), "reached_grid_hv_log_cf": f"{len(reached_log)}/{len(sel)}",
            "mean_wall_s": sel["wall_s"].mean(), "mean_wall_s_per_trial": sel["wall_s"].mean() / n,
        })
    return per_seed, pd.DataFrame(agg)


def mean_curves(results: list[RunResult]) -> dict[str, pd.DataFrame]:
    out = {}
    for method in METHODS:
        curves = [r.curve.set_index("trial")["hypervolume"] for r in results if r.method == method]
        if curves:
            table = pd.concat(curves, axis=1)
            out[method] = pd.DataFrame({"mean": table.mean(axis=1), "min": table.min(axis=1), "max": table.max(axis=1)})
    return out


# --------------------------------------------------------------------------- outputs
def write_csv(path: Path, results: list[RunResult]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for r in results:
            for rec in r.curve.to_dict("records"):
                writer.writerow({"method": r.method, "seed": r.seed, **{k: rec[k] for k in CSV_COLUMNS[2:]}})


def plot_curves(path: Path, results: list[RunResult], n: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    seeds = sorted({r.seed for r in results})
    for method, c in mean_curves(results).items():
        x = c.index.to_numpy(int)
        ax.fill_between(x, c["min"], c["max"], step="post", color=COLOURS[method], alpha=0.15, linewidth=0)
        ax.step(x, c["mean"], where="post", color=COLOURS[method], lw=2, label=f"{method} (mean; band: min-max)")
    grid = [float(r.curve["hypervolume"].iloc[-1]) for r in results if r.method == "grid"]
    if grid:
        ax.axhline(float(np.mean(grid)), color=COLOURS["grid"], ls="--", lw=1, label="grid: mean final hypervolume")
    ax.axvline(n / 3, color="black", ls=":", lw=1, label=f"1/3 of the grid's trials ({n / 3:.1f})")
    ax.set_xlabel("Trained trials")
    ax.set_ylabel("Hypervolume (accuracy x compression factor)")
    ax.set_xlim(1, n)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"Hypervolume vs trained trials, resnet8_digits ({len(seeds)} seeds; reference: accuracy 0, CF 1)",
                 fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=150, bbox_inches="tight")


def plot_fronts(path: Path, results: list[RunResult], seed: int) -> None:
    from stsearch.results import plot_compare

    frames = {f"{r.method} (seed {seed})": r.frame for r in results if r.seed == seed}
    colours = {f"{r.method} (seed {seed})": COLOURS[r.method] for r in results if r.seed == seed}
    written = plot_compare(frames, OBJECTIVES, path.with_suffix(""), colours=colours,
                           title=f"Pareto fronts after the same number of trained trials (seed {seed})")
    for p in written:
        if p.suffix != ".png":
            p.unlink(missing_ok=True)


def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "never"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def count_text(x: Any) -> str:
    return "never" if x is None or pd.isna(x) else str(int(x))


def write_markdown(
    path: Path, *, command: str, started: str, load_start: str, load_end: str, args: argparse.Namespace,
    n: int, dropped: list[tuple[dict[str, Any], float]], per_seed: pd.DataFrame, agg: pd.DataFrame,
    total_s: float, estimate_s: float | None, space: SearchSpace,
) -> None:
    group = space.groups[0]
    dropped_txt = ", ".join(f"{p['family']}-r{p['rank']}" + (f"-t{p['t']}" if "t" in p else "") + f" (CF {cf:.2f})"
                            for p, cf in dropped) or "none"
    full_grid = n + len(dropped)
    lines = [
        *report_header("Search efficiency: stsearch vs random search vs the uniform-rank grid", command),
        f"- date: {started}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical cores ({available_cores()} available); "
        f"load average (1/5/15 min) at start {load_start}, at end {load_end} (other processes shared the CPU "
        "when it is above the core count: wall times are inflated, the hypervolumes are not affected)",
        f"- {versions()}",
        f"- total wall time {total_s / 60:.1f} min"
        + (f"; one trial measured before the run: {estimate_s:.1f} s" if estimate_s is not None else ""),
        "",
        "## Settings",
        "",
        f"- space: `{args.space.relative_to(ROOT) if args.space.is_relative_to(ROOT) else args.space}` "
        f"({space.model} on {space.dataset}), with `train.epochs: {args.epochs:g}`, "
        f"`ranks: {group.ranks.to_yaml()}`, `train.num_threads: {args.threads}` and `train.seed` = the seed; "
        f"everything else as in the file (families {list(group.families)}, t {list(group.t)}, n_modes "
        f"{list(group.n_modes)}, mode_splits {group.mode_splits}, constraint "
        f"{', '.join(c.key for c in space.constraints) or 'none'}, {len(space.layers())} searchable layers)",
        f"- grid: {len(GRID_FAMILIES)} families x {len(group.ranks.values())} ranks x t in {list(group.t)} (ST) / "
        f"t=1 (classical) = {full_grid} uniform points, each on every searchable layer with the default splits "
        f"(the space's baseline convention); {len(dropped)} violate the analytic constraint and are dropped "
        f"before training, as every method skips such configurations without training them: {dropped_txt}. "
        f"The {n} feasible points are trained in an order shuffled with the seed.",
        f"- every method: exactly {n} trained trials (the grid's size), same trial function "
        "(`SearchRun` + `run_local`, in-process, one trial at a time), same budget; "
        "`random` = Optuna RandomSampler on the per-layer space without baselines; `tpe` = `stsearch` with "
        "`screen: false` (the ablation); `stsearch` = the space's "
        f"sampler (`{space.sampler['name']}` with stsearch's defaults: analytic screening on, seeded) with its {len(space.baselines)} baselines "
        f"({', '.join(b['name'] for b in space.baselines)}) enqueued first",
        f"- seeds {list(args.seeds)}: a seed sets the sampler seed, the grid order and `train.seed`",
        "- hypervolume: accuracy (max) x compression factor (max) against the reference (accuracy 0, CF 1), "
        "finished full-budget feasible trials only; 'trials to grid HV' = the first trained-trial count at "
        "which a run's hypervolume reaches the grid's final hypervolume of the same seed",
        "- secondary measure (HV log-CF): the same with log10(compression) instead of compression (reference "
        "accuracy 0, log10 CF 0). With a linear compression axis the hypervolume is dominated by the most "
        "compressed accurate point; on log10 CF every decade of compression weighs the same",
        *[f"- note: {note}" for note in args.note],
        "",
        "## Summary per method",
        "",
        "| method | seeds | mean final HV | min | max | reached grid HV | median trials to grid HV | "
        "mean final HV log-CF | reached grid HV log-CF | mean wall s / trial |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in agg.to_dict("records"):
        lines.append(f"| {r['method']} | {r['seeds']} | {r['mean_final_hv']:.3f} | {r['min_final_hv']:.3f} | "
                     f"{r['max_final_hv']:.3f} | {r['reached_grid_hv']} | {fmt(r['median_trials_to_grid_hv'], 1)} | "
                     f"{r['mean_final_hv_log_cf']:.4f} | {r['reached_grid_hv_log_cf']} | "
                     f"{r['mean_wall_s_per_trial']:.1f} |")
    lines += [
        "",
        "## Per seed",
        "",
        f"Target of the issue: stsearch reaches the grid's final hypervolume within {n}/3 = {n / 3:.1f} trials.",
        "",
        "| method | seed | final HV | grid final HV | trials to grid HV | <= 1/3 | final HV log-CF | "
        "trials to grid HV log-CF | eligible | front | infeasible skipped | best acc | max CF | wall s |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in per_seed.to_dict("records"):
        lines.append(f"| {r['method']} | {r['seed']} | {r['final_hv']:.3f} | {r['grid_final_hv']:.3f} | "
                     f"{count_text(r['trials_to_grid_hv'])} | {'yes' if r['within_third'] else 'no'} | "
                     f"{r['final_hv_log_cf']:.4f} | {count_text(r['trials_to_grid_hv_log_cf'])} | {r['eligible']} | "
                     f"{r['front_size']} | {r['infeasible_skipped']} | {r['best_acc']:.4f} | {r['max_cf']:.1f} | "
                     f"{r['wall_s']:.0f} |")
    lines += [
        "",
        "Files: `search_efficiency.csv` (hypervolume after every trained trial, per method and seed), "
        "`search_efficiency.png` (mean and min-max band over seeds), `search_efficiency_fronts.png` "
        f"(fronts of seed {args.seeds[0]}).",
        "",
        "![hypervolume vs trials](search_efficiency.png)",
        "",
        "![fronts](search_efficiency_fronts.png)",
        "",
    ]
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "digits.yaml")
    parser.add_argument("--epochs", type=float, default=2.0, help="train.epochs of every trial (default 2)")
    parser.add_argument("--ranks", type=int, nargs=3, default=[4, 16, 4], metavar=("LOW", "HIGH", "STEP"),
                        help="rank range of the space and of the grid (default 4 16 4)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads per trial (default 2)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work-dir", type=Path, default=None, help="studies and trial folders (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep --work-dir")
    parser.add_argument("--estimate", action="store_true", help="time one trial, print the estimated total, exit")
    parser.add_argument("--note", action="append", default=[], help="a line added to the Markdown's settings")
    args = parser.parse_args(argv)
    if "grid" not in args.methods:
        parser.error("--methods must include grid (it sets the number of trials and the target)")
    args.space = args.space.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = ".venv/bin/python " + shlex.join(["benchmarks/search_efficiency.py", *(sys.argv[1:] if argv is None else argv)])
    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    load_start = load_average()
    ranks = {"low": args.ranks[0], "high": args.ranks[1], "step": args.ranks[2]}
    epochs: float = int(args.epochs) if float(args.epochs).is_integer() else args.epochs
    work_dir = (args.work_dir or Path(tempfile.mkdtemp(prefix="stsearch-se-"))).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        base0 = base_dict(args.space, epochs=epochs, ranks=ranks, threads=args.threads, seed=args.seeds[0])
        grid0, dropped = feasible_grid(SearchSpace.from_dict(base0), args.seeds[0])
        n = len(grid0)
        stsearch_space = method_space("stsearch", base0, grid0, args.seeds[0])
        est = estimate(stsearch_space, args.threads, work_dir)
        total_trials = n * len(args.methods) * len(args.seeds)
        print(f"grid: {n} feasible points ({len(dropped)} dropped); one trial {est:.1f} s; "
              f"{total_trials} trials -> about {est * total_trials / 60:.1f} min (load {load_start})", flush=True)
        if args.estimate:
            return 0
        results: list[RunResult] = []
        for seed in args.seeds:
            base = base_dict(args.space, epochs=epochs, ranks=ranks, threads=args.threads, seed=seed)
            grid, _ = feasible_grid(SearchSpace.from_dict(base), seed)
            for method in args.methods:
                space = method_space(method, base, grid, seed)
                res = run_method(method, space, seed, work_dir, args.threads)
                results.append(res)
                print(f"{method:9s} seed {seed}: final HV {res.curve['hypervolume'].iloc[-1]:.3f}, "
                      f"{res.wall_s:.0f} s, {res.infeasible} infeasible skipped (load {load_average()})", flush=True)
        per_seed, agg = summarize(results, n)
        total = time.perf_counter() - t0
        args.out_dir.mkdir(parents=True, exist_ok=True)
        write_csv(args.out_dir / "search_efficiency.csv", results)
        plot_curves(args.out_dir / "search_efficiency.png", results, n)
        plot_fronts(args.out_dir / "search_efficiency_fronts.png", results, args.seeds[0])
        write_markdown(args.out_dir / "search_efficiency.md", command=command, started=started, load_start=load_start,
                       load_end=load_average(), args=args, n=n, dropped=dropped, per_seed=per_seed, agg=agg,
                       total_s=total, estimate_s=est, space=stsearch_space)
        print(per_seed.to_string(index=False))
        print(agg.to_string(index=False))
        print(f"written: {args.out_dir / 'search_efficiency.md'} ({total / 60:.1f} min)")
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
