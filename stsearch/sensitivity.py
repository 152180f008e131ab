"""Per-layer sensitivity of a trained dense model, without training: the validation loss and accuracy
with exactly one layer replaced by the decomposition of its weight, for each candidate of the space.

A candidate is one (family, rank, t) of the layer's group, with the group's first number of modes and
the default channel split (the space's baseline convention). Candidates a layer cannot take (a rank
above its bound, a ``t`` dividing no mode) are skipped. The model is evaluated in eval mode on fixed
tensors; each candidate's layer is swapped in and the dense one put back, so the model is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn

from .compress import build_layer
from .plan import DENSE, LayerPlan
from .tensors.spec import ST_FAMILIES

if TYPE_CHECKING:
    from .space.schema import SearchSpace

__all__ = ["layer_candidates", "evaluate", "measure_sensitivity"]

COLUMNS = ["layer", "family", "rank", "t", "n_modes", "params", "dense_params", "loss", "accuracy", "delta_loss",
           "delta_accuracy", "seconds"]


def layer_candidates(space: "SearchSpace") -> list[tuple[str, LayerPlan]]:
    """``(layer, plan)`` for every searchable layer and every (family, rank, t) of its group."""
    out = []
    for layer, group in space.assignment.items():
        for family in group.families:
            if family == DENSE:
                continue
            for rank in group.ranks.values():
                for t in group.t if family in ST_FAMILIES else (1,):
                    out.append((layer, LayerPlan(family, rank=int(rank), t=int(t), n_modes=group.d_choices(family)[0])))
    return out


@torch.no_grad()
def evaluate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` (eval mode) on the tensors."""
    model.eval()
    loss, right = 0.0, 0
    for i in range(0, len(inputs), batch_size):
        out = model(inputs[i:i + batch_size])
        y = labels[i:i + batch_size]
        loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
        right += int((out.argmax(1) == y).sum())
    return loss / len(inputs), right / len(inputs)


def measure_sensitivity(model: nn.Module, candidates: Iterable[tuple[str, LayerPlan]], inputs: torch.Tensor,
                        labels: torch.Tensor, *, batch_size: int = 256,
                        progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per feasible candidate (:data:`COLUMNS`): the loss and accuracy with only that layer
    decomposed, and their change from the dense model's (``delta_* = candidate - dense``)."""
    candidates = list(candidates)
    base_loss, base_acc = evaluate(model, inputs, labels, batch_size)
    rows: list[dict[str, Any]] = []
    for k, (layer, plan) in enumerate(candidates):
        dense = model.get_submodule(layer)
        start = time.perf_counter()
        try:
            new = build_layer(dense, plan, layer, init="decompose")
        except ValueError:  # this layer cannot take the candidate (rank bound, t, split)
            continue
        model.set_submodule(layer, new)
        try:
            loss, acc = evaluate(model, inputs, labels, batch_size)
        finally:
            model.set_submodule(layer, dense)
        rows.append({
            "layer": layer, "family": plan.family, "rank": int(plan.rank), "t": int(plan.t),  # type: ignore[arg-type]
            "n_modes": plan.n_modes, "params": sum(p.numel() for p in new.parameters()),
            "dense_params": sum(p.numel() for p in dense.parameters()), "loss": loss, "accuracy": acc,
            "delta_loss": loss - base_loss, "delta_accuracy": acc - base_acc, "seconds": time.perf_counter() - start,
        })
        if progress is not None:
            progress(k + 1, len(candidates))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.attrs.update(dense_loss=base_loss, dense_accuracy=base_acc, samples=len(inputs))
    return frame
