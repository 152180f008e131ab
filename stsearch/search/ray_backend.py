"""Dispatch over Ray Tune: a Searcher on the persistent Optuna study, one Ray trial per claimed trial.

The driver owns the study: ``StudySearcher.suggest`` claims a slot (infeasible
configurations are told to the study there and never reach Ray), and
``on_trial_complete`` tells the result. Trials report once per epoch (``val_acc``,
``epoch``), so an ASHA scheduler can stop them; a stopped trial is told as
PRUNED with the budget it used, and stays out of the front.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..fence import Fence
from .ray_cluster import connect
from .run import Claim, SearchRun

__all__ = ["StudySearcher", "ray_trainable", "run_ray", "connect_driver", "guard_orphan"]

RAY_INIT_KWARGS: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
REPORT_KEYS = ("val_acc", "val_loss", "train_loss", "epoch", "lr")


def ray_trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: run one trial, report every epoch, then the final metrics."""
    from ray import tune

    from ..trial import TrialSpec, run_trial

    spec = TrialSpec.from_dict(config["spec"])
    fence = Fence(Path(config["workdir"]), config["attempt"], config.get("stale_after")) if config.get("attempt") else None
    if fence is not None:
        guard_orphan(fence)
    epochs = float(spec.train.get("epochs") or 0) or None

    def on_epoch(rec: dict[str, Any]) -> None:
        if epochs and rec.get("epochs_done", rec.get("epoch", 0)) >= epochs:
            return  # the final report carries the last epoch (a scheduler must not stop a finished trial)
        report = {k: rec.get(k) for k in REPORT_KEYS if rec.get(k) is not None}
        if "val_acc" not in report:  # a user trainer's epoch without accuracy: Tune requires its metric
            return
        report.update(final=False, budget_fraction=(rec.get("epochs_done", rec.get("epoch", 0)) / epochs) if epochs else None)
        tune.report({k: v for k, v in report.items() if v is not None})

    metrics = run_trial(spec, workdir=config["workdir"], epoch_callback=on_epoch, progress=False, fence=fence)
    final = {k: v for k, v in metrics.items() if v is not None and k not in ("history", "forward_modes")}
    final["history_json"] = json.dumps(metrics.get("history") or [])  # Ray's result loggers take scalars
    final["final"] = True
    final.setdefault("epoch", metrics.get("epochs_done", 0))
    final.setdefault("val_acc", float("nan"))  # a failed trial has none, and Tune rejects a result without it
    tune.report(final)


def guard_orphan(fence: Fence) -> None:
    """End this process once ``fence`` goes stale: a trial whose controller was killed (its heartbeat on the
    folder stops) or whose trial was re-queued stops within a fraction of a heartbeat, writing nothing."""
    from ..fence import watch

    fence.check()
    watch(fence, _stop_orphan, interval=max(0.5, (fence.stale_after or 60) / 6))


def _stop_orphan(reason: str) -> None:
    """End this Ray trial's process at once: its attempt lost its trial folder (see :mod:`stsearch.fence`)."""
    print(f"stsearch: trial process {os.getpid()} stops: {reason}", file=sys.stderr, flush=True)
    os._exit(75)  # noqa: SLF001  (a thread cannot stop the training thread; nothing may be written)


def _make_searcher_class():
    from ray.tune.search import Searcher

    class StudySearcher(Searcher):
        """Ray Tune searcher backed by a :class:`SearchRun` (the Optuna study is the source of truth)."""

        def __init__(self, run: SearchRun, on_finish: Callable[[Any], None] | None = None, num_threads: int | None = None):
            super().__init__(metric="val_acc", mode="max")
            self.run = run
            self.on_finish = on_finish
            self.num_threads = num_threads
            self.live: dict[str, Claim] = {}
            self._checked = time.monotonic()
            self.error: ValueError | None = None  # a study that cannot go on (raised after Tune returns)

        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            if time.monotonic() - self._checked > self.run.heartbeat_seconds / 4:  # workers sharing the study
                self._checked = time.monotonic()
                for line in self.run.requeue_stale():
                    print(f"stsearch: {line}", file=sys.stderr)
            if self.error is not None:
                return Searcher.FINISHED
            try:
                claim = self.run.claim()
                if claim is None and self.run.gated():  # a warm-start study's dense trial trains: ask again later
                    return None
            except ValueError as err:  # e.g. the dense trial failed: no trial can start (Tune would log a traceback)
                self.error = err
                return Searcher.FINISHED
            if claim is None:
                return Searcher.FINISHED if not self.live else None
            if self.num_threads is not None:
                claim.spec.train.setdefault("num_threads", self.num_threads)
            self.live[trial_id] = claim
            return {"number": claim.number, "spec": claim.spec.to_dict(), "workdir": str(claim.workdir),
                    "attempt": claim.attempt, "stale_after": claim.stale_after}

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
            claim = self.live.pop(trial_id, None)
            if claim is None:
                return
            if error or not result:
                frozen = self.run.finish(claim, None, error="the Ray trial failed (see its error.txt / Ray logs)")
            elif result.get("final"):
                metrics = {k: v for k, v in result.items() if not (k == "val_acc" and v != v)}  # NaN: none measured
                metrics["history"] = json.loads(metrics.pop("history_json", "[]"))
                frozen = self.run.finish(claim, metrics)
            else:  # stopped by the scheduler after some epochs
                metrics = {k: result.get(k) for k in ("val_acc", "val_loss", "budget_fraction") if k in result}
                metrics.update(status="pruned", full_budget=False, epochs_done=result.get("epoch"),
                               reason=f"stopped by the scheduler after epoch {result.get('epoch')}")
                frozen = self.run.finish(claim, metrics)
            if self.on_finish:
                self.on_finish(frozen)

        def release_all(self, reason: str) -> None:
            for claim in self.live.values():
                self.run.release(claim, reason)
            self.live.clear()

        def save(self, checkpoint_path: str) -> None:  # the study is the checkpoint
            Path(checkpoint_path).write_text(self.run.name)

        def restore(self, checkpoint_path: str) -> None:
            pass

    return StudySearcher


def __getattr__(name: str) -> Any:
    if name == "StudySearcher":
        return _make_searcher_class()
    raise AttributeError(name)


def connect_driver(address: str) -> None:
    """Connect this process to the Ray cluster at ``address`` (before a study is created, so a refused
    connection leaves nothing behind); :func:`run_ray` then uses that connection."""
    import ray

    if not ray.is_initialized():
        connect(address, **RAY_INIT_KWARGS)


def run_ray(
    run: SearchRun,
    *,
    address: str | None = None,
    concurrency: int | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    max_failures: int = 2,
    scheduler: str = "none",
    on_finish: Callable[[Any], None] | None = None,
    num_cpus: int | None = None,
) -> int:
    """Train the study's remaining slots on a Ray cluster (local Ray when ``address`` is None)."""
    import ray
    from ray import tune

    remaining = run.counts()["waiting"]
    if remaining == 0:
        return 0
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            connect(address, **RAY_INIT_KWARGS)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **RAY_INIT_KWARGS)
    StudySearcher = _make_searcher_class()
    searcher = StudySearcher(run, on_finish=on_finish, num_threads=max(1, int(cpus_per_trial)))
    sched = None
    if scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        max_t = int(float(run.space.train.get("epochs") or 1))
        sched = ASHAScheduler(time_attr="epoch", metric="val_acc", mode="max", max_t=max(1, max_t), grace_period=1, reduction_factor=3)
    elif scheduler != "none":
        raise ValueError(f"--scheduler must be 'none' or 'asha', got {scheduler!r}")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ctrl-C reaches stsearch as KeyboardInterrupt (trials released, exit 130, "stsearch resume" hint)
    # instead of Tune ending the run quietly and pointing at its own Tuner.restore.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    trainable = tune.with_resources(ray_trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=sched, num_samples=remaining,
            max_concurrent_trials=concurrency, reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name="tune", storage_path=str((run.folder / "ray").resolve()), verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
        ),
    )
    run.start_heartbeat()
    try:
        tuner.fit()
        if searcher.error is not None:
            raise searcher.error
    except KeyboardInterrupt:
        searcher.release_all("interrupted by the user (Ctrl-C)")
        raise
    finally:
        searcher.release_all("the controller stopped before the trial finished")
        run.stop_heartbeat()
        if started_here:
            ray.shutdown()
    return remaining
