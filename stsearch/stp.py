"""Semi-tensor product (STP) maths as pure torch functions.

Conventions follow ``shared/spec/STP.md``: the *left* semi-tensor product of
``A`` (m x n) and ``B`` (p x q) with ``l = lcm(n, p)`` is

    A ⋉ B = (A ⊗ I_{l/n}) (B ⊗ I_{l/p})        of size (m·l/n) x (q·l/p).

``stp`` picks the Kronecker-free fast path when one inner dimension divides
the other and falls back to the explicit definition otherwise.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "kron_identity",
    "stp",
    "stp_reference",
    "stp_mode_n",
    "apply_kron_identity",
    "unfold",
    "fold",
]


def kron_identity(a: torch.Tensor, t: int) -> torch.Tensor:
    """Return ``a ⊗ I_t`` for a matrix ``a``."""
    if t == 1:
        return a
    eye = torch.eye(t, dtype=a.dtype, device=a.device)
    return torch.kron(a, eye)


def stp_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Left STP by its definition, forming both Kronecker products explicitly."""
    _check_matrices(a, b)
    n, p = a.shape[1], b.shape[0]
    lcm = math.lcm(n, p)
    return kron_identity(a, lcm // n) @ kron_identity(b, lcm // p)


def stp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Left semi-tensor product ``a ⋉ b`` of two matrices (any shapes)."""
    _check_matrices(a, b)
    m, n = a.shape
    p, q = b.shape
    if n == p:
        return a @ b
    if n % p == 0:
        t = n // p
        # A (B ⊗ I_t): column index of A is (row of B, copy s).
        return torch.einsum("mps,pq->mqs", a.reshape(m, p, t), b).reshape(m, q * t)
    if p % n == 0:
        t = p // n
        # (A ⊗ I_t) B: row index of B is (column of A, copy s).
        return torch.einsum("mk,ksq->msq", a, b.reshape(n, t, q)).reshape(m * t, q)
    return stp_reference(a, b)


def apply_kron_identity(u: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """Apply ``(u ⊗ I_t)`` along axis ``dim`` of ``x`` without forming the product.

    ``u`` has shape (r, i); axis ``dim`` of ``x`` has length ``i·t``; the result
    has length ``r·t`` on that axis. ``t`` is inferred from the shapes.
    """
    size = x.shape[dim]
    r, i = u.shape
    if size % i != 0:
        raise ValueError(
            f"apply_kron_identity: axis {dim} has length {size}, not a multiple of the factor's {i} columns"
        )
    t = size // i
    xm = torch.movedim(x, dim, -1)
    lead = xm.shape[:-1]
    xm = xm.reshape(*lead, i, t)
    ym = torch.einsum("ri,...it->...rt", u, xm).reshape(*lead, r * t)
    return torch.movedim(ym, -1, dim)


def unfold(x: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-``mode`` matricization: rows index ``mode``, columns the other modes in order."""
    return torch.movedim(x, mode, 0).reshape(x.shape[mode], -1)


def fold(mat: torch.Tensor, mode: int, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Inverse of :func:`unfold` for a tensor of the given full ``shape``."""
    shape = tuple(shape)
    moved = (shape[mode],) + shape[:mode] + shape[mode + 1 :]
    return torch.movedim(mat.reshape(moved), 0, mode)


def stp_mode_n(x: torch.Tensor, u: torch.Tensor, mode: int) -> torch.Tensor:
    """Semi-tensor mode-n product ``Y = X ⋉_n U``, defined by ``Y_(n) = U ⋉ X_(n)``.

    ``u`` must have ``x.shape[mode] / t`` columns for an integer ``t``; this is
    then the classical mode-n product with the factor ``U ⊗ I_t`` and the new
    size of ``mode`` is ``rows(U)·t``. (Other shapes would stretch the other
    modes of ``X`` and have no tensor of the same order as a result.)
    """
    if x.shape[mode] % u.shape[1] != 0:
        raise ValueError(
            f"stp_mode_n: factor with {u.shape[1]} columns does not divide mode {mode} "
            f"of size {x.shape[mode]}; use a factor whose column count divides the mode size"
        )
    return apply_kron_identity(u, x, mode)


def _check_matrices(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(
            f"stp expects two matrices, got tensors with {a.dim()} and {b.dim()} dimensions; reshape them to 2-D first"
        )
