"""Workers sharing one storage: no plan trained twice, and the last worker standing finishes
the study when another one stops beating (killed, preempted, frozen). Real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from stsearch.search.run import SearchRun
from stsearch.search.storage import open_storage
from stsearch.space import SearchSpace

from .test_search import TINY_SPACE, _assert_exactly, _cli, _env


def _no_baselines(tmp_path: Path, epochs: int = 1, seed: int = 0) -> Path:
    text = TINY_SPACE % {"min_cf": 1.0, "seed": seed, "sampler_extra": ", screen: false"}
    text = text[: text.index("baselines:")] + "trials: 6\n"
    path = tmp_path / "noBase.yaml"
    path.write_text(text.replace("epochs: 1,", f"epochs: {epochs},"))
    return path


def _plan_keys(study: optuna.Study) -> list[str]:
    trained = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("status") in ("completed", "pruned")]
    return [json.dumps(t.user_attrs["plan"], sort_keys=True) for t in trained]


def test_workers_claiming_at_the_start_of_a_study_get_distinct_plans(tmp_path):
    """Every worker's sampler has the study's seed: with no finished trial they all drew the same
    configuration (the fallback sampler), and two workers trained one plan. Now a claim whose plan
    another trial holds is replaced."""
    journal = f"journal:{tmp_path / 'study.log'}"
    space = SearchSpace.load(_no_baselines(tmp_path))
    SearchRun.create(space, name="dup", storage=journal, results_dir=tmp_path / "results", trials=4)
    workers = [SearchRun.open("dup", storage=journal, results_dir=tmp_path / "results") for _ in range(4)]
    claims = [w.claim() for w in workers]  # four processes' first claims, before any trial finishes
    plans = [json.dumps(c.spec.plan, sort_keys=True) for c in claims]
    assert len(set(plans)) == 4, plans
    study = workers[0].study
    dups = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("status") == "duplicate"]
    assert dups, "the same seed draws the same first plan in every worker: some claims were replaced"
    assert all(t.state == TrialState.FAIL and t.user_attrs["reason"].startswith("the plan of trial") for t in dups)
    counts = workers[0].counts()
    assert counts["trained"] == 0 and counts["running"] == 4 and counts["waiting"] == 0  # replacements were claimed


def test_a_sampled_plan_equal_to_a_completed_one_is_not_trained_again(tmp_path):
    journal = f"journal:{tmp_path / 'study.log'}"
    space = SearchSpace.load(_no_baselines(tmp_path))
    SearchRun.create(space, name="again", storage=journal, results_dir=tmp_path / "results", trials=3)
    first = SearchRun.open("again", storage=journal, results_dir=tmp_path / "results")
    claim = first.claim()
    first.finish(claim, {"status": "completed", "val_acc": 0.5, "full_budget": True})
    second = SearchRun.open("again", storage=journal, results_dir=tmp_path / "results")  # same seed, same draw
    assert json.dumps(second.claim().spec.plan, sort_keys=True) != json.dumps(claim.spec.plan, sort_keys=True)


@pytest.mark.slow
def test_the_surviving_worker_requeues_a_frozen_workers_trial_and_finishes_the_study(tmp_path):
    """Two workers, one frozen (SIGSTOP: alive, but its heartbeat stops) mid-trial. The survivor used
    to finish what was queued and exit, leaving the study short with the frozen trial RUNNING until
    another worker started. Now it waits, re-queues the trial once its heartbeat is 1.5 intervals old,
    and trains it: exactly N, without another worker."""
    results = tmp_path / "results"
    journal = f"journal:{tmp_path / 'study.log'}"
    space = _no_baselines(tmp_path, epochs=4, seed=3)
    made = subprocess.run(_cli("search", "--space", str(space), "--name", "live", "--storage", journal, "--trials",
                               "3", "--results-dir", str(results), "--dispatch", "none", "--heartbeat", "5"),
                          env=_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert made.returncode == 0, made.stderr[-2000:]
    args = ("worker", "--name", "live", "--storage", journal, "--results-dir", str(results), "--num-threads", "1")
    victim = subprocess.Popen(_cli(*args, "--max-trials", "1"), env=_env(tmp_path), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    store = open_storage(journal)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:  # the victim is in training: its trial has a checkpoint
            running = optuna.load_study(study_name="live", storage=store).get_trials(states=(TrialState.RUNNING,))
            folder = running[0].user_attrs.get("artifact_dir") if running else None  # set just after the claim
            if folder and (Path(folder) / "ckpt" / "last.pt").exists():
                break
            time.sleep(0.5)
        else:
            pytest.fail("the first worker never reached an epoch checkpoint")
        os.killpg(victim.pid, signal.SIGSTOP)
        frozen = running[0].number
        survivor = subprocess.run(_cli(*args), env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    assert survivor.returncode == 0, survivor.stderr[-3000:]
    assert f"trial {frozen} of " in survivor.stderr and "re-queued" in survivor.stderr, survivor.stderr[-3000:]
    study = optuna.load_study(study_name="live", storage=store)
    _assert_exactly(study, 3)
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == frozen]
    assert len(retry) == 1 and retry[0].user_attrs["status"] == "completed"
    assert len(set(_plan_keys(study))) == len(_plan_keys(study)) == 3


def test_workers_seed_their_samplers_apart(tmp_path):
    """``stsearch worker`` mixes its process id into the study's sampler seed: two workers starting
    together draw different plans at once, instead of one replacing its twin of the other's."""
    import sys

    journal = f"journal:{tmp_path / 'study.log'}"
    space = SearchSpace.load(_no_baselines(tmp_path))
    SearchRun.create(space, name="apart", storage=journal, results_dir=tmp_path / "results", trials=4)
    # The owner ids are fixed (normally host:pid) so that the draws, and the test, are deterministic.
    code = ("import json, sys; from stsearch.search import run; run.owner_id = lambda: sys.argv[3]; "
            "r = run.SearchRun.open('apart', storage=sys.argv[1], results_dir=sys.argv[2], per_process_seed=True); "
            "print(json.dumps(r.claim().spec.plan, sort_keys=True))")
    outs = [subprocess.run([sys.executable, "-c", code, journal, str(tmp_path / "results"), f"node:{pid}"],
                           capture_output=True, text=True, timeout=120) for pid in (101, 102)]
    assert all(o.returncode == 0 for o in outs), [o.stderr[-2000:] for o in outs]
    assert outs[0].stdout != outs[1].stdout
    study = optuna.load_study(study_name="apart", storage=open_storage(journal))
    assert not [t for t in study.trials if t.user_attrs.get("status") == "duplicate"]
