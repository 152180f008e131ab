"""compress() by dotted path, analytic summaries, and the paper's calibration numbers."""

import json
import subprocess
import sys

import pytest
import torch

from stsearch.compress import compress, factorizable_layers, fold_dense_layers, fold_for_inference
from stsearch.layers import FactorizedBase, FactorizedConv2d
from stsearch.models import create_model
from stsearch.plan import LayerPlan, NetworkPlan
from stsearch.summary import summarize

# (model, family, rank, t, spec value) from shared/spec/STP.md, reading B, default splits.
CALIBRATION = [
    ("resnet32", "tt", 14, 1, 2.7),
    ("resnet32", "stt", 14, 2, 9.5),
    ("wrn28_10", "tr", 16, 1, 97.0),
    ("wrn28_10", "str", 16, 2, 179.0),
    ("wrn28_10", "tr", 10, 1, 225.0),
]


def _plan(fam, rank, t):
    return NetworkPlan.uniform(["layer*"], LayerPlan(fam, rank=rank, t=t))


@pytest.mark.parametrize("model,fam,rank,t,expected", CALIBRATION)
def test_calibration_compression_factors(model, fam, rank, t, expected):
    plan = _plan(fam, rank, t)
    analytic = summarize(model, plan)
    assert analytic.dense_params == {"resnet32": 464_154, "wrn28_10": 36_479_194}[model]
    assert analytic.compression == pytest.approx(expected, rel=0.05)
    # The real model through compress() has exactly the analytic parameter count.
    with torch.no_grad():
        real = compress(create_model(model), plan, inplace=True)
    assert sum(p.numel() for p in real.parameters()) == analytic.params


def test_paper_headline_ratios():
    tt, stt = (summarize("resnet32", _plan(f, 14, t)).compression for f, t in (("tt", 1), ("stt", 2)))
    assert round(tt) == 3 and round(stt) == 10 or round(stt) == 9
    assert stt / tt > 3


def test_compress_replaces_only_planned_layers_and_runs():
    model = create_model("resnet20")
    plan = NetworkPlan(layers={
        "layer1.*.conv*": LayerPlan("stt", rank=8, t=2),
        "layer3.0.conv1": LayerPlan("tucker", rank=16),
        "layer3.0.conv2": LayerPlan("dense"),
    })
    out = compress(model, plan)
    assert isinstance(out.get_submodule("layer1.0.conv1"), FactorizedConv2d)
    assert isinstance(out.get_submodule("layer3.0.conv1"), FactorizedConv2d)
    assert type(out.get_submodule("layer3.0.conv2")) is torch.nn.Conv2d
    assert type(out.get_submodule("conv1")) is torch.nn.Conv2d
    assert type(model.get_submodule("layer1.0.conv1")) is torch.nn.Conv2d  # original untouched
    assert out(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    s = summarize("resnet20", plan)
    assert s.params == sum(p.numel() for p in out.parameters())


def test_later_patterns_override_earlier_ones():
    plan = NetworkPlan(layers={"layer*": LayerPlan("tt", rank=4), "layer2.*": LayerPlan("dense")})
    names = list(factorizable_layers(create_model("resnet20")))
    matched = plan.match(names)
    assert matched["layer1.0.conv1"].family == "tt"
    assert matched["layer2.1.conv2"].family == "dense"
    assert "conv1" not in matched and "fc" not in matched


def test_unmatched_pattern_is_an_error():
    with pytest.raises(ValueError, match=r"plan entries \['layer9.\*'\] match no conv/linear layer"):
        compress(create_model("resnet20"), {"layers": {"layer9.*": {"family": "tt", "rank": 4}}})


def test_decompose_init_keeps_pretrained_function_at_full_rank():
    model = create_model("resnet8_digits").eval().double()
    plan = NetworkPlan(layers={"layer1.0.conv1": LayerPlan("tucker", rank=16)})
    out = compress(model, plan, init="decompose").eval()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(out(x), model(x), rtol=1e-6, atol=1e-8)


def test_plan_roundtrip_json_and_yaml(tmp_path):
    plan = NetworkPlan(model="resnet32", layers={"layer1.*": LayerPlan("stt", rank=(4, 4, 4), t=2, in_modes=(4, 2, 2))})
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"plan{suffix}"
        plan.save(path)
        assert NetworkPlan.load(path).to_dict() == plan.to_dict()


def test_plan_rejects_unknown_keys_and_families():
    with pytest.raises(ValueError, match=r"unknown layer-plan key\(s\) \['rnak'\]"):
        NetworkPlan.from_dict({"layers": {"x": {"family": "tt", "rnak": 3}}})
    with pytest.raises(ValueError, match="unknown family 'cp'"):
        LayerPlan("cp")


def test_summary_cli(tmp_path):
    plan = tmp_path / "p.json"
    NetworkPlan(model="resnet32", layers={"layer*": LayerPlan("stt", rank=14, t=2)}).save(plan)
    out = subprocess.run([sys.executable, "-m", "stsearch.models", "--summary", "resnet32", "--plan", str(plan), "--json"],
                         capture_output=True, text=True, check=True)
    totals = json.loads(out.stdout)
    assert totals["params"] == 48_714 and totals["dense_params"] == 464_154
    table = subprocess.run([sys.executable, "-m", "stsearch.models", "--summary", "resnet32", "--plan", str(plan)],
                           capture_output=True, text=True, check=True).stdout
    assert "layer3.4.conv2" in table and "CF 9.53x" in table
    bad = subprocess.run([sys.executable, "-m", "stsearch", "summary", "resnet32", "--plan", str(tmp_path / "nope.json")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "does not exist" in bad.stderr


@pytest.mark.parametrize("family", ["tucker", "sttu", "tt", "stt", "tr", "str"])
def test_fold_dense_layers_keeps_the_function_and_folds_only_dense_mode_layers(family):
    torch.manual_seed(0)
    t = 2 if family.startswith("st") else 1
    plan = NetworkPlan.from_dict({"layers": {
        "layer1.*": {"family": family, "rank": 4, "t": t, "forward": "dense"},
        "layer2.*": {"family": family, "rank": 4, "t": t, "forward": "factorized"},
        "fc": {"family": "tt" if family in ("tt", "stt") else family, "rank": 2, "forward": "dense"}}})
    model = compress(create_model("resnet8_digits"), plan).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        want = model(x)
        folded, names = fold_dense_layers(model, x)
        assert sorted(names) == sorted(n for n, m in model.named_modules()
                                       if isinstance(m, FactorizedBase) and m.forward_mode == "dense")
        assert "fc" in names and not any(n.startswith("layer2.") for n in names)
        assert isinstance(folded.fc, torch.nn.Linear) and type(folded.layer1[0].conv1) is torch.nn.Conv2d
        assert isinstance(folded.layer2[0].conv1, FactorizedConv2d)
        assert isinstance(model.fc, FactorizedBase)  # a copy was folded, not the model
        torch.testing.assert_close(folded(x), want, atol=1e-5, rtol=1e-5)
        every, all_names = fold_dense_layers(model, every=True)
        assert not any(isinstance(m, FactorizedBase) for m in every.modules())
        assert len(all_names) == sum(isinstance(m, FactorizedBase) for m in model.modules())
        torch.testing.assert_close(every(x), want, atol=1e-5, rtol=1e-5)
        conv = model.layer2[0].conv1.to_dense()  # stride 2, padding 1: the geometry is kept
        assert (conv.stride, conv.padding, conv.bias) == ((2, 2), (1, 1), None)


@pytest.mark.parametrize("faster", ["dense", "factorized"])
def test_fold_for_inference_folds_what_the_inference_timing_prefers(faster, monkeypatch):
    """The measured choice, not the MAC rule, decides which auto layers are folded."""
    import stsearch.layers.tuning as tuning

    monkeypatch.setattr(tuning, "_measure", lambda layer, *a, **k: {"dense": 1.0 if faster == "dense" else 2.0,
                                                                     "factorized": 1.0 if faster != "dense" else 2.0})
    torch.manual_seed(0)
    plan = NetworkPlan.uniform(["layer*.conv*"], LayerPlan("stt", rank=2, t=2))
    model = compress(create_model("resnet8_digits"), plan).eval()
    layers = [n for n, m in model.named_modules() if isinstance(m, FactorizedBase)]
    folded, names = fold_for_inference(model, (1, 8, 8), batch=1)
    assert sorted(names) == (sorted(layers) if faster == "dense" else [])
    assert all(m.tuned_mode is None for m in model.modules() if isinstance(m, FactorizedBase))  # model untouched
    assert not folded.training
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)
    untuned, untuned_names = fold_for_inference(model, (1, 8, 8), tune=False)  # the MAC rule: no measurement
    assert untuned_names == [n for n in layers if model.get_submodule(n).resolved_mode() == "dense"]
