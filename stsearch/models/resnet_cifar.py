"""CIFAR ResNets (He et al., 2016): ResNet-20/32/56 with option-A shortcuts.

Module paths: ``conv1``/``bn1`` (stem), ``layer{1,2,3}.{i}.conv1|bn1|conv2|bn2``
and ``layer{s}.{i}.shortcut`` (parameter-free padding, or a 1x1 ``nn.Conv2d``
followed by ``layer{s}.{i}.shortcut_bn`` when ``shortcut="conv"``), then ``fc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

__all__ = [
    "ShortcutKind",
    "PadShortcut",
    "BasicBlock",
    "CifarResNet",
    "cifar_resnet",
    "init_weights",
]

ShortcutKind = Literal["pad", "conv"]


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs, unit/zero BatchNorm, Kaiming-normal Linear with zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class PadShortcut(nn.Module):
    """Option-A shortcut: spatial subsampling plus zero channels, no parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"padding shortcut cannot shrink channels ({in_channels} -> {out_channels})"
            )
        self.stride = stride
        extra = out_channels - in_channels
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad != (0, 0):
            x = F.pad(x, (0, 0, 0, 0, *self.pad))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad={self.pad}"


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (post-activation)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        shortcut: ShortcutKind = "pad",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        self.shortcut_bn: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if shortcut == "pad":
                self.shortcut = PadShortcut(in_channels, out_channels, stride)
            elif shortcut == "conv":
                self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
                self.shortcut_bn = nn.BatchNorm2d(out_channels)
            else:
                raise ValueError(f"unknown shortcut kind {shortcut!r}; use 'pad' or 'conv'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut_bn(self.shortcut(x)))


class CifarResNet(nn.Module):
    """Stem conv, three stages of basic blocks, global average pool, linear classifier."""

    def __init__(
        self,
        blocks_per_stage: Sequence[int],
        widths: Sequence[int] = (16, 32, 64),
        strides: Sequence[int] = (1, 2, 2),
        num_classes: int = 10,
        in_channels: int = 3,
        shortcut: ShortcutKind = "pad",
    ) -> None:
        super().__init__()
        if not len(blocks_per_stage) == len(widths) == len(strides) == 3:
            raise ValueError("blocks_per_stage, widths and strides need three entries each")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        c = widths[0]
        stages = []
        for n, width, stride in zip(blocks_per_stage, widths, strides):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(c, width, stride if i == 0 else 1, shortcut))
                c = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def cifar_resnet(
    depth: int, num_classes: int = 10, in_channels: int = 3, **kwargs: Any
) -> CifarResNet:
    """ResNet-``depth`` for CIFAR, ``depth = 6n + 2``; ``kwargs`` go to :class:`CifarResNet`."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
    n = (depth - 2) // 6
    return CifarResNet((n, n, n), num_classes=num_classes, in_channels=in_channels, **kwargs)


@register_model("resnet20", input_shape=(3, 32, 32), num_classes=10)
def resnet20(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """ResNet-20 for CIFAR (0.27M parameters)."""
    return cifar_resnet(20, num_classes, in_channels, **kwargs)


@register_model("resnet32", input_shape=(3, 32, 32), num_classes=10)
def resnet32(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """ResNet-32 for CIFAR (0.46M parameters)."""
    return cifar_resnet(32, num_classes, in_channels, **kwargs)


@register_model("resnet56", input_shape=(3, 32, 32), num_classes=10)
def resnet56(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> CifarResNet:
    """ResNet-56 for CIFAR (0.86M parameters)."""
    return cifar_resnet(56, num_classes, in_channels, **kwargs)
