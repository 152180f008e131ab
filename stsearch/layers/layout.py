"""How a convolution or linear weight is tensorized for each family.

A weight ``W (C_out, C_in, kh, kw)`` with ``C_in = ∏ I_j`` and ``C_out = ∏ O_j`` is
viewed as a higher-order tensor whose modes depend on the family:

* ``tt`` — TT-conv (Garipov et al. 2016): ``[kh·kw] + [I_j·O_j for j]`` (the spatial
  core first; ``len(I) == len(O)``; the merged index is ``i_j·O_j + o_j``).
* ``tr`` — TR-conv (Wang et al. 2018): ``[I_1..I_q] + [kh·kw] + [O_1..O_p]`` closed into a ring.
* ``tucker`` — ``[O_1..O_p] + [I_1..I_q] + [kh·kw]`` with no factor on the spatial mode
  (Tucker-2 when there is one input and one output mode).

The spatial mode is dropped when ``kh·kw == 1`` (1x1 convolutions and linear layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Layout", "PAPER_SPLITS", "default_split", "factorizations"]

# Channel splits of the paper's calibration (shared/spec/STP.md).
PAPER_SPLITS: dict[int, tuple[int, ...]] = {
    16: (4, 2, 2),
    32: (4, 4, 2),
    64: (4, 4, 4),
    160: (10, 4, 4),
    320: (10, 8, 4),
    640: (10, 8, 8),
}


def factorizations(n: int, d: int, *, min_factor: int = 1, max_factor: int | None = None) -> list[tuple[int, ...]]:
    """All ordered ways to write ``n`` as a product of ``d`` factors within bounds, sorted."""
    hi = n if max_factor is None else max_factor
    if d == 1:
        return [(n,)] if min_factor <= n <= hi else []
    out: list[tuple[int, ...]] = []
    for f in range(max(1, min_factor), min(n, hi) + 1):
        if n % f == 0:
            out.extend((f,) + rest for rest in factorizations(n // f, d - 1, min_factor=min_factor, max_factor=max_factor))
    return sorted(out)


def default_split(n: int, d: int = 3) -> tuple[int, ...]:
    """The paper's split when it has one for ``n`` and ``d == 3``, else the most balanced one.

    Balanced means the smallest largest factor, factors sorted in decreasing order.
    """
    if d == 3 and n in PAPER_SPLITS:
        return PAPER_SPLITS[n]
    cands = factorizations(n, d)
    if not cands:
        return (n,) + (1,) * (d - 1)
    best = min(cands, key=lambda f: (max(f), -min(f)))
    return tuple(sorted(best, reverse=True))


@dataclass(frozen=True)
class Layout:
    """Tensorization of one weight for one classical family (``tucker``, ``tt`` or ``tr``)."""

    base: str
    out_modes: tuple[int, ...]
    in_modes: tuple[int, ...]
    kernel: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        if self.base not in ("tucker", "tt", "tr"):
            raise ValueError(f"Layout: unknown base family {self.base!r}; allowed: tucker, tt, tr")
        if self.base == "tt" and len(self.in_modes) != len(self.out_modes):
            raise ValueError(
                f"TT layout needs as many input as output modes, got in {list(self.in_modes)} "
                f"and out {list(self.out_modes)}; give splits of equal length"
            )

    @property
    def c_out(self) -> int:
        return math.prod(self.out_modes)

    @property
    def c_in(self) -> int:
        return math.prod(self.in_modes)

    @property
    def kk(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def has_spatial(self) -> bool:
        return self.kk > 1

    @property
    def spatial(self) -> list[int]:
        return [self.kk] if self.has_spatial else []

    def modes(self) -> tuple[int, ...]:
        """Mode sizes of the tensorized weight."""
        if self.base == "tt":
            return tuple(self.spatial + [i * o for i, o in zip(self.in_modes, self.out_modes)])
        if self.base == "tr":
            return tuple(list(self.in_modes) + self.spatial + list(self.out_modes))
        return tuple(list(self.out_modes) + list(self.in_modes) + self.spatial)

    def weight_shape(self) -> tuple[int, ...]:
        return (self.c_out, self.c_in, *self.kernel)

    # ------------------------------------------------------------------ maps
    def _expanded(self) -> tuple[list[int], list[int]]:
        """Shape of the tensor with merged modes split, and the permutation to (O.., I.., kk)."""
        p, q = len(self.out_modes), len(self.in_modes)
        s = 1 if self.has_spatial else 0
        if self.base == "tt":
            shape = self.spatial + [x for pair in zip(self.in_modes, self.out_modes) for x in pair]
            outs = [s + 2 * j + 1 for j in range(p)]
            ins = [s + 2 * j for j in range(q)]
            perm = outs + ins + ([0] if s else [])
        elif self.base == "tr":
            shape = list(self.in_modes) + self.spatial + list(self.out_modes)
            perm = [q + s + j for j in range(p)] + list(range(q)) + ([q] if s else [])
        else:
            shape = list(self.out_modes) + list(self.in_modes) + self.spatial
            perm = list(range(p + q + s))
        return shape, perm

    def to_weight(self, full: torch.Tensor) -> torch.Tensor:
        """Tensorized weight (shape ``modes()``) -> ``(C_out, C_in, kh, kw)``."""
        shape, perm = self._expanded()
        return full.reshape(shape).permute(perm).reshape(self.weight_shape())

    def from_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """``(C_out, C_in, kh, kw)`` (or ``(C_out, C_in)``) -> tensorized weight."""
        shape, perm = self._expanded()
        inv = [0] * len(perm)
        for i, p in enumerate(perm):
            inv[p] = i
        permuted_shape = [shape[p] for p in perm]
        return weight.reshape(permuted_shape).permute(inv).reshape(self.modes())
