"""Factor-by-factor forward passes of factorized convolutions (pure functions).

Each function maps an input ``x (B, C_in, H, W)`` to ``(B, C_out, H', W')`` without
forming the dense weight. Train/ring functions take the *effective* cores
(after semi-tensor expansion); the Tucker one takes the stored factors and
applies ``U ⊗ I_t`` without forming the Kronecker product.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..stp import apply_kron_identity
from ..tensors.functional import merge_chain
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


def tt_conv(x: torch.Tensor, cores: Sequence[torch.Tensor], layout: Layout, args: ConvArgs) -> torch.Tensor:
    """TT-conv (Garipov et al. 2016): spatial core as a per-channel convolution, then one core per mode pair."""
    b, c, h, w = x.shape
    stride, padding, dilation = args
    if layout.has_spatial:
        k0 = cores[0]
        rank = k0.shape[2]
        wk = k0.reshape(layout.kk, rank).T.reshape(rank, 1, *layout.kernel)
        z = F.conv2d(x.reshape(b * c, 1, h, w), wk, stride=stride, padding=padding, dilation=dilation)
        ho, wo = z.shape[-2:]
        z = z.reshape(b, c, rank, ho * wo)
        chain = cores[1:]
    else:
        xs = strided_1x1(x, args)
        ho, wo = xs.shape[-2:]
        z = xs.reshape(b, c, 1, ho * wo)
        chain = cores
    state = c
    npos = ho * wo
    for k, core in enumerate(chain):
        r, _, s = core.shape
        i_k, o_k = layout.in_modes[k], layout.out_modes[k]
        m = state // i_k
        z = torch.einsum("bimrp,rios->bmosp", z.reshape(b, i_k, m, r, npos), core.reshape(r, i_k, o_k, s))
        state = m * o_k
        z = z.reshape(b, state, s, npos)
    return z.reshape(b, layout.c_out, ho, wo)


def tr_conv(x: torch.Tensor, cores: Sequence[torch.Tensor], layout: Layout, args: ConvArgs) -> torch.Tensor:
    """TR-conv (Wang et al. 2018): merged input cores, k x k convolution on the ranks, merged output cores."""
    b, c, h, w = x.shape
    q = len(layout.in_modes)
    s = 1 if layout.has_spatial else 0
    m_in = merge_chain(cores[:q])  # (R0, C_in, Rq)
    m_out = merge_chain(cores[q + s :])  # (R_{q+s}, C_out, R0)
    r0 = m_in.shape[0]
    if s:
        z = torch.einsum("bcp,acz->bazp", x.reshape(b, c, h * w), m_in)
        sp = cores[q]  # (Rq, kk, Rs)
        weight = sp.permute(2, 0, 1).reshape(sp.shape[2], sp.shape[0], *layout.kernel)
        stride, padding, dilation = args
        z = F.conv2d(z.reshape(b * r0, -1, h, w), weight, stride=stride, padding=padding, dilation=dilation)
        ho, wo = z.shape[-2:]
        z = z.reshape(b, r0, -1, ho * wo)
    else:
        xs = strided_1x1(x, args)
        ho, wo = xs.shape[-2:]
        z = torch.einsum("bcp,acz->bazp", xs.reshape(b, c, ho * wo), m_in)
    y = torch.einsum("bazp,zoa->bop", z, m_out)
    return y.reshape(b, layout.c_out, ho, wo)


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for v in xs:
        out *= int(v)
    return out
