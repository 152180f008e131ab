"""Model zoo: CIFAR ResNets, Wide ResNets and small ResNets, created by name.

Every convolution is a plain ``nn.Conv2d`` and every classifier a plain
``nn.Linear``, each at a stable dotted path (``conv1``, ``layer1.0.conv1``,
``layer2.0.shortcut``, ``fc``, ...) usable with ``model.get_submodule``.
"""

from __future__ import annotations

from . import resnet_cifar, small, wrn  # noqa: F401  (importing registers the models)
from .registry import ModelInfo, create_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]
