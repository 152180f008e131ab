"""Claim latency at scale: many `stsearch worker`-style processes sharing one PostgreSQL study of no-op trials.

What it measures
----------------
``--workers`` processes (default 32) open one study of ``--trials`` slots (default 500) on PostgreSQL and
loop as :func:`stsearch.search.local.run_local` does: ``SearchRun.claim()`` (pop a waiting slot,
sample with the space's sampler, decode the plan, analytic metrics, feasibility, the duplicate-plan
check, the attempt fence), then a no-op trial (no training: ``SearchRun.finish`` with constant metrics
and a random accuracy), until no slot is left and no trial runs (``SearchRun.wait_for_work``). Each
process records the wall time of every ``claim()``, including the claims replaced because their plan
was a twin (``duplicate``) or infeasible, since those are part of what a worker waits for.

Reported: claim latency p50 / p90 / p99 / max over all claims, trained trials (must be exactly
``--trials``), trials trained twice with one plan (must be 0), duplicate claims replaced, the wall
time of the whole study and claims per second. The space is ``search_spaces/digits.yaml`` (the
default: TPE with analytic screening) unless ``--space`` names another; ``--sampler random``
overrides its sampler to separate the storage cost from the sampler's.

Outputs (``--out-dir``, default ``benchmarks/results/``): ``claim_latency.csv`` (one row per run),
``claim_latency.md`` and ``claim_latency.png`` (latency against claim order, and its histogram).

How to run
----------
::

    .venv/bin/python benchmarks/claim_latency.py                             # 32 workers, 500 trials, TPE
    .venv/bin/python benchmarks/claim_latency.py --workers 8 --trials 60 --sampler random --out-dir /tmp/cl

Needs a PostgreSQL server (``--storage``, default ``postgresql://postgres@127.0.0.1:5432/test``); the
study is deleted afterwards.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import multiprocessing as mp
import os
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import available_cores, cpu_model, load_average, report_header  # noqa: E402


def _worker(name: str, storage: str, results: str, out: str, seed: int) -> None:
    """One worker process: claim, finish at once, until the study is done; latencies to ``out`` (JSON)."""
    import random
    import warnings

    warnings.simplefilter("ignore")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from stsearch.search.run import SearchRun

    run = SearchRun.open(name, storage=storage, results_dir=results, per_process_seed=True)  # as stsearch worker
    rng = random.Random(seed)
    claims: list[tuple[float, float]] = []  # (start time, seconds)
    run.start_heartbeat()
    try:
        while True:
            t0 = time.time()
            c0 = time.perf_counter()
            claim = run.claim()
            claims.append((t0, time.perf_counter() - c0))
            if claim is None:
                if run.wait_for_work(poll=0.5):
                    continue
                break
            run.finish(claim, {"status": "completed", "val_acc": rng.random(), "full_budget": True,
                               "budget_fraction": 1.0, "epochs_done": 1})
    finally:
        run.stop_heartbeat()
    Path(out).write_text(json.dumps({"pid": os.getpid(), "claims": claims[:-1]}))  # the last: "nothing left"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import optuna

    from stsearch.search.run import SearchRun
    from stsearch.space import load_space

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(args.space)
    if args.sampler:
        space.sampler = {"name": args.sampler, "seed": 0}
    name = f"claim-latency-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="claim-latency-"))
    results = tmp / "results"
    t_create = time.perf_counter()
    SearchRun.create(space, name=name, storage=args.storage, results_dir=results, trials=args.trials)
    create_s = time.perf_counter() - t_create
    ctx = mp.get_context("spawn")
    outs = [tmp / f"w{i}.json" for i in range(args.workers)]
    procs = [ctx.Process(target=_worker, args=(name, args.storage, str(results), str(out), i)) for i, out in enumerate(outs)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise SystemExit(f"{len(bad)} worker(s) failed (exit codes {bad})")
    claims = [c for out in outs for c in json.loads(out.read_text())["claims"]]
    claims.sort()
    lat = np.array([s for _, s in claims])
    study = optuna.load_study(study_name=name, storage=args.storage)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.user_attrs.get("status") == "completed"]
    plans = [json.dumps(t.user_attrs["plan"], sort_keys=True) for t in done]
    optuna.delete_study(study_name=name, storage=args.storage)
    return {
        "workers": args.workers, "trials": args.trials, "sampler": space.sampler.get("name", "tpe"),
        "screen": space.sampler.get("screen", True), "trained": len(done),
        "trained_twice": len(plans) - len(set(plans)),
        "duplicate_claims": sum(1 for t in trials if t.user_attrs.get("status") == "duplicate"),
        "infeasible_claims": sum(1 for t in trials if t.user_attrs.get("status") == "infeasible"),
        "claims": len(lat), "p50_ms": 1e3 * float(np.percentile(lat, 50)), "p90_ms": 1e3 * float(np.percentile(lat, 90)),
        "p99_ms": 1e3 * float(np.percentile(lat, 99)), "max_ms": 1e3 * float(lat.max()),
        "study_wall_s": wall, "claims_per_s": len(lat) / wall, "create_s": create_s,
        "_series": claims,
    }


def plot(row: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = row["_series"]
    t0 = series[0][0]
    xs = np.array([t - t0 for t, _ in series])
    ys = 1e3 * np.array([s for _, s in series])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.scatter(xs, ys, s=6, alpha=0.6)
    a.set_xlabel("time since the first claim (s)")
    a.set_ylabel("claim latency (ms)")
    a.set_yscale("log")
    a.set_title(f"{row['workers']} workers, {row['trials']} no-op trials ({row['sampler']})")
    for q, style in (("p50_ms", "--"), ("p99_ms", ":")):
        a.axhline(row[q], color="k", linestyle=style, linewidth=1, label=f"{q[:-3]} {row[q]:.0f} ms")
    a.legend()
    b.hist(ys, bins=np.logspace(np.log10(max(ys.min(), 0.1)), np.log10(ys.max()), 40))
    b.set_xscale("log")
    b.set_xlabel("claim latency (ms)")
    b.set_ylabel("claims")
    b.set_title(f"trained {row['trained']}, trained twice {row['trained_twice']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=32)
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--space", default="digits", help="a space file or shipped space name (default: digits)")
    p.add_argument("--sampler", choices=["tpe", "random", "nsga2"], help="override the space's sampler")
    p.add_argument("--storage", default=os.environ.get("STSEARCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"))
    p.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    load_start = load_average()
    started = dt.datetime.now(dt.timezone.utc)
    row = measure(args)
    series = row.pop("_series")
    fields = ["date", *row.keys()]
    row = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), **row}
    with open(out / "claim_latency.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})
    plot({**row, "_series": series}, out / "claim_latency.png")
    command = "python benchmarks/claim_latency.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    lines = report_header("Claim latency: workers sharing one PostgreSQL study of no-op trials", command.strip())
    lines += [f"Date: {row['date']}. Machine: {available_cores()} cores, {cpu_model()}; load average at start "
              f"{load_start}, at end {load_average()}. PostgreSQL on the same machine.", "",
              "| " + " | ".join(fields) + " |", "|" + " --- |" * len(fields),
              "| " + " | ".join(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k]) for k in fields) + " |",
              "", "![claim latency](claim_latency.png)", ""]
    (out / "claim_latency.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if row["trained"] == row["trials"] and row["trained_twice"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
