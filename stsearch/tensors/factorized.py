"""``FactorizedTensor``: the trainable parameters of one :class:`FactorSpec`."""

from __future__ import annotations

import math

import torch
from torch import nn

from .decompose import decompose, refine
from .functional import effective_factors, factors_to_tensor
from .spec import FactorSpec

__all__ = ["FactorizedTensor", "paths_per_entry"]


def paths_per_entry(spec: FactorSpec) -> int:
    """Number of non-zero products summed into one entry of the full tensor.

    With i.i.d. zero-mean factor entries of variance ``σ_k²`` the full tensor's
    entries have variance ``paths · ∏ σ_k²``; semi-tensor expansion removes a
    factor ``t`` from every bond it splits.
    """
    t = spec.t
    if spec.base == "tucker":
        n = 1
        for k, r in enumerate(spec.ranks):
            if r is not None:
                n *= r // t if spec.is_reduced(k) else r
        return n
    shapes = spec.param_shapes()
    bonds = range(1, spec.order) if spec.base == "tt" else range(spec.order)
    n = 1
    for k in bonds:
        if spec.reading == "A" or not spec.is_reduced(k):
            n *= shapes[k][0]
        else:
            n *= spec.bond(k) // t
    return n


class FactorizedTensor(nn.Module):
    """Parameters of a Tucker/TT/TR tensor or its semi-tensor version.

    ``to_tensor()`` returns the full tensor of shape ``spec.modes``;
    ``effective()`` the expanded factors (a reference: contractions use the stored ones in place).
    """

    def __init__(
        self,
        spec: FactorSpec,
        *,
        std: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.factors = nn.ParameterList(
            [nn.Parameter(torch.empty(s, device=device, dtype=dtype)) for s in spec.param_shapes()]
        )
        self.reset_parameters(std)

    @torch.no_grad()
    def reset_parameters(self, std: float = 1.0) -> None:
        """Random normal factors whose full tensor has entries of standard deviation ``std``.

        Every factor gets the same variance, chosen from :func:`paths_per_entry`;
        the factors are then rescaled so the realized standard deviation is ``std``.
        """
        if self.factors[0].is_meta:
            return
        n_factors = len(self.factors)
        var = (std**2 / paths_per_entry(self.spec)) ** (1.0 / n_factors)
        for p in self.factors:
            p.normal_(0.0, math.sqrt(var))
        # Products of many normals are heavy-tailed: match the realized std exactly.
        realized = float(self.to_tensor().float().std()) if self.spec.numel > 1 else 0.0
        if realized > 0 and math.isfinite(realized):
            scale = (std / realized) ** (1.0 / n_factors)
            for p in self.factors:
                p.mul_(scale)

    @classmethod
    def from_tensor(
        cls, tensor: torch.Tensor, spec: FactorSpec, *, refine_steps: int = 0
    ) -> "FactorizedTensor":
        """Decompose ``tensor`` (shape ``spec.modes``) into a new factorized tensor."""
        params = decompose(tensor, spec)
        if refine_steps > 0:
            params = refine(tensor, spec, params, steps=refine_steps)
        out = cls(spec, device=tensor.device, dtype=tensor.dtype)
        out.load_factors(params)
        return out

    @torch.no_grad()
    def load_factors(self, params: list[torch.Tensor]) -> None:
        """Copy ``params`` (shapes of ``spec.param_shapes()``) into the parameters."""
        for p, v in zip(self.factors, params, strict=True):
            p.copy_(v)

    def effective(self) -> list[torch.Tensor]:
        """The expanded factors (a reference for tests; no contraction uses them)."""
        return effective_factors(self.spec, list(self.factors))

    def to_tensor(self) -> torch.Tensor:
        return factors_to_tensor(self.spec, list(self.factors))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.factors)

    def extra_repr(self) -> str:
        s = self.spec
        return f"family={s.family}, modes={list(s.modes)}, ranks={list(s.ranks)}, t={s.t}, reading={s.reading}"
