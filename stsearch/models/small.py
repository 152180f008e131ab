"""Small CIFAR-style ResNets for the offline data sets (8x8 digits, 28x28 MNIST).

Same layout and module paths as :mod:`stsearch.models.resnet_cifar`:
``conv1``, ``layer{1,2,3}.{i}.conv1|conv2|shortcut``, ``fc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .registry import register_model
from .resnet_cifar import CifarResNet, ShortcutKind

__all__ = ["small_resnet"]


def small_resnet(
    num_classes: int = 10,
    in_channels: int = 1,
    widths: Sequence[int] = (16, 32, 64),
    blocks_per_stage: int = 1,
    strides: Sequence[int] = (1, 2, 2),
    shortcut: ShortcutKind = "pad",
) -> CifarResNet:
    """A ResNet with ``6 * blocks_per_stage + 2`` layers and the given stage widths."""
    if blocks_per_stage < 1:
        raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
    n = blocks_per_stage
    return CifarResNet(
        (n, n, n),
        widths=tuple(widths),
        strides=tuple(strides),
        num_classes=num_classes,
        in_channels=in_channels,
        shortcut=shortcut,
    )


@register_model("resnet8_digits", input_shape=(1, 8, 8), num_classes=10)
def resnet8_digits(
    num_classes: int = 10, in_channels: int = 1, **kwargs: Any
) -> CifarResNet:
    """ResNet-8 for 1x8x8 scikit-learn digits (maps 8x8 -> 4x4 -> 2x2)."""
    return small_resnet(num_classes, in_channels, **kwargs)


@register_model("resnet8_mnist", input_shape=(1, 28, 28), num_classes=10)
def resnet8_mnist(
    num_classes: int = 10, in_channels: int = 1, **kwargs: Any
) -> CifarResNet:
    """ResNet-8 for 1x28x28 MNIST (maps 28x28 -> 14x14 -> 7x7)."""
    return small_resnet(num_classes, in_channels, **kwargs)
