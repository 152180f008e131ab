"""The metric registry: one table for the schema, the study, the frame, the front and the plots; a
metric registered from user code is an objective like the built-in ones."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

from stsearch.metrics import Metric, get_metric, is_analytic, list_metrics, register_metric
from stsearch.results.frame import DEFAULT_DIRECTIONS, OBJECTIVE_ATTRS
from stsearch.space.schema import ANALYTIC_METRICS, OBJECTIVES


def test_builtin_metrics_and_the_tables_that_read_them():
    assert list_metrics()[:5] == ["accuracy", "compression", "macs", "latency_ms", "params"]
    assert get_metric("accuracy").key == "val_acc" and OBJECTIVE_ATTRS["accuracy"] == "val_acc"
    assert dict(OBJECTIVES) == dict(DEFAULT_DIRECTIONS)
    assert set(ANALYTIC_METRICS) == {"compression", "macs", "params"} and is_analytic("macs")
    assert not is_analytic("latency_ms") and not is_analytic("nope")
    with pytest.raises(ValueError, match="unknown metric 'nope'; known: accuracy"):
        get_metric("nope")
    with pytest.raises(ValueError, match="only stsearch's own metrics are analytic"):
        register_metric(Metric("flops2", "minimize", analytic=True))
    with pytest.raises(ValueError, match="already registered"):
        register_metric(Metric("accuracy", "minimize"))


PLUGIN = '''
import torch
from torch.utils.data import DataLoader
from stsearch.metrics import Metric, register_metric

register_metric(Metric("balanced", "maximize", label="Balanced accuracy"), replace=True)


def fit(model, train_dataset, val_dataset, context):
    model.eval()
    preds, labels = [], []
    with torch.no_grad():
        for x, y in DataLoader(val_dataset, batch_size=512):
            preds.append(model(x).argmax(1))
            labels.append(y)
    p, y = torch.cat(preds), torch.cat(labels)
    recalls = [(p[y == c] == c).float().mean().item() for c in y.unique()]
    context.report(1, {"val_acc": (p == y).float().mean().item()})
    return {"accuracy": (p == y).float().mean().item(), "balanced": sum(recalls) / len(recalls)}
'''

SPACE = """
name: balanced
model: resnet8_digits
dataset: digits
plugins: [balancedplug]
trainer: balancedplug:fit
layers:
  - match: "layer*.conv*"
    share: true
    families: [tt, stt]
    ranks: [2, 4]
    t: [2]
objectives: [balanced, compression]
train: {epochs: 1, batch_size: 128, lr: 0.05, num_threads: 1}
sampler: {name: random, seed: 0}
trials: 2
"""


@pytest.mark.slow
def test_a_user_metric_from_a_plugin_is_an_objective_end_to_end(tmp_path):
    (tmp_path / "balancedplug.py").write_text(PLUGIN)
    (tmp_path / "space.yaml").write_text(SPACE)
    results = tmp_path / "results"
    out = subprocess.run([sys.executable, "-m", "stsearch", "search", "--space", "space.yaml", "--dispatch", "local",
                          "--results-dir", str(results), "--no-progress"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="balanced", storage=f"sqlite:///{results / 'balanced' / 'study.db'}")
    assert study.metric_names == ["balanced", "compression"]
    for t in study.trials:
        metrics = json.loads((results / "balanced" / "trials" / f"{t.number:05d}" / "metrics.json").read_text())
        assert t.values[0] == pytest.approx(metrics["trainer_metrics"]["balanced"]) == t.user_attrs["balanced"]
    pareto = subprocess.run([sys.executable, "-m", "stsearch", "pareto", "balanced", "--results-dir", str(results)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert pareto.returncode == 0 and "balanced" in pareto.stdout.splitlines()[0], pareto.stderr[-2000:]
