"""Pure functional contractions for Tucker, TT and TR and their semi-tensor versions.

Functions take lists of factor tensors and return tensors; none holds state.
Index conventions: a semi-tensor expansion splits an index of size ``n`` into
``(i, s)`` with ``i`` major and ``s`` (size ``t``) minor, the layout of ``A ⊗ I_t``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..stp import kron_identity
from .spec import FactorSpec

__all__ = [
    "expand_st_core",
    "effective_factors",
    "tucker_to_tensor",
    "tt_to_tensor",
    "tr_to_tensor",
    "merge_chain",
    "chain_macs",
    "ring_split",
    "factors_to_tensor",
]


def expand_st_core(core: torch.Tensor, t: int) -> torch.Tensor:
    """Effective core of reading B: ``G~[(a,s),(i,s'),b] = G[a,i,b]·δ_{ss'}``.

    ``core`` has shape ``(R_l/t, n/t, R_r)``; the result has ``(R_l, n, R_r)``.
    """
    if t == 1:
        return core
    a, i, b = core.shape
    eye = torch.eye(t, dtype=core.dtype, device=core.device)
    out = core[:, None, :, None, :] * eye[None, :, None, :, None]  # (a, s, i, s', b)
    return out.reshape(a * t, i * t, b)


def effective_factors(spec: FactorSpec, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Expand stored parameters of ``spec`` into the factors a classical contraction uses."""
    if spec.base == "tucker":
        core, *factors = params
        out = [core]
        k_param = 0
        for k, r in enumerate(spec.ranks):
            if r is None:
                continue
            u = factors[k_param]
            k_param += 1
            out.append(kron_identity(u, spec.t) if spec.is_reduced(k) else u)
        return out
    if spec.reading == "A":
        return list(params)
    return [expand_st_core(g, spec.t) if spec.is_reduced(k) else g for k, g in enumerate(params)]


def tucker_to_tensor(
    core: torch.Tensor, factors: Sequence[torch.Tensor | None]
) -> torch.Tensor:
    """``core ×_1 U_1 ⋯ ×_N U_N``; a ``None`` factor leaves its mode as it is."""
    out = core
    for mode, u in enumerate(factors):
        if u is None:
            continue
        out = torch.movedim(torch.tensordot(u, out, dims=([1], [mode])), 0, mode)
    return out


def tt_to_tensor(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Full tensor of a tensor train with cores ``(R_{k-1}, n_k, R_k)``, ``R_0 = R_d = 1``."""
    modes = [c.shape[1] for c in cores]
    out = cores[0].reshape(-1, cores[0].shape[2])
    for core in cores[1:]:
        out = out @ core.reshape(core.shape[0], -1)
        out = out.reshape(-1, core.shape[2])
    return out.reshape(modes)


def merge_chain(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Contract consecutive cores ``(r_k, n_k, r_{k+1})`` into ``(r_0, ∏ n_k, r_end)``."""
    r0 = cores[0].shape[0]
    out = cores[0].reshape(-1, cores[0].shape[2])
    for core in cores[1:]:
        out = (out @ core.reshape(core.shape[0], -1)).reshape(-1, core.shape[2])
    return out.reshape(r0, -1, out.shape[-1])


def chain_macs(shapes: Sequence[Sequence[int]]) -> int:
    """MACs of :func:`merge_chain` on cores of these shapes."""
    rows = shapes[0][0] * shapes[0][1]
    total = 0
    for r, n, s in shapes[1:]:
        total += rows * r * n * s
        rows *= n
    return total


def ring_split(shapes: Sequence[Sequence[int]]) -> tuple[int, int]:
    """Where to cut a ring in two halves for the cheapest reconstruction, and its MACs."""
    best: tuple[int, int] | None = None
    for k in range(1, len(shapes)):
        left, right = shapes[:k], shapes[k:]
        n1 = math.prod([c[1] for c in left])
        n2 = math.prod([c[1] for c in right])
        macs = chain_macs(left) + chain_macs(right) + n1 * n2 * left[0][0] * left[-1][2]
        if best is None or macs < best[1]:
            best = (k, macs)
    assert best is not None
    return best


def tr_to_tensor(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Full tensor of a tensor ring: ``W(i_1..i_d) = trace(G_1(i_1) ⋯ G_d(i_d))``.

    The ring is cut into two merged halves ``(a, I, b)`` and ``(b, J, a)``, then
    ``W(I, J) = Σ_ab A[a,I,b] B[b,J,a]`` is one matrix product.
    """
    modes = [c.shape[1] for c in cores]
    if len(cores) == 1:
        return torch.diagonal(cores[0], dim1=0, dim2=2).sum(-1)
    k, _ = ring_split([tuple(c.shape) for c in cores])
    a = merge_chain(cores[:k])  # (r0, N1, rk)
    b = merge_chain(cores[k:])  # (rk, N2, r0)
    left = a.permute(1, 0, 2).reshape(a.shape[1], -1)  # (N1, r0*rk)
    right = b.permute(2, 0, 1).reshape(-1, b.shape[1])  # (r0*rk, N2)
    return (left @ right).reshape(modes)


def factors_to_tensor(spec: FactorSpec, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Full tensor of shape ``spec.modes`` from the stored parameters of ``spec``."""
    eff = effective_factors(spec, params)
    if spec.base == "tucker":
        core, *factors = eff
        it = iter(factors)
        full = [None if r is None else next(it) for r in spec.ranks]
        return tucker_to_tensor(core, full)
    if spec.base == "tt":
        return tt_to_tensor(eff)
    return tr_to_tensor(eff)
