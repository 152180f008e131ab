"""Factorized tensors: counts, reconstruction, decomposition, initialization, validation."""

import math

import pytest
import torch

from stsearch.tensors import (
    FactorizedTensor,
    FactorSpec,
    decompose,
    factors_to_tensor,
    refine,
    relative_error,
    tr_to_tensor,
    tt_to_tensor,
)

D = torch.float64
MODES = (8, 4, 6, 4)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _tt_closed_form(modes, r):
    d = len(modes)
    return modes[0] * r + sum(modes[k] * r * r for k in range(1, d - 1)) + modes[-1] * r


# ---------------------------------------------------------------- counts
@pytest.mark.parametrize("r", [2, 4, 6])
def test_tt_and_tr_counts_match_closed_forms(r):
    modes = (9, 16, 4, 4)
    assert FactorSpec("tt", modes, (r,) * 3).num_params() == _tt_closed_form(modes, r)
    assert FactorSpec("tr", modes, (r,) * 4).num_params() == sum(modes) * r * r


def test_semi_tensor_counts_divide_reduced_cores_by_t_squared():
    modes, r, t = (9, 16, 4, 4), 14, 2
    # Reading B: first core full, others (divisible by t) reduced by t².
    stt = FactorSpec("stt", modes, (r,) * 3, t=t)
    assert stt.num_params() == 9 * r + (16 * r * r + 4 * r * r + 4 * r) // t**2
    stre = FactorSpec("str", (4, 2, 2, 9, 4, 2, 2), (r,) * 7, t=t)
    # core 0 full, spatial (9) not divisible -> full, the other five reduced
    assert stre.num_params() == 4 * r * r + 9 * r * r + (2 + 2 + 4 + 2 + 2) * r * r // t**2
    sttu = FactorSpec("sttu", (16, 32, 9), (8, 12, None), t=t)
    assert sttu.num_params() == 8 * 12 * 9 + (16 * 8 + 32 * 12) // t**2


def test_reading_a_equals_plain_ring_of_rank_r_over_t():
    a = FactorSpec("str", MODES, (8,) * 4, t=2, reading="A")
    plain = FactorSpec("tr", MODES, (4,) * 4)
    assert a.param_shapes() == plain.param_shapes()
    ft = FactorizedTensor(a, dtype=D)
    torch.testing.assert_close(ft.to_tensor(), tr_to_tensor(list(ft.factors)))


@pytest.mark.parametrize(
    "family,ranks,t",
    [("tucker", (4, 3, 5, 2), 1), ("sttu", (4, 2, 6, 2), 2), ("tt", (4, 8, 4), 1), ("stt", (4, 8, 4), 2),
     ("tr", (2, 4, 6, 4), 1), ("str", (2, 4, 6, 4), 2), ("str", (4, 4, 6, 4), 2)],
)
def test_parameter_count_equals_stored_parameters(family, ranks, t):
    spec = FactorSpec(family, MODES, ranks, t=t)
    ft = FactorizedTensor(spec, dtype=D)
    assert ft.num_params() == spec.num_params() == sum(p.numel() for p in ft.parameters())
    assert ft.to_tensor().shape == MODES


# ------------------------------------------------------ t = 1 is classical
@pytest.mark.parametrize("st,classic,ranks", [("sttu", "tucker", (4, 3, 5, 2)), ("stt", "tt", (4, 8, 4)), ("str", "tr", (2, 4, 6, 4))])
def test_t1_semi_tensor_equals_classical_exactly(st, classic, ranks):
    a, b = FactorSpec(st, MODES, ranks, t=1), FactorSpec(classic, MODES, ranks)
    assert a.param_shapes() == b.param_shapes()
    x = torch.randn(*MODES, dtype=D)
    pa, pb = decompose(x, a), decompose(x, b)
    for u, v in zip(pa, pb):
        assert torch.equal(u, v)
    assert torch.equal(factors_to_tensor(a, pa), factors_to_tensor(b, pb))


def test_tt_and_tr_contractions_against_explicit_sums():
    g = [torch.randn(1, 3, 2, dtype=D), torch.randn(2, 4, 3, dtype=D), torch.randn(3, 2, 1, dtype=D)]
    ref = torch.einsum("xia,ajb,bky->ijk", *g)
    torch.testing.assert_close(tt_to_tensor(g), ref)
    h = [torch.randn(2, 3, 3, dtype=D), torch.randn(3, 4, 2, dtype=D), torch.randn(2, 2, 2, dtype=D)]
    torch.testing.assert_close(tr_to_tensor(h), torch.einsum("aib,bjc,cka->ijk", *h))


# ---------------------------------------------------- full-rank recovery
@pytest.mark.parametrize(
    "family,ranks",
    [("tucker", (8, 4, 6, 4)), ("tt", (8, 24, 4)), ("tr", (2, 4, 24, 8))],
)
def test_full_rank_reconstructs_random_tensor(family, ranks):
    x = torch.randn(*MODES, dtype=D)
    spec = FactorSpec(family, MODES, ranks)
    params = decompose(x, spec)
    assert relative_error(x, spec, params) < 1e-5


@pytest.mark.parametrize(
    "family,ranks",
    [("tt", (16,) * 6), ("tr", (16,) * 7), ("tr", (8,) * 7)],
)
def test_ranks_above_the_tensors_own_are_exact(family, ranks):
    """Bond ranks at or above the tensor's TT ranks reconstruct it exactly, uniform ring ranks included.

    A 16->16 3x3 conv weight in TR layout (modes 4,2,2,9,4,2,2) has TT ranks 4,8,16,16,4,2:
    a TT or a ring with every rank 16 holds it exactly; so does a rank-8 ring for 8->8 (2,2,2,9,2,2,2).
    """
    modes = (4, 2, 2, 9, 4, 2, 2) if ranks[0] == 16 else (2, 2, 2, 9, 2, 2, 2)
    x = torch.randn(*modes, dtype=D)
    spec = FactorSpec(family, modes, ranks)
    assert relative_error(x, spec, decompose(x, spec)) < 1e-10


def test_ring_decomposition_keeps_the_better_of_tr_svd_and_a_closed_train():
    from stsearch.tensors.decompose import _ring_svd, _train_as_ring

    wins = {"ring": 0, "train": 0}
    for seed in range(6):
        torch.manual_seed(seed)
        spec = FactorSpec("str", (4, 2, 2, 9, 4, 2, 2), (8,) * 7, t=2)
        x = torch.randn(*spec.modes, dtype=D)
        e_ring = relative_error(x, spec, _ring_svd(x, spec))
        e_train = relative_error(x, spec, _train_as_ring(x, spec))
        assert relative_error(x, spec, decompose(x, spec)) == pytest.approx(min(e_ring, e_train), rel=1e-9)
        wins["ring" if e_ring < e_train else "train"] += 1
    assert wins["ring"] and wins["train"]  # neither candidate is always the better one


@pytest.mark.parametrize("family,ranks", [("sttu", (4, 4, 6, 4)), ("stt", (8, 8, 4))])
def test_semi_tensor_decomposition_recovers_semi_tensor_tensors(family, ranks):
    spec = FactorSpec(family, MODES, ranks, t=2)
    x = FactorizedTensor(spec, dtype=D).to_tensor().detach()
    assert relative_error(x, spec, decompose(x, spec)) < 1e-5


def test_str_decomposition_is_refined_by_gradient_steps():
    torch.manual_seed(1)
    spec = FactorSpec("str", MODES, (4, 8, 8, 8), t=2)
    x = FactorizedTensor(spec, dtype=D).to_tensor().detach()
    p0 = decompose(x, spec)
    e0 = relative_error(x, spec, p0)
    e1 = relative_error(x, spec, refine(x, spec, p0, steps=300))
    assert e1 < 0.9 * e0


def test_truncated_decomposition_error_decreases_with_rank():
    x = torch.randn(*MODES, dtype=D)
    errs = [relative_error(x, s, decompose(x, s)) for s in (FactorSpec("tt", MODES, (r, r, 4)) for r in (2, 4, 8))]
    assert errs[0] > errs[1] > errs[2]


# ----------------------------------------------------- init and gradients
@pytest.mark.parametrize("family,ranks,t", [("tucker", (4, 4, 6, 4), 1), ("sttu", (4, 4, 6, 4), 2), ("tt", (8, 8, 4), 1), ("stt", (8, 8, 4), 2), ("tr", (4, 4, 4, 4), 1), ("str", (4, 4, 4, 4), 2)])
def test_initialization_matches_requested_std_and_gradients_flow(family, ranks, t):
    spec = FactorSpec(family, MODES, ranks, t=t)
    ft = FactorizedTensor(spec, std=0.05)
    full = ft.to_tensor()
    assert abs(full.std().item() - 0.05) < 1e-4
    (full**2).sum().backward()
    for p in ft.factors:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# -------------------------------------------------------------- validation
def test_rank_not_divisible_by_t_is_rejected_with_allowed_values():
    with pytest.raises(ValueError, match=r"layer 'layer1.0.conv1'.*rank 7.*not divisible by t=2.*allowed ranks: 2, 4"):
        FactorSpec("stt", (9, 16, 4, 4), (7, 7, 7), t=2, name="layer1.0.conv1")


def test_rank_above_tt_bound_is_rejected():
    with pytest.raises(ValueError, match=r"layer 'fc'.*rank 99.*exceeds the TT bound 24.*allowed ranks: 1..24"):
        FactorSpec("tt", MODES, (4, 99, 4), name="fc")


def test_classical_family_rejects_t_and_unknown_family():
    with pytest.raises(ValueError, match="use 'stt' for t>1"):
        FactorSpec("tt", MODES, (4, 4, 4), t=2)
    with pytest.raises(ValueError, match="unknown decomposition family 'cp'"):
        FactorSpec("cp", MODES, (4,))


def test_wrong_number_of_ranks():
    with pytest.raises(ValueError, match="needs 3 ranks"):
        FactorSpec("tt", MODES, (4, 4))


def test_compression_of_spec():
    spec = FactorSpec("tt", MODES, (2, 2, 2))
    assert spec.compression() == pytest.approx(math.prod(MODES) / spec.num_params())
