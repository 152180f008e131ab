"""Parameter and multiply-accumulate (MAC) counts of factorized layers, from shapes alone.

The counts mirror the contractions in :mod:`stsearch.layers.contract` and
:mod:`stsearch.tensors.functional` operation by operation, so that
``2 × MACs`` equals what ``torch.utils.flop_counter.FlopCounterMode`` measures. A reduced
(semi-tensor) core or factor is contracted in place and costs 1/t of its effective one. Except
where a semi-tensor factor has a contracted size of 1 (a mode or rank equal to ``t``):
torch runs that contraction as an elementwise product, which is counted here and not by
``FlopCounterMode``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..tensors.functional import chain_macs, core_factors, ring_split
from ..tensors.spec import FactorSpec
from .layout import Layout

__all__ = ["LayerCost", "layer_cost", "reconstruct_macs", "chain_macs", "FACTORIZED_MAC_WEIGHT"]

FORWARD_MODES = ("auto", "dense", "factorized")

FACTORIZED_MAC_WEIGHT = 2.0
"""Time of one factor-by-factor MAC in dense-convolution MACs, for ``auto``'s choice.

Factor-by-factor contractions run narrow convolutions and small matrix products on
intermediates larger than the activations; a dense convolution is one well-tuned kernel. In
``benchmarks/layers.py`` (2-core CPU) the factorized mode was faster wherever it needed under
0.10x the dense MACs (Tucker/STTu everywhere, TR/STR at 640 channels) and slower wherever it
needed 0.58x or more (TR/STR at 64 channels, TT/STT at 640): any weight from 1.8 to 10 sorts all 18
rows right, weight 1 (plain MAC counts) 12 of 18. ``TrainConfig(tune_forward=True)`` measures.
"""


@dataclass(frozen=True)
class LayerCost:
    """Counts for one factorized layer. MACs are per sample unless named per forward."""

    params: int  # factor parameters (bias excluded)
    dense_params: int  # parameters of the dense weight it replaces (bias excluded)
    macs_dense: int  # dense convolution, per sample
    macs_factorized: int  # factor-by-factor contraction, per sample
    macs_factorized_fixed: int  # core merges done once per forward pass
    macs_reconstruct: int  # rebuilding the dense weight, once per forward pass

    def forward_macs(self, mode: str, batch: int) -> int:
        """MACs of one forward pass over ``batch`` samples in ``mode`` (``dense`` or ``factorized``)."""
        if mode == "dense":
            return self.macs_reconstruct + batch * self.macs_dense
        if mode == "factorized":
            return self.macs_factorized_fixed + batch * self.macs_factorized
        raise ValueError(f"forward mode must be 'dense' or 'factorized', got {mode!r}")

    def choose(self, batch: int, weight: float | None = None) -> str:
        """The forward mode ``auto`` runs for ``batch`` samples: ``factorized`` when its MACs,
        times ``weight`` (default :data:`FACTORIZED_MAC_WEIGHT`), are fewer than the dense mode's."""
        w = FACTORIZED_MAC_WEIGHT if weight is None else weight
        fact = w * self.forward_macs("factorized", batch)
        return "factorized" if fact < self.forward_macs("dense", batch) else "dense"

    def macs(self, mode: str) -> int:
        """Per-sample MACs of inference in ``mode`` (a rebuilt weight is cached at inference)."""
        return self.macs_dense if mode == "dense" else self.macs_factorized

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def reconstruct_macs(spec: FactorSpec) -> int:
    """MACs of ``factors_to_tensor(spec, ...)`` (reduced factors contracted in place: 1/t each)."""
    shapes, ts = spec.param_shapes(), core_factors(spec)
    if spec.base == "tt":
        return chain_macs(shapes, ts)
    if spec.base == "tr":
        return ring_split(shapes, ts)[1] if spec.order > 1 else 0
    core = list(shapes[0])
    total = 0
    it = iter(ts)
    for k, r in enumerate(spec.ranks):
        if r is None:
            continue
        numel = math.prod(core)
        total += spec.modes[k] * numel // next(it)
        core[k] = spec.modes[k]
    return total


def layer_cost(layout: Layout, spec: FactorSpec, p_in: int, p_out: int) -> LayerCost:
    """Counts of one layer with ``p_in`` input and ``p_out`` output positions (H·W)."""
    dense = layout.c_out * layout.c_in * layout.kk
    if spec.base == "tucker":
        fact, fixed = _tucker_macs(layout, spec, p_in, p_out), 0
    elif spec.base == "tt":
        fact, fixed = _tt_macs(layout, spec, p_out), 0
    else:
        fact, fixed = _tr_macs(layout, spec, p_in, p_out)
    return LayerCost(
        params=spec.num_params(),
        dense_params=dense,
        macs_dense=dense * p_out,
        macs_factorized=fact,
        macs_factorized_fixed=fixed,
        macs_reconstruct=reconstruct_macs(spec),
    )


def _tucker_macs(layout: Layout, spec: FactorSpec, p_in: int, p_out: int) -> int:
    p, q = len(layout.out_modes), len(layout.in_modes)
    t = spec.t
    total = 0
    cur = list(layout.in_modes)
    for j in range(q):
        k = p + j
        r = spec.ranks[k]
        if r is None:
            continue
        tj = t if spec.is_reduced(k) else 1
        total += p_in * (math.prod(cur) // cur[j]) * r * cur[j] // tj
        cur[j] = r
    r_in = math.prod(cur)
    r_out = [layout.out_modes[j] if spec.ranks[j] is None else spec.ranks[j] for j in range(p)]
    total += p_out * math.prod(r_out) * r_in * layout.kk  # type: ignore[arg-type]
    cur = list(r_out)
    for j in range(p):
        r = spec.ranks[j]
        if r is None:
            continue
        tj = t if spec.is_reduced(j) else 1
        total += p_out * (math.prod(cur) // cur[j]) * layout.out_modes[j] * r // tj  # type: ignore[operator]
        cur[j] = layout.out_modes[j]
    return total


def _tt_macs(layout: Layout, spec: FactorSpec, p_out: int) -> int:
    eff, ts = spec.effective_shapes(), core_factors(spec)
    total = 0
    if layout.has_spatial:
        total += layout.c_in * eff[0][2] * layout.kk * p_out
        chain, tchain = eff[1:], ts[1:]
    else:
        chain, tchain = eff, ts
    state = layout.c_in
    for k, ((r, _, s), t) in enumerate(zip(chain, tchain)):
        i_k, o_k = layout.in_modes[k], layout.out_modes[k]
        total += state * r * o_k * s * p_out // t
        state = state // i_k * o_k
    return total


def _tr_macs(layout: Layout, spec: FactorSpec, p_in: int, p_out: int) -> tuple[int, int]:
    eff, shapes, ts = spec.effective_shapes(), spec.param_shapes(), core_factors(spec)
    q = len(layout.in_modes)
    s = 1 if layout.has_spatial else 0
    fixed = chain_macs(shapes[:q], ts[:q]) + chain_macs(shapes[q + s :], ts[q + s :])
    ins, outs = eff[:q], eff[q + s :]
    r0, rq = ins[0][0], ins[-1][2]
    rs, t_out = outs[0][0], ts[q + s]
    if s:
        # a reduced spatial core is contracted over bond and mode: its copies s are summed first (1/t²)
        per = p_in * layout.c_in * r0 * rq + p_out * r0 * rq * rs * layout.kk // ts[q] ** 2
        per += p_out * r0 * rs * layout.c_out // t_out
    else:
        per = p_out * layout.c_in * r0 * rq + p_out * r0 * rq * layout.c_out // t_out
    return per, fixed
