"""Analysis of a search study: trials table, Pareto front, hypervolume, plots."""

from .frame import (
    OBJECTIVE_ATTRS,
    load_frame,
    normalize_objectives,
    save_frame,
    study_objectives,
    trials_frame,
)
from .pareto import (
    best_at_constraint,
    default_reference,
    eligible_mask,
    hypervolume,
    hypervolume_history,
    knee_point,
    nondominated_mask,
    pareto_front,
    pareto_table,
)

__all__ = [
    "OBJECTIVE_ATTRS",
    "trials_frame",
    "save_frame",
    "load_frame",
    "study_objectives",
    "normalize_objectives",
    "eligible_mask",
    "nondominated_mask",
    "pareto_front",
    "hypervolume",
    "default_reference",
    "hypervolume_history",
    "knee_point",
    "best_at_constraint",
    "pareto_table",
    "plot_front",
    "plot_hypervolume",
    "plot_layer_heatmap",
    "plot_compare",
]


def __getattr__(name: str):  # plots import matplotlib: load it only when asked for
    if name in ("plot_front", "plot_hypervolume", "plot_layer_heatmap", "plot_compare"):
        from . import plots

        return getattr(plots, name)
    raise AttributeError(name)
