"""Soak: eight `stsearch worker` processes on one PostgreSQL study of 60 fast trials, while workers
are killed, frozen past their heartbeat and restarted. Real processes, no mocks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from stsearch.search.run import SearchRun
from stsearch.space import SearchSpace

from .ray_cluster import wait_for as _wait
from .test_search import _assert_exactly, _cli, _env, _postgres_url

SOAK_SPACE = """
name: soak
model: resnet8_digits
dataset: digits
layers:
  - match: "layer*.conv*"
    families: [tt, stt, tucker, tr, dense]
    ranks: {low: 2, high: 8, step: 2}
    t: [2]
objectives: [accuracy, compression]
train: {max_steps: 2, batch_size: 64, lr: 0.05, num_threads: 1}
sampler: {name: random, seed: 11}
"""
TRIALS, WORKERS = 60, 8


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("status") == "completed"]


@pytest.mark.postgres
@pytest.mark.slow
def test_eight_workers_finish_sixty_trials_while_workers_die_freeze_and_restart(tmp_path):
    url = _postgres_url() or pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432; set STSEARCH_TEST_POSTGRES")
    name = f"soak-{uuid.uuid4().hex[:8]}"
    results = tmp_path / "results"
    (tmp_path / "soak.yaml").write_text(SOAK_SPACE)
    SearchRun.create(SearchSpace.load(tmp_path / "soak.yaml"), name=name, storage=url, results_dir=results,
                     trials=TRIALS, heartbeat=2)
    study = optuna.load_study(study_name=name, storage=url)
    args = ("worker", "--name", name, "--storage", url, "--results-dir", str(results), "--num-threads", "1")
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(i: int) -> subprocess.Popen:
        return subprocess.Popen(_cli(*args), env=_env(tmp_path), stdout=subprocess.DEVNULL,
                                stderr=open(logs / f"worker{i}.err", "w"), start_new_session=True)

    def holds_trial(i: int) -> bool:
        return any(t.state == TrialState.RUNNING and t.user_attrs.get("owner", "").endswith(f":{procs[i].pid}")
                   and "attempt" in t.user_attrs for t in study.get_trials(deepcopy=False))

    procs = [start(i) for i in range(WORKERS)]
    rng = random.Random(7)
    try:
        _wait(lambda: len(_completed(study)) >= rng.randint(8, 14), 300, "the first trials")
        _wait(lambda: holds_trial(0), 120, "worker 0 to hold a trial")  # a kill between trials leaves none
        os.killpg(procs[0].pid, signal.SIGKILL)  # dies mid-study (pid gone: re-queued at once)
        frozen_at = len(_completed(study))
        _wait(lambda: holds_trial(1), 120, "worker 1 to hold a trial")
        os.killpg(procs[1].pid, signal.SIGSTOP)  # alive but silent: re-queued once its heartbeat is stale
        _wait(lambda: any(t.user_attrs.get("status") == "interrupted"
                          and t.user_attrs.get("owner", "").endswith(f":{procs[1].pid}") for t in study.trials),
              120, "the frozen worker's trial to be re-queued")
        os.killpg(procs[1].pid, signal.SIGCONT)  # wakes up: its folder belongs to a newer attempt
        _wait(lambda: len(_completed(study)) >= frozen_at + rng.randint(10, 20), 300, "more trials")
        _wait(lambda: holds_trial(2), 120, "worker 2 to hold a trial")
        os.killpg(procs[2].pid, signal.SIGKILL)
        procs.append(start(WORKERS))  # a restarted worker joins
        for p in procs[1:2] + procs[3:]:
            p.wait(timeout=600)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)
    errs = {f.name: f.read_text() for f in logs.iterdir()}
    assert all(procs[i].returncode == 0 for i in [1, *range(3, len(procs))]), {k: v[-1500:] for k, v in errs.items()}
    study = optuna.load_study(study_name=name, storage=url)
    _assert_exactly(study, TRIALS)
    done = _completed(study)
    assert len(done) == TRIALS, [(t.number, t.user_attrs.get("status"), t.user_attrs.get("reason")) for t in study.trials
                                 if t.user_attrs.get("status") not in ("completed", "interrupted", "duplicate")]
    plans = [json.dumps(t.user_attrs["plan"], sort_keys=True) for t in done]
    assert len(set(plans)) == TRIALS, "no plan trained twice"
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL and t.user_attrs.get("status") == "interrupted"]
    assert len(interrupted) >= 3, "two killed workers and one frozen one each left a trial to re-queue"
    for t in done:  # every folder was last written by the attempt the study recorded, and by it alone
        folder = Path(t.user_attrs["artifact_dir"])
        assert json.loads((folder / "metrics.json").read_text())["attempt"] == t.user_attrs["attempt"]
        assert (folder / ".attempt").read_text().strip() == t.user_attrs["attempt"]
    assert "stops without writing" in errs["worker1.err"], errs["worker1.err"][-2000:]
    optuna.delete_study(study_name=name, storage=url)
