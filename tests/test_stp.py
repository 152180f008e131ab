"""Semi-tensor product maths against explicit Kronecker references."""

import math

import pytest
import torch

from stsearch.stp import apply_kron_identity, fold, kron_identity, stp, stp_mode_n, stp_reference, unfold

torch.manual_seed(0)
D = torch.float64


def _explicit(a, b):
    """Definition with torch.kron and eye written out independently of the package."""
    n, p = a.shape[1], b.shape[0]
    l = math.lcm(n, p)
    return torch.kron(a, torch.eye(l // n, dtype=D)) @ torch.kron(b, torch.eye(l // p, dtype=D))


@pytest.mark.parametrize("m,n,p,q", [(3, 4, 4, 5), (2, 6, 3, 4), (3, 2, 6, 5), (2, 4, 6, 3), (1, 5, 3, 2), (4, 12, 2, 3)])
def test_stp_matches_kronecker_definition(m, n, p, q):
    a, b = torch.randn(m, n, dtype=D), torch.randn(p, q, dtype=D)
    l = math.lcm(n, p)
    out = stp(a, b)
    assert out.shape == (m * l // n, q * l // p)
    torch.testing.assert_close(out, _explicit(a, b), rtol=0, atol=1e-12)
    torch.testing.assert_close(stp_reference(a, b), _explicit(a, b), rtol=0, atol=1e-12)


def test_t1_is_ordinary_product():
    a, b = torch.randn(3, 5, dtype=D), torch.randn(5, 2, dtype=D)
    torch.testing.assert_close(stp(a, b), a @ b)
    torch.testing.assert_close(kron_identity(a, 1), a)


@pytest.mark.parametrize("shapes", [((2, 6), (3, 4), (2, 5)), ((3, 4), (8, 2), (6, 3)), ((2, 3), (5, 4), (6, 2))])
def test_associativity(shapes):
    a, b, c = (torch.randn(*s, dtype=D) for s in shapes)
    torch.testing.assert_close(stp(stp(a, b), c), stp(a, stp(b, c)), rtol=1e-10, atol=1e-10)


def test_divisible_cases_do_not_form_kronecker_products(monkeypatch):
    a, b = torch.randn(3, 8, dtype=D), torch.randn(2, 5, dtype=D)  # n = t·p
    c, e = torch.randn(3, 2, dtype=D), torch.randn(6, 4, dtype=D)  # p = t·n
    expected = (_explicit(a, b), _explicit(c, e))

    def no_kron(*_args):
        raise AssertionError("a Kronecker product was formed")

    monkeypatch.setattr(torch, "kron", no_kron)
    torch.testing.assert_close(stp(a, b), expected[0])
    torch.testing.assert_close(stp(c, e), expected[1])


def test_apply_kron_identity_equals_explicit():
    u = torch.randn(3, 4, dtype=D)
    x = torch.randn(2, 8, 5, dtype=D)  # axis 1 = 4 * t with t = 2
    ref = torch.einsum("ij,bjk->bik", torch.kron(u, torch.eye(2, dtype=D)), x)
    torch.testing.assert_close(apply_kron_identity(u, x, 1), ref)
    with pytest.raises(ValueError, match="not a multiple"):
        apply_kron_identity(u, torch.randn(2, 6, 5, dtype=D), 1)


def test_unfold_fold_roundtrip():
    x = torch.randn(3, 4, 5, dtype=D)
    for mode in range(3):
        torch.testing.assert_close(fold(unfold(x, mode), mode, x.shape), x)


@pytest.mark.parametrize("mode,rows,t", [(0, 2, 2), (1, 3, 2), (2, 5, 3), (1, 4, 1)])
def test_semi_tensor_mode_n_product(mode, rows, t):
    shape = [4, 6, 9]
    shape[mode] = {0: 4, 1: 6, 2: 9}[mode]
    x = torch.randn(*shape, dtype=D)
    u = torch.randn(rows, shape[mode] // t, dtype=D)
    y = stp_mode_n(x, u, mode)
    # Definition: Y_(n) = U ⋉ X_(n)
    expected_unfolded = _explicit(u, unfold(x, mode))
    new_shape = list(shape)
    new_shape[mode] = rows * t
    assert tuple(y.shape) == tuple(new_shape)
    torch.testing.assert_close(unfold(y, mode), expected_unfolded)


def test_mode_n_rejects_non_dividing_factor():
    with pytest.raises(ValueError, match="does not divide"):
        stp_mode_n(torch.randn(4, 5), torch.randn(2, 3), 0)


def test_stp_rejects_non_matrices():
    with pytest.raises(ValueError, match="two matrices"):
        stp(torch.randn(2, 3, 4), torch.randn(3, 4))
