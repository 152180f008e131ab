"""One trial end to end on the embedded data: accuracy, metrics, failure, resume, CLI."""

import json
import subprocess
import sys
import time

import pytest
import torch

from stsearch.plan import LayerPlan, NetworkPlan
from stsearch.summary import summarize
from stsearch.trial import METRICS_FILE, TRIAL_FILE, WEIGHTS_FILE, TrialSpec, run_trial

STT = NetworkPlan.uniform(["layer*.conv*"], LayerPlan("stt", rank=8, t=2))
TRAIN = {"epochs": 1, "batch_size": 64, "lr": 0.05, "num_threads": 1}


def _spec(plan=STT, **train):
    return TrialSpec(model="resnet8_digits", dataset="digits", plan=plan.to_dict(), train={**TRAIN, **train})


def test_one_epoch_trial_on_embedded_data_beats_chance(tmp_path):
    start = time.perf_counter()
    m = run_trial(_spec(), workdir=tmp_path, progress=False)
    assert time.perf_counter() - start < 60
    assert m["status"] == "completed" and m["full_budget"] and m["budget_fraction"] == 1.0
    assert m["val_acc"] > 0.5  # chance is 0.1 on 10 digit classes
    assert m["val_top5"] >= m["val_acc"]
    expected = summarize("resnet8_digits", STT, input_shape=(1, 8, 8))
    assert m["params"] == expected.params and m["compression"] == pytest.approx(expected.compression)
    assert m["compression"] > 10 and m["macs"] > 0 and m["latency_ms"] > 0 and m["wall_seconds"] > 0
    assert m["family"] == "stt" and len(m["history"]) == 1 and "train_loss" in m["history"][0]
    for name in (TRIAL_FILE, WEIGHTS_FILE, METRICS_FILE):
        assert (tmp_path / name).exists()
    assert TrialSpec.load(tmp_path).to_dict() == _spec().to_dict()


def test_non_finite_loss_fails_the_trial_with_a_reason(tmp_path):
    m = run_trial(_spec(lr=1e12, momentum=0.0, weight_decay=0.0), workdir=tmp_path, progress=False)
    assert m["status"] == "failed" and "non-finite" in m["reason"]
    assert not m["full_budget"]
    assert not (tmp_path / WEIGHTS_FILE).exists()
    assert json.loads((tmp_path / METRICS_FILE).read_text())["status"] == "failed"


def test_restarted_trial_resumes_from_its_last_epoch(tmp_path):
    spec = _spec(epochs=3)
    stopped = run_trial(spec, workdir=tmp_path, progress=False, epoch_callback=lambda rec: rec["epoch"] >= 1)
    assert stopped["status"] == "pruned" and stopped["budget_fraction"] < 1 and not stopped["full_budget"]
    resumed = run_trial(spec, workdir=tmp_path, progress=False)
    fresh = run_trial(spec, workdir=tmp_path / "fresh", progress=False)
    assert resumed["status"] == "completed" and resumed["epochs_done"] == 3
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in fresh["history"]]
    assert resumed["val_acc"] == fresh["val_acc"]


def test_bad_trial_specs_are_rejected():
    with pytest.raises(ValueError, match="needs a pretrained dense checkpoint"):
        TrialSpec(model="resnet8_digits", dataset="digits", init="decompose")
    with pytest.raises(ValueError, match="unknown key"):
        TrialSpec.from_dict({"model": "resnet8_digits", "dataset": "digits", "epochz": 3})


def test_train_cli_prints_metrics_json(tmp_path):
    plan = tmp_path / "plan.yaml"
    STT.save(plan)
    out = subprocess.run(
        [sys.executable, "-m", "stsearch", "train", "--model", "resnet8_digits", "--dataset", "digits", "--plan", str(plan),
         "--epochs", "1", "--num-threads", "1", "--out", str(tmp_path / "trial"), "--no-progress", "--tune-forward"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)
    assert metrics["status"] == "completed" and metrics["val_acc"] > 0.3 and metrics["family"] == "stt"
    assert metrics["forward_modes"] and set(metrics["forward_modes"].values()) <= {"dense", "factorized"}
    assert metrics["tune_seconds"] > 0
    assert json.loads((tmp_path / "trial" / "metrics.json").read_text())["forward_modes"] == metrics["forward_modes"]
    diverged = subprocess.run(
        [sys.executable, "-m", "stsearch", "train", "--model", "resnet8_digits", "--dataset", "digits", "--lr", "1e30",
         "--max-steps", "1", "--num-threads", "1", "--out", str(tmp_path / "diverged"), "--no-progress"],
        capture_output=True, text=True, timeout=120)
    assert diverged.returncode == 1, diverged.stderr  # a failed trial; its JSON is strict (no NaN)
    failed = json.loads(diverged.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the printed JSON"))
    assert failed["status"] == "failed" and "training diverged" in failed["reason"] and failed["val_loss"] is None
    bad = subprocess.run([sys.executable, "-m", "stsearch", "train", "--model", "resnet8_digits", "--dataset", "digits",
                          "--epochs", "-1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("stsearch: error:") and bad.stderr.count("\n") == 1


def test_warm_start_from_pretrained_dense_checkpoint_and_distillation(tmp_path):
    import torch
    from safetensors.torch import save_file

    from stsearch.data import load_dataset, make_loaders
    from stsearch.train import evaluate
    from stsearch.trial import WEIGHTS_FILE, build_model

    dense_dir = tmp_path / "dense"
    dense = run_trial(_spec(NetworkPlan(), epochs=3), workdir=dense_dir, progress=False)
    assert dense["val_acc"] > 0.8
    # A near-full-rank Tucker warm start keeps the dense network's function before any training.
    plan = NetworkPlan.uniform(["layer*.conv*"], LayerPlan("tucker", rank=64))
    spec = TrialSpec(model="resnet8_digits", dataset="digits", plan=plan.to_dict(), train={**TRAIN, "distill_alpha": 0.5},
                     init="decompose", pretrained=str(dense_dir / WEIGHTS_FILE))
    _, val, info = load_dataset("digits")
    model, teacher = build_model(spec, num_classes=info.num_classes)
    _, loader = make_loaders(val, val, 256)
    before = evaluate(model.eval(), loader, torch.device("cpu"))["acc"]
    assert before == pytest.approx(dense["val_acc"], abs=0.01)
    assert teacher is not None
    # ... and a whole trial with the teacher for distillation runs
    m = run_trial(spec, workdir=tmp_path / "kd", progress=False)
    assert m["status"] == "completed" and m["val_acc"] > 0.8
    save_file({"x": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    bad = TrialSpec(**{**spec.to_dict(), "pretrained": str(tmp_path / "bad.safetensors")})
    with pytest.raises(ValueError, match="does not fit the dense resnet8_digits"):
        build_model(bad, num_classes=10)


def test_latency_is_measured_with_the_trials_thread_count(tmp_path, monkeypatch):
    """A trial given 1 thread is timed on 1 thread, not on the process default (oversubscribed
    when trials share a machine); the default is restored afterwards."""
    import stsearch.trial as trial_module

    seen = {}

    def fake_latency(model, input_shape, **kwargs):
        seen["threads"] = torch.get_num_threads()
        return {"ms_min": 1.0, "ms_median": 1.0}

    monkeypatch.setattr(trial_module, "measure_latency", fake_latency)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_trial(_spec(epochs=0.1, num_threads=1), workdir=tmp_path, progress=False)
        assert seen["threads"] == 1 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_latency_is_measured_on_the_model_as_exported(tmp_path, monkeypatch):
    """Dense-mode layers are folded (as in the exported program); factor-by-factor layers stay."""
    import stsearch.trial as trial_module
    from stsearch.layers import FactorizedBase

    seen = {}

    def fake_latency(model, input_shape, **kwargs):
        seen["layers"] = [m.resolved_mode() for m in model.modules() if isinstance(m, FactorizedBase)]
        seen["convs"] = sum(type(m).__name__ == "Conv2d" for m in model.modules())
        return {"ms_min": 1.0, "ms_median": 1.5}

    monkeypatch.setattr(trial_module, "measure_latency", fake_latency)
    plan = NetworkPlan.from_dict({"layers": {"layer1.*": {"family": "stt", "rank": 8, "t": 2, "forward": "dense"},
                                             "layer2.*": {"family": "stt", "rank": 8, "t": 2, "forward": "factorized"}}})
    m = run_trial(_spec(plan, epochs=0.1), workdir=tmp_path, progress=False)
    assert m["latency_ms"] == 1.0
    assert seen["layers"] and set(seen["layers"]) == {"factorized"}  # layer2's convs, not folded
    assert seen["convs"] >= 3  # the stem and layer1's two convs, folded
