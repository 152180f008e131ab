"""Reduced (semi-tensor) cores contracted in place equal the expanded reference exactly.

The reference expands every reduced core with ``expand_st_core`` (Tucker: ``U ⊗ I_t``) and runs
the classical contraction; the package's layers never build those expanded cores.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from stsearch.layers import FactorizedConv2d, FactorizedLinear
from stsearch.layers.contract import tr_conv, tt_conv, tucker_conv
from stsearch.layers.costs import layer_cost
from stsearch.plan import LayerPlan
from stsearch.tensors.functional import effective_factors, tr_to_tensor, tt_to_tensor, tucker_to_tensor

D = torch.float64
ST = [("sttu", 8), ("stt", 8), ("str", 8)]
# (c_in, c_out, kernel): 64 = 4x4x4 everywhere; 16 -> 32 has an output mode 2 < t=4 (TT gather path);
# a 2x2 kernel gives TR a spatial mode 4 that t divides (reduced spatial core).
CONVS = [(64, 64, 3), (16, 32, 3), (16, 32, 2)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _reference(layer, params, x, args):
    """Output of the classical contraction with the expanded cores (dense or factor by factor)."""
    spec, layout = layer.spec, layer.layout
    eff = effective_factors(spec, params)
    if layer.resolved_mode() == "dense":
        if spec.base == "tucker":
            it = iter(eff[1:])
            full = tucker_to_tensor(eff[0], [None if r is None else next(it) for r in spec.ranks])
        else:
            full = (tt_to_tensor if spec.base == "tt" else tr_to_tensor)(eff)
        w = layout.to_weight(full)
        return F.conv2d(x, w, layer.bias, *args)
    if spec.base == "tucker":
        it = iter(eff[1:])
        y = tucker_conv(x, eff[0], [None if r is None else next(it) for r in spec.ranks], layout, args)
    else:
        y = (tt_conv if spec.base == "tt" else tr_conv)(x, eff, layout, args)
    return y + layer.bias.view(1, -1, 1, 1)


def _check(layer, x, ref_fn):
    params = list(layer.weight_tensor.factors) + [layer.bias]
    x = x.clone().requires_grad_(True)
    y = layer(x)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x] + params, g)
    y_ref = ref_fn(x)
    grads_ref = torch.autograd.grad(y_ref, [x] + params, g)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fam,rank", ST)
@pytest.mark.parametrize("t", [2, 4])
@pytest.mark.parametrize("mode", ["dense", "factorized"])
@pytest.mark.parametrize("c_in,c_out,k", CONVS)
def test_conv_in_place_equals_expanded_reference(fam, rank, t, mode, c_in, c_out, k):
    layout, spec = LayerPlan(fam, rank=rank, t=t).resolve(c_out, c_in, (k, k), name="c")
    assert any(tk > 1 for tk in _ts(spec))
    layer = FactorizedConv2d(layout, spec, padding=k // 2, bias=True, forward_mode=mode, dtype=D)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, c_in, 6, 6, dtype=D)
    params = list(layer.weight_tensor.factors)
    _check(layer, x, lambda z: _reference(layer, params, z, layer.conv_args))
    dense = F.conv2d(x, layer.weight(), layer.bias, *layer.conv_args)
    torch.testing.assert_close(layer(x), dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fam,rank", ST)
@pytest.mark.parametrize("t", [2, 4])
@pytest.mark.parametrize("mode", ["dense", "factorized"])
def test_linear_in_place_equals_expanded_reference(fam, rank, t, mode):
    layout, spec = LayerPlan(fam, rank=rank, t=t).resolve(32, 64, (1, 1), name="fc")
    layer = FactorizedLinear(layout, spec, bias=True, forward_mode=mode, dtype=D)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(5, 64, dtype=D)
    params = list(layer.weight_tensor.factors)
    args = ((1, 1), (0, 0), (1, 1))

    def ref(z):
        return _reference(layer, params, z.reshape(-1, 64, 1, 1), args).reshape(5, 32)

    _check(layer, x, ref)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight(), layer.bias), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fam", ["stt", "str"])
def test_reading_a_layers_match_dense(fam):
    layout, spec = LayerPlan(fam, rank=8, t=2, reading="A").resolve(64, 64, (3, 3), name="a")
    for mode in ("dense", "factorized"):
        layer = FactorizedConv2d(layout, spec, padding=1, forward_mode=mode, dtype=D)
        x = torch.randn(2, 64, 5, 5, dtype=D)
        torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight(), None, padding=1), rtol=1e-10, atol=1e-10)


def _ts(spec):
    from stsearch.tensors.functional import core_factors

    return core_factors(spec)


@pytest.mark.parametrize("fam,rank", ST)
@pytest.mark.parametrize("t", [2, 4])
@pytest.mark.parametrize("mode", ["dense", "factorized"])
@pytest.mark.parametrize("c_in,c_out,k", CONVS)
def test_mac_count_equals_flop_counter_for_reduced_cores(fam, rank, t, mode, c_in, c_out, k):
    layout, spec = LayerPlan(fam, rank=rank, t=t).resolve(c_out, c_in, (k, k), name="c")
    layer = FactorizedConv2d(layout, spec, padding=k // 2, forward_mode=mode, dtype=D)
    x = torch.randn(3, c_in, 6, 6, dtype=D)
    with FlopCounterMode(display=False) as counter:
        layer(x)
    assert counter.get_total_flops() == 2 * layer.cost().forward_macs(mode, batch=3)


CLASSICAL = {"sttu": "tucker", "stt": "tt", "str": "tr"}


@pytest.mark.parametrize("t", [2, 4])
@pytest.mark.parametrize("kernel", [(3, 3), (1, 1)])
def test_reduced_cores_cost_one_over_t_of_the_classical_ones(t, kernel):
    """At equal rank, every term of a reduced core is the classical term divided by t."""
    p = 64
    for st, rank in ST:
        classic = CLASSICAL[st]
        lay, spec = LayerPlan(st, rank=rank, t=t).resolve(64, 64, kernel, name="c")
        lay_c, spec_c = LayerPlan(classic, rank=rank).resolve(64, 64, kernel, name="c")
        assert lay == lay_c
        st_cost, cl_cost = layer_cost(lay, spec, p, p), layer_cost(lay_c, spec_c, p, p)
        assert st_cost.macs_dense == cl_cost.macs_dense
        if st == "stt":  # all cores but the first (spatial or first pair) are reduced
            assert st_cost.macs_reconstruct * t == cl_cost.macs_reconstruct
            first = 64 * rank * lay.kk * p if lay.has_spatial else 64 * 1 * 16 * rank * p // 4
            assert (st_cost.macs_factorized - first) * t == cl_cost.macs_factorized - first
        elif st == "sttu":  # every factor reduced; the core convolution is the same
            assert st_cost.macs_reconstruct * t == cl_cost.macs_reconstruct
            core = p * rank * rank * lay.kk
            assert (st_cost.macs_factorized - core) * t == cl_cost.macs_factorized - core
        else:  # ring: reduced terms / t (the full spatial core keeps its own)
            assert st_cost.macs_reconstruct < cl_cost.macs_reconstruct
            if not lay.has_spatial:
                # a half that starts on a reduced core keeps the copy index compact too: t or better
                assert st_cost.macs_reconstruct * t <= cl_cost.macs_reconstruct
                assert st_cost.macs_factorized_fixed * t <= cl_cost.macs_factorized_fixed
            first_in = p * 64 * rank * rank  # input contraction with the merged input cores (core 0 full)
            spatial = p * rank**3 * lay.kk if lay.has_spatial else 0  # spatial mode 9 stays full
            assert (st_cost.macs_factorized - first_in - spatial) * t == cl_cost.macs_factorized - first_in - spatial
