"""Every conv/linear layer of a model, with what the search can do with it (``stsearch layers``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..compress import factorizable_layers, layer_geometries
from ..layers.layout import factorizations

__all__ = ["LayerRow", "unfactorizable_reason", "layer_rows"]

#: Module classes listed by ``stsearch layers`` (the factorizable ones and their near relatives).
_LISTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class LayerRow:
    """One listed layer: shape facts, the splits offered and its parameter share, or why it is not searched."""

    path: str
    type: str
    c_in: int
    c_out: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    groups: int
    dilation: tuple[int, ...]
    params: int
    share: float  # of the whole network's parameters
    splits: str  # the channel splits offered (n_modes modes), '' when not factorizable
    reason: str  # why the layer cannot be factorized, '' when it can


def unfactorizable_reason(module: nn.Module) -> str:
    """Why ``module`` (a conv/linear-like layer) cannot be factorized; ``''`` for one that can or isn't listed."""
    if isinstance(module, nn.Linear):
        return ""
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return "transposed convolution: only Conv2d and Linear are factorized"
    if isinstance(module, (nn.Conv1d, nn.Conv3d)):
        return f"{type(module).__name__}: only Conv2d and Linear are factorized"
    if isinstance(module, nn.Conv2d) and module.groups > 1:
        kind = "depthwise" if module.groups == module.in_channels else "grouped"
        return f"{kind} convolution (groups={module.groups}): the families factorize a full weight (groups=1)"
    return ""


def _splits(c_in: int, c_out: int, n_modes: int, lo: int, hi: int) -> str:
    def count(c: int) -> int:
        return len(factorizations(c, n_modes, min_factor=lo, max_factor=hi))

    return f"in {count(c_in)}, out {count(c_out)}"


def layer_rows(model: nn.Module, input_shape: tuple[int, ...], *, n_modes: int = 3,
               split_bounds: tuple[int, int] = (2, 16)) -> list[LayerRow]:
    """Rows for every conv/linear layer of ``model`` in model order (a meta-device forward pass)."""
    geoms = layer_geometries(model, input_shape)
    fact = factorizable_layers(model)
    total = sum(p.numel() for p in model.parameters()) or 1
    rows = []
    for name, mod in model.named_modules():
        if not isinstance(mod, _LISTED):
            continue
        params = sum(p.numel() for p in mod.parameters(recurse=False))
        conv: Any = mod if not isinstance(mod, nn.Linear) else None
        c_in = mod.in_features if conv is None else conv.in_channels
        c_out = mod.out_features if conv is None else conv.out_channels
        reason = unfactorizable_reason(mod)
        splits = ""
        if name in fact and not reason:
            splits = _splits(c_in, c_out, n_modes, *split_bounds)
            if splits.startswith("in 0") or splits.endswith("out 0"):
                splits += " (no split: kept as one mode)"
        rows.append(LayerRow(
            path=name, type=type(mod).__name__, c_in=c_in, c_out=c_out,
            kernel=(1, 1) if conv is None else tuple(conv.kernel_size),
            stride=(1,) if conv is None else tuple(conv.stride), groups=1 if conv is None else conv.groups,
            dilation=(1,) if conv is None else tuple(conv.dilation), params=params, share=params / total,
            splits=splits, reason=reason or ("" if name in geoms or conv is None else "not used in the forward pass"),
        ))
    return rows
