"""Tests of the training engine (stsearch.train) on scikit-learn's digits."""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import pytest

import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from stsearch.train import (
    TrainConfig,
    evaluate,
    load_checkpoint,
    measure_latency,
    save_checkpoint,
    train,
)

CPU = dict(device="cpu", num_threads=1)  # tiny model: one thread is fastest and robust to load


@pytest.fixture(scope="module")
def digits() -> tuple[TensorDataset, TensorDataset]:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    tr, va = perm[:1400], perm[1400:]
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[va], y[va])


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(dropout),
        )
        self.head = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class NaNModel(TinyCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("nan")


def make_model(seed: int = 0, **kw) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(**kw)


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=64, lr=0.1, **CPU)
    base.update(kw)
    return TrainConfig(**base)


def strip_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ------------------------------------------------------------------- training
def test_learns_digits(digits):
    tr, va = digits
    res = train(make_model(), tr, va, cfg(epochs=3), progress=False)
    assert res.status == "completed" and res.reason is None
    assert res.val_acc >= 0.5
    assert res.val_top5 >= res.val_acc
    assert len(res.history) == 3
    assert set(res.history[0]) >= {"epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                                    "val_top5", "lr", "seconds"}
    assert res.budget_fraction == 1.0 and res.stopped_by == "epochs"
    assert res.epochs_done == 3 and res.steps_done == 3 * math.ceil(1400 / 64)
    assert res.device == "cpu" and res.amp is None
    assert res.to_dict()["status"] == "completed"


def test_deterministic_with_seed(digits):
    tr, va = digits
    m1, m2 = make_model(), make_model()
    r1 = train(m1, tr, va, cfg(seed=3), progress=False)
    r2 = train(m2, tr, va, cfg(seed=3), progress=False)
    assert strip_time(r1.history) == strip_time(r2.history)
    assert_same_state(m1, m2)
    r3 = train(make_model(), tr, va, cfg(seed=4), progress=False)
    assert strip_time(r3.history) != strip_time(r1.history)


@pytest.mark.parametrize("how", ["nan_model", "huge_lr"])
def test_non_finite_loss_fails_cleanly(digits, how):
    tr, va = digits
    if how == "nan_model":
        torch.manual_seed(0)
        model, c = NaNModel(), cfg()
    else:
        model, c = make_model(), cfg(lr=1e12, momentum=0.0, schedule="constant")
    res = train(model, tr, va, c, progress=False)
    assert res.status == "failed"
    assert "non-finite" in res.reason and "epoch 1" in res.reason
    assert res.val_acc is None and res.budget_fraction < 1
    if how == "nan_model":
        assert res.reason.endswith("step 1") and res.steps_done == 1


def test_divergence_in_the_last_step_fails_the_run(digits):
    """The loss check sees each loss before its update: weights that the last step made
    non-finite showed only as NaN logits, which still argmax to a class (chance accuracy)."""
    tr, va = digits
    res = train(make_model(), tr, va, cfg(lr=1e30, max_steps=1, momentum=0.0, schedule="constant"), progress=False)
    assert res.status == "failed" and "training diverged" in res.reason, res.reason
    assert res.val_acc is None and res.val_loss is None
    model = make_model()

    def break_a_weight(rec):  # after the last epoch, as an overflowing last update would
        with torch.no_grad():
            model.head.weight[0, 0] = float("inf")

    res = train(model, tr, va, cfg(epochs=1, eval_every_epoch=False), epoch_callback=break_a_weight, progress=False)
    assert res.status == "failed" and res.reason.startswith("non-finite weights (head.weight)"), res.reason


class NoisyDigits(torch.utils.data.Dataset):
    """Digits with random noise drawn from torch's global RNG, like random crops and flips."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x + 0.1 * torch.randn_like(x), y


def test_random_augmentation_does_not_depend_on_num_workers(digits, tmp_path):
    """Samples draw their randomness from (seed, epoch, index): 0 or 2 loader workers train the
    same weights, and a checkpoint resumes under another num_workers to the same result."""
    tr, va = digits
    noisy = NoisyDigits(tr)
    runs = {}
    for workers in (0, 2):
        runs[workers] = make_model()
        train(runs[workers], noisy, va, cfg(num_workers=workers), progress=False)
    assert_same_state(runs[0], runs[2])
    first = train(make_model(), noisy, va, cfg(num_workers=2), checkpoint_dir=tmp_path, progress=False,
                  epoch_callback=lambda rec: True)  # stopped after epoch 1
    assert first.status == "pruned"
    resumed = make_model()
    res = train(resumed, noisy, va, cfg(num_workers=0), checkpoint_dir=tmp_path, progress=False)
    assert res.resumed_from_step == first.steps_done
    assert_same_state(resumed, runs[0])


def test_out_of_memory_is_a_failed_trial(digits):
    tr, va = digits

    class OOM(TinyCNN):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB\nmore")

    torch.manual_seed(0)
    res = train(OOM(), tr, va, cfg(), progress=False)
    assert res.status == "failed" and "out of memory" in res.reason
    assert "\n" not in res.reason


def test_other_exceptions_propagate(digits):
    tr, va = digits

    class Broken(TinyCNN):
        def forward(self, x):
            raise KeyError("boom")

    with pytest.raises(KeyError):
        train(Broken(), tr, va, cfg(), progress=False)


# --------------------------------------------------------------------- budgets
def test_max_steps_budget(digits):
    tr, va = digits
    res = train(make_model(), tr, va, cfg(epochs=None, max_steps=5), progress=False)
    assert res.status == "completed" and res.steps_done == 5
    assert res.budget_fraction == 1.0 and res.stopped_by == "max_steps"
    assert res.val_acc is not None and len(res.history) == 1
    # steps smaller than epochs wins
    res = train(make_model(), tr, va, cfg(epochs=3, max_steps=30), progress=False)
    assert res.steps_done == 30 and len(res.history) == 2


def test_fractional_epochs(digits):
    tr, va = digits
    res = train(make_model(), tr, va, cfg(epochs=0.5), progress=False)
    spe = math.ceil(1400 / 64)
    assert res.steps_done == math.ceil(spe / 2)
    assert res.epochs_done == pytest.approx(res.steps_done / spe)
    assert res.budget_fraction == 1.0 and res.status == "completed"


def test_time_budget_alone_is_full_budget(digits):
    tr, va = digits
    res = train(make_model(), tr, va, cfg(epochs=None, max_seconds=0.3), progress=False)
    assert res.status == "completed" and res.stopped_by == "max_seconds"
    assert res.budget_fraction == 1.0 and res.steps_done > 0 and res.val_acc is not None


def test_time_cap_before_planned_steps_is_partial(digits):
    tr, va = digits
    res = train(make_model(), tr, va, cfg(epochs=10_000, max_seconds=0.3), progress=False)
    assert res.status == "completed" and res.stopped_by == "max_seconds"
    assert 0 < res.budget_fraction < 1 and "max_seconds" in res.reason
    assert res.val_acc is not None


def test_callback_stop_is_pruned(digits):
    tr, va = digits
    seen = []

    def cb(rec):
        seen.append(rec)
        return rec["epoch"] >= 1

    res = train(make_model(), tr, va, cfg(epochs=3), epoch_callback=cb, progress=False)
    assert res.status == "pruned" and res.stopped_by == "callback"
    assert res.budget_fraction == pytest.approx(1 / 3)
    assert len(seen) == 1 and seen[0]["val_acc"] is not None
    assert res.val_acc == seen[0]["val_acc"]


def test_callback_true_after_last_epoch_is_completed(digits):
    tr, va = digits
    res = train(make_model(), tr, va, cfg(epochs=1), epoch_callback=lambda r: True,
                progress=False)
    assert res.status == "completed" and res.budget_fraction == 1.0


def test_no_eval_every_epoch_still_reports_final(digits):
    tr, va = digits
    res = train(make_model(), tr, va, cfg(eval_every_epoch=False), progress=False)
    assert res.history[0]["val_acc"] is None and res.history[-1]["val_acc"] is not None
    assert res.val_acc == res.history[-1]["val_acc"]


# ----------------------------------------------------------------- checkpoints
def test_resume_matches_uninterrupted(digits, tmp_path: Path):
    tr, va = digits
    c = cfg(epochs=3, warmup_epochs=0.5)
    ref = make_model()
    r_ref = train(ref, tr, va, c, progress=False)

    first = train(make_model(), tr, va, c, checkpoint_dir=tmp_path,
                  epoch_callback=lambda r: r["epoch"] == 1, progress=False)
    assert first.status == "pruned" and first.steps_done == math.ceil(1400 / 64)
    assert (tmp_path / "last.pt").exists()

    resumed = make_model(seed=123)  # different init: must be overwritten by the checkpoint
    r = train(resumed, tr, va, c, checkpoint_dir=tmp_path, progress=False)
    assert r.status == "completed" and r.resumed_from_step == first.steps_done
    assert strip_time(r.history) == strip_time(r_ref.history)
    assert_same_state(resumed, ref)

    # a finished checkpoint resumes to an immediate, identical result
    again = make_model(seed=7)
    r2 = train(again, tr, va, c, checkpoint_dir=tmp_path, progress=False)
    assert r2.status == "completed" and r2.val_acc == r_ref.val_acc
    assert_same_state(again, ref)


def test_resume_after_kill(digits, tmp_path: Path):
    tr, va = digits
    c = cfg(epochs=3)
    ref = make_model()
    train(ref, tr, va, c, progress=False)

    def kill(rec):
        if rec["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(make_model(), tr, va, c, checkpoint_dir=tmp_path, epoch_callback=kill,
              progress=False)
    m = make_model(seed=1)
    r = train(m, tr, va, c, checkpoint_dir=tmp_path, progress=False)
    assert r.resumed_from_step == 2 * math.ceil(1400 / 64)
    assert_same_state(m, ref)


def test_corrupt_checkpoint_starts_fresh(digits, tmp_path: Path):
    tr, va = digits
    (tmp_path / "last.pt").write_bytes(b"this is not a checkpoint")
    with pytest.warns(UserWarning, match="checkpoint"):
        r = train(make_model(), tr, va, cfg(epochs=1), checkpoint_dir=tmp_path, progress=False)
    assert r.status == "completed" and r.resumed_from_step is None
    assert load_checkpoint(tmp_path / "last.pt") is not None


def test_truncated_checkpoint_falls_back_to_previous(digits, tmp_path: Path):
    tr, va = digits
    c = cfg(epochs=3)
    ref = make_model()
    train(ref, tr, va, c, progress=False)
    train(make_model(), tr, va, c, checkpoint_dir=tmp_path,
          epoch_callback=lambda r: r["epoch"] == 2, progress=False)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    m = make_model(seed=5)
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        r = train(m, tr, va, c, checkpoint_dir=tmp_path, progress=False)
    assert r.resumed_from_step == math.ceil(1400 / 64)  # epoch 1 from prev.pt
    assert_same_state(m, ref)


def test_checkpoint_with_other_config_is_not_resumed(digits, tmp_path: Path):
    tr, va = digits
    train(make_model(), tr, va, cfg(epochs=1), checkpoint_dir=tmp_path, progress=False)
    with pytest.warns(UserWarning, match="different config"):
        r = train(make_model(), tr, va, cfg(epochs=1, lr=0.05), checkpoint_dir=tmp_path,
                  progress=False)
    assert r.resumed_from_step is None


def test_save_load_checkpoint_roundtrip(tmp_path: Path):
    state = {"a": torch.arange(3), "h": [{"x": 1.0}], "t": (1, 2)}
    save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["a"], state["a"]) and back["h"] == state["h"]
    assert load_checkpoint(tmp_path / "missing.pt") is None
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp files left


# ------------------------------------------------------------------ KD, metrics
def test_distillation_runs(digits):
    tr, va = digits
    teacher = make_model(seed=9, width=16)
    train(teacher, tr, va, cfg(epochs=1), progress=False)
    teacher.train()
    res = train(make_model(), tr, va, cfg(epochs=1, distill_alpha=0.5, distill_temperature=2.0),
                teacher=teacher, progress=False)
    assert res.status == "completed" and math.isfinite(res.history[0]["train_loss"])
    assert teacher.training  # mode restored
    with pytest.raises(ValueError, match="distill_alpha"):
        train(make_model(), tr, va, cfg(distill_alpha=0.5), progress=False)


def test_evaluate_top5_only_with_5_classes():
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 3, (20,))
    loader = torch.utils.data.DataLoader(TensorDataset(x, y), batch_size=8)
    m = make_model(num_classes=3)
    out = evaluate(m, loader, "cpu")
    assert out["top5"] is None and 0 <= out["acc"] <= 1 and out["loss"] > 0
    out = evaluate(make_model(num_classes=10), loader, "cpu")
    assert out["top5"] is not None and out["top5"] >= out["acc"]


def test_measure_latency():
    m = make_model()
    out = measure_latency(m, (1, 8, 8), batch_size=4, repeats=5)
    assert 0 < out["ms_min"] <= out["ms_median"] <= out["ms_p90"]
    assert out["batch_size"] == 4 and out["device"] == "cpu"
    assert m.training


def test_latency_min_ignores_runs_slowed_by_other_work():
    """Runs held up by a busy machine move the median and p90, not the fastest run."""
    class Busy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls > 2 and self.calls % 3:  # after the warmup, 2 of every 3 runs stall
                time.sleep(0.1)
            return self.lin(x)

    out = measure_latency(Busy(), (4,), warmup=2, repeats=9)
    assert out["ms_min"] < 50 and out["ms_median"] >= 100


# ---------------------------------------------------------------------- config
def test_config_roundtrip_and_validation():
    c = TrainConfig(epochs=2.5, optimizer="adamw", step_milestones=(0.3, 0.6))
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="'lrr'") as e:
        TrainConfig.from_dict({"lrr": 0.1})
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="optimizer.*'sgd', 'adamw'"):
        TrainConfig.from_dict({"optimizer": "adam"})
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="max_steps"):
        TrainConfig(max_steps=0)
    with pytest.raises(ValueError, match="budget"):
        TrainConfig(epochs=None)
    for seed in (-1, 2**32, 2**64):  # torch and NumPy would fail on these mid-run, with their own words
        with pytest.raises(ValueError, match=r"^TrainConfig.seed: got .*; allowed: an int in \[0, 2\*\*32 - 1\]$"):
            TrainConfig(seed=seed)


def test_adamw_and_step_schedule(digits):
    tr, va = digits
    res = train(make_model(), tr, va,
                cfg(optimizer="adamw", lr=3e-3, schedule="step", epochs=2, grad_clip=1.0,
                    label_smoothing=0.1), progress=False)
    assert res.status == "completed"
    assert res.history[-1]["lr"] == pytest.approx(3e-3 * 0.01)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_channels_last(digits):
    tr, va = digits
    res = train(make_model(), tr, va, TrainConfig(epochs=2, batch_size=64, device="cuda"),
                progress=False)
    assert res.status == "completed" and res.amp == "bf16" and res.device.startswith("cuda")
    assert res.val_acc >= 0.3
    assert measure_latency(make_model(), (1, 8, 8), device="cuda")["ms_median"] > 0
