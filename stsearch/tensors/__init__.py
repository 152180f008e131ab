"""Factorized tensors: specs (shapes and counts), functional contractions, decompositions."""

from .decompose import decompose, refine, relative_error
from .factorized import FactorizedTensor, paths_per_entry
from .functional import effective_factors, expand_st_core, factors_to_tensor, tr_to_tensor, tt_to_tensor, tucker_to_tensor
from .spec import BASE_FAMILY, FAMILIES, ST_FAMILIES, FactorSpec, canonical_family

__all__ = [
    "BASE_FAMILY", "FAMILIES", "ST_FAMILIES", "FactorSpec", "canonical_family",
    "FactorizedTensor", "paths_per_entry",
    "decompose", "refine", "relative_error",
    "effective_factors", "expand_st_core", "factors_to_tensor", "tr_to_tensor", "tt_to_tensor", "tucker_to_tensor",
]
