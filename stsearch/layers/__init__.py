"""Factorized layers: tensorization layouts, contractions, costs and the modules."""

from .costs import LayerCost, layer_cost
from .factorized import FactorizedConv2d, FactorizedLinear
from .layout import PAPER_SPLITS, Layout, default_split, factorizations

__all__ = [
    "FactorizedConv2d", "FactorizedLinear", "Layout", "LayerCost", "layer_cost",
    "PAPER_SPLITS", "default_split", "factorizations",
]
