"""Fenced trial folders: a stale attempt's write is refused and leaves the folder as it was."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from stsearch.fence import FENCE_FILE, Fence, StaleAttempt, claim_folder, fenced, new_token, touch, watch
from stsearch.train.checkpoint import LAST_NAME, load_latest, save_checkpoint, save_rotating


def test_the_newest_claim_owns_the_folder(tmp_path):
    first, second = new_token(), new_token()
    claim_folder(tmp_path / "t", first)
    old = Fence(tmp_path / "t", first)
    old.check()  # owns it
    claim_folder(tmp_path / "t", second)  # re-queued: a new attempt
    with pytest.raises(StaleAttempt, match="newer attempt"):
        old.check()
    Fence(tmp_path / "t", second).check()
    assert not touch(tmp_path / "t", first) and touch(tmp_path / "t", second)


def test_an_attempt_without_heartbeat_goes_stale(tmp_path):
    token = new_token()
    path = claim_folder(tmp_path / "t", token)
    fence = Fence(tmp_path / "t", token, stale_after=5)
    fence.check()
    past = time.time() - 6
    os.utime(path, (past, past))  # the controller stopped touching it 6 s ago
    with pytest.raises(StaleAttempt, match="stopped beating"):
        fence.check()
    assert touch(tmp_path / "t", token)  # a live controller's beat
    fence.check()


def test_a_stale_writer_leaves_the_checkpoints_untouched(tmp_path):
    folder = tmp_path / "trial"
    stale, fresh = new_token(), new_token()
    claim_folder(folder, stale)
    with fenced(Fence(folder, stale)):
        save_rotating(folder / "ckpt", {"step": 1})
    claim_folder(folder, fresh)  # re-queued while the first attempt was still training
    before = sorted(p.name for p in (folder / "ckpt").iterdir())
    with fenced(Fence(folder, stale)):
        with pytest.raises(StaleAttempt):
            save_rotating(folder / "ckpt", {"step": 2})
        with pytest.raises(StaleAttempt):
            save_checkpoint(folder / "other.pt", {"step": 2})
    assert sorted(p.name for p in (folder / "ckpt").iterdir()) == before == [LAST_NAME]
    assert load_latest(folder / "ckpt")["step"] == 1 and not (folder / "other.pt").exists()
    with fenced(Fence(folder, fresh)):
        save_rotating(folder / "ckpt", {"step": 3})
    assert load_latest(folder / "ckpt")["step"] == 3
    save_checkpoint(tmp_path / "elsewhere.pt", {"x": torch.zeros(1)})  # outside any fenced folder: no check


def test_a_fence_is_per_thread(tmp_path):
    stale = new_token()
    claim_folder(tmp_path / "t", stale)
    claim_folder(tmp_path / "t", new_token())
    seen: list[BaseException | None] = []

    def other() -> None:  # no fence active in this thread
        try:
            save_checkpoint(tmp_path / "t" / "x.pt", {"a": 1})
            seen.append(None)
        except BaseException as err:  # noqa: BLE001
            seen.append(err)

    with fenced(Fence(tmp_path / "t", stale)):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen == [None]


def test_watch_reports_once_when_the_folder_is_taken(tmp_path):
    token = new_token()
    claim_folder(tmp_path / "t", token)
    reasons: list[str] = []
    done = watch(Fence(tmp_path / "t", token), reasons.append, interval=0.05)
    time.sleep(0.2)
    assert reasons == []
    (tmp_path / "t" / FENCE_FILE).write_text("someone-else\n")
    deadline = time.time() + 5
    while not reasons and time.time() < deadline:
        time.sleep(0.05)
    done.set()
    assert len(reasons) == 1 and "newer attempt" in reasons[0]


def test_a_requeued_trial_refuses_its_old_attempt_and_the_retry_owns_the_folder(tmp_path):
    """A worker that lost its heartbeat (frozen, cut off) wakes up after its trial was re-queued: its
    writes are refused, nothing lands in the folder; the retry trains there under its own token."""
    import json

    from stsearch.search.run import SearchRun
    from stsearch.space import SearchSpace
    from stsearch.trial import METRICS_FILE, TRIAL_FILE, run_trial

    from .test_workers import _no_baselines

    journal = f"journal:{tmp_path / 'study.log'}"
    space = SearchSpace.load(_no_baselines(tmp_path))
    space.train = {**space.train, "max_steps": 1}
    SearchRun.create(space, name="fenced", storage=journal, results_dir=tmp_path / "results", trials=1)
    lost = SearchRun.open("fenced", storage=journal, results_dir=tmp_path / "results")
    old = lost.claim()
    survivor = SearchRun.open("fenced", storage=journal, results_dir=tmp_path / "results")
    assert len(survivor.requeue_stale(all_running=True)) == 1  # judged stale: failed and re-queued
    with pytest.raises(StaleAttempt, match="newer attempt"):
        run_trial(old.spec, workdir=old.workdir, progress=False, fence=old.fence())
    assert not (old.workdir / TRIAL_FILE).exists() and not (old.workdir / "ckpt").exists()
    retry = survivor.claim()
    assert retry.workdir == old.workdir and retry.attempt != old.attempt
    metrics = run_trial(retry.spec, workdir=retry.workdir, progress=False, fence=retry.fence())
    assert json.loads((retry.workdir / METRICS_FILE).read_text())["attempt"] == retry.attempt == metrics["attempt"]
    with pytest.raises(StaleAttempt):  # and the old attempt still may not write, even after the retry
        run_trial(old.spec, workdir=old.workdir, progress=False, fence=old.fence())
    assert json.loads((retry.workdir / METRICS_FILE).read_text())["attempt"] == retry.attempt



def test_a_trial_process_whose_controller_stops_beating_ends_itself_without_writing(tmp_path):
    """What a Ray trial actor runs (``guard_orphan``): a controller killed under Ray left its trial actor
    training for about a minute, and it then wrote metrics.json into a folder the study still had RUNNING.
    Here no controller touches the folder after the claim: the trial process ends itself within the
    stale limit (1.5 heartbeats), before its long budget, writing nothing more."""
    import json
    import subprocess
    import sys

    from stsearch.search.run import SearchRun
    from stsearch.space import SearchSpace

    from .test_workers import _no_baselines

    journal = f"journal:{tmp_path / 'study.log'}"
    space = SearchSpace.load(_no_baselines(tmp_path, epochs=500))
    SearchRun.create(space, name="orphan", storage=journal, results_dir=tmp_path / "results", trials=1, heartbeat=2)
    claim = SearchRun.open("orphan", storage=journal, results_dir=tmp_path / "results").claim()  # no heartbeat runs
    code = ("import json, sys; from pathlib import Path; from stsearch.fence import Fence; "
            "from stsearch.search.ray_backend import guard_orphan; from stsearch.trial import TrialSpec, run_trial; "
            "a = json.loads(sys.argv[1]); fence = Fence(Path(a['workdir']), a['attempt'], a['stale_after']); "
            "guard_orphan(fence); run_trial(TrialSpec.from_dict(a['spec']), workdir=a['workdir'], progress=False, "
            "fence=fence)")
    arg = json.dumps({"workdir": str(claim.workdir), "attempt": claim.attempt, "stale_after": claim.stale_after,
                      "spec": claim.spec.to_dict()})
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, timeout=120)
    ended = time.time()
    # the watcher ends the process (exit 75); on a loaded machine the start-up alone may outlast the limit,
    # and then the first write's own check refuses it (StaleAttempt): either way it stops without writing
    assert out.returncode in (75, 1), out.stderr[-3000:]
    assert ("stops: the controller of trial folder" in out.stderr if out.returncode == 75
            else "StaleAttempt: attempt" in out.stderr), out.stderr[-3000:]
    assert "stopped beating" in out.stderr
    assert claim.stale_after == 3 and ended - start < 30  # 500 epochs would take minutes
    assert not (claim.workdir / "metrics.json").exists() and not (claim.workdir / "model.safetensors").exists()
