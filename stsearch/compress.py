"""Replace layers of a model by factorized ones, by dotted path, from a plan."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .layers.factorized import FactorizedConv2d, FactorizedLinear
from .layers.layout import Layout
from .layers.tuning import factorized_layers, tune_forward_modes
from .plan import LayerPlan, NetworkPlan
from .tensors.spec import FactorSpec

__all__ = [
    "LayerGeometry", "factorizable_layers", "layer_geometries", "resolve_plan", "build_layer", "compress",
    "fold_dense_layers", "fold_for_inference", "FactorizedOutProjAttention",
    "FactorizedTransformerEncoderLayer", "FactorizedTransformerEncoder",
]


@dataclass(frozen=True)
class LayerGeometry:
    """Shape facts of one conv/linear layer, as seen in a forward pass."""

    name: str
    kind: str  # "conv" | "linear"
    c_in: int
    c_out: int
    kernel: tuple[int, int]
    p_in: int  # input positions (H·W), 1 for linear
    p_out: int  # output positions

    @property
    def dense_params(self) -> int:
        return self.c_out * self.c_in * self.kernel[0] * self.kernel[1]


def factorizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Dotted path -> ``nn.Conv2d`` (groups=1) or ``nn.Linear`` module, in model order."""
    out: dict[str, nn.Module] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d) and mod.groups == 1 or isinstance(mod, nn.Linear):
            out[name] = mod
    return out


def layer_geometries(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, LayerGeometry]:
    """Geometry of every factorizable layer from one forward pass on the meta device.

    ``model`` may live on any device; it is copied to ``meta`` (no memory, no compute).
    """
    meta = copy.deepcopy(model).to("meta") if _has_real_tensors(model) else model
    layers = factorizable_layers(meta)
    seen: dict[str, LayerGeometry] = {}
    hooks = []

    def make_hook(name: str, mod: nn.Module):
        def hook(_m: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            x = args[0]
            if isinstance(mod, nn.Conv2d):
                geom = LayerGeometry(
                    name, "conv", mod.in_channels, mod.out_channels, tuple(mod.kernel_size),  # type: ignore[arg-type]
                    int(x.shape[-2] * x.shape[-1]), int(out.shape[-2] * out.shape[-1]),
                )
            else:
                geom = LayerGeometry(name, "linear", mod.in_features, mod.out_features, (1, 1), 1, 1)  # type: ignore[arg-type]
            seen.setdefault(name, geom)

        return hook

    for name, mod in layers.items():
        hooks.append(mod.register_forward_hook(make_hook(name, mod)))
    try:
        was_training = meta.training
        meta.eval()
        with torch.no_grad():
            meta(torch.empty((1, *input_shape), device="meta"))
        meta.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    for name, mod in layers.items():  # a Linear whose weight its parent reads directly (MultiheadAttention's
        if name not in seen and isinstance(mod, nn.Linear):  # out_proj) has the same geometry, call or not
            seen[name] = LayerGeometry(name, "linear", mod.in_features, mod.out_features, (1, 1), 1, 1)
    missing = [n for n in layers if n not in seen]
    if missing:
        raise ValueError(f"layers {missing[:5]} were not used in the forward pass on input {input_shape}")
    return {n: seen[n] for n in layers}


def resolve_plan(
    plan: NetworkPlan | Mapping[str, Any], names: list[str]
) -> dict[str, LayerPlan]:
    """Per-layer plans for ``names``; a pattern that matches no layer is an error."""
    net = plan if isinstance(plan, NetworkPlan) else NetworkPlan.from_dict(plan)
    bad = net.unmatched(names)
    if bad:
        sample = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise ValueError(
            f"plan entries {bad} match no conv/linear layer of the model; layer paths look like: {sample}"
        )
    return net.match(names)


def layer_spec(geom: LayerGeometry, plan: LayerPlan) -> tuple[Layout, FactorSpec]:
    """Layout and spec of ``plan`` on the layer ``geom``."""
    return plan.resolve(geom.c_out, geom.c_in, geom.kernel, name=geom.name)


def build_layer(
    module: nn.Module,
    plan: LayerPlan,
    name: str,
    *,
    batch_hint: int = 128,
    init: str = "random",
    refine_steps: int = 0,
) -> nn.Module:
    """The factorized replacement of ``module`` (or ``module`` itself for a dense plan).

    ``init``: ``random`` (factors scaled to the dense weight's standard deviation)
    or ``decompose`` (SVD-based decomposition of the dense weight, for pretrained layers).
    """
    if plan.is_dense:
        return module
    if init not in ("random", "decompose"):
        raise ValueError(f"init must be 'random' or 'decompose', got {init!r}")
    if isinstance(module, nn.Conv2d):
        layout, spec = plan.resolve(module.out_channels, module.in_channels, tuple(module.kernel_size), name=name)  # type: ignore[arg-type]
        kwargs = dict(forward_mode=plan.forward, batch_hint=batch_hint, init_std=_std(module.weight))
        new: nn.Module = FactorizedConv2d.from_conv(module, layout, spec, **kwargs)
    elif isinstance(module, nn.Linear):
        layout, spec = plan.resolve(module.out_features, module.in_features, (1, 1), name=name)
        kwargs = dict(forward_mode=plan.forward, batch_hint=batch_hint, init_std=_std(module.weight))
        new = FactorizedLinear.from_linear(module, layout, spec, **kwargs)
    else:
        raise ValueError(f"layer {name!r} is a {type(module).__name__}; only Conv2d and Linear can be factorized")
    if module.weight.is_meta:
        return new
    with torch.no_grad():
        if init == "decompose":
            new.init_from_weight(module.weight, refine_steps=refine_steps)  # type: ignore[operator]
        if module.bias is not None:
            new.bias.copy_(module.bias)  # type: ignore[union-attr]
    return new


def compress(
    model: nn.Module,
    plan: NetworkPlan | Mapping[str, Any],
    *,
    init: str = "random",
    refine_steps: int = 0,
    inplace: bool = False,
) -> nn.Module:
    """``model`` with the layers named by ``plan`` replaced by factorized layers.

    Layers the plan does not name (or names ``dense``) are kept as they are.
    """
    net = plan if isinstance(plan, NetworkPlan) else NetworkPlan.from_dict(plan)
    target = model if inplace else copy.deepcopy(model)
    layers = factorizable_layers(target)
    for name, lplan in resolve_plan(net, list(layers)).items():
        new = build_layer(layers[name], lplan, name, batch_hint=net.batch_hint, init=init, refine_steps=refine_steps)
        if new is not layers[name]:
            target.set_submodule(name, new)
            _adapt_attention(target, name, new)
    return target


class FactorizedOutProjAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose ``out_proj`` is factorized.

    The attention reads ``out_proj.weight`` as a tensor (its functional and fused paths never call
    ``out_proj``); this class hands it the weight the factors rebuild, with gradients, for each call.
    The state dict, the dotted paths and the computed function are those of the plain module.
    """

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        proj = self._modules["out_proj"]
        if isinstance(proj, nn.Linear):  # folded back to a plain layer
            return super().forward(*args, **kwargs)
        self.__dict__["out_proj"] = _LinearView(proj._dense_weight(), proj.bias)  # shadows the submodule
        try:
            return super().forward(*args, **kwargs)
        finally:
            del self.__dict__["out_proj"]


class _SlowPath:
    """Mixin: run a transformer module without PyTorch's fused fast path, which reads the ``weight``
    tensors of its Linear layers directly instead of calling them."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        enabled = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            return super().forward(*args, **kwargs)  # type: ignore[misc]
        finally:
            torch.backends.mha.set_fastpath_enabled(enabled)


class FactorizedTransformerEncoderLayer(_SlowPath, nn.TransformerEncoderLayer):
    """``nn.TransformerEncoderLayer`` with factorized Linear layers (always the unfused path)."""


class FactorizedTransformerEncoder(_SlowPath, nn.TransformerEncoder):
    """``nn.TransformerEncoder`` with factorized Linear layers (always the unfused path)."""


_SLOW_PATH = {nn.TransformerEncoderLayer: FactorizedTransformerEncoderLayer,
              nn.TransformerEncoder: FactorizedTransformerEncoder}


@dataclass(frozen=True)
class _LinearView:
    """What ``MultiheadAttention`` reads of its ``out_proj``."""

    weight: torch.Tensor
    bias: torch.Tensor | None


def _adapt_attention(model: nn.Module, name: str, new: nn.Module) -> None:
    """After ``name`` became ``new``: a ``TransformerEncoder(Layer)`` above it runs unfused; an ``out_proj``
    of a ``MultiheadAttention`` makes its parent a
    :class:`FactorizedOutProjAttention`, and the layer always rebuilds its weight (``dense`` mode:
    the attention multiplies by that weight, it never runs the layer's own forward)."""
    parts = name.split(".")
    for i in range(len(parts)):  # fused transformer paths read weights directly: turn them off
        ancestor = model.get_submodule(".".join(parts[:i]))
        if type(ancestor) in _SLOW_PATH:
            ancestor.__class__ = _SLOW_PATH[type(ancestor)]
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else None
    if leaf != "out_proj" or not isinstance(parent, nn.MultiheadAttention):
        return
    if type(parent) not in (nn.MultiheadAttention, FactorizedOutProjAttention):
        raise ValueError(f"layer {name!r}: the out_proj of a {type(parent).__name__} (a MultiheadAttention "
                         f"subclass) cannot be factorized; leave it out of the search (match or types)")
    parent.__class__ = FactorizedOutProjAttention
    new.forward_mode = "dense"


@torch.no_grad()
def fold_dense_layers(
    model: nn.Module, example: torch.Tensor | None = None, *, every: bool = False, inplace: bool = False
) -> tuple[nn.Module, list[str]]:
    """``model`` with factorized layers replaced by plain ones holding their rebuilt weights.

    Folded are the layers whose next forward pass runs the ``dense`` mode (after one pass of
    ``example`` in eval mode, which sets the input sizes ``auto`` decides on), or every factorized
    layer with ``every``. The result computes the same function without rebuilding any weight per
    call, at the size of the dense weights: for inference programs where speed counts more than
    size. Returns the model and the folded layers' dotted names.
    """
    target = model if inplace else copy.deepcopy(model)
    if example is not None:
        was_training = target.training
        target.eval()(example)
        target.train(was_training)
    folded = []
    for name, module in factorized_layers(target).items():
        if every or module.resolved_mode() == "dense":
            if not name:  # the model is one factorized layer
                return module.to_dense(), [name]  # type: ignore[operator]
            target.set_submodule(name, module.to_dense())  # type: ignore[operator]
            folded.append(name)
    return target, folded


@torch.no_grad()
def fold_for_inference(
    model: nn.Module, input_shape: tuple[int, ...], *, batch: int = 1, tune: bool = True
) -> tuple[nn.Module, list[str]]:
    """An eval-mode copy of ``model`` for inference at ``batch`` samples of ``input_shape``, and the
    names of its folded layers.

    With ``tune`` each ``auto`` layer's mode is first measured at that batch without autograd
    (:func:`stsearch.layers.tune_forward_modes`; the ``dense`` mode then costs its convolution
    alone, as a folded layer does), else the MAC rule decides; the layers that end in the
    ``dense`` mode are folded (:func:`fold_dense_layers`). Timing makes the choice depend on the
    machine; the function computed does not (to rounding).
    """
    if batch < 1:
        raise ValueError(f"fold_for_inference: batch must be >= 1, got {batch}")
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    target = copy.deepcopy(model).eval()
    example = torch.zeros(batch, *input_shape, device=device)
    if tune:  # its probe pass also sets the input sizes, so fold_dense_layers needs none
        tune_forward_modes(target, example, training=False)
    return fold_dense_layers(target, None if tune else example, inplace=True)


def _std(weight: torch.Tensor) -> float | None:
    if weight.is_meta or weight.numel() < 2:
        return None
    std = float(weight.detach().float().std())
    return std if std > 0 else None


def _has_real_tensors(model: nn.Module) -> bool:
    return any(not p.is_meta for p in model.parameters()) or any(not b.is_meta for b in model.buffers())
