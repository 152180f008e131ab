"""torch.compile of factorized layers and of training runs (TrainConfig.compile)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from stsearch.layers import FactorizedConv2d, FactorizedLinear
from stsearch.plan import LayerPlan
from stsearch.train import TrainConfig, load_checkpoint, train

FAMILIES = ("tucker", "sttu", "tt", "stt", "tr", "str")


@pytest.fixture(autouse=True)
def fresh_compiler():
    """Each test compiles new modules: keep old cache entries off torch.compile's recompile limit."""
    torch.compiler.reset()
    yield
    torch.compiler.reset()


def conv(family: str, c_in: int, c_out: int, kernel: int = 3, forward: str = "auto", **kw) -> FactorizedConv2d:
    t = 2 if family.startswith("st") else 1
    layout, spec = LayerPlan(family, rank=4, t=t, forward=forward).resolve(c_out, c_in, (kernel, kernel), name=family)
    return FactorizedConv2d(layout, spec, forward_mode=forward, **kw)


class Block(nn.Module):
    """A 3x3 conv, a strided 1x1 conv and a linear head, all of one family and forward mode."""

    def __init__(self, family: str, forward: str) -> None:
        super().__init__()
        self.a = conv(family, 8, 16, forward=forward, padding=1)
        self.b = conv(family, 16, 16, kernel=1, forward=forward, stride=2)
        t = 2 if family.startswith("st") else 1
        layout, spec = LayerPlan(family, rank=4, t=t, forward=forward).resolve(16, 16, (1, 1), name="head")
        self.head = FactorizedLinear(layout, spec, forward_mode=forward)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))).mean(dim=(2, 3)))


@pytest.mark.parametrize("forward", ["dense", "factorized", "auto"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_and_forward_mode_traces_to_one_graph(family, forward):
    """fullgraph=True raises on any graph break, including in the first pass's MAC-rule choice."""
    torch.manual_seed(0)
    eager = Block(family, forward)
    traced = Block(family, forward)
    traced.load_state_dict(eager.state_dict())
    compiled = torch.compile(traced, backend="eager", fullgraph=True)
    x = torch.randn(4, 8, 6, 6)
    for m in (eager, compiled):
        m(x).square().sum().backward()
    for (name, p), q in zip(eager.named_parameters(), traced.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)
    eager.eval(), compiled.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x))
        torch.testing.assert_close(compiled(x), eager(x))  # the eval-mode weight cache stays out of the graph


class DigitsNet(nn.Module):
    """A small CNN for 8x8 digits with an STT and a TR convolution (about 80 % after one epoch)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.a = conv("stt", 8, 16, padding=1, stride=2)
        self.bn_a = nn.BatchNorm2d(16)
        self.b = conv("tr", 16, 16, padding=1)
        self.bn_b = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.bn_a(self.a(x)))
        x = torch.relu(self.bn_b(self.b(x)))
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def digits() -> tuple[TensorDataset, TensorDataset]:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    tr, va = perm[:1280], perm[1280:1536]  # whole batches: one compiled graph per mode
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[va], y[va])


def test_compiled_training_matches_eager_and_checkpoints_the_plain_module(digits, tmp_path: Path):
    """Inductor on CPU: same losses as eager to rounding; the checkpoint resumes without compile."""
    base = dict(epochs=1, batch_size=64, lr=0.05, device="cpu", num_threads=1)
    torch.manual_seed(0)
    eager_model = DigitsNet()
    compiled_model = DigitsNet()
    compiled_model.load_state_dict(eager_model.state_dict())
    eager = train(eager_model, *digits, TrainConfig(**base), progress=False)
    ckpt = tmp_path / "ckpt"
    compiled = train(compiled_model, *digits, TrainConfig(**base, compile=True), checkpoint_dir=ckpt, progress=False)

    assert compiled.status == eager.status == "completed" and eager.val_acc >= 0.7
    assert compiled.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"], rel=1e-3)
    assert compiled.val_loss == pytest.approx(eager.val_loss, rel=1e-2)
    assert abs(compiled.val_acc - eager.val_acc) <= 2 / 256
    for (name, p), q in zip(eager_model.named_parameters(), compiled_model.parameters()):
        torch.testing.assert_close(q, p, atol=1e-3, rtol=1e-3, msg=name)
    assert isinstance(compiled_model, DigitsNet)  # trained in place, not replaced by a wrapper

    state = load_checkpoint(ckpt / "last.pt")
    assert state["config"]["compile"] is True
    assert state["model"].keys() == compiled_model.state_dict().keys()  # no "_orig_mod." prefix
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "different config; starting fresh" would be a warning
        resumed = train(DigitsNet(), *digits, TrainConfig(**base), checkpoint_dir=ckpt, progress=False)
    assert resumed.status == "completed" and resumed.resumed_from_step == compiled.steps_done == 20


def test_compiled_training_under_the_gpu_defaults_on_cpu(digits):
    """What a CUDA trial does (bf16 autocast, channels_last, tuned forward modes, then compile), on CPU."""
    torch.manual_seed(0)
    res = train(DigitsNet(), *digits, TrainConfig(epochs=2, batch_size=64, lr=0.05, device="cpu", num_threads=1,
                                                  amp=True, channels_last=True, tune_forward=True, compile=True),
                progress=False)
    assert res.status == "completed" and res.amp == "bf16"
    assert res.forward_modes is not None and set(res.forward_modes) == {"a", "b"} and res.tune_seconds > 0
    assert res.val_acc >= 0.8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", [True, "reduce-overhead"])
def test_compiled_cuda_training_with_bf16_channels_last_and_tuned_modes(digits, mode):
    """The GPU defaults (bf16 autocast, channels_last, tune_forward) under compile, CUDA graphs included."""
    torch.manual_seed(0)
    model = DigitsNet()
    res = train(model, *digits, TrainConfig(epochs=2, batch_size=64, lr=0.05, device="cuda", compile=mode),
                progress=False)
    assert res.status == "completed" and res.amp == "bf16" and res.device.startswith("cuda")
    assert res.forward_modes is not None and set(res.forward_modes) == {"a", "b"}
    assert res.val_acc >= 0.8


def test_compile_values_are_validated_with_a_one_line_error():
    for ok in (False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
        assert TrainConfig(compile=ok).compile == ok
    for bad in ("fast", 1, None):
        with pytest.raises(ValueError, match=r"^TrainConfig.compile: got .*; allowed: False, True, 'default'"):
            TrainConfig(compile=bad)
