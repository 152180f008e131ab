"""Shape-level description of a factorized tensor: families, core shapes, parameter counts.

Everything here is integer arithmetic; no tensor is built. The parameter counts
used for compression factors (``FactorSpec.num_params``) and the shapes of the
parameters a factorized layer owns (``FactorSpec.param_shapes``) come from the
same place, so the analytic and the measured counts agree exactly.

Families: ``tucker``, ``tt``, ``tr`` (classical) and ``sttu``, ``stt``, ``str``
(semi-tensor versions with STP factor ``t``). ``t = 1`` gives the classical
decomposition exactly.

Semi-tensor train/ring come in two readings (see ``shared/spec/STP.md``):

* ``"B"`` (default): core ``k >= 2`` is stored reduced as ``(R_{k-1}/t, n_k/t, R_k)``
  and used through its effective form ``G~[(a,s),(i,s'),b] = G[a,i,b]·δ_{ss'}``;
  the first core, and any core whose mode size is not divisible by ``t``, stay full.
* ``"A"``: cores ``(R_{k-1}/t, n_k, R_k/t)`` (boundary bonds of a train stay 1). This is
  a plain train/ring of rank ``R/t`` and is offered for comparison only.

Semi-tensor Tucker stores each factor ``U_n`` reduced as ``(n_n/t, R_n/t)`` and uses
``U_n ⊗ I_t``; a mode whose size is not divisible by ``t`` keeps a full factor.
A Tucker mode with rank ``None`` has no factor (the core keeps the full mode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["FAMILIES", "ST_FAMILIES", "BASE_FAMILY", "FactorSpec", "canonical_family", "mode_is_reduced"]

BASE_FAMILY = {
    "tucker": "tucker",
    "tt": "tt",
    "tr": "tr",
    "sttu": "tucker",
    "stt": "tt",
    "str": "tr",
}
FAMILIES = tuple(BASE_FAMILY)
ST_FAMILIES = ("sttu", "stt", "str")
READINGS = ("A", "B")


def canonical_family(family: str, where: str = "") -> str:
    """Return the lower-case family name or raise a one-line ``ValueError``."""
    fam = str(family).lower()
    if fam not in BASE_FAMILY:
        raise ValueError(
            f"{where}unknown decomposition family {family!r}; allowed: {', '.join(FAMILIES)}"
        )
    return fam


def mode_is_reduced(base: str, k: int, mode: int, t: int, reading: str = "B") -> bool:
    """Whether core/factor ``k`` (over a mode of size ``mode``) of a ``base`` decomposition
    (``tucker``, ``tt``, ``tr``) is stored reduced under STP factor ``t`` (a Tucker mode with a factor)."""
    if t == 1:
        return False
    if base == "tucker":
        return mode % t == 0
    if reading == "A":
        return True
    return k >= 1 and mode % t == 0


@dataclass(frozen=True)
class FactorSpec:
    """A factorized tensor of shape ``modes`` in one family.

    ``ranks``: Tucker — one per mode (``None`` = no factor on that mode);
    TT — ``d-1`` inner bond ranks; TR — ``d`` bond ranks, bond ``k`` sits
    before core ``k`` (bond 0 closes the ring).
    """

    family: str
    modes: tuple[int, ...]
    ranks: tuple[int | None, ...]
    t: int = 1
    reading: str = "B"
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f"layer {self.name!r}: " if self.name else ""
        object.__setattr__(self, "family", canonical_family(self.family, where))
        object.__setattr__(self, "modes", tuple(int(m) for m in self.modes))
        object.__setattr__(self, "ranks", tuple(None if r is None else int(r) for r in self.ranks))
        object.__setattr__(self, "t", int(self.t))
        object.__setattr__(self, "reading", str(self.reading).upper())
        self._validate(where)

    # ------------------------------------------------------------------ basics
    @property
    def base(self) -> str:
        """Classical family this spec belongs to: ``tucker``, ``tt`` or ``tr``."""
        return BASE_FAMILY[self.family]

    @property
    def order(self) -> int:
        return len(self.modes)

    @property
    def numel(self) -> int:
        """Number of entries of the full tensor."""
        return math.prod(self.modes)

    def bond(self, k: int) -> int:
        """Rank of bond ``k`` of a train/ring (bond ``k`` precedes core ``k``)."""
        if self.base == "tt":
            if k == 0 or k == self.order:
                return 1
            return int(self.ranks[k - 1])  # type: ignore[arg-type]
        return int(self.ranks[k % self.order])  # type: ignore[arg-type]

    def is_reduced(self, k: int) -> bool:
        """Whether core/factor ``k`` is stored in reduced (semi-tensor) form."""
        if self.base == "tucker" and self.ranks[k] is None:  # no factor on this mode
            return False
        return mode_is_reduced(self.base, k, self.modes[k], self.t, self.reading)

    # ------------------------------------------------------------ shapes/count
    def param_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the stored parameters, in order (Tucker: core first, then factors)."""
        t = self.t
        if self.base == "tucker":
            core = tuple(m if r is None else r for m, r in zip(self.modes, self.ranks))
            shapes: list[tuple[int, ...]] = [core]
            for k, (m, r) in enumerate(zip(self.modes, self.ranks)):
                if r is None:
                    continue
                shapes.append((m // t, r // t) if self.is_reduced(k) else (m, r))
            return shapes
        shapes = []
        for k, n in enumerate(self.modes):
            left, right = self.bond(k), self.bond(k + 1)
            if not self.is_reduced(k):
                shapes.append((left, n, right))
            elif self.reading == "A":
                shapes.append((_div_bond(left, t), n, _div_bond(right, t)))
            else:
                shapes.append((left // t, n // t, right))
        return shapes

    def effective_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the factors after semi-tensor expansion (what contractions see)."""
        if self.base == "tucker":
            core = tuple(m if r is None else r for m, r in zip(self.modes, self.ranks))
            return [core] + [(m, r) for m, r in zip(self.modes, self.ranks) if r is not None]
        if self.reading == "A":
            return self.param_shapes()
        return [(self.bond(k), n, self.bond(k + 1)) for k, n in enumerate(self.modes)]

    def num_params(self) -> int:
        """Number of stored parameters (closed form of the family)."""
        return sum(math.prod(s) for s in self.param_shapes())

    def compression(self) -> float:
        """Full tensor size divided by the number of parameters."""
        return self.numel / self.num_params()

    # -------------------------------------------------------------- validation
    def _validate(self, where: str) -> None:
        if not self.modes or any(m < 1 for m in self.modes):
            raise ValueError(f"{where}mode sizes must be positive integers, got {list(self.modes)}")
        if self.t < 1:
            raise ValueError(f"{where}STP factor t must be >= 1, got {self.t}")
        if self.reading not in READINGS:
            raise ValueError(f"{where}reading must be 'A' or 'B', got {self.reading!r}")
        if self.family in ("tucker", "tt", "tr") and self.t != 1:
            st = {"tucker": "sttu", "tt": "stt", "tr": "str"}[self.family]
            raise ValueError(
                f"{where}family {self.family!r} is classical and takes t=1, got t={self.t}; use {st!r} for t>1"
            )
        d = self.order
        expected = {"tucker": d, "tt": d - 1, "tr": d}[self.base]
        if len(self.ranks) != expected:
            raise ValueError(
                f"{where}{self.family} over {d} modes {list(self.modes)} needs {expected} ranks, "
                f"got {len(self.ranks)}: {list(self.ranks)}"
            )
        for k, r in enumerate(self.ranks):
            if r is None:
                if self.base != "tucker":
                    raise ValueError(f"{where}{self.family} rank {k} is None; train/ring ranks must be integers")
                continue
            if r < 1:
                raise ValueError(f"{where}rank {k} must be >= 1, got {r}")
            if self.t > 1 and r % self.t != 0 and self._rank_needs_division(k):
                allowed = _multiples(self.t, self._rank_bound(k))
                raise ValueError(
                    f"{where}rank {r} (entry {k} of ranks {list(self.ranks)}) is not divisible by t={self.t}; allowed ranks: {allowed}"
                )
            bound = self._rank_bound(k)
            if r > bound:
                raise ValueError(
                    f"{where}rank {r} (entry {k} of ranks {list(self.ranks)}) exceeds the {self.base.upper()} bound {bound} "
                    f"for modes {list(self.modes)}; allowed ranks: 1..{bound}"
                )

    def _rank_needs_division(self, k: int) -> bool:
        if self.base == "tucker":
            return self.modes[k] % self.t == 0
        if self.reading == "A":
            return True
        # reading B divides the left bond of every reduced core; ranks[k] is bond k+1 (tt) / k (tr)
        core = k + 1 if self.base == "tt" else k
        return core < self.order and core >= 1 and self.modes[core] % self.t == 0

    def _rank_bound(self, k: int) -> int:
        """Largest rank that can ever be useful.

        Tucker: the mode size. TT: the largest cut bound ``max_j min(∏_{i<=j} n_i, ∏_{i>j} n_i)``,
        applied to every bond (a bond above its own cut's bound is redundant but legal,
        as in the paper's uniform-rank layers). TR: ``isqrt(∏ n_i)``.
        """
        if self.base == "tucker":
            return self.modes[k]
        if self.base == "tt":
            return max(
                min(math.prod(self.modes[: j + 1]), math.prod(self.modes[j + 1 :]))
                for j in range(self.order - 1)
            )
        return max(1, math.isqrt(self.numel))


def _div_bond(bond: int, t: int) -> int:
    return bond if bond == 1 else bond // t


def _multiples(t: int, bound: int) -> str:
    values = list(range(t, bound + 1, t))
    if len(values) > 8:
        return f"{values[0]}, {values[1]}, ..., {values[-1]} (multiples of {t} up to {bound})"
    return ", ".join(str(v) for v in values) or f"none (t={t} exceeds the bound {bound})"
