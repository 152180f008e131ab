"""Whole-network parameters, MACs and compression factor of a plan, without building weights."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from .compress import LayerGeometry, factorizable_layers, layer_geometries, layer_spec, resolve_plan
from .layers.costs import LayerCost, layer_cost
from .layers.layout import Layout
from .plan import LayerPlan, NetworkPlan
from .tensors.spec import FactorSpec

__all__ = ["NetworkSummary", "summarize", "meta_model", "planned_layer_cost"]


@dataclass
class NetworkSummary:
    """Per-layer table and totals. MACs are per sample at inference."""

    table: pd.DataFrame
    dense_params: int
    params: int
    dense_macs: int
    macs: int

    @property
    def compression(self) -> float:
        """Dense parameters of the whole network / compressed parameters (BN and dense layers counted)."""
        return self.dense_params / self.params

    @property
    def macs_ratio(self) -> float:
        return self.dense_macs / self.macs

    def totals(self) -> dict[str, Any]:
        return {
            "dense_params": self.dense_params,
            "params": self.params,
            "compression": self.compression,
            "dense_macs": self.dense_macs,
            "macs": self.macs,
            "macs_ratio": self.macs_ratio,
        }

    def format(self) -> str:
        """A plain-text table with a totals line."""
        cols = ["layer", "family", "ranks", "t", "in_modes", "out_modes", "mode", "dense_params", "params", "cf", "macs"]
        body = self.table[cols].to_string(index=False)
        tot = self.totals()
        foot = (
            f"total params {tot['params']:,} (dense {tot['dense_params']:,}) -> CF {tot['compression']:.2f}x; "
            f"MACs/sample {tot['macs']:,} (dense {tot['dense_macs']:,}) -> {tot['macs_ratio']:.2f}x fewer"
        )
        return body + "\n" + foot


def planned_layer_cost(
    geom: LayerGeometry, plan: LayerPlan, batch_hint: int
) -> tuple[Layout, FactorSpec, LayerCost, str]:
    """Layout, spec, cost and forward mode (``auto`` resolved at ``batch_hint``) of a non-dense layer plan."""
    layout, spec = layer_spec(geom, plan)
    cost = layer_cost(layout, spec, geom.p_in, geom.p_out)
    mode = plan.forward if plan.forward != "auto" else cost.choose(batch_hint)
    return layout, spec, cost, mode


def meta_model(name: str, **kwargs: Any) -> nn.Module:
    """The model a reference names (see :mod:`stsearch.models.reference`) on the meta device (shapes only)."""
    from .models.reference import meta_model as build_meta

    return build_meta(name, kwargs)


def summarize(
    model: nn.Module | str,
    plan: NetworkPlan | Mapping[str, Any] | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    **model_kwargs: Any,
) -> NetworkSummary:
    """Analytic costs of ``plan`` applied to ``model`` (a module or a registered name).

    Only shapes are used: the model is run on the meta device. Parameters of
    layers outside the plan (BN, first conv, classifier...) are counted as they are.
    """
    if isinstance(model, str):
        from .models.reference import registered_input_shape

        input_shape = input_shape or registered_input_shape(model)
        model = meta_model(model, **model_kwargs)
    if input_shape is None:
        raise ValueError("summarize needs input_shape=(C, H, W) when given a module instead of a model name")
    net = NetworkPlan() if plan is None else (plan if isinstance(plan, NetworkPlan) else NetworkPlan.from_dict(plan))
    geoms = layer_geometries(model, input_shape)
    plans = resolve_plan(net, list(geoms))
    layer_mods = factorizable_layers(model)

    total_dense = sum(p.numel() for p in model.parameters())
    total = total_dense
    rows = []
    dense_macs = macs = 0
    for name, g in geoms.items():
        bias = getattr(layer_mods[name], "bias", None)
        lp = plans.get(name)
        d_macs = g.dense_params * g.p_out
        dense_macs += d_macs
        row: dict[str, Any] = {"layer": name, "kind": g.kind, "c_in": g.c_in, "c_out": g.c_out,
                               "kernel": f"{g.kernel[0]}x{g.kernel[1]}", "dense_params": g.dense_params}
        if lp is None or lp.is_dense:
            row.update(family="dense", ranks="", t=1, in_modes="", out_modes="", mode="dense",
                       params=g.dense_params, cf=1.0, macs=d_macs)
            macs += d_macs
        else:
            layout, spec, cost, mode = planned_layer_cost(g, lp, net.batch_hint)
            row.update(family=spec.family, ranks=_fmt(spec.ranks), t=spec.t,
                       in_modes=_fmt(layout.in_modes), out_modes=_fmt(layout.out_modes), mode=mode,
                       params=cost.params, cf=g.dense_params / cost.params, macs=cost.macs(mode))
            total += cost.params - g.dense_params
            macs += cost.macs(mode)
        row["bias"] = 0 if bias is None else bias.numel()
        rows.append(row)
    table = pd.DataFrame(rows)
    return NetworkSummary(table=table, dense_params=total_dense, params=total, dense_macs=dense_macs, macs=macs)


def _fmt(values: tuple[Any, ...]) -> str:
    vals = ["-" if v is None else str(v) for v in values]
    if len(set(vals)) == 1 and len(vals) > 1:
        return f"{vals[0]}x{len(vals)}"
    return "·".join(vals)
