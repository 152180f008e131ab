"""The search controller end to end: Ray cluster, SIGKILL + resume, PostgreSQL workers, infeasible trials.

Real processes, real Ray, real PostgreSQL (skipped with a reason when none is reachable).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from stsearch.search.run import SearchRun
from stsearch.space import SearchSpace

from .ray_cluster import free_port, generate_token, ray_cluster

pytestmark = pytest.mark.slow

TINY_SPACE = """
name: tiny
model: resnet8_digits
dataset: digits
layers:
  - match: "layer*.conv*"
    share: true
    families: [tt, stt, tucker, dense]
    ranks: {low: 2, high: 8, step: 2}
    t: [2]
    n_modes: [3]
objectives:
  - {name: accuracy, direction: maximize}
  - {name: compression, direction: maximize}
constraints:
  - {metric: compression, min: %(min_cf)s}
train: {epochs: 1, batch_size: 128, lr: 0.05, num_threads: 1}
sampler: {name: tpe, seed: %(seed)s%(sampler_extra)s}
baselines:
  - {family: tt, rank: 4}
  - {family: stt, rank: 4, t: 2}
trials: 6
"""


def _space(tmp_path: Path, min_cf: float = 1.0, seed: int = 0, screen: bool = True) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE % {"min_cf": min_cf, "seed": seed, "sampler_extra": "" if screen else ", screen: false"})
    return path


@pytest.fixture
def ray_tmp():
    """A short RAY_TMPDIR (Ray's socket paths must stay under 107 bytes), removed afterwards."""
    path = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(tmp_path: Path, ray_dir: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_TMPDIR"] = ray_dir or tempfile.gettempdir()
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):  # Ray's defaults, as a user has them
        env.pop(key, None)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stsearch", *args]


_free_port = free_port


def _study(results: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{results / name / 'study.db'}")


def _assert_exactly(study: optuna.Study, n: int) -> None:
    trials = study.get_trials(deepcopy=False)
    trained = [t for t in trials if t.user_attrs.get("status") in ("completed", "pruned", "failed")]
    assert len(trained) == n, [(t.number, t.state, t.user_attrs.get("status")) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # every trained trial has its own folder, and no two trained trials share one
    dirs = [t.user_attrs["artifact_dir"] for t in trained]
    assert len(set(dirs)) == len(dirs)
    for d in dirs:
        assert (Path(d) / "trial.json").exists()


# --------------------------------------------------------------------- Ray
def test_a_token_authenticated_cluster_runs_a_six_trial_search_and_a_wrong_token_is_one_line(tmp_path, ray_tmp):
    """Ray's default: a head that finds a token runs with token authentication. The token reaches
    the second node and the driver as it would reach other machines (RAY_AUTH_TOKEN; each has a
    home of its own); the driver is not told RAY_AUTH_MODE: stsearch turns token mode on."""
    env = _env(tmp_path, ray_tmp)
    token = generate_token(tmp_path / "head-home", env)
    node_env = {"HOME": str(tmp_path / "node-home"), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    driver_env = {**env, "HOME": str(tmp_path / "driver-home"), "RAY_AUTH_TOKEN": token}
    results = tmp_path / "results"
    search = ("search", "--space", str(_space(tmp_path)), "--trials", "6", "--name", "ray6",
              "--results-dir", str(results), "--no-progress")
    with ray_cluster(env, tmp_path, head_cpus=1, head_env={"HOME": str(tmp_path / "head-home")},
                     client_env=node_env) as cluster:
        cluster.add_node(1, node_env)
        wrong = subprocess.run(_cli(*search, "--address", cluster.address),
                               env={**driver_env, "RAY_AUTH_TOKEN": "0" * len(token)}, capture_output=True, text=True,
                               timeout=180)
        assert wrong.returncode == 2, wrong.stdout[-2000:] + wrong.stderr[-2000:]
        assert wrong.stderr.strip().count("\n") == 0, wrong.stderr[-3000:]  # one line, Ray's retries held back
        assert "refused this process's authentication" in wrong.stderr and cluster.address in wrong.stderr
        assert "RAY_AUTH_TOKEN" in wrong.stderr
        assert not results.exists()  # nothing created
        out = subprocess.run(_cli(*search, "--address", cluster.address), env=driver_env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = _study(results, "ray6")
    _assert_exactly(study, 6)
    baselines = {t.user_attrs.get("baseline") for t in study.trials}
    assert {"tt-r4", "stt-r4-t2"} <= baselines
    assert (results / "ray6" / "trials.csv").exists()
    assert "Pareto front" in out.stdout


def test_an_address_where_nothing_listens_is_one_line_and_creates_nothing(tmp_path):
    results = tmp_path / "results"
    out = subprocess.run(_cli("search", "--space", str(_space(tmp_path)), "--name", "nowhere", "--results-dir",
                              str(results), "--address", f"127.0.0.1:{_free_port()}"),
                         env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no Ray cluster answers at 127.0.0.1:" in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().count("\n") == 0 and not results.exists()


# ------------------------------------------------------------ kill + resume
def test_sigkill_mid_search_then_resume_reaches_the_total_exactly(tmp_path):
    env = _env(tmp_path)
    results = tmp_path / "results"
    args = ("--results-dir", str(results), "--no-progress", "--dispatch", "local")
    space = _space(tmp_path)
    space.write_text(space.read_text().replace("epochs: 1,", "epochs: 4,"))  # trials long enough to be killed in training
    log = (tmp_path / "search.log").open("w")  # a file, not a pipe nobody reads while waiting
    proc = subprocess.Popen(_cli("search", "--space", str(space), "--trials", "5", "--name", "killme", *args),
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    db = results / "killme" / "study.db"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # wait until >= 1 trial is done and another one is running
            time.sleep(0.2)
            if proc.poll() is not None:
                pytest.fail(f"the search ended (exit {proc.returncode}) before a second trial was caught in training:\n"
                            + (tmp_path / "search.log").read_text()[-3000:])
            if not db.exists():  # the file appears with its study in it (built aside, then linked)
                continue
            trials = _study(results, "killme").get_trials(deepcopy=False)
            # a running trial past its sampling (it has params and a folder), i.e. in training
            training = [t for t in trials if t.state == TrialState.RUNNING and "artifact_dir" in t.user_attrs]
            if sum(t.state == TrialState.COMPLETE for t in trials) >= 1 and training:
                break
        else:
            pytest.fail("the search never reached a running second trial:\n" + (tmp_path / "search.log").read_text()[-3000:])
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()
    before = _study(results, "killme").get_trials(deepcopy=False)
    assert any(t.state == TrialState.RUNNING for t in before)

    out = subprocess.run(_cli("resume", "killme", *args), env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = _study(results, "killme")
    _assert_exactly(study, 5)
    interrupted = [t for t in study.trials if t.user_attrs.get("status") == "interrupted"]
    assert interrupted, "the killed trial should be recorded as interrupted"
    assert any(t.params for t in interrupted), "the kill should land in training, after sampling"
    for t in interrupted:  # each was re-queued with its params and folder, and finished
        retry = [r for r in study.trials if r.user_attrs.get("retry_of") == t.number]
        assert len(retry) == 1 and retry[0].user_attrs["status"] in ("completed", "pruned", "failed")
        if t.params:  # killed in training (a kill while sampling re-queues an empty slot: nothing to resume)
            assert retry[0].params == t.params
            assert retry[0].user_attrs["artifact_dir"] == t.user_attrs["artifact_dir"]
    # a second resume has nothing left to do and changes nothing
    again = subprocess.run(_cli("resume", "killme", *args), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert len(_study(results, "killme").trials) == len(study.trials)


@pytest.mark.parametrize("dispatch", ["local", "ray"])
def test_ctrl_c_mid_training_exits_130_with_a_resume_hint_and_resume_finishes(tmp_path, ray_tmp, dispatch):
    """Ray Tune used to swallow SIGINT: the search exited 0 with a normal report and Tune's own
    'Tuner.restore' hint. Both dispatchers now stop as an interrupted command should."""
    env = _env(tmp_path, ray_tmp)
    results = tmp_path / "results"
    space = _space(tmp_path)
    space.write_text(space.read_text().replace("epochs: 1,", "epochs: 4,"))
    extra = ["--dispatch", "local"] if dispatch == "local" else ["--num-cpus", "2"]
    log = (tmp_path / "search.log").open("w")
    # Ctrl-C's default disposition whatever pytest was started under (a background job ignores SIGINT, and a
    # child inherits that); its own session so that the Ray processes it starts are stopped with it.
    proc = subprocess.Popen(_cli("search", "--space", str(space), "--trials", "3", "--name", "intr", "--results-dir",
                                 str(results), "--no-progress", *extra), env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    db = results / "intr" / "study.db"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if db.exists() and any(t.state == TrialState.RUNNING and (Path(t.user_attrs.get("artifact_dir", "/nonexistent"))
                                                                        / "ckpt" / "last.pt").exists()
                                   for t in _study(results, "intr").get_trials(deepcopy=False)):
                break  # a trial is in training, past its first epoch
        else:
            pytest.fail("no trial reached training:\n" + (tmp_path / "search.log").read_text()[-3000:])
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the search if it still runs, and what it started (never ray stop)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        log.close()
    out = (tmp_path / "search.log").read_text()
    assert code == 130, out[-3000:]
    assert "stsearch: interrupted" in out and f"continue it with 'stsearch resume intr --results-dir {results}'" in out
    assert "Tuner.restore" not in out
    assert any(t.user_attrs.get("status") == "interrupted" for t in _study(results, "intr").trials)
    done = subprocess.run(_cli("resume", "intr", "--results-dir", str(results), "--no-progress", "--dispatch", "local"),
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_exactly(_study(results, "intr"), 3)


# --------------------------------------------------------------- PostgreSQL
def _postgres_url() -> str | None:
    url = os.environ.get("STSEARCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception:
        return None
    return url


def run_workers(argv: list[str], n: int, env: dict[str, str], cwd: Path | None = None) -> list[subprocess.Popen]:
    """Run ``n`` copies of the worker command ``argv`` at once until they exit; each must exit 0."""
    procs = [subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    try:
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    return procs


@pytest.mark.postgres
def test_three_workers_on_postgresql_train_exactly_n_trials(tmp_path):
    url = _postgres_url()
    if url is None:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432 (database 'test'); set STSEARCH_TEST_POSTGRES")
    name = f"workers-{uuid.uuid4().hex[:8]}"
    results = tmp_path / "results"
    space = SearchSpace.load(_space(tmp_path))
    SearchRun.create(space, name=name, storage=url, results_dir=results, trials=7)
    env = _env(tmp_path)
    run_workers(_cli("worker", "--name", name, "--storage", url, "--results-dir", str(results), "--num-threads", "1"),
                3, env)
    study = optuna.load_study(study_name=name, storage=url)
    _assert_exactly(study, 7)
    owners = {t.user_attrs["owner"] for t in study.trials if t.user_attrs.get("status") == "completed"}
    assert len(owners) >= 2, "the workers should share the trials"
    optuna.delete_study(study_name=name, storage=url)


# --------------------------------------------------------------- infeasible
def test_infeasible_configurations_never_reach_training(tmp_path, monkeypatch):
    import stsearch.search.local as local

    trained: list[int] = []
    real = local.run_trial

    def counting(spec, **kw):
        trained.append(1)
        return real(spec, **kw)

    monkeypatch.setattr(local, "run_trial", counting)
    # screening proposes only feasible plans: the plain TPE sampler exercises the infeasible path
    space = SearchSpace.load(_space(tmp_path, min_cf=10.0, seed=3, screen=False))
    run = SearchRun.create(space, name="infeasible", results_dir=tmp_path / "results", trials=7)
    local.run_local(run)
    trials = run.study.get_trials(deepcopy=False)
    infeasible = [t for t in trials if t.user_attrs.get("status") == "infeasible"]
    trained_trials = [t for t in trials if t.user_attrs.get("status") in ("completed", "pruned", "failed")]
    assert len(trained) == len(trained_trials) == 7
    assert infeasible, "a CF >= 10 constraint on this space rejects some sampled configurations"
    for t in infeasible:
        assert t.user_attrs["compression"] < 10.0 and t.user_attrs["constraints"][0] > 0
        assert "artifact_dir" not in t.user_attrs
        assert not (run.folder / "trials" / f"{t.number:05d}").exists()
    for t in trained_trials:  # baselines are always trained; sampled ones satisfy the constraint
        assert t.user_attrs.get("baseline") or t.user_attrs["compression"] >= 10.0


def test_existing_study_name_is_refused_and_unknown_resume_is_a_clear_error(tmp_path):
    env = _env(tmp_path)
    results = tmp_path / "results"
    space = SearchSpace.load(_space(tmp_path))
    SearchRun.create(space, name="dup", results_dir=results, trials=1)
    out = subprocess.run(_cli("search", "--space", str(_space(tmp_path)), "--name", "dup", "--results-dir", str(results)),
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "already exists" in out.stderr and "stsearch resume dup" in out.stderr
    out = subprocess.run(_cli("resume", "nope", "--results-dir", str(results)), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no study 'nope'" in out.stderr and out.stderr.count("\n") == 1


def test_sequential_search_repeats_exactly(tmp_path):
    from stsearch.search.local import run_local

    space = SearchSpace.load(_space(tmp_path, seed=5))
    runs = []
    for name in ("rep-a", "rep-b"):
        run = SearchRun.create(space, name=name, results_dir=tmp_path / "results", trials=4)
        run_local(run)
        runs.append([(t.params, t.values, t.user_attrs.get("status")) for t in run.study.get_trials(deepcopy=False)])
    assert runs[0] == runs[1]


def test_asha_stopped_trials_are_pruned_with_their_budget_and_kept_off_the_front(tmp_path, ray_tmp):
    from stsearch.results import pareto_table

    env = _env(tmp_path, ray_tmp)
    path = tmp_path / "asha.yaml"
    path.write_text((TINY_SPACE % {"min_cf": 1.0, "seed": 4, "sampler_extra": ""}).replace("epochs: 1,", "epochs: 3,"))
    results = tmp_path / "results"
    out = subprocess.run(
        _cli("search", "--space", str(path), "--trials", "8", "--name", "asha", "--scheduler", "asha",
             "--num-cpus", "2", "--results-dir", str(results), "--no-progress"),
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = _study(results, "asha")
    _assert_exactly(study, 8)
    pruned = [t for t in study.trials if t.user_attrs.get("status") == "pruned"]
    assert pruned, "ASHA (grace 1 epoch, reduction 3) stops some of 8 trials"
    for t in pruned:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["budget_fraction"] < 1 and t.user_attrs["full_budget"] is False
        assert t.user_attrs["epochs_done"] < 3
    front = set(pareto_table(study)["number"])
    assert not front & {t.number for t in pruned}
