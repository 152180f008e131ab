"""Wide ResNets (Zagoruyko & Komodakis, 2016) for CIFAR, pre-activation blocks.

Module paths: ``conv1`` (stem), ``layer{1,2,3}.{i}.bn1|conv1|bn2|conv2`` and
``layer{s}.{i}.shortcut`` (1x1 ``nn.Conv2d``, only where the shape changes),
then ``bn_final`` and ``fc``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model
from .resnet_cifar import init_weights

__all__ = ["WideBasicBlock", "WideResNet", "wide_resnet"]


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-(dropout)-conv3x3, plus identity or 1x1-conv shortcut."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut: nn.Conv2d | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv1(act)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        # As in the reference implementation, a projection sees the activated input.
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(nn.Module):
    """WRN-depth-k: stem conv, three stages of wide blocks, BN-ReLU, pool, linear."""

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        c = widths[0]
        stages = []
        for width, stride in zip(widths[1:], (1, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(WideBasicBlock(c, width, stride if i == 0 else 1, dropout))
                c = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn_final = nn.BatchNorm2d(c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = F.relu(self.bn_final(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def wide_resnet(
    depth: int,
    widen_factor: int,
    num_classes: int = 10,
    in_channels: int = 3,
    dropout: float = 0.0,
) -> WideResNet:
    """WRN-``depth``-``widen_factor`` for 32x32 inputs."""
    return WideResNet(depth, widen_factor, num_classes, in_channels, dropout)


@register_model("wrn16_4", input_shape=(3, 32, 32), num_classes=10)
def wrn16_4(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> WideResNet:
    """WRN-16-4 for CIFAR (2.7M parameters)."""
    return wide_resnet(16, 4, num_classes, in_channels, **kwargs)


@register_model("wrn28_2", input_shape=(3, 32, 32), num_classes=10)
def wrn28_2(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> WideResNet:
    """WRN-28-2 for CIFAR (1.5M parameters)."""
    return wide_resnet(28, 2, num_classes, in_channels, **kwargs)


@register_model("wrn28_10", input_shape=(3, 32, 32), num_classes=10)
def wrn28_10(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> WideResNet:
    """WRN-28-10 for CIFAR (36.5M parameters)."""
    return wide_resnet(28, 10, num_classes, in_channels, **kwargs)
