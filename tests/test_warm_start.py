"""Warm-start studies (``pretrained: train``): the study trains its dense model once, as trial 0, and every
other trial starts from the decomposition of that checkpoint: locally, with two ``stsearch worker``
processes sharing the study, and after a failed dense training, on resume."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from stsearch.search.run import SearchRun
from stsearch.space import SearchSpace, SpaceError

from .test_search import _cli, _env, ray_tmp, run_workers  # noqa: F401  (ray_tmp: a fixture)
from .test_user_models import cli

WARM_SPACE = """
name: warm
model: resnet8_digits
dataset: digits
pretrained: train
pretrained_train: {epochs: 3}
layers:
  - match: "layer*.conv*"
    share: true
    families: [tt, stt, tucker]
    ranks: [4, 8]
    t: [2]
    n_modes: [3]
objectives: [accuracy, compression]
train: {epochs: 0.5, batch_size: 64, lr: 0.05, num_threads: 1}
sampler: {name: random, seed: 0}
trials: %(trials)d
"""


def _warm(folder: Path, trials: int = 3, extra: str = "") -> Path:
    path = folder / "warm.yaml"
    path.write_text(WARM_SPACE % {"trials": trials} + extra)
    return path


def _check_warm(study: optuna.Study, trained: int) -> None:
    """Trial 0 is the dense model, trained once; every other trained trial decomposed its checkpoint."""
    done = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("status") == "completed"]
    assert len(done) == trained, [(t.number, t.state, t.user_attrs.get("status")) for t in study.trials]
    dense = [t for t in done if t.user_attrs.get("pretrain")]
    assert len(dense) == 1 and dense[0].user_attrs["family"] == "dense"
    assert dense[0].values[1] == pytest.approx(1.0)  # compression
    checkpoint = Path(dense[0].user_attrs["artifact_dir"]) / "model.safetensors"
    assert checkpoint.is_file()
    dense_spec = json.loads((Path(dense[0].user_attrs["artifact_dir"]) / "trial.json").read_text())
    assert dense_spec["train"]["epochs"] == 3 and dense_spec["pretrained"] is None
    for t in done:
        if t is dense[0]:
            continue
        spec = json.loads((Path(t.user_attrs["artifact_dir"]) / "trial.json").read_text())
        assert (spec["pretrained"], spec["init"], spec["train"]["epochs"]) == (str(checkpoint), "decompose", 0.5)
        assert t.datetime_start >= dense[0].datetime_complete  # none started before the checkpoint existed


def test_space_keys(tmp_path):
    space = SearchSpace.load(_warm(tmp_path))
    assert (space.pretrained, space.init, space.pretrained_train) == ("train", "decompose", {"epochs": 3})
    again = SearchSpace.from_dict(space.to_dict())
    assert (again.pretrained, again.init, again.pretrained_train) == ("train", "decompose", {"epochs": 3})
    bad = tmp_path / "bad.yaml"
    bad.write_text((tmp_path / "warm.yaml").read_text().replace("pretrained: train\n", ""))
    with pytest.raises(SpaceError, match=r"pretrained_train: it sets how the study trains its dense model; add "
                                         r"pretrained: train"):
        SearchSpace.load(bad)
    bad.write_text((tmp_path / "warm.yaml").read_text().replace("{epochs: 3}", "{epochz: 3}"))
    with pytest.raises(SpaceError, match=r":6: pretrained_train: .*epochz"):
        SearchSpace.load(bad)


@pytest.mark.slow
def test_local_search_trains_the_dense_model_first(tmp_path):
    results = tmp_path / "results"
    out = cli("search", "--space", str(_warm(tmp_path)), "--dispatch", "local", "--results-dir", str(results),
              "--no-progress", cwd=tmp_path)
    assert out.returncode == 0 and "3/3 trained" in out.stdout, out.stderr
    study = optuna.load_study(study_name="warm", storage=f"sqlite:///{results / 'warm' / 'study.db'}")
    _check_warm(study, 3)
    dense = next(t for t in study.trials if t.user_attrs.get("pretrain"))
    assert dense.number == 0 and dense.values[0] > 0.5  # 3 epochs on digits: well above chance (0.1)

    # the per-layer sensitivity of the study's dense model: 6 layers x (tt, stt, tucker) x ranks (4, 8)
    out = cli("sensitivity", "warm", "--results-dir", str(results), "--samples", "64", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    import pandas as pd

    table = pd.read_csv(results / "warm" / "sensitivity.csv")
    assert set(table["family"]) == {"tt", "stt", "tucker"} and table["layer"].nunique() == 6
    assert (table["delta_accuracy"] <= 0.5).all() and "layer1.0.conv1" in out.stdout
    assert (results / "warm" / "sensitivity.png").stat().st_size > 1000
    again = cli("sensitivity", "warm", "--results-dir", str(results), cwd=tmp_path)
    assert again.returncode == 0 and "read " in again.stdout  # cached in the study's folder


@pytest.mark.slow
def test_two_workers_share_one_dense_training(tmp_path):
    """Two workers start together: one trains the dense model, the other waits for it, then both train
    compressed trials from the one checkpoint."""
    journal = f"journal:{tmp_path / 'study.log'}"
    results = tmp_path / "results"
    SearchRun.create(SearchSpace.load(_warm(tmp_path, trials=4)), name="warm", storage=journal, results_dir=results)
    run_workers(_cli("worker", "--name", "warm", "--storage", journal, "--results-dir", str(results),
                     "--num-threads", "1"), 2, _env(tmp_path))
    from stsearch.search.storage import open_storage

    study = optuna.load_study(study_name="warm", storage=open_storage(journal))
    _check_warm(study, 4)
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.slow
def test_ray_dispatch_waits_for_the_dense_trial(tmp_path, ray_tmp):
    """Ray Tune asks for 2 trials at once: the second waits (the searcher answers 'not yet') until the dense
    trial is complete, then every trial starts from its checkpoint."""
    import subprocess

    results = tmp_path / "results"
    out = subprocess.run(_cli("search", "--space", str(_warm(tmp_path)), "--results-dir", str(results),
                              "--num-cpus", "2", "--no-progress"), env=_env(tmp_path, ray_tmp), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0 and "3/3 trained" in out.stdout, out.stderr[-3000:]
    _check_warm(optuna.load_study(study_name="warm", storage=f"sqlite:///{results / 'warm' / 'study.db'}"), 3)


FAILING_TRAINER = '''
import torch


def fit(model, train_ds, val_ds, context):
    if not any("Factorized" in type(m).__name__ for m in model.modules()):
        raise RuntimeError("dense training is broken today")
    x, y = next(iter(torch.utils.data.DataLoader(val_ds, batch_size=len(val_ds))))
    with torch.no_grad():
        return {"accuracy": (model.eval()(x).argmax(1) == y).float().mean().item()}
'''


@pytest.mark.slow
@pytest.mark.parametrize("dispatch", ["local", "ray"])
def test_a_failed_dense_training_stops_the_study_and_resume_retries_it(tmp_path, ray_tmp, dispatch, monkeypatch):
    (tmp_path / "mytrain.py").write_text(textwrap.dedent(FAILING_TRAINER))
    space = _warm(tmp_path, trials=2, extra="trainer: mytrain:fit\n")
    results = tmp_path / "results"
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)  # cli() passes this environment on
    how = ["--dispatch", "local"] if dispatch == "local" else ["--num-cpus", "2"]
    out = cli("search", "--space", str(space), *how, "--results-dir", str(results), "--no-progress", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip().splitlines()[-1]  # after the study's header line
    assert line == ("stsearch: error: the dense pretraining trial 0 of study warm failed (trainer 'mytrain:fit' raised "
                    "RuntimeError: dense training is broken today); fix the cause, then 'stsearch resume warm' "
                    "trains it again first"), out.stderr
    study = optuna.load_study(study_name="warm", storage=f"sqlite:///{results / 'warm' / 'study.db'}")
    assert [t.user_attrs.get("status") for t in study.trials if t.state != TrialState.WAITING] == ["failed"]

    (tmp_path / "mytrain.py").write_text(textwrap.dedent(FAILING_TRAINER).replace("raise RuntimeError", "print"))
    out = cli("resume", "warm", "--results-dir", str(results), *how, "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name="warm", storage=f"sqlite:///{results / 'warm' / 'study.db'}")
    dense = [t for t in study.trials if t.user_attrs.get("pretrain")]
    assert [t.user_attrs.get("status") for t in dense] == ["failed", "completed"]
    assert dense[1].user_attrs.get("retry_of") == 0
    _check_warm(study, 2)
