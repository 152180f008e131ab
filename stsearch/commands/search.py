"""``stsearch search | resume | worker | status``: run, continue, join and watch a study."""

from __future__ import annotations

import argparse
import shlex
import os
import sys
import time
from typing import Any

from .registry import command, non_negative_float, positive_int
from .plugin_args import add_plugin_arg, import_cli_plugins


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///results/<study>/study.db); "
                                     "postgresql://..., mysql://..., journal:/path.log, redis://...")
    p.add_argument("--results-dir", default="results", help="where studies write (default: results)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_plugin_arg(p)


def _dispatch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dispatch", choices=["ray", "local", "none"], default="ray",
                   help="ray: Ray Tune (default); local: train in this process, one trial at a time; "
                        "none: only create the study and its queue (for 'stsearch worker')")
    p.add_argument("--address", help="address of an existing Ray cluster (default: start a local Ray)")
    p.add_argument("--concurrency", type=positive_int, help="trials at once (default: as many as resources allow)")
    p.add_argument("--cpus-per-trial", type=non_negative_float, default=1)
    p.add_argument("--gpus-per-trial", type=non_negative_float, default=0)
    p.add_argument("--max-failures", type=int, default=2, help="Ray retries of a trial lost with a node")
    p.add_argument("--scheduler", choices=["none", "asha"], default="none",
                   help="asha: stop weak trials early (kept out of the front, recorded as pruned)")
    p.add_argument("--num-cpus", type=positive_int, help="CPUs of the local Ray instance (default: all)")


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="digits", help="search space YAML (path, or a name in search_spaces/); default: digits")
    p.add_argument("--trials", type=int, help="number of trained trials (default: the space's 'trials')")
    p.add_argument("--name", help="study name (default: the space's name)")
    p.add_argument("--seed", type=int, help="sampler seed (default: the space's)")
    p.add_argument("--heartbeat", type=non_negative_float, default=30.0, metavar="SECONDS",
                   help="how often running trials' heartbeats are written (default 30); a trial whose heartbeat is "
                        "1.5 intervals old is re-queued by the next process that checks (workers check every "
                        "quarter interval while they wait)")
    p.add_argument("--data-dir", help="dataset folder (CIFAR), overrides the space")
    p.add_argument("--epochs", type=float, help="training epochs per trial, overrides the space")
    _common(p)
    _dispatch_args(p)


def _resume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="study name")
    p.add_argument("--trials", type=int, help="new total of trained trials (default: unchanged)")
    _common(p)
    _dispatch_args(p)


def _worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, help="study name (created by 'stsearch search', e.g. with --dispatch none)")
    p.add_argument("--max-trials", type=positive_int, help="stop after training this many trials")
    p.add_argument("--num-threads", type=positive_int, help="torch CPU threads per trial (default: all cores)")
    _common(p)


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="study name")
    p.add_argument("--watch", type=non_negative_float, metavar="SECONDS", help="refresh every SECONDS until the study is done")
    p.add_argument("--last", type=positive_int, default=15, help="rows of recent trials to show")
    _common(p)


def _load_space(args: argparse.Namespace) -> Any:
    from ..space import SearchSpace, load_space

    plugins = import_cli_plugins(args)  # before the space: it may name what they register
    space = load_space(args.space)
    if args.data_dir is None and args.epochs is None and not plugins:
        return space
    data = space.to_dict()
    data["plugins"] = list(dict.fromkeys([*space.plugins, *plugins]))  # recorded in the study
    if args.data_dir is not None:
        data["data_dir"] = args.data_dir
        if "dataset_info" not in space.raw:  # read from the new folder
            data.pop("dataset_info", None)
    if args.epochs is not None:
        data["train"] = {**data.get("train", {}), "epochs": args.epochs}
    return SearchSpace.from_dict(data, source=space.source)


def _check_data(space: Any, trains_here: bool = False) -> None:
    """Fail before any trial when the dataset cannot be loaded (e.g. a missing CIFAR folder), or, when
    this process trains the trials (``trains_here``), when it lacks the space's ``train.device``."""
    from ..data import load_dataset
    from ..train.trainer import resolve_device

    load_dataset(space.dataset, space.data_dir, transforms=space.transforms, paths=space.python_path)
    if trains_here:
        try:
            resolve_device(str(space.train.get("device", "auto")))
        except ValueError as err:
            raise ValueError(f"{err} (train.device of the study's space)") from None


def _trains_here(args: argparse.Namespace) -> bool:
    """Whether this machine runs the trials: local dispatch, or Ray started here (no --address)."""
    return args.dispatch == "local" or (args.dispatch == "ray" and not args.address)


def _connect_cluster(args: argparse.Namespace) -> None:
    """Connect to the Ray cluster of ``--address`` before the study is touched: a refused connection
    (a wrong address, a missing or wrong token) is one line and changes nothing."""
    if args.dispatch == "ray" and args.address:
        from ..search.ray_backend import connect_driver

        connect_driver(args.address)


def _dispatch(run: Any, args: argparse.Namespace) -> None:
    from ..search.progress import SearchProgress

    progress = SearchProgress(run, enabled=not args.no_progress)
    try:
        if args.dispatch == "local":
            from ..search.local import run_local

            run_local(run, on_finish=progress, num_threads=max(1, int(args.cpus_per_trial)))
        else:
            from ..search.ray_backend import run_ray

            run_ray(run, address=args.address, concurrency=args.concurrency, cpus_per_trial=args.cpus_per_trial,
                    gpus_per_trial=args.gpus_per_trial, max_failures=args.max_failures, scheduler=args.scheduler,
                    on_finish=progress, num_cpus=args.num_cpus)
    except KeyboardInterrupt:
        progress.close()
        extra = "" if args.results_dir == "results" else f" --results-dir {shlex.quote(args.results_dir)}"
        where = f" --storage {shlex.quote(args.storage)}" if args.storage else extra
        print(f"stsearch: study {run.name} keeps its trials; continue it with 'stsearch resume {run.name}{where}'",
              file=sys.stderr)
        raise
    finally:
        progress.close()
        run.write_frame()
    _report(run)


def _report(run: Any) -> None:
    from ..results.pareto import pareto_table

    counts = run.counts()
    print(f"study {run.name}: {counts['trained']}/{run.target} trained "
          f"({counts['completed']} completed, {counts['pruned']} pruned, {counts['failed']} failed), "
          f"{counts['infeasible']} infeasible configurations skipped")
    table = pareto_table(run.study)
    if len(table):
        print("Pareto front:")
        print(table.to_string(index=False))
    print(f"results: {run.folder}/trials.csv, storage: {run.storage_url}")


@command("search", _search_args)
def search(args: argparse.Namespace) -> int:
    """Start a search: a new study, its trials dispatched over Ray (or in this process)."""
    from ..search.run import SearchRun

    space = _load_space(args)
    _check_data(space, _trains_here(args))
    _connect_cluster(args)
    run = SearchRun.create(space, name=args.name, storage=args.storage, results_dir=args.results_dir,
                           trials=args.trials, seed=args.seed, heartbeat=args.heartbeat)
    print(f"study {run.name}: {run.target} trials of {space.model} on {space.dataset}; "
          f"storage {run.storage_url}", file=sys.stderr)
    if args.dispatch == "none":
        print(f"created; start workers with: stsearch worker --name {run.name} --storage {run.storage_url}")
        return 0
    _dispatch(run, args)
    return 0


@command("resume", _resume_args)
def resume(args: argparse.Namespace) -> int:
    """Continue a study after Ctrl-C or a kill: interrupted trials are re-queued, the total is kept."""
    from ..search.run import SearchRun

    import_cli_plugins(args)
    run = SearchRun.open(args.name, storage=args.storage, results_dir=args.results_dir)
    _check_data(run.space, _trains_here(args))
    _connect_cluster(args)
    counts = run.reconcile(target=args.trials)
    print(f"study {run.name}: {counts['trained']}/{run.target} trained, {counts['waiting']} to go "
          f"({counts['interrupted']} interrupted so far)", file=sys.stderr)
    if args.dispatch == "none":
        return 0
    _dispatch(run, args)
    return 0


@command("worker", _worker_args)
def worker(args: argparse.Namespace) -> int:
    """Join a study as a worker: claim and train trials until none is left (run it N times, anywhere)."""
    from ..search.local import run_local
    from ..search.run import SearchRun

    import_cli_plugins(args)
    run = SearchRun.open(args.name, storage=args.storage, results_dir=args.results_dir, per_process_seed=True)
    _check_data(run.space, trains_here=True)
    run.reconcile(balance=False)
    try:
        done = run_local(run, max_trials=args.max_trials, num_threads=args.num_threads,
                         on_finish=lambda _trial: run.write_frame(every=30.0),
                         report=lambda line: print(f"worker {os.getpid()}: {line}", file=sys.stderr, flush=True))
    finally:
        run.write_frame()  # the study's trials.csv/parquet as this worker leaves it
    print(f"worker {os.getpid()}: trained {done} trials of study {run.name}", file=sys.stderr)
    return 0


@command("status", _status_args)
def status(args: argparse.Namespace) -> int:
    """Trials of a study, its front so far and an ETA (--watch for a live view)."""
    from ..search.study import StudyView  # reading a study needs neither its model nor torch

    import_cli_plugins(args)
    run = StudyView.open(args.name, storage=args.storage, results_dir=args.results_dir)
    while True:
        text = status_text(run, last=args.last)
        if args.watch:
            sys.stdout.write("\033[2J\033[H")
        print(text, flush=True)
        counts = run.counts()
        if not args.watch or (counts["running"] == 0 and counts["waiting"] == 0):
            return 0
        time.sleep(args.watch)


def status_text(run: Any, last: int = 15) -> str:
    """Counts, recent trials, front so far and ETA of a study, as text."""
    from ..results.frame import trials_frame
    from ..results.pareto import pareto_table

    counts = run.counts()
    df = trials_frame(run.study)
    space = run.study.user_attrs.get("space") or {}
    lines = [f"study {run.name} ({space.get('model')} on {space.get('dataset')}): {counts['trained']}/{run.target} trained, "
             f"{counts['running']} running, {counts['waiting']} waiting, {counts['infeasible']} infeasible skipped, "
             f"{counts['interrupted']} interrupted"]
    trained = df[df["status"].isin(["completed", "pruned", "failed"])] if len(df) else df
    if len(trained) and "duration_s" in trained:
        mean = float(trained["duration_s"].dropna().mean() or 0.0)
        left = counts["waiting"] + counts["running"]
        eta = mean * left / max(1, counts["running"])
        lines.append(f"mean trial {mean:.1f}s; ETA {eta / 60:.1f} min for {left} trials left")
    if len(df):
        cols = [c for c in ("number", "state", "status", "family", "accuracy", "compression", "duration_s", "baseline") if c in df]
        lines += ["", "recent trials:", df[cols].tail(last).to_string(index=False)]
    front = pareto_table(run.study)
    if len(front):
        lines += ["", "Pareto front so far:", front.to_string(index=False)]
    return "\n".join(lines)
