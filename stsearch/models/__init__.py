"""Model zoo: CIFAR ResNets, Wide ResNets and small ResNets, created by name; any model by reference
(``torchvision:NAME``, ``package.module:callable``, see :mod:`stsearch.models.reference`).

Every convolution is a plain ``nn.Conv2d`` and every classifier a plain
``nn.Linear``, each at a stable dotted path (``conv1``, ``layer1.0.conv1``,
``layer2.0.shortcut``, ``fc``, ...) usable with ``model.get_submodule``.
"""

from __future__ import annotations

from . import resnet_cifar, small, wrn  # noqa: F401  (importing registers the models)
from .reference import ModelRef, build_model, meta_model, parse_model_ref
from .registry import ModelInfo, create_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "ModelRef", "build_model", "create_model", "list_models", "meta_model", "model_info",
           "parse_model_ref", "register_model"]
