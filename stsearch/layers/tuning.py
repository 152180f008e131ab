"""Measured forward-mode choice: time both forward modes of each factorized layer, keep the faster.

``auto`` layers pick their mode from MAC counts (:meth:`LayerCost.choose`, a factor-by-factor
MAC weighted :data:`~stsearch.layers.costs.FACTORIZED_MAC_WEIGHT`). MACs miss what often decides
speed: the size of the intermediates of a factor-by-factor contraction and how well small matrix
products and narrow convolutions use the device. On a 2-core CPU plain MAC counts pick the slower
mode in 6 of the 18 rows of ``benchmarks/layers.py`` (TR at 64 channels, TT at 640, by up to 6x);
the weight corrects that CPU, not every device. :func:`tune_forward_modes` replaces the rule by a
measurement, the way ``torch.backends.cudnn.benchmark`` picks convolution algorithms: on the real
input shape, device, dtype and memory format, one step of each mode, a few times, the fastest kept.

The choice is stored in each layer's ``tuned_mode`` (used only while ``forward_mode`` is
``auto``; the layer's hyper-parameters still say ``auto``) and can be saved and restored with
:func:`forward_modes` / :func:`apply_forward_modes`. Both modes compute the same function; they
differ by floating-point rounding only.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .factorized import FactorizedBase

__all__ = ["ModeTiming", "factorized_layers", "tune_forward_modes", "forward_modes", "apply_forward_modes"]

TUNED_MODES = ("dense", "factorized")
GIVE_UP = 3.0  # a mode whose best timed step took this many times the other's is not timed again


@dataclass(frozen=True)
class ModeTiming:
    """The measurement behind one layer's choice."""

    name: str
    family: str
    input_shape: tuple[int, ...]
    ms: dict[str, float] = field(default_factory=dict)  # best step per mode in ms (inf: out of memory)
    mac_choice: str = "dense"  # what the MAC rule would pick
    chosen: str = "dense"
    measured_on: str = ""  # the layer whose timing this reuses (its own name when measured)

    @property
    def speedup(self) -> float:
        """Time of the MAC rule's choice over the chosen mode's time (1.0 when they agree)."""
        return self.ms[self.mac_choice] / self.ms[self.chosen]


def factorized_layers(model: nn.Module) -> dict[str, FactorizedBase]:
    """The factorized layers of ``model`` by dotted name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, FactorizedBase)}


def forward_modes(model: nn.Module) -> dict[str, str]:
    """The mode each factorized layer runs next (``dense`` or ``factorized``), by dotted name.

    An ``auto`` layer's MAC rule depends on its input size: run a forward pass first."""
    return {name: layer.resolved_mode() for name, layer in factorized_layers(model).items()}


def apply_forward_modes(model: nn.Module, modes: Mapping[str, str]) -> None:
    """Set ``tuned_mode`` from a saved :func:`forward_modes` (layers not named keep theirs)."""
    layers = factorized_layers(model)
    for name, mode in modes.items():
        if name not in layers:
            raise ValueError(f"apply_forward_modes: the model has no factorized layer {name!r}")
        if mode not in TUNED_MODES:
            raise ValueError(f"apply_forward_modes: layer {name!r} has mode {mode!r}; allowed: dense, factorized")
        layers[name].tuned_mode = mode


def _input_shapes(model: nn.Module, example: torch.Tensor, layers: Mapping[str, nn.Module],
                  context: Callable[[], contextlib.AbstractContextManager]) -> dict[str, tuple]:
    """(shape, dtype, channels_last) of the input each layer sees on ``example``."""
    seen: dict[str, tuple] = {}
    hooks = []
    for name, layer in layers.items():
        def hook(_mod: nn.Module, args: tuple, name: str = name) -> None:
            x = args[0]
            cl = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            seen.setdefault(name, (tuple(x.shape), x.dtype, cl))
        hooks.append(layer.register_forward_pre_hook(hook))
    was_training = model.training
    try:
        model.eval()  # no BatchNorm statistics updated by the probe
        with torch.no_grad(), context():
            model(example)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
        for layer in layers.values():
            layer._cached_weight = None  # the probe ran without grad: drop the inference cache
    return seen


def _geometry(layer: FactorizedBase, shape: tuple, dtype: torch.dtype, channels_last: bool) -> tuple:
    """What the speed of a layer's modes depends on: equal geometries share one measurement."""
    conv = getattr(layer, "conv_args", None), getattr(layer, "padding_mode", None)
    return (type(layer), layer.layout, layer.spec, conv, layer.bias is not None, shape, dtype, channels_last)


def _time_step(layer: FactorizedBase, x: torch.Tensor, grad: torch.Tensor | None,
               context: Callable[[], contextlib.AbstractContextManager]) -> float:
    """Seconds of one forward+backward step (input and parameter gradients, none accumulated),
    or of one forward pass without autograd when ``grad`` is ``None``."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    if grad is None:
        with torch.no_grad(), context():
            layer(x)
    else:
        params = [p for p in layer.parameters() if p.requires_grad]
        with context():
            y = layer(x)
        torch.autograd.grad(y, [x, *params], grad_outputs=grad.to(y.dtype))
    sync()
    return time.perf_counter() - t0


def _measure(layer: FactorizedBase, x: torch.Tensor, gen: torch.Generator, warmup: int, repeats: int,
             context: Callable[[], contextlib.AbstractContextManager], training: bool) -> dict[str, float]:
    """Best seconds of a step in each mode (``inf``: out of memory)."""
    best = {m: math.inf for m in TUNED_MODES}
    grad = None
    for i in range(warmup + repeats):
        for mode in TUNED_MODES:
            if i > warmup and best[mode] > GIVE_UP * min(best[m] for m in TUNED_MODES if m != mode):
                continue  # clearly slower: not timed again
            layer.tuned_mode = mode
            try:
                if grad is None and training:
                    with torch.no_grad(), context():
                        grad = torch.randn(layer(x).shape, generator=gen).to(x.device)
                    layer._cached_weight = None
                dt = _time_step(layer, x, grad, context)
            except torch.OutOfMemoryError:
                dt = math.inf
                if x.device.type == "cuda":
                    torch.cuda.empty_cache()
            if i >= warmup:
                best[mode] = min(best[mode], dt)
    return best


def tune_forward_modes(
    model: nn.Module,
    example: torch.Tensor,
    *,
    repeats: int = 3,
    warmup: int = 1,
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    seed: int = 0,
    training: bool = True,
) -> list[ModeTiming]:
    """Time both forward modes of every ``auto`` factorized layer of ``model``; keep the faster.

    ``example`` is an input batch of the size training uses (only its shape matters);
    ``context`` wraps each forward (pass the training's autocast). ``training`` times a
    forward+backward step; ``training=False`` times a forward pass without autograd, where the
    ``dense`` mode reuses its cached weight (the choice for inference, e.g. of an exported
    model). Each layer runs ``warmup`` untimed and ``repeats`` timed steps per mode,
    alternating modes; the minimum counts. A mode
    whose best timed step took over ``GIVE_UP`` times the other's is not run again, and one that
    runs out of memory counts as infinitely slow. Layers of equal geometry (class, layout, factor
    spec, stride/padding, input shape, dtype, memory format) share one measurement. Global RNG
    state, parameters and their gradients are left as they were.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"tune_forward_modes: repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    layers = {n: m for n, m in factorized_layers(model).items() if m.forward_mode == "auto"}
    if not layers:
        return []
    shapes = _input_shapes(model, example, layers, context)
    gen = torch.Generator().manual_seed(seed)
    out: list[ModeTiming] = []
    measured: dict[tuple, ModeTiming] = {}
    for name, layer in layers.items():
        if name not in shapes:  # not reached by the forward pass
            continue
        shape, dtype, channels_last = shapes[name]
        layer.tuned_mode = None
        mac_choice = layer.resolved_mode(*layer.positions_for(shape))
        key = _geometry(layer, shape, dtype, channels_last)
        if key in measured:  # e.g. the repeated blocks of a ResNet stage
            same = measured[key]
            layer.tuned_mode = same.chosen
            out.append(ModeTiming(name, layer.spec.family, shape, dict(same.ms), mac_choice, same.chosen, same.name))
            continue
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.randn(shape, generator=gen).to(example.device, dtype).contiguous(memory_format=fmt)
        x.requires_grad_(training)
        best = _measure(layer, x, gen, warmup, repeats, context, training)
        chosen = min(TUNED_MODES, key=lambda m: (best[m], m != mac_choice))
        layer.tuned_mode = chosen
        if chosen != "dense":
            layer._cached_weight = None
        timing = ModeTiming(name, layer.spec.family, shape, {m: best[m] * 1e3 for m in TUNED_MODES},
                            mac_choice, chosen, name)
        measured[key] = timing
        out.append(timing)
    return out
