"""Decomposition of a dense tensor into the stored parameters of a :class:`FactorSpec`.

* Tucker / STTu: (semi-tensor) HOSVD. For a reduced factor the mode index is split
  into ``(i, s)`` and the SVD is taken over ``i`` with ``s`` moved to the columns,
  so that ``U ⊗ I_t`` has orthonormal columns.
* TT / STT: TT-SVD (Oseledets 2011), swept from the last core to the first; a
  reduced core of reading B is the SVD of the remainder with its copy index moved
  to the rows (exact for tensors that have the semi-tensor structure).
* TR / STR: TR-SVD (Zhao et al. 2016): a first SVD splits off the ring bond, then
  the same sweep; the first core (always full) absorbs the change of basis. The
  TT-SVD closed into a ring (zero-padded closing bond) is tried too, and the
  decomposition with the smaller error is returned.

With ``t = 1`` these are the classical algorithms exactly. Semi-tensor results are
projections onto a constrained family; :func:`refine` improves them by gradient
steps on the reconstruction error.
"""

from __future__ import annotations

import torch

from ..stp import unfold
from .functional import factors_to_tensor
from .spec import FactorSpec

__all__ = ["decompose", "refine", "relative_error"]


def decompose(tensor: torch.Tensor, spec: FactorSpec) -> list[torch.Tensor]:
    """Stored parameters of ``spec`` that approximate ``tensor`` (shape ``spec.modes``)."""
    if tuple(tensor.shape) != spec.modes:
        raise ValueError(
            f"decompose: tensor of shape {tuple(tensor.shape)} does not match the spec's modes {spec.modes}"
        )
    x = tensor.detach().to(torch.float64)
    if spec.base == "tucker":
        out = _hosvd(x, spec)
    elif spec.reading == "A" and spec.t > 1:
        out = _chain_svd(x, _reading_a_as_classical(spec))
    else:
        out = _chain_svd(x, spec)
    return [p.to(tensor.dtype) for p in out]


def relative_error(tensor: torch.Tensor, spec: FactorSpec, params: list[torch.Tensor]) -> float:
    """``‖tensor − reconstruction‖ / ‖tensor‖``."""
    rec = factors_to_tensor(spec, params)
    return float(torch.linalg.norm(rec - tensor) / torch.linalg.norm(tensor).clamp_min(1e-30))


def refine(
    tensor: torch.Tensor,
    spec: FactorSpec,
    params: list[torch.Tensor],
    steps: int = 200,
    lr: float = 1e-2,
) -> list[torch.Tensor]:
    """Improve ``params`` by Adam steps on the squared reconstruction error."""
    target = tensor.detach()
    scale = target.norm().clamp_min(1e-30)
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    opt = torch.optim.Adam(leaves, lr=lr)
    best = [p.detach().clone() for p in leaves]
    best_err = float("inf")
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        err = ((factors_to_tensor(spec, leaves) - target).norm() / scale) ** 2
        if err.item() < best_err:
            best_err = err.item()
            best = [p.detach().clone() for p in leaves]
        err.backward()
        opt.step()
    return best


# ---------------------------------------------------------------- internals
def _left_singular(mat: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``rank`` left singular vectors and ``S·Vh`` rows, zero-padded past the numerical rank.

    Directions of (numerically) zero singular values are dropped, not kept as arbitrary
    orthonormal vectors: a sweep that goes on factorizing the left part would otherwise
    spend its later ranks on them.
    """
    u, s, vh = torch.linalg.svd(mat, full_matrices=False)
    tol = (s[0] if s.numel() else 0.0) * max(mat.shape) * torch.finfo(mat.dtype).eps
    k = min(rank, int((s > tol).sum()))
    left = mat.new_zeros(mat.shape[0], rank)
    right = mat.new_zeros(rank, mat.shape[1])
    left[:, :k] = u[:, :k]
    right[:k] = s[:k, None] * vh[:k]
    return left, right


def _hosvd(x: torch.Tensor, spec: FactorSpec) -> list[torch.Tensor]:
    t = spec.t
    factors: list[torch.Tensor] = []
    core = x
    for k, (n, r) in enumerate(zip(spec.modes, spec.ranks)):
        if r is None:
            continue
        mat = unfold(x, k)
        if spec.is_reduced(k):
            mat = mat.reshape(n // t, -1)  # rows i, columns (s, rest)
            u, _ = _left_singular(mat, r // t)
            eff = torch.kron(u, torch.eye(t, dtype=u.dtype))
        else:
            u, _ = _left_singular(mat, r)
            eff = u
        factors.append(u)
        core = torch.movedim(torch.tensordot(eff.T, core, dims=([1], [k])), 0, k)
    return [core] + factors


def _chain_svd(x: torch.Tensor, spec: FactorSpec) -> list[torch.Tensor]:
    """Right-to-left TT-SVD; for a ring the better of TR-SVD and a train closed into a ring.

    A reduced core ``k`` is found from the SVD of the remainder with the copy
    index ``s`` of its mode moved to the rows: for a tensor that has the
    semi-tensor structure that matrix has rank ``R_{k-1}/t``, so the sweep is
    exact for such tensors (train) and a projection otherwise. The first core
    stays full and absorbs what is left.

    A tensor ring is tried two ways and the one with the smaller error is kept:
    TR-SVD, whose first SVD puts ``R_0·R_1`` bond slots on mode 0 (all of them
    used only when ``n_0 ≥ R_0·R_1``), and the TT-SVD with bond ranks ``≤ R_k``
    zero-padded to a ring (a train is a ring with a closing bond of 1), which is
    exact whenever the tensor's TT ranks are within the ring's.
    """
    if spec.order == 1:
        if spec.base == "tr":
            raise ValueError("decompose: a tensor ring needs at least two modes")
        return [x.reshape(1, spec.modes[0], 1)]
    if spec.base != "tr":
        return _train_svd(x, spec)
    candidates = [_ring_svd(x, spec), _train_as_ring(x, spec)]
    return min(candidates, key=lambda cores: relative_error(x, spec, cores))


def _sweep(rem: torch.Tensor, spec: FactorSpec) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Cores ``1..d-1`` from a remainder ``(n_0·…·n_{d-1}·lead, right)``, and what is left for core 0."""
    d, t, modes = spec.order, spec.t, spec.modes
    cores: list[torch.Tensor] = []
    for k in range(d - 1, 0, -1):
        n, right = modes[k], rem.shape[1]
        rows = rem.shape[0] // n
        left = spec.bond(k)
        if spec.is_reduced(k):
            mat = rem.reshape(rows, n // t, t, right).permute(0, 2, 1, 3).reshape(rows * t, -1)
            u, v = _left_singular(mat, left // t)
            cores.append(v.reshape(left // t, n // t, right))
            # u: rows (P, s), cols a  ->  bond index (a, s) with a major
            rem = u.reshape(rows, t, left // t).permute(0, 2, 1).reshape(rows, left)
        else:
            u, v = _left_singular(rem.reshape(rows, n * right), left)
            cores.append(v.reshape(left, n, right))
            rem = u
    return cores[::-1], rem


def _train_svd(x: torch.Tensor, spec: FactorSpec) -> list[torch.Tensor]:
    """TT-SVD with the spec's bond ranks; for a ring spec, a train with closing bond 1."""
    rest, rem = _sweep(x.reshape(-1, 1), spec)
    return [rem.reshape(1, spec.modes[0], spec.bond(1))] + rest


def _ring_svd(x: torch.Tensor, spec: FactorSpec) -> list[torch.Tensor]:
    """TR-SVD (Zhao et al. 2016): a first SVD splits off the closing bond, then the sweep."""
    modes = spec.modes
    r0, r1 = spec.bond(0), spec.bond(1)
    head, rest = _left_singular(x.reshape(modes[0], -1), r0 * r1)
    # rest: (r0*r1, n_1..n_{d-1}) -> rows (r1, n_1..n_{d-1}), right bond r0
    cores, rem = _sweep(rest.reshape(r0, r1, -1).permute(1, 2, 0).reshape(-1, r0), spec)
    # rem: (r1, R_1) maps the first SVD's bond onto the swept bond; fold it into core 0.
    core0 = head.reshape(modes[0], r0, r1).permute(1, 0, 2) @ rem
    return [core0.contiguous()] + cores


def _train_as_ring(x: torch.Tensor, spec: FactorSpec) -> list[torch.Tensor]:
    """The TT-SVD of ``x`` with the ring's inner ranks, its closing bond zero-padded to ``R_0``."""
    cores = _train_svd(x, spec)
    r0 = spec.bond(0)
    first, last = cores[0], cores[-1]
    cores[0] = torch.cat([first, first.new_zeros(r0 - 1, *first.shape[1:])], dim=0)
    cores[-1] = torch.cat([last, last.new_zeros(*last.shape[:2], r0 - 1)], dim=2)
    return cores


def _reading_a_as_classical(spec: FactorSpec) -> FactorSpec:
    ranks = tuple(r // spec.t for r in spec.ranks)  # type: ignore[operator]
    return FactorSpec(spec.base, spec.modes, ranks, t=1)
