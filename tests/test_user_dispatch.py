"""A model and a training loop from the user's own module, dispatched the ways a cluster runs them:
Ray trials (the default dispatch) and two ``stsearch worker`` processes on PostgreSQL. Each of those
processes imports the user's module by itself. Then export, ``stsearch.load`` and the exported
program run with torch alone. Real processes, no mocks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import optuna
import pytest

from .test_search import _env, _postgres_url, run_workers
from .test_user_models import USER_MODULE

TRAINER = '''

def fit(model, train_dataset, val_dataset, context):
    """The user's own loop: plain SGD, accuracy on the validation set each epoch."""
    import os
    from torch.utils.data import DataLoader

    opt = torch.optim.SGD(model.parameters(), lr=context.config.lr, momentum=0.9)
    for epoch in range(1, int(context.config.epochs) + 1):
        model.train()
        for x, y in DataLoader(train_dataset, batch_size=context.config.batch_size, shuffle=True):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x.to(context.device)), y.to(context.device)).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            right = sum((model(x).argmax(1) == y).sum().item() for x, y in DataLoader(val_dataset, batch_size=512))
        acc = right / len(val_dataset)
        context.report(epoch, {"val_acc": acc})
    return {"accuracy": acc, "trained_by": os.getpid()}
'''

SPACE = """
name: {name}
model: usermodels:make_net
dataset: digits
trainer: usermodels:fit
layers:
  - types: [Conv2d]
    families: [tt, stt, tucker]
    ranks: [2, 4]
objectives: [accuracy, compression]
train: {{epochs: 2, batch_size: 128, lr: 0.05, num_threads: 1}}
sampler: {{name: random, seed: 1}}
trials: {trials}
"""


def _project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "usermodels.py").write_text(USER_MODULE + TRAINER)
    return folder


def _cli(*args: str, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stsearch", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _export_and_run(name: str, where: list[str], tmp_path: Path, env: dict) -> None:
    """Export the most accurate trial from a folder without the user's module on the path, load it with
    stsearch.load, and run the exported program with torch alone."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    out = tmp_path / f"export-{name}"
    exp = _cli("export", name, *where, "--out", str(out), cwd=elsewhere, env=env)
    assert exp.returncode == 0, exp.stderr[-3000:]
    code = "import stsearch, torch; print(tuple(stsearch.load(%r)(torch.zeros(2, 1, 8, 8)).shape))" % str(out)
    loaded = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                            timeout=300)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "(2, 10)", loaded.stderr[-2000:]
    program = next(out.glob("*.pt2"), None) or next(out.glob("*.pt"))
    code = ("import sys, torch; p = sys.argv[1]; m = torch.export.load(p).module() if p.endswith('.pt2') "
            "else torch.jit.load(p); print(tuple(m(torch.zeros(1, 1, 8, 8)).shape))")
    ran = subprocess.run([sys.executable, "-c", code, str(program)], cwd=elsewhere, env=env, capture_output=True,
                         text=True, timeout=300)
    assert ran.returncode == 0 and ran.stdout.strip() == "(1, 10)", ran.stderr[-2000:]


def _check_trained_by_the_user_loop(study: optuna.Study, n: int) -> set[int]:
    done = [t for t in study.trials if t.user_attrs.get("status") == "completed"]
    assert len(done) == n, [(t.number, t.user_attrs.get("status"), t.user_attrs.get("reason")) for t in study.trials]
    pids = set()
    for t in done:
        metrics = json.loads((Path(t.user_attrs["artifact_dir"]) / "metrics.json").read_text())
        assert metrics["trainer"] == "usermodels:fit" and metrics["val_acc"] == t.values[0]
        assert [h["epoch"] for h in metrics["history"]] == [1, 2]
        pids.add(metrics["trainer_metrics"]["trained_by"])
    return pids


@pytest.mark.slow
def test_user_model_and_trainer_on_ray_trials(tmp_path):
    project = _project(tmp_path)
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = _env(tmp_path, ray_tmp)
    try:
        (project / "space.yaml").write_text(SPACE.format(name="uray", trials=2))
        results = tmp_path / "results"
        out = _cli("search", "--space", "space.yaml", "--results-dir", str(results), "--no-progress", "--num-cpus", "2",
                   cwd=project, env=env)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        study = optuna.load_study(study_name="uray", storage=f"sqlite:///{results / 'uray' / 'study.db'}")
        pids = _check_trained_by_the_user_loop(study, 2)
        assert out.stdout and all(pid != 0 for pid in pids)
        _export_and_run("uray", ["--results-dir", str(results)], tmp_path, env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.postgres
def test_user_model_and_trainer_on_two_postgresql_workers(tmp_path):
    url = _postgres_url() or pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432; set STSEARCH_TEST_POSTGRES")
    project = _project(tmp_path)
    env = _env(tmp_path)
    name = f"uworkers-{uuid.uuid4().hex[:8]}"
    (project / "space.yaml").write_text(SPACE.format(name=name, trials=4))
    results = tmp_path / "results"
    made = _cli("search", "--space", "space.yaml", "--storage", url, "--results-dir", str(results), "--dispatch",
                "none", cwd=project, env=env)
    assert made.returncode == 0, made.stderr[-3000:]
    elsewhere = tmp_path / "workers"  # the workers run where the user's module is not: the study says where it is
    elsewhere.mkdir()
    args = [sys.executable, "-m", "stsearch", "worker", "--name", name, "--storage", url, "--num-threads", "1"]
    procs = run_workers(args, 2, env, cwd=elsewhere)
    study = optuna.load_study(study_name=name, storage=url)
    pids = _check_trained_by_the_user_loop(study, 4)
    assert pids <= {p.pid for p in procs} and len(pids) == 2, "both workers trained with the user's loop"
    _export_and_run(name, ["--storage", url], tmp_path, env)
    optuna.delete_study(study_name=name, storage=url)


SLOW_TRAINER = '''

def fit(model, train_dataset, val_dataset, context):
    """A loop whose accuracy is known in advance: higher for bigger models, reported each epoch."""
    import time

    n = sum(p.numel() for p in model.parameters())
    for epoch in range(1, int(context.config.epochs) + 1):
        time.sleep(1.0)
        acc = min(0.95, 0.2 + n / 200000 + 0.05 * epoch)
        if context.report(epoch, {"val_acc": acc}):
            break
    return {"accuracy": acc}
'''


@pytest.mark.slow
def test_user_trainer_under_asha(tmp_path):
    """``--scheduler asha`` stops a user trainer's trials through its ``context.report``: they are recorded
    as pruned with the epochs they ran, and kept off the front, as the built-in trainer's are."""
    from optuna.trial import TrialState

    from stsearch.results import pareto_table

    project = tmp_path / "project"
    project.mkdir()
    (project / "usermodels.py").write_text(USER_MODULE + SLOW_TRAINER)
    space = SPACE.format(name="uasha", trials=8).replace("epochs: 2,", "epochs: 4,").replace("ranks: [2, 4]",
                                                                                           "ranks: [2, 4, 8]")
    (project / "space.yaml").write_text(space)
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    try:
        results = tmp_path / "results"
        out = _cli("search", "--space", "space.yaml", "--results-dir", str(results), "--no-progress", "--num-cpus", "2",
                   "--scheduler", "asha", cwd=project, env=_env(tmp_path, ray_tmp))
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    study = optuna.load_study(study_name="uasha", storage=f"sqlite:///{results / 'uasha' / 'study.db'}")
    pruned = [t for t in study.trials if t.user_attrs.get("status") == "pruned"]
    done = [t for t in study.trials if t.user_attrs.get("status") == "completed"]
    assert pruned and done and len(pruned) + len(done) == 8, [(t.number, t.user_attrs.get("status")) for t in study.trials]
    for t in pruned:
        assert t.state == TrialState.PRUNED and t.user_attrs["epochs_done"] < 4 and t.user_attrs["full_budget"] is False
    assert not set(pareto_table(study)["number"]) & {t.number for t in pruned}
