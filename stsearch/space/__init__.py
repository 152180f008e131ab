"""Search spaces: YAML description, validation, Optuna sampling and decoding into plans.

``load_space("digits")`` loads ``search_spaces/digits.yaml``; see :mod:`stsearch.space.schema`
for the keys and :mod:`stsearch.space.sampling` for parameter names and decoding rules.
"""

from .samplers import SAMPLERS, make_sampler
from .schema import (
    ANALYTIC_METRICS,
    OBJECTIVES,
    Constraint,
    LayerGroup,
    Objective,
    RankSpec,
    SearchSpace,
    SpaceError,
    load_space,
    space_dir,
)

__all__ = [
    "ANALYTIC_METRICS", "OBJECTIVES", "SAMPLERS", "Constraint", "LayerGroup", "Objective", "RankSpec",
    "SearchSpace", "SpaceError", "load_space", "make_sampler", "space_dir",
]
