"""Tests for the model zoo in :mod:`stsearch.models`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stsearch.models import create_model, list_models, model_info, register_model
from stsearch.models import registry
from stsearch.models.resnet_cifar import PadShortcut
from stsearch.models.small import small_resnet

EXPECTED_MODELS = [
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet8_digits",
    "resnet8_mnist",
    "wrn16_4",
    "wrn28_10",
    "wrn28_2",
]
BIG = {"wrn28_10"}  # built and run on the meta device only


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build(name: str, **kwargs) -> nn.Module:
    if name in BIG:
        with torch.device("meta"):
            return create_model(name, **kwargs)
    return create_model(name, **kwargs)


# --- registry -------------------------------------------------------------


def test_list_models() -> None:
    shipped = [m for m in list_models() if registry._REGISTRY[m].factory.__module__.startswith("stsearch.")]
    assert shipped == EXPECTED_MODELS  # other tests may register user models in this process


def test_unknown_name_error() -> None:
    with pytest.raises(ValueError) as exc:
        create_model("resnet33")
    msg = str(exc.value)
    assert "\n" not in msg
    assert "'resnet33'" in msg
    for name in EXPECTED_MODELS:
        assert name in msg
    with pytest.raises(ValueError, match="resnet33"):
        model_info("resnet33")


def test_model_info() -> None:
    assert model_info("resnet32").input_shape == (3, 32, 32)
    assert model_info("wrn28_10").input_shape == (3, 32, 32)
    assert model_info("resnet8_digits").input_shape == (1, 8, 8)
    assert model_info("resnet8_mnist").input_shape == (1, 28, 28)
    for name in EXPECTED_MODELS:
        info = model_info(name)
        assert info.name == name
        assert info.num_classes == 10
        assert info.description


def test_register_model_and_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_model("tiny_linear", input_shape=(1, 2, 2), num_classes=3)
    def tiny_linear(num_classes: int = 3, in_channels: int = 1) -> nn.Module:
        """A linear probe."""
        return nn.Sequential(nn.Flatten(), nn.Linear(4 * in_channels, num_classes))

    assert "tiny_linear" in list_models()
    assert model_info("tiny_linear").description == "A linear probe."
    assert create_model("tiny_linear")(torch.zeros(2, 1, 2, 2)).shape == (2, 3)
    register_model("tiny_linear")(tiny_linear)  # the same factory again (a re-imported plugin): allowed
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_linear")(lambda **kw: nn.Linear(1, 1))


# --- parameter counts -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # option A: 1114 + 69504 + 4672 n + 92544 (n - 1) with n = (depth - 2) / 6
        ("resnet20", 269_722),
        ("resnet32", 464_154),
        ("resnet56", 853_018),
        ("wrn16_4", 2_748_890),
        ("wrn28_2", 1_467_610),
        ("wrn28_10", 36_479_194),
        ("resnet8_digits", 75_002),
        ("resnet8_mnist", 75_002),
    ],
)
def test_param_counts(name: str, expected: int) -> None:
    assert n_params(build(name)) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("resnet20", 272_474), ("resnet32", 466_906), ("resnet56", 855_770)],
)
def test_param_counts_option_b(name: str, expected: int) -> None:
    # Two 1x1 conv + BN projections add 16*32 + 64 + 32*64 + 128 = 2752.
    assert n_params(create_model(name, shortcut="conv")) == expected


def test_num_classes_and_in_channels() -> None:
    model = create_model("resnet20", num_classes=100, in_channels=1)
    assert model.fc.out_features == 100
    assert model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 100)


# --- forward --------------------------------------------------------------


@pytest.mark.parametrize("name", EXPECTED_MODELS)
def test_forward_shape(name: str) -> None:
    info = model_info(name)
    model = build(name).eval()
    device = "meta" if name in BIG else "cpu"
    x = torch.randn(2, *info.input_shape, device=device)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, info.num_classes)


@pytest.mark.parametrize("name", ["resnet8_digits", "resnet8_mnist", "resnet20"])
def test_backward(name: str) -> None:
    model = create_model(name).train()
    x = torch.randn(4, *model_info(name).input_shape)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "final_hw"), [("resnet8_digits", (2, 2)), ("resnet8_mnist", (7, 7))]
)
def test_small_feature_maps(name: str, final_hw: tuple[int, int]) -> None:
    model = create_model(name).eval()
    seen: list[torch.Size] = []
    model.layer3.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.randn(1, *model_info(name).input_shape))
    assert seen == [torch.Size([1, 64, *final_hw])]


def test_small_resnet_options() -> None:
    model = small_resnet(num_classes=5, widths=(8, 16, 32), blocks_per_stage=2)
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == 2
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 5)
    shrinking = small_resnet(widths=(32, 16, 8), shortcut="conv")
    assert isinstance(shrinking.get_submodule("layer2.0.shortcut"), nn.Conv2d)
    assert shrinking(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError):
        small_resnet(widths=(32, 16, 8))  # padding shortcut cannot shrink


def test_pad_shortcut() -> None:
    x = torch.randn(2, 16, 8, 8)
    y = PadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_wrn_dropout() -> None:
    model = create_model("wrn16_4", dropout=0.3)
    assert isinstance(model.get_submodule("layer1.0.dropout"), nn.Dropout)


# --- dotted paths ---------------------------------------------------------


def conv_paths(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("name", EXPECTED_MODELS)
def test_layers_are_plain_and_reachable(name: str) -> None:
    model = build(name)
    paths = conv_paths(model)
    assert paths
    for path in paths:
        assert type(model.get_submodule(path)) is nn.Conv2d
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linears == ["fc"]
    assert type(model.get_submodule("fc")) is nn.Linear


def test_resnet_paths() -> None:
    expected = ["conv1"] + [
        f"layer{s}.{i}.conv{c}" for s in (1, 2, 3) for i in range(5) for c in (1, 2)
    ]
    assert conv_paths(create_model("resnet32")) == expected
    assert len(expected) + 1 == 32  # + fc


def test_wrn_paths() -> None:
    model = build("wrn28_10")
    expected = ["conv1"]
    for s in (1, 2, 3):
        for i in range(4):
            expected += [f"layer{s}.{i}.conv1", f"layer{s}.{i}.conv2"]
            if i == 0:
                expected.append(f"layer{s}.{i}.shortcut")
    assert conv_paths(model) == expected
    assert model.get_submodule("layer1.0.shortcut").kernel_size == (1, 1)
    assert model.get_submodule("layer3.3.conv2").out_channels == 640
    assert isinstance(model.get_submodule("bn_final"), nn.BatchNorm2d)


def test_small_paths() -> None:
    expected = ["conv1"] + [f"layer{s}.0.conv{c}" for s in (1, 2, 3) for c in (1, 2)]
    assert conv_paths(create_model("resnet8_digits")) == expected
