"""Factorized ``Conv2d`` and ``Linear`` layers for every family.

Each layer owns a :class:`~stsearch.tensors.FactorizedTensor` over its
:class:`~stsearch.layers.layout.Layout` and runs in one of two forward modes:

* ``dense``: rebuild the weight, then the dense op (the weight is cached while
  the layer is in eval mode with gradients off);
* ``factorized``: contract the input with the factors one by one.

``auto`` picks the mode with fewer MACs for a batch of ``batch_hint`` samples, unless a
measured choice was stored in ``tuned_mode`` (see :mod:`stsearch.layers.tuning`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from ..tensors.factorized import FactorizedTensor
from ..tensors.functional import core_factors
from ..tensors.spec import FactorSpec
from .contract import ConvArgs, tr_conv, tt_conv, tucker_conv
from .costs import FORWARD_MODES, LayerCost, layer_cost
from .layout import Layout

__all__ = ["FactorizedBase", "FactorizedConv2d", "FactorizedLinear"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class FactorizedBase(nn.Module):
    """Shared state: layout, spec, factors, bias, forward-mode choice and counts.

    ``tuned_mode`` (``None``, ``dense`` or ``factorized``) overrides the MAC rule of ``auto``;
    it is runtime state, not a hyper-parameter (:meth:`hparams` still says ``auto``).
    """

    def __init__(
        self,
        layout: Layout,
        spec: FactorSpec,
        *,
        bias: bool,
        forward_mode: str = "auto",
        batch_hint: int = 128,
        init_std: float | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if forward_mode not in FORWARD_MODES:
            raise ValueError(f"forward_mode must be one of {', '.join(FORWARD_MODES)}, got {forward_mode!r}")
        if spec.modes != layout.modes():
            raise ValueError(f"spec modes {spec.modes} do not match the layout's {layout.modes()}")
        self.layout = layout
        self.spec = spec
        self.forward_mode = forward_mode
        self.batch_hint = int(batch_hint)
        std = init_std if init_std is not None else (2.0 / (layout.c_in * layout.kk)) ** 0.5
        self.weight_tensor = FactorizedTensor(spec, std=std, device=device, dtype=dtype)
        self.bias = nn.Parameter(torch.zeros(layout.c_out, device=device, dtype=dtype)) if bias else None
        self._positions: tuple[int, int] = (1, 1)  # (input, output) positions, for costs
        self.tuned_mode: str | None = None
        self._mac_choices: dict[tuple[int, int, int], str] = {}
        self._cached_weight: torch.Tensor | None = None
        self._cache_key: tuple = ()

    # --------------------------------------------------------------- weights
    def weight(self) -> torch.Tensor:
        """The dense weight the factors represent."""
        return self.layout.to_weight(self.weight_tensor.to_tensor())

    @torch.no_grad()
    def init_from_weight(self, weight: torch.Tensor, *, refine_steps: int = 0) -> float:
        """Set the factors by decomposing a dense ``weight``; returns the relative error."""
        from ..tensors.decompose import decompose, refine, relative_error

        full = self.layout.from_weight(weight.detach().to(self.weight_tensor.factors[0].dtype))
        params = decompose(full, self.spec)
        if refine_steps > 0:
            with torch.enable_grad():
                params = refine(full, self.spec, params, steps=refine_steps)
        self.weight_tensor.load_factors(params)
        return relative_error(full, self.spec, params)

    # ----------------------------------------------------------------- costs
    def cost(self, p_in: int | None = None, p_out: int | None = None) -> LayerCost:
        """Parameter and MAC counts; positions default to the last input seen."""
        pi = self._positions[0] if p_in is None else p_in
        po = self._positions[1] if p_out is None else p_out
        return layer_cost(self.layout, self.spec, pi, po)

    def resolved_mode(self, p_in: int | None = None, p_out: int | None = None) -> str:
        """``dense`` or ``factorized``: the mode the next forward pass uses."""
        if self.forward_mode != "auto":
            return self.forward_mode
        if self.tuned_mode is not None:
            return self.tuned_mode
        key = (self._positions[0] if p_in is None else p_in, self._positions[1] if p_out is None else p_out, self.batch_hint)
        mode = self._mac_choices.get(key)
        if mode is None:  # counting costs is pure Python: once per input size, not per forward pass
            mode = self._mac_choices[key] = self.cost(*key[:2]).choose(self.batch_hint)
        return mode

    def positions_for(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        """(input, output) positions (H·W) for an input of ``input_shape``."""
        return (1, 1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hparams(self) -> dict[str, Any]:
        """What is needed to rebuild the layer (besides weights)."""
        s = self.spec
        return {
            "family": s.family,
            "ranks": list(s.ranks),
            "t": s.t,
            "reading": s.reading,
            "in_modes": list(self.layout.in_modes),
            "out_modes": list(self.layout.out_modes),
            "forward": self.forward_mode,
        }

    def _dense_weight(self) -> torch.Tensor:
        """The rebuilt weight; cached at inference (no grad) until a factor changes."""
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            self._cached_weight = None  # never cache a traced (fake) tensor in the module
            return self.weight()
        key = tuple((p.data_ptr(), p._version) for p in self.weight_tensor.factors)
        if self._cached_weight is None or self._cache_key != key:
            self._cached_weight = self.weight()
            self._cache_key = key
        return self._cached_weight

    @torch.no_grad()
    def _filled(self, plain: nn.Conv2d | nn.Linear) -> Any:
        """``plain`` (a fresh layer of this one's geometry) with the rebuilt weight, the bias and the train mode."""
        plain.weight.copy_(self.weight())
        if self.bias is not None:
            plain.bias.copy_(self.bias)  # type: ignore[union-attr]
        return plain.train(self.training)

    def _factorized(self, x: torch.Tensor, args: ConvArgs) -> torch.Tensor:
        base = self.spec.base
        if base == "tucker":
            stored = list(self.weight_tensor.factors)
            core, factors = stored[0], iter(stored[1:])
            aligned = [None if r is None else next(factors) for r in self.spec.ranks]
            return tucker_conv(x, core, aligned, self.layout, args)
        cores = list(self.weight_tensor.factors)
        return (tt_conv if base == "tt" else tr_conv)(x, cores, self.layout, args, core_factors(self.spec))

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"{self.layout.c_in}, {self.layout.c_out}, family={s.family}, ranks={list(s.ranks)}, t={s.t}, "
            f"in_modes={list(self.layout.in_modes)}, out_modes={list(self.layout.out_modes)}, forward={self.forward_mode}"
        )


class FactorizedConv2d(FactorizedBase):
    """A ``Conv2d`` (groups=1) whose weight is a factorized tensor."""

    def __init__(
        self,
        layout: Layout,
        spec: FactorSpec,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = False,
        padding_mode: str = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(layout, spec, bias=bias, **kwargs)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {', '.join(_PADDING_MODES)}, got {padding_mode!r}")
        self.in_channels, self.out_channels = layout.c_in, layout.c_out
        self.kernel_size = layout.kernel
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.padding_mode = padding_mode

    @property
    def conv_args(self) -> ConvArgs:
        """Stride, padding and dilation of the convolution after :meth:`_pad` (no padding left for other modes)."""
        padding = self.padding if self.padding_mode == "zeros" else (0, 0)
        return (self.stride, padding, self.dilation)  # type: ignore[return-value]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded by ``padding_mode`` when it is not ``zeros`` (as ``nn.Conv2d`` does)."""
        if self.padding_mode == "zeros":
            return x
        ph, pw = self.padding
        return F.pad(x, (pw, pw, ph, ph), mode=self.padding_mode)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, layout: Layout, spec: FactorSpec, **kwargs: Any) -> "FactorizedConv2d":
        """A factorized layer with the geometry of ``conv`` (weights not copied)."""
        if conv.groups != 1:
            raise ValueError(f"only groups=1 convolutions can be factorized, got groups={conv.groups}")
        if isinstance(conv.padding, str):
            raise ValueError(f"padding={conv.padding!r} is not supported; use integer padding")
        return cls(
            layout,
            spec,
            stride=conv.stride,
            padding=conv.padding,  # type: ignore[arg-type]
            dilation=conv.dilation,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
            **kwargs,
        )

    def to_dense(self) -> nn.Conv2d:
        """The plain ``nn.Conv2d`` with the rebuilt weight (and the bias): the same function."""
        p = self.weight_tensor.factors[0]
        return self._filled(nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                                      padding=self.padding, dilation=self.dilation, bias=self.bias is not None,
                                      padding_mode=self.padding_mode, device=p.device, dtype=p.dtype))

    def positions_for(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        h, w = input_shape[-2:]
        ho, wo = self.output_hw(h, w)
        return h * w, ho * wo

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        out = []
        for size, k, s, p, d in zip((h, w), self.kernel_size, self.stride, self.padding, self.dilation):
            out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return out[0], out[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._positions = self.positions_for(x.shape)
        x = self._pad(x)
        args = self.conv_args
        if self.resolved_mode() == "dense":
            return F.conv2d(x, self._dense_weight(), self.bias, *args)
        y = self._factorized(x, args)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y


class FactorizedLinear(FactorizedBase):
    """A ``Linear`` layer whose weight is a factorized tensor."""

    def __init__(self, layout: Layout, spec: FactorSpec, *, bias: bool = True, **kwargs: Any) -> None:
        if layout.kk != 1:
            raise ValueError(f"a linear layout has no spatial mode, got kernel {layout.kernel}")
        super().__init__(layout, spec, bias=bias, **kwargs)
        self.in_features, self.out_features = layout.c_in, layout.c_out

    @classmethod
    def from_linear(cls, linear: nn.Linear, layout: Layout, spec: FactorSpec, **kwargs: Any) -> "FactorizedLinear":
        return cls(
            layout, spec, bias=linear.bias is not None, device=linear.weight.device, dtype=linear.weight.dtype, **kwargs
        )

    def weight(self) -> torch.Tensor:
        return super().weight().reshape(self.layout.c_out, self.layout.c_in)

    def to_dense(self) -> nn.Linear:
        """The plain ``nn.Linear`` with the rebuilt weight (and the bias): the same function."""
        p = self.weight_tensor.factors[0]
        return self._filled(nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                                      device=p.device, dtype=p.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._positions = (1, 1)
        if self.resolved_mode() == "dense":
            return F.linear(x, self._dense_weight(), self.bias)
        lead = x.shape[:-1]
        z = x.reshape(-1, self.layout.c_in, 1, 1)
        y = self._factorized(z, ((1, 1), (0, 0), (1, 1))).reshape(*lead, self.layout.c_out)
        if self.bias is not None:
            y = y + self.bias
        return y
