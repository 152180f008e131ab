"""Controller overhead: what stsearch's dispatch and bookkeeping cost per trial, and its analysis on 10,000 trials.

What it measures
----------------
(a) Per-trial overhead of dispatch + bookkeeping, with a trivial trial (no training):

* ``ray-stsearch``: ``run_ray``'s Tuner re-created with a trivial trainable. A :class:`SearchRun` on the
  default space (``search_spaces/digits.yaml``, SQLite storage, ``--trials`` slots, its 4 baselines
  enqueued, TPE with analytic screening) drives :class:`stsearch.search.ray_backend.StudySearcher`; the trainable only reports
  ``{"final": True, "status": "completed", "val_acc": 0.5, "full_budget": True, ...}``. So each trial
  pays what a real one does outside training: the claim (screening + TPE sampling, decoding the plan, the analytic
  compression/MACs of the plan, the feasibility check, the storage writes), one Ray trial (actor start,
  one report) and the finish (user attrs and tell). Same Tuner settings as ``run_ray``: 1 CPU per
  trial, ``reuse_actors=False``, ``max_failures=2``, auto callback loggers off, a heartbeat thread.
* ``ray-bare``: a bare ``tune.Tuner(trivial, param_space={"x": tune.uniform(0, 1)}, num_samples=N)`` with
  the same resources and settings (Ray's default BasicVariantGenerator, no study).

  Both run on one local Ray (``ray.init(num_cpus=2)``, ``RAY_TMPDIR`` a short temporary folder under
  ``/tmp`` that is removed afterwards, ``RAY_AUTH_MODE=disabled``), after an untimed warm-up Tuner of a few
  trials, alternating bare / stsearch ``--ray-repeats`` times so that drifting machine load hits both
  alike. Reported: ``tuner.fit()`` wall time / N (the SearchRun's creation, i.e. enqueueing the slots, is
  timed separately), and the difference stsearch - bare per trial.
* ``local-tpe`` / ``local-tpe-noscreen`` / ``local-random``: local dispatch without training:
  :func:`stsearch.search.local.run_local` with ``run_trial`` replaced (in this process only) by a function
  returning constant metrics, on a SQLite study; the time of ``claim`` and of ``finish`` is taken per trial
  (wrapping the SearchRun's methods). With the space's sampler (TPE with analytic screening, the default;
  ``--trials`` and ``--local-long`` trials, to show how the sampler's cost grows with the study), the same
  TPE with ``screen: false``, and the random sampler (storage + decoding + analytic metrics only).

(b) Analysis of a synthetic 10,000-trial study (``--synthetic``): trials with the default space's real
parameter names and distributions (each layer's family, ``t``, rank, number of modes and channel split,
drawn at random through the space's own decoder, so the ``plan`` attrs are real plans of 6 layers) and
realistic user attrs (status: ~85 % completed, 8 % infeasible, 4 % pruned, 3 % failed; ``full_budget``,
``val_acc``/``val_top5``/``val_loss``, compression, params, MACs, latency, wall time, family, plan,
constraints, artifact dir, an 8-epoch ``history``), accuracy falling with log compression plus noise.
Timed (median of ``--repeats``): ``trials_frame``, ``pareto_front``, ``default_reference``, ``hypervolume`` of
the front, ``knee_point``, ``pareto_table`` and ``save_frame`` (CSV + Parquet; the work of ``stsearch pareto``),
``hypervolume_history``, ``plot_front``, ``plot_hypervolume`` and ``plot_layer_heatmap`` (the work of
``stsearch plot``; each writes PNG + SVG). The study is built in memory (``study.add_trials``) and
also written to SQLite; for SQLite the cold ``optuna.load_study`` and ``trials_frame`` (which reads every
trial) are timed.

Outputs (``--out-dir``, default ``benchmarks/results/``): ``controller_overhead.csv`` (one row per measurement)
and ``controller_overhead.md``.

How to run
----------
::

    .venv/bin/python benchmarks/controller_overhead.py                       # N=30, 10,000-trial study
    .venv/bin/python benchmarks/controller_overhead.py --trials 10 --synthetic 1000 --skip-ray --out-dir /tmp/co
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import os
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from optuna.distributions import CategoricalDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from stsearch.plan import NetworkPlan  # noqa: E402
from stsearch.search.run import SearchRun  # noqa: E402
from stsearch.space import SearchSpace  # noqa: E402
from machine import available_cores, cpu_model, load_average, report_header, versions  # noqa: E402  (this folder is on sys.path when run as a script)

CSV_COLUMNS = ["part", "name", "n", "repeat", "seconds", "per_trial_ms", "detail"]
TRIVIAL_METRICS: dict[str, Any] = {
    "final": True, "status": "completed", "val_acc": 0.5, "val_loss": 1.0, "full_budget": True,
    "budget_fraction": 1.0, "epoch": 1, "epochs_done": 1,
}


# --------------------------------------------------------------------------- machine
def wait_for_quiet(limit: float, max_wait_s: float) -> str:
    """Wait (up to ``max_wait_s``) until the 1-minute load average is below ``limit``; a line saying how it went."""
    start = time.time()
    while os.getloadavg()[0] >= limit and time.time() - start < max_wait_s:
        time.sleep(10)
    waited = time.time() - start
    ok = os.getloadavg()[0] < limit
    return (f"waited {waited:.0f} s for the 1-min load average to drop below {limit:g}: "
            + ("it did" if ok else f"it did not (still {os.getloadavg()[0]:.2f})"))


@dataclass
class Record:
    part: str
    name: str
    n: int
    repeat: int
    seconds: float
    detail: str = ""

    @property
    def per_trial_ms(self) -> float:
        return 1000.0 * self.seconds / self.n if self.n else math.nan

    def row(self) -> dict[str, Any]:
        return {"part": self.part, "name": self.name, "n": self.n, "repeat": self.repeat,
                "seconds": round(self.seconds, 6), "per_trial_ms": round(self.per_trial_ms, 3), "detail": self.detail}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# --------------------------------------------------------------------------- (a) Ray
def trivial_trainable(config: dict[str, Any]) -> None:
    """A Ray function trainable that trains nothing: one final report with constant metrics."""
    from ray import tune

    tune.report(dict(TRIVIAL_METRICS))


def _tune_settings(storage_path: Path, name: str, n: int, search_alg: Any = None) -> dict[str, Any]:
    from ray import tune

    return {
        "tune_config": tune.TuneConfig(search_alg=search_alg, num_samples=n, max_concurrent_trials=None,
                                       reuse_actors=False),
        "run_config": tune.RunConfig(name=name, storage_path=str(storage_path), verbose=0,
                                     failure_config=tune.FailureConfig(max_failures=2)),
    }


def ray_bare(n: int, work: Path, name: str) -> float:
    """Wall time of ``tuner.fit()`` of a bare Tuner with ``n`` trivial trials."""
    from ray import tune

    trainable = tune.with_resources(trivial_trainable, {"cpu": 1, "gpu": 0})
    tuner = tune.Tuner(trainable, param_space={"x": tune.uniform(0.0, 1.0)}, **_tune_settings(work / "ray", name, n))
    seconds, grid = timed(tuner.fit)
    errors = sum(1 for r in grid if r.error is not None)
    if len(grid) != n or errors:
        raise RuntimeError(f"bare Tuner: {len(grid)} results, {errors} errors")
    return seconds


def ray_stsearch(space: SearchSpace, n: int, work: Path, name: str) -> tuple[float, float, float, float]:
    """Seconds of run_ray's Tuner with a trivial trainable: (SearchRun.create, ``tuner.fit()``, time spent in
    ``StudySearcher.suggest`` and in ``StudySearcher.on_trial_complete``, both on the driver)."""
    from ray import tune

    from stsearch.search.ray_backend import StudySearcher

    create_s, run = timed(lambda: SearchRun.create(space, name=name, results_dir=work, trials=n, seed=0))
    searcher = StudySearcher(run, on_finish=None, num_threads=1)
    spent = {"suggest": 0.0, "complete": 0.0}
    suggest, complete = searcher.suggest, searcher.on_trial_complete

    def timed_suggest(*args: Any, **kwargs: Any) -> Any:
        s = time.perf_counter()
        try:
            return suggest(*args, **kwargs)
        finally:
            spent["suggest"] += time.perf_counter() - s

    def timed_complete(*args: Any, **kwargs: Any) -> Any:
        s = time.perf_counter()
        try:
            return complete(*args, **kwargs)
        finally:
            spent["complete"] += time.perf_counter() - s

    searcher.suggest, searcher.on_trial_complete = timed_suggest, timed_complete  # type: ignore[method-assign]
    trainable = tune.with_resources(trivial_trainable, {"cpu": 1, "gpu": 0})
    tuner = tune.Tuner(trainable, **_tune_settings((run.folder / "ray").resolve(), "tune", run.counts()["waiting"],
                                                   search_alg=searcher))
    run.start_heartbeat()
    try:
        seconds, _ = timed(tuner.fit)
    finally:
        searcher.release_all("the benchmark stopped")
        run.stop_heartbeat()
    counts = run.counts()
    if counts["completed"] != n or counts["waiting"] or counts["running"]:
        raise RuntimeError(f"stsearch Tuner: the study is not complete: {counts}")
    return create_s, seconds, spent["suggest"], spent["complete"]


def bench_ray(space: SearchSpace, n: int, repeats: int, work: Path) -> tuple[list[Record], list[str]]:
    import ray

    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    os.environ["RAY_TMPDIR"] = str(ray_tmp)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # as run_ray
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    records: list[Record] = []
    notes: list[str] = []
    try:
        init_s, _ = timed(lambda: ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                                           configure_logging=False, _temp_dir=str(ray_tmp)))
        records.append(Record("ray", "ray.init (local, num_cpus=2)", 1, 0, init_s))
        warm = ray_bare(4, work, "warmup")
        notes.append(f"Ray: RAY_TMPDIR={ray_tmp} (removed afterwards), RAY_AUTH_MODE=disabled, "
                     f"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1 and RAY_AIR_NEW_OUTPUT=0 as run_ray sets them (so Ray "
                     "warns 'Failed to fetch metrics' for every trial of both variants: no result.json is written); "
                     f"untimed warm-up: a bare Tuner of 4 trivial trials took {warm:.2f} s")
        for rep in range(repeats):
            bare = ray_bare(n, work, f"bare-{rep}")
            records.append(Record("ray", "ray-bare", n, rep, bare,
                                  f"tuner.fit(), BasicVariantGenerator; load after: {load_average()}"))
            print(f"ray-bare     rep {rep}: {bare:.2f} s ({1000 * bare / n:.0f} ms/trial; load {load_average()})", flush=True)
            create_s, fit, in_suggest, in_complete = ray_stsearch(space, n, work, f"overhead-ray-{rep}")
            records.append(Record("ray", "ray-stsearch", n, rep, fit,
                                  f"tuner.fit(), StudySearcher on a SQLite study; load after: {load_average()}"))
            records.append(Record("ray", "ray-stsearch SearchRun.create (enqueue slots)", n, rep, create_s, "SQLite"))
            records.append(Record("ray", "ray-stsearch driver: StudySearcher.suggest (claim)", n, rep, in_suggest,
                                  "inside tuner.fit(), on the driver"))
            records.append(Record("ray", "ray-stsearch driver: StudySearcher.on_trial_complete (finish)", n, rep,
                                  in_complete, "inside tuner.fit(), on the driver"))
            print(f"ray-stsearch rep {rep}: {fit:.2f} s ({1000 * fit / n:.0f} ms/trial; create {create_s:.2f} s; "
                  f"load {load_average()})", flush=True)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return records, notes


# --------------------------------------------------------------------------- (a) local
#: Local-dispatch runs: label -> sampler config (``None``: the space's own, TPE with analytic screening).
LOCAL_SAMPLERS: dict[str, dict[str, Any] | None] = {
    "local-tpe": None,
    "local-tpe-noscreen": {"name": "tpe", "seed": 0, "screen": False},
    "local-random": {"name": "random", "seed": 0},
}

def bench_local(space: SearchSpace, n: int, sampler: dict[str, Any] | None, work: Path, name: str) -> list[Record]:
    """run_local with a no-op trial: total, claim and finish time per trial (``sampler``: the space's when ``None``)."""
    import stsearch.search.local as local

    data = space.to_dict()
    if sampler is not None:
        data["sampler"] = dict(sampler)
    sp = SearchSpace.from_dict(data)
    create_s, run = timed(lambda: SearchRun.create(sp, name=name, results_dir=work, trials=n, seed=0))
    claim_t: list[float] = []
    finish_t: list[float] = []
    claim, finish = run.claim, run.finish

    def timed_claim() -> Any:
        s = time.perf_counter()
        out = claim()
        if out is not None:
            claim_t.append(time.perf_counter() - s)
        return out

    def timed_finish(*args: Any, **kwargs: Any) -> Any:
        s = time.perf_counter()
        out = finish(*args, **kwargs)
        finish_t.append(time.perf_counter() - s)
        return out

    run.claim, run.finish = timed_claim, timed_finish  # type: ignore[method-assign]
    original = local.run_trial
    local.run_trial = lambda spec, workdir=None, progress=False, **_: dict(TRIVIAL_METRICS)  # type: ignore[assignment]
    try:
        total, done = timed(lambda: local.run_local(run, num_threads=1))
    finally:
        local.run_trial = original  # type: ignore[assignment]
    counts = run.counts()
    if done != n or counts["completed"] != n:
        raise RuntimeError(f"{name}: {done} done, {counts}")
    infeasible = counts["infeasible"]
    label = name
    detail = f"SQLite; {infeasible} infeasible samples told and replaced; load after: {load_average()}"
    last = min(10, n)
    return [
        Record("local", f"{label} run_local total", n, 0, total, detail),
        Record("local", f"{label} claim", n, 0, sum(claim_t), f"median {1000 * statistics.median(claim_t):.1f} ms; "
               f"mean of the last {last}: {1000 * statistics.mean(claim_t[-last:]):.1f} ms (incl. infeasible resamples)"),
        Record("local", f"{label} finish", n, 0, sum(finish_t), f"median {1000 * statistics.median(finish_t):.1f} ms"),
        Record("local", f"{label} SearchRun.create (enqueue slots)", n, 0, create_s, "SQLite"),
    ]


def bench_parts(space: SearchSpace, n: int, work: Path) -> list[Record]:
    """Two pieces of a claim/finish, per call: the analytic metrics of a plan and one SQLite attribute write."""
    from stsearch.search.storage import open_storage

    rng = random.Random(1)
    plans = [random_params(space, rng)[2] for _ in range(n)]
    space.analytic_metrics(plans[0])  # builds the meta-device model once
    metrics_s, _ = timed(lambda: [space.analytic_metrics(p) for p in plans])
    storage = open_storage(f"sqlite:///{work / 'attrs.db'}")
    study = optuna.create_study(storage=storage, study_name="attrs", directions=space.directions())
    trial_id = study.ask()._trial_id  # noqa: SLF001
    write_s, _ = timed(lambda: [storage.set_trial_user_attr(trial_id, f"key{i}", float(i)) for i in range(n)])
    return [
        Record("local parts", "space.analytic_metrics (one random plan)", n, 0, metrics_s,
               "per call: summarize() on the meta-device model; once per claim"),
        Record("local parts", "SQLite set_trial_user_attr (one write)", n, 0, write_s,
               "per call: one committed transaction; a claim makes 5 attr writes plus one per sampled param (up to ~25 "
               "on digits), a finish ~12 here (~20 with a real trial's metrics) plus the tell"),
    ]


# --------------------------------------------------------------------------- (b) synthetic study
STATUSES = (("completed", 0.85), ("infeasible", 0.08), ("pruned", 0.04), ("failed", 0.03))


class _RandomTrial:
    """Answers ``suggest_int``/``suggest_categorical`` at random and records the distributions."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.dists: dict[str, Any] = {}

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        self.dists[name] = IntDistribution(low, high, step=step)
        return self.rng.randrange(low, high + 1, step)

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.dists[name] = CategoricalDistribution(choices)
        return self.rng.choice(choices)


def random_params(space: SearchSpace, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any], NetworkPlan]:
    """Random params of ``space`` (its real names and choices), their distributions and the decoded plan."""
    trial = _RandomTrial(rng)
    params = space.suggest(trial)
    return params, trial.dists, space.plan_from_params(params)


def synthetic_trials(space: SearchSpace, n: int, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    from stsearch.trial import plan_family

    rng = random.Random(seed)
    dense_params, dense_macs = 75002, 747136
    statuses, weights = zip(*STATUSES)
    now = dt.datetime.now()
    out = []
    for i in range(n):
        params, dists, plan = random_params(space, rng)
        ranks = [lp.rank if isinstance(lp.rank, int) else 8 for lp in plan.layers.values() if not lp.is_dense]
        n_dense = sum(1 for lp in plan.layers.values() if lp.is_dense)
        log_cf = max(0.05, 3.6 - 0.9 * math.log(statistics.mean(ranks) if ranks else 16) - 0.45 * n_dense
                     + rng.gauss(0, 0.25))
        cf = math.exp(log_cf)
        acc = min(0.99, max(0.05, 0.985 - 0.035 * log_cf ** 1.6 + rng.gauss(0, 0.02)))
        status = rng.choices(statuses, weights)[0]
        if status != "infeasible" and cf < 2:
            status = "infeasible"
        params_n = int(dense_params / cf)
        attrs: dict[str, Any] = {
            "status": status, "plan": plan.to_dict(), "family": plan_family(plan), "compression": cf,
            "params": params_n, "dense_params": dense_params, "macs": int(dense_macs / cf ** 0.5),
            "dense_macs": dense_macs, "constraints": [2.0 - cf], "owner": "bench:1", "heartbeat": time.time(),
        }
        values = None
        state = TrialState.COMPLETE
        if status == "infeasible":
            attrs["full_budget"] = False
            values = [0.0, cf]
        else:
            epochs = 8 if status == "completed" else rng.randint(1, 7)
            history = [{"epoch": e + 1, "train_loss": 2.3 / (e + 1), "val_acc": acc * (e + 1) / epochs,
                        "val_loss": 1.5 / (e + 1), "lr": 0.05 * (1 - e / 8), "seconds": 0.3} for e in range(epochs)]
            attrs.update({
                "artifact_dir": f"/results/synthetic/trials/{i:05d}", "val_acc": acc, "val_top5": min(1.0, acc + 0.03),
                "val_loss": 1.0 - acc, "budget_fraction": epochs / 8, "full_budget": status == "completed",
                "epochs_done": epochs, "steps_done": 23 * epochs, "device": "cpu", "amp": False,
                "train_seconds": 0.3 * epochs, "latency_ms": 1.2 + rng.random(), "wall_seconds": 0.3 * epochs + 1,
                "history": history,
            })
            if status == "completed":
                values = [acc, cf]
            elif status == "pruned":
                state = TrialState.PRUNED
                attrs["reason"] = f"stopped by the scheduler after epoch {epochs}"
            else:
                state = TrialState.FAIL
                attrs.update(reason="non-finite loss at epoch 3", full_budget=False)
        start = now + dt.timedelta(seconds=10 * i)
        out.append(optuna.trial.create_trial(
            state=state, values=values, params=params, distributions=dists, user_attrs=attrs,
        ))
        out[-1].datetime_start = start
        out[-1].datetime_complete = start + dt.timedelta(seconds=9)
    return out


def new_study(storage: Any, name: str, space: SearchSpace) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, directions=space.directions())
    study.set_user_attr("objectives", [{"name": o.name, "direction": o.direction} for o in space.objectives])
    study.set_user_attr("space", space.to_dict())
    return study


def write_sqlite(url: str, name: str, space: SearchSpace, trials: list[optuna.trial.FrozenTrial]) -> None:
    """Write ``trials`` into a new SQLite study in bulk (SQLAlchemy Core inserts into Optuna's own tables).

    ``study.add_trials`` commits one trial at a time through the ORM (~0.1 s per trial of this size on
    this machine, i.e. ~20 min for 10,000); the tables, columns and encodings here are Optuna's
    (``optuna.storages._rdb.models``), so the result reads back exactly like a study written by Optuna,
    which :func:`bench_synthetic` checks.
    """
    import json

    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from sqlalchemy import insert

    storage = optuna.storages.RDBStorage(url)
    study = new_study(storage, name, space)
    sid = study._study_id  # noqa: SLF001
    utc = dt.timezone.utc
    rows: dict[str, list[dict[str, Any]]] = {"trials": [], "params": [], "values": [], "attrs": []}
    finite = models.TrialValueModel.TrialValueType.FINITE
    for tid, t in enumerate(trials, start=1):
        rows["trials"].append({
            "trial_id": tid, "number": tid - 1, "study_id": sid, "state": t.state,
            "datetime_start": t.datetime_start.astimezone(utc).replace(tzinfo=None) if t.datetime_start else None,
            "datetime_complete": t.datetime_complete.astimezone(utc).replace(tzinfo=None) if t.datetime_complete else None,
        })
        for pname, value in t.params.items():
            dist = t.distributions[pname]
            rows["params"].append({"trial_id": tid, "param_name": pname, "param_value": dist.to_internal_repr(value),
                                   "distribution_json": distribution_to_json(dist)})
        for k, v in enumerate(t.values or []):
            rows["values"].append({"trial_id": tid, "objective": k, "value": float(v), "value_type": finite})
        for key, value in t.user_attrs.items():
            rows["attrs"].append({"trial_id": tid, "key": key, "value_json": json.dumps(value)})
    tables = {"trials": models.TrialModel, "params": models.TrialParamModel, "values": models.TrialValueModel,
              "attrs": models.TrialUserAttributeModel}
    with storage.engine.begin() as conn:
        for key, model in tables.items():
            if rows[key]:
                conn.execute(insert(model.__table__), rows[key])
    storage.engine.dispose()


def analysis_steps(study: optuna.Study, out: Path) -> list[tuple[str, Callable[[], Any]]]:
    """The work of ``stsearch pareto`` and ``stsearch plot`` on ``study``, as named steps (run in order)."""
    from stsearch import results as R

    state: dict[str, Any] = {}

    def frame() -> Any:
        state["df"] = R.trials_frame(study)
        state["objs"] = R.study_objectives(study)
        return state["df"]

    def front() -> Any:
        state["front"] = R.pareto_front(state["df"], state["objs"])
        return state["front"]

    def reference() -> Any:
        state["ref"] = R.default_reference(state["df"], state["objs"])
        return state["ref"]

    def hv() -> float:
        names = [n for n, _ in state["objs"]]
        return R.hypervolume(state["front"][names].to_numpy(float), [d for _, d in state["objs"]], state["ref"])

    def history() -> Any:
        state["hist"] = R.hypervolume_history(state["df"], state["objs"])
        return state["hist"]

    return [
        ("trials_frame", frame),
        ("pareto_front", front),
        ("default_reference", reference),
        ("hypervolume (front)", hv),
        ("knee_point", lambda: R.knee_point(state["front"], state["objs"])),
        ("pareto_table (its own trials_frame)", lambda: R.pareto_table(study)),
        ("save_frame (trials.csv + trials.parquet)", lambda: R.save_frame(state["df"], out)),
        ("hypervolume_history", history),
        ("plot_front (png + svg)", lambda: R.plot_front(state["df"], state["objs"], out / "front")),
        ("plot_hypervolume (png + svg)", lambda: R.plot_hypervolume(state["hist"], out / "hypervolume")),
        ("plot_layer_heatmap (png + svg)", lambda: R.plot_layer_heatmap(state["front"], out / "layers")),
    ]


def bench_synthetic(space: SearchSpace, n: int, repeats: int, work: Path) -> tuple[list[Record], list[str]]:
    records: list[Record] = []
    gen_s, trials = timed(lambda: synthetic_trials(space, n))
    records.append(Record("synthetic", "generate FrozenTrials (not stsearch)", n, 0, gen_s))
    mem = new_study(None, "synthetic", space)
    add_s, _ = timed(lambda: mem.add_trials(trials))
    records.append(Record("synthetic", "in-memory add_trials", n, 0, add_s))
    url = f"sqlite:///{work / 'synthetic.db'}"
    add_sql_s, _ = timed(lambda: write_sqlite(url, "synthetic", space, trials))
    records.append(Record("synthetic", "SQLite bulk write (not stsearch; see notes)", n, 0, add_sql_s))
    print(f"synthetic study: generated {gen_s:.1f} s, in-memory {add_s:.1f} s, SQLite write {add_sql_s:.1f} s", flush=True)

    from stsearch import results as R

    check = R.trials_frame(optuna.load_study(study_name="synthetic", storage=url))
    ref = R.trials_frame(mem)
    cols = ["number", "state", "status", "full_budget", "feasible", "family", "accuracy", "compression"]
    if len(check) != n or not check[cols].equals(ref[cols]) or check["plan"].tolist() != ref["plan"].tolist():
        raise RuntimeError("the SQLite study does not read back like the in-memory one")

    for rep in range(repeats):
        for name, step in analysis_steps(mem, work / f"mem-{rep}"):
            seconds, _ = timed(step)
            records.append(Record("synthetic in-memory", name, n, rep, seconds))
        load_s, study = timed(lambda: optuna.load_study(study_name="synthetic", storage=url))
        frame_s, df = timed(lambda: R.trials_frame(study))
        records.append(Record("synthetic SQLite", "optuna.load_study (cold)", n, rep, load_s))
        records.append(Record("synthetic SQLite", "trials_frame (reads every trial)", n, rep, frame_s))
        print(f"analysis rep {rep} done (load {load_average()})", flush=True)
    df = R.trials_frame(mem)
    front = R.pareto_front(df)
    notes = [
        f"synthetic study: {n} trials, {int((df['status'] == 'completed').sum())} completed, "
        f"{int((df['status'] == 'infeasible').sum())} infeasible, {int((df['status'] == 'pruned').sum())} pruned, "
        f"{int((df['status'] == 'failed').sum())} failed; {int(R.eligible_mask(df).sum())} eligible, front of "
        f"{len(front)}; {len(mem.trials[0].params)}-{max(len(t.params) for t in mem.trials)} params per trial; "
        f"SQLite file {(work / 'synthetic.db').stat().st_size / 2**20:.1f} MiB",
    ]
    return records, notes


# --------------------------------------------------------------------------- outputs
def median_by(records: list[Record], part: str, name: str) -> float:
    vals = [r.seconds for r in records if r.part == part and r.name == name]
    return statistics.median(vals) if vals else math.nan


def write_csv(path: Path, records: list[Record]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(r.row() for r in records)


def summary_rows(records: list[Record]) -> list[tuple[str, str, int, int, float, float, float, str]]:
    """(part, name, n, repeats, median s, min s, median ms/trial, detail) per measurement, in first-seen order."""
    seen: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        seen.setdefault((r.part, r.name), []).append(r)
    out = []
    for (part, name), rs in seen.items():
        secs = [r.seconds for r in rs]
        med = statistics.median(secs)
        out.append((part, name, rs[0].n, len(rs), med, min(secs), 1000 * med / rs[0].n, rs[-1].detail))
    return out


def write_markdown(path: Path, records: list[Record], *, command: str, started: str, load_start: str,
                   quiet: str, notes: list[str], args: argparse.Namespace, total_s: float) -> None:
    lines = [
        *report_header("Controller overhead: dispatch + bookkeeping per trial, analysis of a 10,000-trial study", command),
        f"- date: {started}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical cores ({available_cores()} available); load average "
        f"(1/5/15 min) at start {load_start}, at end {load_average()}; {quiet}",
        f"- {versions()}",
        f"- total wall time {total_s / 60:.1f} min",
        *[f"- {note}" for note in notes],
        "",
    ]
    bare = median_by(records, "ray", "ray-bare")
    ours = median_by(records, "ray", "ray-stsearch")
    n = args.trials
    if not math.isnan(bare):
        lines += [
            "## (a) Per-trial overhead with a trivial trial",
            "",
            f"Ray, N = {n} trivial trials, 1 CPU each on `ray.init(num_cpus=2)`, medians of {args.ray_repeats} "
            f"alternating runs: bare Tuner {1000 * bare / n:.0f} ms/trial, stsearch (StudySearcher + SQLite study) "
            f"{1000 * ours / n:.0f} ms/trial, so stsearch adds **{1000 * (ours - bare) / n:.0f} ms per trial** "
            f"({100 * (ours - bare) / bare:+.0f} %) over bare Ray Tune; of that, the driver spends "
            f"{1000 * median_by(records, 'ray', 'ray-stsearch driver: StudySearcher.suggest (claim)') / n:.0f} ms per "
            f"trial in `StudySearcher.suggest` (the claim) and "
            f"{1000 * median_by(records, 'ray', 'ray-stsearch driver: StudySearcher.on_trial_complete (finish)') / n:.0f}"
            " ms in `on_trial_complete` (the finish), during which Tune's event loop waits.",
            "",
            "| run | bare Tuner s | stsearch Tuner s | stsearch - bare, ms / trial | load after bare / stsearch |",
            "| ---: | ---: | ---: | ---: | --- |",
        ]
        pairs = {}
        for r in records:
            if r.part == "ray" and r.name in ("ray-bare", "ray-stsearch"):
                pairs.setdefault(r.repeat, {})[r.name] = r
        for rep, pair in sorted(pairs.items()):
            if len(pair) == 2:
                b, o = pair["ray-bare"], pair["ray-stsearch"]
                loads = " / ".join(x.detail.rsplit("load after: ", 1)[-1] for x in (b, o))
                lines.append(f"| {rep} | {b.seconds:.1f} | {o.seconds:.1f} | {1000 * (o.seconds - b.seconds) / n:+.0f} | "
                             f"{loads} |")
        lines.append("")
    local_rows = {r[1]: r for r in summary_rows(records) if r[0] == "local"}
    runs = sorted({name.split(" ")[0] for name in local_rows})
    if runs:
        lines += ["Local dispatch (`run_local` with a no-op trial, SQLite study), per trial "
                  "(total / N; claim and finish summed over the trials / N):", ""]
        for run_name in runs:
            total, claim, finish = (local_rows.get(f"{run_name} {k}") for k in ("run_local total", "claim", "finish"))
            if total and claim and finish:
                lines.append(f"- `{run_name}`, N = {total[2]}: **{total[6]:.0f} ms** per trial "
                             f"(claim {claim[6]:.0f} ms, finish {finish[6]:.0f} ms)")
        lines.append("")
    lines += [
        "| part | measurement | N | runs | median s | min s | median ms / trial | detail |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for part, name, n_, reps, med, mn, per, detail in summary_rows(records):
        per_txt = f"{per:.1f}" if part != "synthetic in-memory" and part != "synthetic SQLite" else f"{per:.3f}"
        lines.append(f"| {part} | {name} | {n_} | {reps} | {med:.3f} | {mn:.3f} | {per_txt} | {detail} |")
    syn = [r for r in summary_rows(records) if r[0] in ("synthetic in-memory",)]
    if syn:
        pareto = sum(r[4] for r in syn if r[1] in ("trials_frame", "pareto_front", "default_reference",
                                                     "hypervolume (front)", "knee_point"))
        plot = sum(r[4] for r in syn if r[1] in ("hypervolume_history", "plot_front (png + svg)",
                                                   "plot_hypervolume (png + svg)", "plot_layer_heatmap (png + svg)"))
        sql = sum(r[4] for r in summary_rows(records) if r[0] == "synthetic SQLite")
        lines += [
            "",
            f"## (b) {args.synthetic:,}-trial study",
            "",
            f"- pareto (trials_frame + pareto_front + default_reference + hypervolume + knee), in memory: "
            f"**{pareto:.2f} s**",
            f"- plot (hypervolume_history + plot_front + plot_hypervolume + plot_layer_heatmap, PNG + SVG each), "
            f"on that frame: **{plot:.2f} s**",
            f"- SQLite: cold `optuna.load_study` + `trials_frame`: **{sql:.2f} s**",
            "",
            "Medians of the runs above; `stsearch pareto` also runs `pareto_table` and `save_frame`, `stsearch plot` "
            "its own `trials_frame`, both open the study from SQLite first.",
        ]
    lines.append("")
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "digits.yaml")
    parser.add_argument("--trials", type=int, default=30, help="trivial trials per Ray / local run (default 30)")
    parser.add_argument("--ray-repeats", type=int, default=3, help="alternating bare / stsearch Ray runs (default 3)")
    parser.add_argument("--local-long", type=int, default=200,
                        help="also a local TPE run of this many trials (0: skip; default 200)")
    parser.add_argument("--synthetic", type=int, default=10_000, help="trials of the synthetic study (0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the analysis timings (default 3)")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for the 1-min load average below this")
    parser.add_argument("--max-wait-s", type=float, default=300.0, help="... for at most this long (default 300)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = ".venv/bin/python " + shlex.join(["benchmarks/controller_overhead.py", *(sys.argv[1:] if argv is None else argv)])
    quiet = wait_for_quiet(args.max_load, args.max_wait_s)
    print(quiet, flush=True)
    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    load_start = load_average()
    t0 = time.perf_counter()
    space = SearchSpace.load(args.space)
    work = Path(tempfile.mkdtemp(prefix="stsearch-co-"))
    records: list[Record] = []
    notes: list[str] = []
    try:
        for label, sampler in LOCAL_SAMPLERS.items():
            records += bench_local(space, args.trials, sampler, work, label)
        if args.local_long:
            records += bench_local(space, args.local_long, None, work, "local-tpe-long")
        records += bench_parts(space, args.trials, work)
        for r in records:
            print(f"{r.name}: {r.seconds:.2f} s ({r.per_trial_ms:.1f} ms/trial) {r.detail}", flush=True)
        if not args.skip_ray:
            ray_records, ray_notes = bench_ray(space, args.trials, args.ray_repeats, work)
            records += ray_records
            notes += ray_notes
        if args.synthetic:
            syn_records, syn_notes = bench_synthetic(space, args.synthetic, args.repeats, work)
            records += syn_records
            notes += syn_notes
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - t0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(args.out_dir / "controller_overhead.csv", records)
    write_markdown(args.out_dir / "controller_overhead.md", records, command=command, started=started,
                   load_start=load_start, quiet=quiet, notes=notes, args=args, total_s=total)
    for row in summary_rows(records):
        print(f"{row[0]:20s} {row[1]:45s} n={row[2]:<6d} median {row[4]:.3f} s  {row[6]:.2f} ms/trial")
    print(f"written: {args.out_dir / 'controller_overhead.md'} ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
