"""Factor-by-factor forward passes of factorized convolutions (pure functions).

Each function maps an input ``x (B, C_in, H, W)`` to ``(B, C_out, H', W')`` without
forming the dense weight. All take the stored factors: reduced (semi-tensor) cores are
contracted in place with their STP factors ``ts`` and Tucker factors are applied as
``U ⊗ I_t`` without forming the Kronecker product; no effective core is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..stp import apply_kron_identity
from ..tensors.functional import merge_chain, merge_chain_st
from .layout import Layout

__all__ = ["ConvArgs", "merge_chain", "tucker_conv", "tt_conv", "tr_conv", "strided_1x1"]

ConvArgs = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # stride, padding, dilation


def strided_1x1(x: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    """Input positions a 1x1 convolution with ``args`` reads (padding then striding)."""
    (sh, sw), (ph, pw), _ = args
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph))
    if sh > 1 or sw > 1:
        x = x[:, :, ::sh, ::sw]
    return x


def tucker_conv(
    x: torch.Tensor,
    core: torch.Tensor,
    factors: Sequence[torch.Tensor | None],
    layout: Layout,
    args: ConvArgs,
) -> torch.Tensor:
    """Tucker(-2) convolution: input factors, core convolution, output factors.

    ``factors`` are the stored factors aligned with the layout's modes
    ``[O.., I.., (kk)]`` (``None`` where a mode has no factor); reduced ones are
    applied as ``U ⊗ I_t``.
    """
    b, _, h, w = x.shape
    p, q = len(layout.out_modes), len(layout.in_modes)
    z = x.reshape(b, *layout.in_modes, h, w)
    for j in range(q):
        u = factors[p + j]
        if u is not None:
            z = apply_kron_identity(u.T, z, 1 + j)
    r_in = z.shape[1 : 1 + q]
    z = z.reshape(b, -1, h, w)
    r_out = core.shape[:p]
    weight = core.reshape(_prod(r_out), _prod(r_in), *layout.kernel)
    stride, padding, dilation = args
    z = F.conv2d(z, weight, stride=stride, padding=padding, dilation=dilation)
    ho, wo = z.shape[-2:]
    z = z.reshape(b, *r_out, ho, wo)
    for j in range(p):
        u = factors[j]
        if u is not None:
            z = apply_kron_identity(u, z, 1 + j)
    return z.reshape(b, layout.c_out, ho, wo)


def _tt_step(z: torch.Tensor, core: torch.Tensor, t: int, i_k: int, o_k: int) -> torch.Tensor:
    """One TT-conv core on ``z (B, I_k, M, R_l, P)``; returns ``(B, M, O_k, R_r, P)``.

    A core stored reduced ``(R_l/t, I_k·O_k/t, R_r)`` (merged mode index ``i·O_k + o``) is
    contracted in place: the bond's sub-index ``s`` picks the mode entries with ``(i·O_k+o) % t = s``.
    """
    b, _, m, r, npos = z.shape
    s = core.shape[2]
    if t == 1:
        return torch.einsum("bimrp,rios->bmosp", z, core.reshape(r, i_k, o_k, s))
    a = r // t
    if o_k % t == 0:  # s is the minor digit of o: o = (o', s)
        zr = z.reshape(b, i_k, m, a, t, npos)
        y = torch.einsum("bimaxp,aios->bmoxsp", zr, core.reshape(a, i_k, o_k // t, s))
        return y.reshape(b, m, o_k, s, npos)
    # general case: gather, for every (i, o), the bond copy s = (i·O_k + o) % t
    n = torch.arange(i_k * o_k, device=z.device)
    zg = z.reshape(b, i_k, m, a, t, npos).permute(0, 2, 5, 3, 1, 4)[..., n // o_k, n % t]  # (B, M, P, a, n)
    g = core[:, n // t, :]  # (a, n, R_r): each stored entry used t times, never t² (the effective core)
    y = torch.einsum("bmpaio,aios->bmosp", zg.reshape(b, m, npos, a, i_k, o_k), g.reshape(a, i_k, o_k, s))
    return y


def tt_conv(
    x: torch.Tensor, cores: Sequence[torch.Tensor], layout: Layout, args: ConvArgs, ts: Sequence[int] | None = None
) -> torch.Tensor:
    """TT-conv (Garipov et al. 2016): spatial core as a per-channel convolution, then one core per mode pair.

    ``cores`` are the stored cores, ``ts`` their STP factors (reduced cores contracted in place;
    the first core is full).
    """
    ts = [1] * len(cores) if ts is None else list(ts)
    b, c, h, w = x.shape
    stride, padding, dilation = args
    if layout.has_spatial:
        k0 = cores[0]
        rank = k0.shape[2]
        wk = k0.reshape(layout.kk, rank).T.reshape(rank, 1, *layout.kernel)
        z = F.conv2d(x.reshape(b * c, 1, h, w), wk, stride=stride, padding=padding, dilation=dilation)
        ho, wo = z.shape[-2:]
        z = z.reshape(b, c, rank, ho * wo)
        chain, tchain = cores[1:], ts[1:]
    else:
        xs = strided_1x1(x, args)
        ho, wo = xs.shape[-2:]
        z = xs.reshape(b, c, 1, ho * wo)
        chain, tchain = cores, ts
    state = c
    npos = ho * wo
    for k, (core, t) in enumerate(zip(chain, tchain)):
        r = z.shape[2]
        i_k, o_k = layout.in_modes[k], layout.out_modes[k]
        m = state // i_k
        z = _tt_step(z.reshape(b, i_k, m, r, npos), core, t, i_k, o_k)
        state = m * o_k
        z = z.reshape(b, state, core.shape[2], npos)
    return z.reshape(b, layout.c_out, ho, wo)


def _spatial_conv(z: torch.Tensor, sp: torch.Tensor, t: int, layout: Layout, args: ConvArgs) -> torch.Tensor:
    """The k x k convolution of TR-conv on ``z (N, R_q, H, W)`` with the spatial core ``sp``.

    A reduced core ``(R_q/t, kk/t, R_s)`` (kernel position ``i·t+s`` reads only input rank
    channel ``a·t+s``) runs on the unfolded input: the t matching entries are summed, then
    ``a`` and ``i`` are contracted with the stored core.
    """
    stride, padding, dilation = args
    if t == 1:
        weight = sp.permute(2, 0, 1).reshape(sp.shape[2], sp.shape[0], *layout.kernel)
        return F.conv2d(z, weight, stride=stride, padding=padding, dilation=dilation)
    n, _, h, w = z.shape
    a, i, rs = sp.shape
    cols = F.unfold(z, layout.kernel, dilation=dilation, padding=padding, stride=stride)  # (N, R_q·kk, L)
    cols = torch.diagonal(cols.reshape(n, a, t, i, t, -1), dim1=2, dim2=4)  # (N, a, i, L, s)
    y = torch.einsum("naiLs,aib->nbL", cols, sp)
    ho = (h + 2 * padding[0] - dilation[0] * (layout.kernel[0] - 1) - 1) // stride[0] + 1
    return y.reshape(n, rs, ho, -1)


def tr_conv(
    x: torch.Tensor, cores: Sequence[torch.Tensor], layout: Layout, args: ConvArgs, ts: Sequence[int] | None = None
) -> torch.Tensor:
    """TR-conv (Wang et al. 2018): merged input cores, k x k convolution on the ranks, merged output cores.

    ``cores`` are the stored cores, ``ts`` their STP factors: reduced cores are merged and
    contracted in place (a reduced first output core keeps its sub-index ``s`` through the merge).
    """
    ts = [1] * len(cores) if ts is None else list(ts)
    b, c, h, w = x.shape
    q = len(layout.in_modes)
    s = 1 if layout.has_spatial else 0
    m_in = merge_chain(cores[:q], ts[:q])  # (R0, C_in, Rq)
    m_out = merge_chain_st(cores[q + s :], ts[q + s :])  # (R_{q+s}/t, O', M, R0)
    t_out = ts[q + s]
    r0 = m_in.shape[0]
    if s:
        z = torch.einsum("bcp,acz->bazp", x.reshape(b, c, h * w), m_in)
        z = _spatial_conv(z.reshape(b * r0, -1, h, w), cores[q], ts[q], layout, args)
        ho, wo = z.shape[-2:]
        z = z.reshape(b, r0, -1, ho * wo)
    else:
        xs = strided_1x1(x, args)
        ho, wo = xs.shape[-2:]
        z = torch.einsum("bcp,acz->bazp", xs.reshape(b, c, ho * wo), m_in)
    if t_out == 1:
        y = torch.einsum("bazp,zoa->bop", z, m_out.reshape(m_out.shape[0], -1, r0))
    else:
        zr = z.reshape(b, r0, -1, t_out, ho * wo)
        y = torch.einsum("bazsp,zoma->bosmp", zr, m_out)
    return y.reshape(b, layout.c_out, ho, wo)


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for v in xs:
        out *= int(v)
    return out
