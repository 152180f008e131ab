"""Fault tests: killed workers, a Ray node lost mid-trial, NaN trials, truncated checkpoints,
concurrent writers. Each asserts that nothing is lost and the study stays loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from stsearch.search.local import run_local
from stsearch.search.run import SearchRun
from stsearch.space import SearchSpace
from stsearch.trial import TrialSpec, run_trial

from .ray_cluster import generate_token, ray_cluster, wait_for as _wait_for
from .test_search import TINY_SPACE, _assert_exactly, _cli, _env, _space, ray_tmp  # noqa: F401

pytestmark = pytest.mark.slow


def _running_with_epoch(storage: str, name: str) -> bool:
    """A trial is running and has written at least one epoch checkpoint."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # the database file exists before the study is written into it
        return False
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        folder = t.user_attrs.get("artifact_dir")
        if folder and (Path(folder) / "ckpt" / "last.pt").exists():
            return True
    return False


def test_sigkill_of_a_worker_then_a_new_worker_finishes_the_study(tmp_path):
    text = TINY_SPACE % {"min_cf": 1.0, "seed": 1, "sampler_extra": ""}
    path = tmp_path / "slow.yaml"
    path.write_text(text.replace("epochs: 1,", "epochs: 6,"))
    results = tmp_path / "results"
    journal = f"journal:{tmp_path / 'study.log'}"
    SearchRun.create(SearchSpace.load(path), name="wk", storage=journal, results_dir=results, trials=3)
    env = _env(tmp_path)
    args = ("--name", "wk", "--storage", journal, "--results-dir", str(results), "--num-threads", "1")
    victim = subprocess.Popen(_cli("worker", *args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    from stsearch.search.storage import open_storage

    store = open_storage(journal)
    try:
        _wait_for(lambda: _running_with_epoch(store, "wk"), 180, "a trial with a checkpoint")
        os.killpg(victim.pid, signal.SIGKILL)
    finally:
        victim.wait(timeout=30)
    killed = [t for t in optuna.load_study(study_name="wk", storage=store).trials if t.state == TrialState.RUNNING]
    assert len(killed) == 1
    out = subprocess.run(_cli("worker", *args), env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="wk", storage=store)
    _assert_exactly(study, 3)
    old = killed[0]
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == old.number]
    assert len(retry) == 1 and retry[0].params == old.params
    # the retry resumed from the killed trial's checkpoint instead of starting over
    assert retry[0].user_attrs["artifact_dir"] == old.user_attrs["artifact_dir"]


def test_ray_worker_node_lost_mid_trial_is_retried_elsewhere(tmp_path, ray_tmp):
    """Also the one cluster started without authentication (RAY_AUTH_MODE=disabled on its nodes),
    driven from a machine that has a token of its own (~/.ray/auth_token, as any local Ray run
    leaves one): the driver then runs in token mode, and still connects."""
    env = _env(tmp_path, ray_tmp)
    driver_home = tmp_path / "driver-home"
    generate_token(driver_home, env)
    off = {"RAY_AUTH_MODE": "disabled"}
    results = tmp_path / "results"
    with ray_cluster(env, tmp_path, head_cpus=0, head_env=off, client_env=off) as cluster:
        for _ in (1, 2):  # one at a time: two `ray start` racing on one machine can leave one node out
            cluster.add_node(1, off)
        path = tmp_path / "slow.yaml"
        path.write_text((TINY_SPACE % {"min_cf": 1.0, "seed": 2, "sampler_extra": ""}).replace("epochs: 1,", "epochs: 5,"))
        search = subprocess.Popen(
            _cli("search", "--space", str(path), "--trials", "4", "--name", "nodes", "--address", cluster.address,
                 "--results-dir", str(results), "--no-progress", "--max-failures", "3"),
            env={**env, "HOME": str(driver_home)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        storage = f"sqlite:///{results / 'nodes' / 'study.db'}"
        # Poll the trial folders, not the SQLite study: a reader in this process must not hold a
        # lock the search's writes wait for.
        _wait_for(lambda: any((results / "nodes" / "trials").glob("*/ckpt/last.pt")), 240, "a trial checkpoint")
        cluster.kill_node(1)  # the node and everything it runs
        try:
            output, _ = search.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            search.kill()
            output, _ = search.communicate()
            pytest.fail("the search did not finish after the node loss:\n" + output[-4000:])
        assert search.returncode == 0, output[-3000:]
    study = optuna.load_study(study_name="nodes", storage=storage)
    _assert_exactly(study, 4)
    # Ray restarted the lost trial on the surviving node: every trial completed, none failed
    assert [t.user_attrs["status"] for t in study.trials if t.user_attrs.get("status") != "infeasible"] == ["completed"] * 4


def test_nan_trials_fail_cleanly_and_are_counted(tmp_path):
    path = tmp_path / "nan.yaml"
    path.write_text((TINY_SPACE % {"min_cf": 1.0, "seed": 0, "sampler_extra": ""}).replace("lr: 0.05", "lr: 1.0e+12, momentum: 0.0, weight_decay: 0.0"))
    run = SearchRun.create(SearchSpace.load(path), name="nan", results_dir=tmp_path / "results", trials=3)
    assert run_local(run) == 3
    study = optuna.load_study(study_name="nan", storage=run.storage_url)
    failed = [t for t in study.trials if t.user_attrs.get("status") == "failed"]
    assert len(failed) == 3 and all(t.state == TrialState.FAIL for t in failed)
    assert all("non-finite" in t.user_attrs["reason"] for t in failed)
    _assert_exactly(study, 3)


def test_truncated_checkpoint_does_not_break_a_restarted_trial(tmp_path):
    spec = TrialSpec(model="resnet8_digits", dataset="digits", train={"epochs": 2, "batch_size": 128, "num_threads": 1})
    run_trial(spec, workdir=tmp_path, progress=False, epoch_callback=lambda rec: True)  # stop after epoch 1
    ckpt = tmp_path / "ckpt" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 3])
    with pytest.warns(UserWarning):
        metrics = run_trial(spec, workdir=tmp_path, progress=False)
    assert metrics["status"] == "completed" and metrics["epochs_done"] == 2


def test_concurrent_writers_on_a_journal_file(tmp_path):
    journal = f"journal:{tmp_path / 'shared.log'}"
    results = tmp_path / "results"
    SearchRun.create(SearchSpace.load(_space(tmp_path)), name="jr", storage=journal, results_dir=results, trials=5)
    env = _env(tmp_path)
    procs = [subprocess.Popen(_cli("worker", "--name", "jr", "--storage", journal, "--results-dir", str(results),
                                   "--num-threads", "1"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    from stsearch.search.storage import open_storage

    _assert_exactly(optuna.load_study(study_name="jr", storage=open_storage(journal)), 5)


def test_malformed_space_is_a_one_line_error_with_a_line_number(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: resnet8_digits\nlayers:\n  - match: [\n")
    out = subprocess.run(_cli("search", "--space", str(bad), "--results-dir", str(tmp_path / "r")), env=_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "bad.yaml:" in out.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


# ------------------------------------------------------------- study creation
def test_a_reader_polling_for_the_study_file_only_ever_finds_a_whole_study(tmp_path):
    """`stsearch status` or a dashboard opened as a search starts used to find a SQLite file without
    tables and create them itself, racing the search ("table studies already exists", or a KeyError)."""
    space = SearchSpace.load(_space(tmp_path))
    seen: list[tuple] = []

    def read_as_soon_as_it_appears(db: Path, stop: threading.Event) -> None:
        while not stop.is_set():
            if db.exists():
                try:
                    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
                    seen.append(("space" in study.user_attrs, len(study.get_trials(states=(TrialState.WAITING,)))))
                except Exception as err:  # noqa: BLE001 -- what the reader ran into is the finding
                    seen.append((repr(err),))
                return
            time.sleep(0.0002)

    for k in range(4):
        results = tmp_path / f"r{k}"
        stop = threading.Event()
        reader = threading.Thread(target=read_as_soon_as_it_appears, args=(results / "s" / "study.db", stop))
        reader.start()
        try:
            SearchRun.create(space, name="s", results_dir=results, trials=3)
        finally:
            stop.set()
            reader.join(timeout=60)
    assert seen == [(True, 3)] * 4


def test_a_creation_cut_short_leaves_no_study_file_and_the_name_stays_free(tmp_path, monkeypatch):
    space = SearchSpace.load(_space(tmp_path))
    results = tmp_path / "results"
    real = optuna.Study.enqueue_trial
    calls = []

    def cut_short(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C in the middle of queuing the slots
        return real(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "enqueue_trial", cut_short)
    with pytest.raises(KeyboardInterrupt):
        SearchRun.create(space, name="s", results_dir=results, trials=3)
    monkeypatch.setattr(optuna.Study, "enqueue_trial", real)
    assert sorted(p.name for p in (results / "s").iterdir()) == []  # no study.db, no file left aside
    run = SearchRun.create(space, name="s", results_dir=results, trials=3)
    assert run.counts()["waiting"] == 3 and run.target == 3


def test_a_study_whose_creation_was_cut_short_on_a_shared_storage_is_a_clear_error(tmp_path):
    journal = f"journal:{tmp_path / 'shared.log'}"
    from stsearch.search.storage import open_storage

    optuna.create_study(study_name="half", storage=open_storage(journal), directions=["maximize", "maximize"])
    with pytest.raises(ValueError, match=r"never fully created .*stsearch search --name half"):
        SearchRun.open("half", storage=journal, results_dir=tmp_path / "results")
    out = subprocess.run(_cli("status", "half", "--storage", journal, "--results-dir", str(tmp_path / "results")),
                         env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and out.stderr.count("\n") == 1 and "never fully created" in out.stderr


# ------------------------------------------------------------- kills inside the bookkeeping
def _tiny_run(tmp_path: Path, trials: int = 3) -> SearchRun:
    return SearchRun.create(SearchSpace.load(_space(tmp_path)), name="k", results_dir=tmp_path / "results", trials=trials)


def test_a_kill_between_release_requeuing_and_failing_a_trial_queues_one_retry(tmp_path):
    """A second Ctrl-C while the first is handled: the trial is re-queued but still RUNNING. Resume
    used to queue it again, so one configuration trained twice in one folder and a slot was cancelled."""
    run = _tiny_run(tmp_path)
    claim = run.claim()
    run._requeue(claim.trial, str(claim.workdir))  # release()'s first step; the kill lands right after it
    resumed = SearchRun.open("k", results_dir=tmp_path / "results")
    resumed.reconcile(all_running_stale=True)
    trials = resumed.trials()
    retries = [t for t in trials if t.user_attrs.get("retry_of") == claim.number]
    assert len(retries) == 1 and retries[0].user_attrs["resume_dir"] == str(claim.workdir)
    assert not [t for t in trials if t.user_attrs.get("status") == "cancelled"]
    assert resumed.counts()["waiting"] == 3


def test_a_kill_between_failing_and_requeuing_a_stale_trial_still_retries_it(tmp_path):
    """Resume fails a dead process's trial, then re-queues it; a kill in between used to leave an
    empty slot in its place, losing the trial's params and checkpoint folder."""
    run = _tiny_run(tmp_path)
    claim = run.claim()
    storage = run.study._storage  # noqa: SLF001
    storage.set_trial_user_attr(claim.trial._trial_id, "status", "interrupted")
    storage.set_trial_state_values(claim.trial._trial_id, state=TrialState.FAIL)  # ... and killed here
    resumed = SearchRun.open("k", results_dir=tmp_path / "results")
    resumed.reconcile()
    waiting = [t for t in resumed.trials() if t.state == TrialState.WAITING]
    assert len(waiting) == 3
    retry = [t for t in waiting if t.user_attrs.get("retry_of") == claim.number]
    assert len(retry) == 1 and retry[0].user_attrs["resume_dir"] == str(claim.workdir)
    assert retry[0].system_attrs["fixed_params"] == claim.trial.params
    resumed.reconcile()  # a second resume changes nothing
    assert len([t for t in resumed.trials() if t.state == TrialState.WAITING]) == 3


def test_searches_started_together_without_a_name_get_numbered_names(tmp_path, monkeypatch):
    """README: a second unnamed search is numbered; racing the first to the same number used to fail."""
    space = SearchSpace.load(_space(tmp_path))
    results = tmp_path / "results"
    real = SearchRun._build
    raced: list[str] = []

    def build(space_, store, name, *args):
        if not raced:  # another search takes the chosen name while this one builds its study
            raced.append(name)
            SearchRun.create(space, name=name, results_dir=results, trials=1)
        return real(space_, store, name, *args)

    monkeypatch.setattr(SearchRun, "_build", staticmethod(build))
    run = SearchRun.create(space, results_dir=results, trials=1)
    assert raced == ["tiny"] and run.name == "tiny-2" and run.counts()["waiting"] == 1
    raced.clear()
    with pytest.raises(ValueError, match=r"created by another process meanwhile; pick another --name"):
        SearchRun.create(space, name="mine", results_dir=results, trials=1)
    assert sorted(p.name for p in results.iterdir()) == ["mine", "tiny", "tiny-2"]
