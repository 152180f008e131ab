"""Dispatch without Ray: this process claims and trains trials one after another.

``stsearch worker`` runs this loop; several workers on any machines sharing one
storage (PostgreSQL, MySQL, a journal file on a shared disk) split one study.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from ..fence import StaleAttempt
from ..trial import run_trial
from .run import SearchRun

__all__ = ["run_local"]

MAX_ERRORS_IN_A_ROW = 3


def run_local(
    run: SearchRun,
    *,
    max_trials: int | None = None,
    on_finish: Callable[[Any], None] | None = None,
    num_threads: int | None = None,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
) -> int:
    """Train claimed trials until no slot is left and no trial runs anywhere (or ``max_trials``); returns
    how many this process trained. While other processes' trials run, it waits and re-queues those whose
    heartbeat stops (:meth:`SearchRun.wait_for_work`), so the last worker standing finishes the study;
    ``report`` gets a line per re-queued trial."""
    done = errors = 0
    run.start_heartbeat()
    try:
        while max_trials is None or done < max_trials:
            claim = run.claim()
            if claim is None and run.gated():  # a warm-start study's dense trial trains elsewhere
                run.wait_for_work(report=report, until=lambda: not run.gated())
                continue
            if claim is None:
                if run.wait_for_work(report=report):
                    continue
                break
            if num_threads is not None:
                claim.spec.train.setdefault("num_threads", num_threads)
            try:
                metrics = run_trial(claim.spec, workdir=claim.workdir, progress=progress, fence=claim.fence())
            except KeyboardInterrupt:
                run.release(claim, "interrupted by the user (Ctrl-C)")
                raise
            except StaleAttempt as err:  # re-queued while this process was away: the newer attempt reports
                run.abandon(claim)
                if report:
                    report(f"trial {claim.number}: {err}")
                continue
            except Exception as err:  # a bug or bad data in one trial must not corrupt the study
                errors += 1
                reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                (claim.workdir / "error.txt").parent.mkdir(parents=True, exist_ok=True)
                (claim.workdir / "error.txt").write_text(traceback.format_exc())
                frozen = run.finish(claim, None, error=reason)
                if on_finish:
                    on_finish(frozen)
                if errors >= MAX_ERRORS_IN_A_ROW:
                    raise RuntimeError(f"{errors} trials in a row raised errors, the last: {reason}") from err
                done += 1
                continue
            errors = 0
            frozen = run.finish(claim, metrics)
            done += 1
            if on_finish:
                on_finish(frozen)
    finally:
        run.stop_heartbeat()
    return done
