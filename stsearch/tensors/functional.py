"""Pure functional contractions for Tucker, TT and TR and their semi-tensor versions.

Functions take lists of factor tensors and return tensors; none holds state.
Index conventions: a semi-tensor expansion splits an index of size ``n`` into
``(i, s)`` with ``i`` major and ``s`` (size ``t``) minor, the layout of ``A ⊗ I_t``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..stp import apply_kron_identity, kron_identity
from .spec import FactorSpec

__all__ = [
    "expand_st_core",
    "effective_factors",
    "core_factors",
    "contract_bond",
    "merge_chain_st",
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

    ``core`` has shape ``(R_l/t, n/t, R_r)``; the result has ``(R_l, n, R_r)``. A reference
    for tests: the contractions of the package use reduced cores in place (:func:`contract_bond`).
    """
    if t == 1:
        return core
    a, i, b = core.shape
    eye = torch.eye(t, dtype=core.dtype, device=core.device)
    out = core[:, None, :, None, :] * eye[None, :, None, :, None]  # (a, s, i, s', b)
    return out.reshape(a * t, i * t, b)


def core_factors(spec: FactorSpec) -> list[int]:
    """STP factor each stored factor is used with: ``spec.t`` for a reduced one, else 1.

    Train/ring: one entry per core (reading A stores plain smaller cores: all 1).
    Tucker: one entry per stored factor (modes with a rank), the core excluded.
    """
    if spec.base == "tucker":
        return [spec.t if spec.is_reduced(k) else 1 for k, r in enumerate(spec.ranks) if r is not None]
    if spec.reading == "A":
        return [1] * spec.order
    return [spec.t if spec.is_reduced(k) else 1 for k in range(spec.order)]


def effective_factors(spec: FactorSpec, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Expanded factors (``U ⊗ I_t``, :func:`expand_st_core`) of ``spec``: the reference for tests.

    No contraction of the package uses them; the production paths contract reduced factors in place.
    """
    if spec.base == "tucker":
        core, *factors = params
        return [core] + [kron_identity(u, t) for u, t in zip(factors, core_factors(spec))]
    return [expand_st_core(g, t) for g, t in zip(params, core_factors(spec))]


def contract_bond(z: torch.Tensor, core: torch.Tensor, t: int = 1) -> torch.Tensor:
    """Contract the last axis of ``z`` (the left bond ``R_l``) with a core used with STP factor ``t``.

    ``core`` is stored as ``(R_l/t, n/t, R_r)``; the result is ``z[..., (i, s), b]`` of shape
    ``(..., n, R_r)`` with ``Y[..., (i,s), b] = Σ_a z[..., (a,s)] core[a, i, b]``, equal to the
    contraction with :func:`expand_st_core` of the core, which is never formed.
    """
    a, i, b = core.shape
    lead = z.shape[:-1]
    if t == 1:
        return (z.reshape(-1, a) @ core.reshape(a, i * b)).reshape(*lead, i, b)
    y = torch.einsum("xas,aib->xisb", z.reshape(-1, a, t), core)
    return y.reshape(*lead, i * t, b)


def merge_chain_st(cores: Sequence[torch.Tensor], ts: Sequence[int] | None = None) -> torch.Tensor:
    """Merge consecutive cores (stored shapes, STP factors ``ts``) in place.

    Returns ``C (a_0, i_0, M, r_end)`` for a first core stored as ``(a_0, i_0, r_1)`` with factor
    ``t_0``: the merged chain of the effective cores is ``C~[(a,s), (i,s,m), r] = C[a,i,m,r]``
    (``s < t_0``, zero off the diagonal). With ``t_0 = 1`` it is ``(r_0, n_0, M, r_end)``.
    """
    ts = [1] * len(cores) if ts is None else list(ts)
    a0, i0, _ = cores[0].shape
    out = cores[0].reshape(a0 * i0, -1)
    for core, t in zip(cores[1:], ts[1:]):
        out = contract_bond(out, core, t)
        out = out.reshape(-1, out.shape[-1])
    return out.reshape(a0, i0, -1, out.shape[-1])


def merge_chain(cores: Sequence[torch.Tensor], ts: Sequence[int] | None = None) -> torch.Tensor:
    """Contract consecutive cores ``(r_k, n_k, r_{k+1})`` into ``(r_0, ∏ n_k, r_end)``.

    With ``ts`` the cores are stored reduced (:func:`contract_bond`); the first one must be full.
    """
    if ts is not None and ts[0] != 1:
        raise ValueError("merge_chain: the first core is reduced; use merge_chain_st")
    m = merge_chain_st(cores, ts)
    return m.reshape(m.shape[0], -1, m.shape[-1])


def chain_macs(shapes: Sequence[Sequence[int]], ts: Sequence[int] | None = None) -> int:
    """MACs of :func:`merge_chain_st` on cores of these stored shapes and STP factors."""
    ts = [1] * len(shapes) if ts is None else list(ts)
    rows = shapes[0][0] * shapes[0][1]
    total = 0
    for (r, n, s), t in zip(shapes[1:], ts[1:]):
        total += rows * r * n * s * t
        rows *= n * t
    return total


def ring_split(shapes: Sequence[Sequence[int]], ts: Sequence[int] | None = None) -> tuple[int, int]:
    """Where to cut a ring in two halves for the cheapest reconstruction, and its MACs."""
    ts = [1] * len(shapes) if ts is None else list(ts)
    best: tuple[int, int] | None = None
    for k in range(1, len(shapes)):
        n1 = math.prod([c[1] * t for c, t in zip(shapes[:k], ts[:k])])
        n2 = math.prod([c[1] * t for c, t in zip(shapes[k:], ts[k:])])
        macs = chain_macs(shapes[:k], ts[:k]) + chain_macs(shapes[k:], ts[k:])
        macs += n1 * n2 * shapes[0][0] * ts[0] * shapes[k][0]
        if best is None or macs < best[1]:
            best = (k, macs)
    assert best is not None
    return best


def tucker_to_tensor(
    core: torch.Tensor, factors: Sequence[torch.Tensor | None], ts: Sequence[int] | None = None
) -> torch.Tensor:
    """``core ×_1 U_1 ⋯ ×_N U_N``; a ``None`` factor leaves its mode as it is.

    ``ts`` (one per entry of ``factors``) applies a factor as ``U ⊗ I_t`` in place.
    """
    out = core
    for mode, u in enumerate(factors):
        if u is None:
            continue
        t = 1 if ts is None else ts[mode]
        if t > 1:
            out = apply_kron_identity(u, out, mode)
        else:
            out = torch.movedim(torch.tensordot(u, out, dims=([1], [mode])), 0, mode)
    return out


def tt_to_tensor(cores: Sequence[torch.Tensor], ts: Sequence[int] | None = None) -> torch.Tensor:
    """Full tensor of a tensor train with cores ``(R_{k-1}, n_k, R_k)``, ``R_0 = R_d = 1``.

    ``ts``: STP factors of stored reduced cores (contracted in place, first core full).
    """
    ts = [1] * len(cores) if ts is None else list(ts)
    modes = [c.shape[1] * t for c, t in zip(cores, ts)]
    return merge_chain(cores, ts).reshape(modes)


def tr_to_tensor(cores: Sequence[torch.Tensor], ts: Sequence[int] | None = None) -> torch.Tensor:
    """Full tensor of a tensor ring: ``W(i_1..i_d) = trace(G_1(i_1) ⋯ G_d(i_d))``.

    The ring is cut into two merged halves ``(a, I, b)`` and ``(b, J, a)``, then
    ``W(I, J) = Σ_ab A[a,I,b] B[b,J,a]`` is one matrix product. ``ts``: STP factors of
    stored reduced cores (first core full); a reduced first core of the second half is
    contracted in place, ``W(I, (j,s,m)) = Σ_{a,b'} A[a,I,(b',s)] C[b',j,m,a]``.
    """
    ts = [1] * len(cores) if ts is None else list(ts)
    modes = [c.shape[1] * t for c, t in zip(cores, ts)]
    if len(cores) == 1:
        return torch.diagonal(cores[0], dim1=0, dim2=2).sum(-1)
    k, _ = ring_split([tuple(c.shape) for c in cores], ts)
    a = merge_chain(cores[:k], ts[:k])  # (r0, N1, rk)
    c = merge_chain_st(cores[k:], ts[k:])  # (rk/t_k, j, M, r0)
    tk = ts[k]
    if tk == 1:
        left = a.permute(1, 0, 2).reshape(a.shape[1], -1)  # (N1, r0*rk)
        right = c.permute(3, 0, 1, 2).reshape(-1, c.shape[1] * c.shape[2])  # (r0*rk, N2)
        return (left @ right).reshape(modes)
    a4 = a.reshape(a.shape[0], a.shape[1], -1, tk)  # (r0, N1, rk/t, t)
    return torch.einsum("xnys,yjmx->njsm", a4, c).reshape(modes)


def factors_to_tensor(spec: FactorSpec, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Full tensor of shape ``spec.modes`` from the stored parameters of ``spec`` (reduced ones in place)."""
    ts = core_factors(spec)
    if spec.base == "tucker":
        core, *factors = params
        it, its = iter(factors), iter(ts)
        full = [None if r is None else next(it) for r in spec.ranks]
        tfull = [1 if r is None else next(its) for r in spec.ranks]
        return tucker_to_tensor(core, full, tfull)
    if spec.base == "tt":
        return tt_to_tensor(params, ts)
    return tr_to_tensor(params, ts)
