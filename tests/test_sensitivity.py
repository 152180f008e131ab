"""Per-layer sensitivity (:mod:`stsearch.sensitivity`) against a dense reference: each row equals the
model compressed at that one layer and evaluated on its own; the model is left as it was."""

from __future__ import annotations

import torch
from torch import nn

from stsearch.compress import compress
from stsearch.plan import LayerPlan, NetworkPlan
from stsearch.sensitivity import evaluate, layer_candidates, measure_sensitivity
from stsearch.space import SearchSpace


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(40, 1, 8, 8, generator=g), torch.arange(40) % 4


def test_rows_match_the_model_compressed_at_that_layer():
    model, (x, y) = _net(), _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out_before = model.eval()(x)
    cands = [("2", LayerPlan("tucker", rank=2)), ("2", LayerPlan("tt", rank=2, n_modes=2)),
             ("2", LayerPlan("stt", rank=2, t=2, n_modes=2)), ("2", LayerPlan("tucker", rank=8))]
    table = measure_sensitivity(model, cands, x, y, batch_size=16)
    assert len(table) == 4 and list(table["family"]) == ["tucker", "tt", "stt", "tucker"]
    dense_loss, dense_acc = evaluate(model, x, y, batch_size=16)
    assert table.attrs["dense_loss"] == dense_loss and table.attrs["samples"] == 40
    for (layer, plan), (_, row) in zip(cands, table.iterrows()):
        ref = compress(model, NetworkPlan({layer: plan}), init="decompose")  # a copy: the dense reference path
        loss, acc = evaluate(ref, x, y, batch_size=16)
        assert abs(row["loss"] - loss) < 1e-6 and row["accuracy"] == acc
        assert abs(row["delta_loss"] - (loss - dense_loss)) < 1e-6
    full = table.iloc[3]  # Tucker-2 at full rank reconstructs the weight: no change
    assert abs(full["delta_loss"]) < 1e-4 and full["delta_accuracy"] == 0
    assert table.iloc[0]["params"] < table.iloc[0]["dense_params"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is unchanged
    assert torch.equal(model(x), out_before)


def test_candidates_of_a_space_and_infeasible_ones_skipped():
    space = SearchSpace.from_dict({
        "model": "resnet8_digits", "dataset": "digits",
        "layers": [{"match": "layer1.0.conv*", "families": ["tucker", "stt", "dense"], "ranks": [2, 64], "t": [2]}],
    })
    cands = layer_candidates(space)
    assert {layer for layer, _ in cands} == {"layer1.0.conv1", "layer1.0.conv2"}
    assert len(cands) == 2 * 2 * 2  # 2 layers x (tucker, stt) x ranks (2, 64); dense is the reference
    assert {(p.family, p.rank, p.t) for _, p in cands} == {("tucker", 2, 1), ("tucker", 64, 1), ("stt", 2, 2),
                                                         ("stt", 64, 2)}
    from stsearch.models import create_model

    model = create_model("resnet8_digits")
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 10
    table = measure_sensitivity(model, cands, x, y)
    assert 0 < len(table) < len(cands)  # rank 64 exceeds what an STT layer of 16 channels can hold
