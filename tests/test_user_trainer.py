"""User trainers (``trainer:``) and pretrained dense models (``pretrained`` / ``init`` / ``distill``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from stsearch.space.schema import SearchSpace, SpaceError
from stsearch.trial import TrialSpec, run_trial

TRAINER_MODULE = '''
import json, os
from pathlib import Path

def fit(model, train_ds, val_ds, context):
    stop = False
    for epoch in range(1, 3):
        stop = context.report(epoch, {"val_acc": 0.1 * epoch})
        if stop:
            break
    acc = 0.4 + 0.001 * (context.seed % 97)
    side = Path(os.environ["TRAINER_SIDE"])
    with side.open("a") as fh:
        fh.write(json.dumps({"seed": context.seed, "accuracy": acc}) + "\\n")
    return {"accuracy": acc}

def no_acc(model, train_ds, val_ds, context):
    return {"loss": 1.0}

def boom(model, train_ds, val_ds, context):
    raise RuntimeError("kaboom\\nsecond line")

NOT_CALLABLE = 3
'''

SPACE = """
name: %(name)s
model: resnet8_digits
dataset: digits
python_path: [%(path)s]
trainer: "%(trainer)s"
layers:
  - match: "layer*.conv*"
    share: true
    families: [tt, stt]
    ranks: {low: 2, high: 4, step: 2}
objectives:
  - {name: accuracy, direction: maximize}
  - {name: compression, direction: maximize}
train: {epochs: 1, batch_size: 128, num_threads: 1}
sampler: {name: random, seed: 0}
trials: 2
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "mytrain.py").write_text(TRAINER_MODULE)
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setenv("TRAINER_SIDE", str(tmp_path / "side.jsonl"))
    sys.modules.pop("mytrain", None)
    return code


def _base(code: Path, **extra):
    return {"model": "resnet8_digits", "dataset": "digits", "layers": [{"match": "layer1.*"}],
            "python_path": [str(code)], **extra}


def test_run_trial_with_user_trainer(project: Path, tmp_path: Path) -> None:
    spec = TrialSpec(model="resnet8_digits", dataset="digits", train={"epochs": 1, "device": "cpu"},
                     trainer="mytrain:fit", python_path=[str(project)], measure_latency=False)
    seen = []
    m = run_trial(spec, workdir=tmp_path / "t", progress=False, epoch_callback=lambda r: seen.append(r) and None)
    side = [json.loads(x) for x in (tmp_path / "side.jsonl").read_text().splitlines()]
    assert m["status"] == "completed" and m["val_acc"] == pytest.approx(side[0]["accuracy"])
    assert [r["epoch"] for r in m["history"]] == [1, 2] and len(seen) == 2
    assert m["compression"] > 0 and m["trainer_metrics"] == {"accuracy": side[0]["accuracy"]}
    assert TrialSpec.load(tmp_path / "t").trainer == "mytrain:fit"


def test_raising_trainer_fails_trial(project: Path) -> None:
    spec = TrialSpec(model="resnet8_digits", dataset="digits", train={"epochs": 1, "device": "cpu"},
                     trainer="mytrain:boom", python_path=[str(project)], measure_latency=False)
    m = run_trial(spec, progress=False)
    assert m["status"] == "failed" and "kaboom" in m["reason"] and "\n" not in m["reason"]


def test_old_trial_json_without_trainer() -> None:
    d = TrialSpec(model="resnet8_digits", dataset="digits").to_dict()
    d.pop("trainer")
    assert TrialSpec.from_dict(d).trainer is None


@pytest.mark.parametrize("extra, key, words", [
    ({"trainer": "mytrain:nope"}, "trainer", "nope"),
    ({"trainer": "nomodule_xyz:fit"}, "trainer", "nomodule_xyz"),
    ({"trainer": "mytrain:NOT_CALLABLE"}, "trainer", "callable"),
    ({"init": "decompose"}, "init", "pretrained"),
    ({"distill": {"alpha": 0.5}}, "distill", "pretrained"),
    ({"pretrained": "/no/such/file.pt"}, "pretrained", "does not exist"),
])
def test_bad_training_keys_one_line(project: Path, extra, key, words) -> None:
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_dict(_base(project, **extra))
    msg = str(err.value)
    assert "\n" not in msg and f"{key}:" in msg and words in msg


def _dense_state(tmp_path: Path, epochs: int = 3) -> dict[str, torch.Tensor]:
    from stsearch.data import load_dataset
    from stsearch.models.reference import build_model
    from stsearch.train import TrainConfig, seed_everything, train

    seed_everything(0)
    train_ds, val_ds, info = load_dataset("digits", None, split_seed=0)
    model = build_model("resnet8_digits", {}, num_classes=info.num_classes)
    res = train(model, train_ds, val_ds, TrainConfig(epochs=epochs, batch_size=64, lr=0.05, num_threads=1, device="cpu"),
                progress=False)
    assert res.val_acc > 0.5
    return model.state_dict()


@pytest.mark.slow
def test_pretrained_decompose_and_distill(project: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from stsearch.data import load_dataset
    from stsearch.train import evaluate
    from stsearch.trial import build_model

    state = _dense_state(tmp_path)
    torch.save(state, tmp_path / "dense.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "dense.safetensors"))
    bad = dict(state)
    first = next(iter(bad))
    bad[first] = torch.zeros(3)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_dict(_base(project, pretrained=str(tmp_path / "bad.pt")))
    assert "pretrained:" in str(err.value) and first in str(err.value) and "\n" not in str(err.value)
    for name in ("dense.pt", "dense.safetensors"):
        space = SearchSpace.from_dict(_base(project, pretrained=str(tmp_path / name), init="decompose",
                                            distill={"alpha": 0.3, "temperature": 2}))
        assert space.pretrained == str((tmp_path / name).resolve()) and space.init == "decompose"
        assert space.train["distill_alpha"] == 0.3 and space.train["distill_temperature"] == 2.0
        assert SearchSpace.from_dict(space.to_dict()).pretrained == space.pretrained
    from stsearch.layers import FactorizedConv2d
    from stsearch.plan import LayerPlan, NetworkPlan
    from stsearch.summary import summarize

    plan = NetworkPlan({"layer*.conv*": LayerPlan(family="tucker", rank=24)})  # a mild compression
    assert 1.5 < summarize("resnet8_digits", plan).compression < 8
    _, val_ds, _ = load_dataset("digits", None, split_seed=0)
    loader = torch.utils.data.DataLoader(val_ds, batch_size=256)
    accs = {}
    for init in ("decompose", "random"):
        spec = TrialSpec(model="resnet8_digits", dataset="digits", plan=plan.to_dict(), init=init,
                         pretrained=str(tmp_path / "dense.safetensors"), train={"epochs": 1, "device": "cpu"})
        torch.manual_seed(0)
        model, dense = build_model(spec, num_classes=10)
        assert sum(isinstance(m, FactorizedConv2d) for m in model.modules()) >= 4
        accs[init] = evaluate(model, loader, torch.device("cpu"))["acc"]
    dense_acc = evaluate(dense, loader, torch.device("cpu"))["acc"]
    # before any fine-tuning: the decomposed weights keep the network well above chance (0.1), unlike
    # factors drawn at random on the same plan
    assert accs["decompose"] > max(0.5, dense_acc - 0.3) and accs["random"] < 0.3, (accs, dense_acc)


@pytest.mark.slow
def test_search_with_user_trainer(project: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    space = tmp_path / "s.yaml"
    space.write_text(SPACE % {"name": "ut", "path": str(project), "trainer": "mytrain:fit"})
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-m", "stsearch", "search", "--space", str(space), "--results-dir",
                          str(results), "--no-progress", "--dispatch", "local"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    study = optuna.load_study(study_name="ut", storage=f"sqlite:///{results / 'ut' / 'study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    side = {round(json.loads(x)["accuracy"], 9) for x in (tmp_path / "side.jsonl").read_text().splitlines()}
    assert done and all(round(t.values[0], 9) in side for t in done)
    assert all([r["epoch"] for r in t.user_attrs["history"]] == [1, 2] for t in done)

    space.write_text(SPACE % {"name": "ut2", "path": str(project), "trainer": "mytrain:no_acc"})
    out = subprocess.run([sys.executable, "-m", "stsearch", "search", "--space", str(space), "--results-dir",
                          str(results), "--no-progress", "--dispatch", "local"],
                         capture_output=True, text=True, timeout=300, env=env)
    study = optuna.load_study(study_name="ut2", storage=f"sqlite:///{results / 'ut2' / 'study.db'}")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and all("accuracy" in t.user_attrs.get("reason", "") for t in failed)
