"""Factorized layers: tensorization layouts, contractions, costs and the modules."""

from .costs import LayerCost, layer_cost
from .factorized import FactorizedBase, FactorizedConv2d, FactorizedLinear
from .layout import PAPER_SPLITS, Layout, default_split, factorizations
from .tuning import ModeTiming, apply_forward_modes, forward_modes, tune_forward_modes

__all__ = [
    "FactorizedBase", "FactorizedConv2d", "FactorizedLinear", "ModeTiming", "tune_forward_modes",
    "forward_modes", "apply_forward_modes", "Layout", "LayerCost", "layer_cost",
    "PAPER_SPLITS", "default_split", "factorizations",
]
