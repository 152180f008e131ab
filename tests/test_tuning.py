"""Tests of the measured forward-mode choice (stsearch.layers.tuning) and its use in training."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

import stsearch.layers.tuning as tuning
from stsearch.layers import FactorizedConv2d, FactorizedLinear, apply_forward_modes, forward_modes, tune_forward_modes
from stsearch.plan import LayerPlan
from stsearch.train import TrainConfig, train


def conv(family: str, c_in: int, c_out: int, rank: int = 4, t: int = 1, forward: str = "auto", **kw) -> FactorizedConv2d:
    layout, spec = LayerPlan(family, rank=rank, t=t, forward=forward).resolve(c_out, c_in, (3, 3), name=family)
    return FactorizedConv2d(layout, spec, padding=1, forward_mode=forward, **kw)


class Net(nn.Module):
    """Factorized convs of three families, a BatchNorm between them, a factorized head."""

    def __init__(self, forward_first: str = "auto") -> None:
        super().__init__()
        self.a = conv("tucker", 4, 8, forward=forward_first)
        self.bn = nn.BatchNorm2d(8)
        self.b = conv("tt", 8, 8, t=1)
        self.c = conv("str", 8, 8, t=2)
        layout, spec = LayerPlan("tt", rank=3).resolve(10, 8, (1, 1), name="head")
        self.head = FactorizedLinear(layout, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c(self.b(torch.relu(self.bn(self.a(x)))))
        return self.head(x.mean(dim=(2, 3)))


def fake_times(times: dict[tuple[str, str], float], calls: list[tuple[str, str]] | None = None):
    """A ``_time_step`` that returns ``times[(layer family, mode)]`` seconds."""

    def step(layer, x, grad, context):
        key = (layer.spec.family, layer.tuned_mode)
        if calls is not None:
            calls.append(key)
        value = times.get(key, 1.0)
        if isinstance(value, BaseException):
            raise value
        return value

    return step


def test_tuning_keeps_outputs_rng_grads_and_bn_stats():
    torch.manual_seed(0)
    net = Net(forward_first="dense")
    x = torch.randn(6, 4, 7, 7)
    before = net(x).detach()
    bn_stats = (net.bn.running_mean.clone(), net.bn.num_batches_tracked.clone())
    rng = torch.get_rng_state()
    timings = tune_forward_modes(net, x, repeats=1)
    assert {t.name for t in timings} == {"b", "c", "head"}  # "a" is fixed to dense
    assert net.a.tuned_mode is None and net.a.resolved_mode() == "dense"
    for t in timings:
        layer = dict(net.named_modules())[t.name]
        assert layer.tuned_mode == t.chosen == layer.resolved_mode()
        assert layer.hparams()["forward"] == "auto"
        assert set(t.ms) == {"dense", "factorized"} and all(v > 0 for v in t.ms.values())
        assert t.ms[t.chosen] == min(t.ms.values())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(net.bn.running_mean, bn_stats[0]) and torch.equal(net.bn.num_batches_tracked, bn_stats[1])
    assert net.training
    torch.testing.assert_close(net(x).detach(), before, rtol=1e-4, atol=1e-5)


def test_inference_tuning_times_forward_passes_without_autograd(monkeypatch):
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(3, 4, 6, 6)
    before = net(x)
    seen: list[bool] = []
    real = tuning._time_step

    def spy(layer, x, grad, context):
        seen.append(grad is None and not x.requires_grad)
        return real(layer, x, grad, context)

    monkeypatch.setattr(tuning, "_time_step", spy)
    timings = tune_forward_modes(net, x, repeats=2, training=False)
    assert seen and all(seen)
    assert {t.name for t in timings} == {"a", "b", "c", "head"} and not net.training
    assert all(p.grad is None for p in net.parameters())
    for t in timings:
        layer = dict(net.named_modules())[t.name]
        assert (layer._cached_weight is not None) == (t.chosen == "dense")  # the cached weight is what inference reuses
    torch.testing.assert_close(net(x), before, rtol=1e-4, atol=1e-5)


def test_each_layer_sees_its_own_input_shape():
    net = nn.Sequential(conv("tr", 3, 8), nn.MaxPool2d(2), conv("tr", 8, 8))
    timings = tune_forward_modes(net, torch.randn(5, 3, 8, 8), repeats=1)
    assert [t.input_shape for t in timings] == [(5, 3, 8, 8), (5, 8, 4, 4)]


def test_faster_mode_wins_over_the_mac_rule(monkeypatch):
    net = Net()
    x = torch.randn(4, 4, 6, 6)
    macs = {name: layer.resolved_mode(*layer.positions_for(shape))
            for name, layer, shape in [("b", net.b, (4, 8, 6, 6)), ("c", net.c, (4, 8, 6, 6))]}
    flip = {"dense": "factorized", "factorized": "dense"}
    times = {("tt", macs["b"]): 5.0, ("tt", flip[macs["b"]]): 1.0,  # b: the MAC choice is slower
             ("str", macs["c"]): 1.0, ("str", flip[macs["c"]]): 5.0}
    monkeypatch.setattr(tuning, "_time_step", fake_times(times))
    by_name = {t.name: t for t in tune_forward_modes(net, x, repeats=2)}
    assert by_name["b"].chosen == flip[macs["b"]] and by_name["b"].mac_choice == macs["b"]
    assert by_name["b"].speedup == pytest.approx(5.0)
    assert by_name["c"].chosen == macs["c"] and by_name["c"].speedup == 1.0
    assert forward_modes(net)["b"] == flip[macs["b"]]


def test_a_clearly_slower_mode_is_not_timed_again(monkeypatch):
    calls: list[tuple[str, str]] = []
    net = nn.Sequential(conv("tt", 4, 4))
    monkeypatch.setattr(tuning, "_time_step", fake_times({("tt", "dense"): 1.0, ("tt", "factorized"): 10.0}, calls))
    (timing,) = tune_forward_modes(net, torch.randn(2, 4, 5, 5), repeats=5, warmup=1)
    assert timing.chosen == "dense"
    assert calls.count(("tt", "dense")) == 6  # warm-up + 5 timed
    assert calls.count(("tt", "factorized")) == 2  # warm-up + 1 timed, then given up


def test_layers_of_equal_geometry_share_one_measurement(monkeypatch):
    calls: list[tuple[str, str]] = []
    net = nn.Sequential(conv("tt", 4, 4), conv("tt", 4, 4), conv("tt", 4, 4, rank=2), nn.MaxPool2d(2), conv("tt", 4, 4))
    monkeypatch.setattr(tuning, "_time_step", fake_times({}, calls))
    timings = tune_forward_modes(net, torch.randn(2, 4, 6, 6), repeats=1, warmup=0)
    assert [t.measured_on for t in timings] == ["0", "0", "2", "4"]  # rank 2 and the 3x3 input differ
    assert len(calls) == 3 * 2
    assert timings[1].chosen == timings[0].chosen == net[1].tuned_mode


def test_out_of_memory_counts_as_infinitely_slow(monkeypatch):
    net = nn.Sequential(conv("tt", 4, 4))
    oom = torch.OutOfMemoryError("fake")
    monkeypatch.setattr(tuning, "_time_step", fake_times({("tt", "factorized"): oom, ("tt", "dense"): 2.0}))
    (timing,) = tune_forward_modes(net, torch.randn(2, 4, 5, 5), repeats=2)
    assert timing.chosen == "dense" and math.isinf(timing.ms["factorized"])


def test_apply_forward_modes_round_trip_and_errors():
    net = Net()
    apply_forward_modes(net, {"b": "factorized", "head": "dense"})
    assert net.b.resolved_mode() == "factorized" and net.head.resolved_mode() == "dense"
    saved = forward_modes(net)
    other = Net()
    apply_forward_modes(other, saved)
    assert forward_modes(other) == saved
    with pytest.raises(ValueError, match="no factorized layer 'nope'"):
        apply_forward_modes(net, {"nope": "dense"})
    with pytest.raises(ValueError, match="allowed: dense, factorized"):
        apply_forward_modes(net, {"b": "auto"})
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        tune_forward_modes(net, torch.randn(2, 4, 5, 5), repeats=0)


def test_tune_forward_config_key():
    assert TrainConfig(tune_forward=True).tune_forward is True
    with pytest.raises(ValueError, match="TrainConfig.tune_forward"):
        TrainConfig(tune_forward="yes")


# ------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def data() -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, 6, 6, generator=g)
    y = torch.randint(0, 10, (96,), generator=g)
    return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])


def test_training_tunes_once_and_a_resume_reuses_the_choice(data, tmp_path: Path, monkeypatch):
    tr, va = data
    c = TrainConfig(epochs=2, batch_size=16, lr=0.01, device="cpu", num_threads=1, tune_forward=True)
    torch.manual_seed(0)
    first = train(Net(), tr, va, c, checkpoint_dir=tmp_path, progress=False,
                  epoch_callback=lambda r: r["epoch"] == 1)
    assert first.status == "pruned"
    assert set(first.forward_modes) == {"a", "b", "c", "head"}
    assert first.tune_seconds is not None and first.tune_seconds > 0

    def must_not_run(*a, **k):
        raise AssertionError("a resumed run re-tuned")

    monkeypatch.setattr("stsearch.train.trainer.tune_forward_modes", must_not_run)
    net = Net()
    again = train(net, tr, va, c, checkpoint_dir=tmp_path, progress=False)
    assert again.status == "completed" and again.resumed_from_step is not None
    assert again.forward_modes == first.forward_modes
    assert {k: v for k, v in forward_modes(net).items()} == first.forward_modes


def test_tuning_is_off_by_default_on_cpu(data, monkeypatch):
    tr, va = data
    monkeypatch.setattr("stsearch.train.trainer.tune_forward_modes",
                        lambda *a, **k: pytest.fail("tuned on CPU without tune_forward=True"))
    c = TrainConfig(epochs=1, batch_size=16, device="cpu", num_threads=1)
    res = train(Net(), tr, va, c, progress=False)
    assert res.status == "completed" and res.forward_modes is None and res.tune_seconds is None


def test_tuned_training_learns_the_same_as_untuned(data):
    """Both modes compute one function: a tuned run follows the untuned one up to rounding."""
    tr, va = data
    runs = []
    for tune in (False, True):
        torch.manual_seed(0)
        net = Net()
        c = TrainConfig(epochs=2, batch_size=16, lr=0.01, device="cpu", num_threads=1, tune_forward=tune)
        runs.append((train(net, tr, va, c, progress=False), net))
    (r0, n0), (r1, n1) = runs
    assert r0.val_loss == pytest.approx(r1.val_loss, rel=1e-3)
    for (k, a), (_, b) in zip(n0.state_dict().items(), n1.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_tunes_by_default_under_amp_and_channels_last(data):
    tr, va = data
    res = train(Net(), tr, va, TrainConfig(epochs=1, batch_size=16, device="cuda"), progress=False)
    assert res.status == "completed" and res.amp == "bf16"
    assert set(res.forward_modes) == {"a", "b", "c", "head"} and res.tune_seconds > 0
