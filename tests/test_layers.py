"""Factorized layers against dense layers with the reconstructed weight; MAC counts; modes."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from stsearch.layers import FactorizedConv2d, FactorizedLinear, Layout, default_split, factorizations
from stsearch.plan import LayerPlan

D = torch.float64
FAMILIES = [("tucker", 1, 6), ("sttu", 2, 6), ("tt", 1, 6), ("stt", 2, 6), ("tr", 1, 6), ("str", 2, 6)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _conv_layer(fam, t, rank, mode, c_in=16, c_out=32, k=3, stride=2, padding=1, bias=True, **plan_kw):
    conv = torch.nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=bias).double()
    layout, spec = LayerPlan(fam, rank=rank, t=t, forward=mode, **plan_kw).resolve(c_out, c_in, (k, k), name="x")
    layer = FactorizedConv2d.from_conv(conv, layout, spec, forward_mode=mode)
    if bias:
        with torch.no_grad():
            layer.bias.normal_()
    return layer


@pytest.mark.parametrize("fam,t,rank", FAMILIES)
@pytest.mark.parametrize("mode", ["dense", "factorized"])
@pytest.mark.parametrize("k,stride,padding", [(3, 2, 1), (3, 1, 1), (1, 1, 0), (1, 2, 0), (3, 1, 0)])
def test_conv_matches_dense_conv_with_reconstructed_weight(fam, t, rank, mode, k, stride, padding):
    layer = _conv_layer(fam, t, rank, mode, k=k, stride=stride, padding=padding)
    x = torch.randn(2, 16, 9, 9, dtype=D)
    ref = F.conv2d(x, layer.weight(), layer.bias, stride, padding)
    torch.testing.assert_close(layer(x), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("fam,t,rank", FAMILIES)
@pytest.mark.parametrize("mode", ["dense", "factorized"])
@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
def test_conv_keeps_the_padding_mode_of_the_conv_it_replaces(fam, t, rank, mode, padding_mode):
    conv = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1, padding_mode=padding_mode).double()
    layout, spec = LayerPlan(fam, rank=rank, t=t).resolve(32, 16, (3, 3), name="x")
    layer = FactorizedConv2d.from_conv(conv, layout, spec, forward_mode=mode)
    x = torch.randn(2, 16, 9, 9, dtype=D)
    ref = conv._conv_forward(x, layer.weight(), layer.bias)  # nn.Conv2d's own padding
    torch.testing.assert_close(layer(x), ref, rtol=1e-9, atol=1e-9)
    plain = layer.to_dense()
    assert plain.padding_mode == padding_mode
    torch.testing.assert_close(plain(x), ref, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        FactorizedConv2d(layout, spec, padding=1, padding_mode="mirror")


@pytest.mark.parametrize("fam,t,rank", FAMILIES)
@pytest.mark.parametrize("mode", ["dense", "factorized"])
def test_linear_matches_dense_linear(fam, t, rank, mode):
    lin = torch.nn.Linear(64, 32).double()
    layout, spec = LayerPlan(fam, rank=rank, t=t).resolve(32, 64, (1, 1), name="fc")
    layer = FactorizedLinear.from_linear(lin, layout, spec, forward_mode=mode)
    x = torch.randn(3, 5, 64, dtype=D)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight(), layer.bias), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("fam,t,rank", FAMILIES)
@pytest.mark.parametrize("mode", ["dense", "factorized"])
def test_mac_count_equals_torch_flop_counter(fam, t, rank, mode):
    layer = _conv_layer(fam, t, rank, mode)
    x = torch.randn(4, 16, 8, 8, dtype=D)
    with FlopCounterMode(display=False) as counter:
        layer(x)
    cost = layer.cost()
    assert counter.get_total_flops() == 2 * cost.forward_macs(mode, batch=4)


@pytest.mark.parametrize("fam,t,rank", FAMILIES)
def test_auto_mode_picks_the_cheaper_one_by_weighted_macs(fam, t, rank):
    from stsearch.layers.costs import FACTORIZED_MAC_WEIGHT

    layer = _conv_layer(fam, t, rank, "auto")
    layer(torch.randn(1, 16, 16, 16, dtype=D))
    cost = layer.cost()
    fact = FACTORIZED_MAC_WEIGHT * cost.forward_macs("factorized", layer.batch_hint)
    dense = cost.forward_macs("dense", layer.batch_hint)
    assert layer.resolved_mode() == ("factorized" if fact < dense else "dense")


def test_auto_mode_weighs_factorized_macs_double():
    from stsearch.layers.costs import LayerCost

    def cost(fact: int) -> LayerCost:
        return LayerCost(params=1, dense_params=1, macs_dense=100, macs_factorized=fact,
                         macs_factorized_fixed=0, macs_reconstruct=0)

    assert cost(49).choose(1) == "factorized"  # under half the dense MACs
    assert cost(50).choose(1) == "dense" and cost(70).choose(1) == "dense"  # fewer MACs, but not by enough
    assert cost(70).choose(1, weight=1.0) == "factorized"  # plain MAC counts


def test_auto_mode_depends_on_layer_size():
    big = _conv_layer("tr", 1, 8, "auto", c_in=256, c_out=256, stride=1)
    big(torch.randn(1, 256, 8, 8, dtype=D))
    small = _conv_layer("tt", 1, 14, "auto", c_in=16, c_out=16, stride=1)
    small(torch.randn(1, 16, 32, 32, dtype=D))
    assert big.resolved_mode() == "factorized"
    assert small.resolved_mode() == "dense"


@pytest.mark.parametrize("fam,t,rank", FAMILIES)
@pytest.mark.parametrize("mode", ["dense", "factorized"])
def test_gradients_reach_every_factor(fam, t, rank, mode):
    layer = _conv_layer(fam, t, rank, mode).float()
    layer(torch.randn(2, 16, 8, 8)).square().mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("fam,rank", [("tucker", 16), ("tt", (9, 16)), ("tr", 8), ("tr", 16)])
def test_full_rank_init_from_pretrained_weight_reproduces_conv(fam, rank):
    conv = torch.nn.Conv2d(16, 16, 3, padding=1).double()
    plan = LayerPlan(fam, rank=rank, in_modes=(4, 4), out_modes=(4, 4)) if fam != "tucker" else LayerPlan(fam, rank=rank)
    if fam == "tr" and rank == 8:
        plan = LayerPlan("tr", rank=(4, 4, 16, 16, 4), in_modes=(4, 4), out_modes=(4, 4))  # the TT ranks
    elif fam == "tr":  # a uniform ring rank at least the TT ranks (4, 16, 16, 4) holds the weight too
        plan = LayerPlan("tr", rank=16, in_modes=(4, 4), out_modes=(4, 4))
    layout, spec = plan.resolve(16, 16, (3, 3), name="c")
    layer = FactorizedConv2d.from_conv(conv, layout, spec)
    err = layer.init_from_weight(conv.weight)
    assert err < 1e-5
    torch.testing.assert_close(layer.weight(), conv.weight.detach(), rtol=1e-6, atol=1e-8)


def test_inference_cache_follows_weight_updates():
    layer = _conv_layer("stt", 2, 6, "dense").eval()
    x = torch.randn(1, 16, 8, 8, dtype=D)
    with torch.no_grad():
        y1 = layer(x)
        layer.weight_tensor.factors[1].mul_(2.0)
        y2 = layer(x)
    assert not torch.allclose(y1, y2)
    torch.testing.assert_close(y2, F.conv2d(x, layer.weight().detach(), layer.bias, 2, 1))


def test_layout_roundtrip_and_mode_orders():
    for base in ("tucker", "tt", "tr"):
        lay = Layout(base, (4, 4, 2), (4, 2, 2), (3, 3))
        w = torch.randn(32, 16, 3, 3)
        full = lay.from_weight(w)
        assert tuple(full.shape) == lay.modes()
        assert torch.equal(lay.to_weight(full), w)
    assert Layout("tt", (4, 4, 2), (4, 2, 2), (3, 3)).modes() == (9, 16, 8, 4)
    assert Layout("tr", (4, 4, 2), (4, 2, 2), (3, 3)).modes() == (4, 2, 2, 9, 4, 4, 2)
    assert Layout("tucker", (32,), (16,), (1, 1)).modes() == (32, 16)
    with pytest.raises(ValueError, match="as many input as output modes"):
        Layout("tt", (4, 8), (4, 2, 2), (3, 3))


def test_default_splits_follow_the_paper_and_balance_otherwise():
    assert [default_split(n) for n in (16, 32, 64, 160, 320, 640)] == [
        (4, 2, 2), (4, 4, 2), (4, 4, 4), (10, 4, 4), (10, 8, 4), (10, 8, 8)]
    assert default_split(128, 3) == (8, 4, 4)
    assert default_split(12, 2) == (4, 3)
    assert (2, 2, 4) in factorizations(16, 3) and all(a * b * c == 16 for a, b, c in factorizations(16, 3))
    assert factorizations(16, 3, min_factor=2, max_factor=4) == [(2, 2, 4), (2, 4, 2), (4, 2, 2)]


def test_bad_mode_split_names_layer_and_fix():
    with pytest.raises(ValueError, match=r"layer 'layer2.0.conv1': in_modes \[4, 4\] multiply to 16, not the 32 channels"):
        LayerPlan("tt", rank=4, in_modes=(4, 4), out_modes=(4, 8)).resolve(32, 32, (3, 3), name="layer2.0.conv1")


def test_rank_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"layer 'c'.*rank 5.*not divisible by t=2"):
        LayerPlan("stt", rank=5, t=2).resolve(16, 16, (3, 3), name="c")
    with pytest.raises(ValueError, match=r"layer 'c'.*exceeds the TT bound"):
        LayerPlan("tt", rank=10_000).resolve(16, 16, (3, 3), name="c")
