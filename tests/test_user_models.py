"""The user's own models and datasets: models by reference (registered, ``torchvision:NAME``,
``package.module:callable``), plugins, layers of any model, datasets by reference; bad input.

Real processes, no mocks. The module writer (:func:`write_user_module`), the space writer
(:func:`write_space`) and :func:`cli` are helpers meant for reuse (Ray and worker variants).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

STSEARCH = str(Path(sys.executable).parent / "stsearch")
MODULE = "usermodels"

#: A user module: a plain factory, a registered model, a transformer classifier and broken factories.
USER_MODULE = '''
"""Models of a user project, outside stsearch."""
import torch
from torch import nn

from stsearch.models import register_model


class TinyNet(nn.Module):
    def __init__(self, num_classes=10, width=16, in_channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.head(self.pool(x).flatten(1))


def make_net(num_classes=10, width=16):
    """A plain factory: called with model_kwargs (and num_classes from the dataset)."""
    return TinyNet(num_classes=num_classes, width=width)


@register_model("user_tinynet", input_shape=(1, 8, 8), num_classes=10)
def user_tinynet(num_classes=10, in_channels=1, **kwargs):
    """TinyNet, registered by a plugin."""
    return TinyNet(num_classes=num_classes, in_channels=in_channels, **kwargs)


class SeqClassifier(nn.Module):
    """A transformer-encoder classifier over the 8 rows of an 8x8 image (8 tokens of 8 pixels)."""

    def __init__(self, num_classes=10, d_model=32, heads=4, ff=64):
        super().__init__()
        self.embed = nn.Linear(8, d_model)
        self.encoder = nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x):
        tokens = self.embed(x.flatten(1, 2))
        return self.head(self.encoder(tokens).mean(1))


def seq_classifier(num_classes=10):
    return SeqClassifier(num_classes=num_classes)


def fixed_classes():
    """Takes no num_classes: always 7 outputs."""
    return TinyNet(num_classes=7)


def broken(num_classes=10):
    raise RuntimeError("this factory is broken")


def not_a_module(num_classes=10):
    return {"weights": 1}


NOT_CALLABLE = 3
'''


def write_user_module(folder: Path, name: str = MODULE, text: str = USER_MODULE) -> Path:
    """Write the user's model module ``name``.py into ``folder`` (outside the package); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


def write_space(folder: Path, *, model: str = f"{MODULE}:make_net", dataset: str = "digits",
                layers: list[dict[str, Any]] | None = None, file: str = "space.yaml", **keys: Any) -> Path:
    """A tiny search space (1 epoch, a few steps, one thread) as YAML; ``keys`` add or override top-level keys."""
    space: dict[str, Any] = {
        "name": "user", "model": model, "dataset": dataset,
        "layers": layers or [{"match": "conv2", "families": ["tt", "stt"], "ranks": [2, 4], "t": [2]}],
        "train": {"epochs": 1, "max_steps": 4, "batch_size": 64, "lr": 0.05, "num_threads": 1},
        "sampler": {"name": "random", "seed": 0}, "trials": 2,
    }
    space.update(keys)
    path = folder / file
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def clean_env() -> dict[str, str]:
    """The environment of a child process: no PYTHONPATH (user code must be found through the study)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return env


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``stsearch ARGS`` in ``cwd`` as a user would (a console script, not ``python -m``)."""
    return subprocess.run([STSEARCH, *args], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def python(code: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in ``cwd``."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(out: subprocess.CompletedProcess) -> str:
    """The single ``stsearch: error:`` line of a refused command (exit code 2)."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("stsearch: error: "), out.stderr
    return lines[0]


@pytest.fixture
def project(tmp_path: Path):
    """A user project folder holding ``usermodels.py``, the working directory of the commands."""
    folder = tmp_path / "project"
    write_user_module(folder)
    sys.modules.pop(MODULE, None)  # an in-process test imports this test's copy
    yield folder
    sys.modules.pop(MODULE, None)


# ------------------------------------------------------------------ models by reference (in process)
def test_model_references_build(project, monkeypatch):
    from torch import nn

    from stsearch.models.reference import build_model, parse_model_ref

    monkeypatch.syspath_prepend(str(project))
    assert parse_model_ref("resnet20").kind == "registered"
    assert parse_model_ref("torchvision:resnet18").kind == "torchvision"
    assert parse_model_ref(f"{MODULE}:make_net").kind == "import"
    net = build_model("torchvision:resnet18", num_classes=10)
    assert isinstance(net, nn.Module) and net.fc.out_features == 10
    assert build_model(f"{MODULE}:make_net", {"width": 8}, num_classes=3).head.out_features == 3
    assert build_model(f"{MODULE}:fixed_classes", num_classes=3).head.out_features == 7  # takes no num_classes


def test_space_records_plugins_and_their_folder(project, monkeypatch):
    from stsearch.space import SearchSpace, load_space

    monkeypatch.chdir(project)
    space = load_space(write_space(project, model="user_tinynet", plugins=[MODULE]))
    assert space.plugins == [MODULE] and str(project) in space.python_path
    again = SearchSpace.from_dict(space.to_dict())
    assert again.plugins == [MODULE] and again.layers().keys() == space.layers().keys()


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_user_model_search_export_load(project, tmp_path):
    """A plugin-registered model and an import-path model, searched locally, exported from another folder,
    loaded by ``stsearch.load`` in a fresh interpreter with no PYTHONPATH."""
    results = tmp_path / "results"
    space = write_space(project, model="user_tinynet", plugins=[MODULE], name="plug")
    out = cli("search", "--space", str(space), "--dispatch", "local", "--results-dir", str(results), "--no-progress",
              cwd=project)
    assert out.returncode == 0, out.stderr
    assert "2/2 trained" in out.stdout, out.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    exp = cli("export", "plug", "--results-dir", str(results), "--out", str(tmp_path / "exp"), cwd=elsewhere)
    assert exp.returncode == 0, exp.stderr
    code = (f"import stsearch, torch; m = stsearch.load({str(tmp_path / 'exp')!r}); "
            f"print(tuple(m(torch.zeros(2, 1, 8, 8)).shape))")
    loaded = python(code, cwd=elsewhere)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "(2, 10)"
    status = cli("status", "plug", "--results-dir", str(results), cwd=elsewhere)
    assert status.returncode == 0 and "user_tinynet" in status.stdout, status.stderr

    space2 = write_space(project, model=f"{MODULE}:make_net", name="path", file="path.yaml")
    out = cli("search", "--space", str(space2), "--dispatch", "local", "--results-dir", str(results), "--no-progress",
              cwd=project)
    assert out.returncode == 0 and "2/2 trained" in out.stdout, out.stderr
    folder = next((results / "path" / "trials").iterdir())
    loaded = python(f"import stsearch; print(type(stsearch.load({str(folder)!r})).__name__)", cwd=elsewhere)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "TinyNet", loaded.stderr


@pytest.mark.slow
def test_cli_plugin_option_is_recorded(project, tmp_path):
    """``--plugin`` on search is recorded in the study: resume from another folder needs nothing repeated."""
    results = tmp_path / "results"
    space = write_space(project, model="user_tinynet", name="cliplug", trials=1)
    out = cli("search", "--space", str(space), "--plugin", MODULE, "--dispatch", "none", "--results-dir",
              str(results), cwd=project)
    assert out.returncode == 0, out.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = cli("resume", "cliplug", "--dispatch", "local", "--results-dir", str(results), "--no-progress", cwd=elsewhere)
    assert out.returncode == 0 and "1/1 trained" in out.stdout, out.stderr


# ------------------------------------------------------------------ bad input
BAD_MODELS = [
    ("nosuchmodule:make", r"model: model 'nosuchmodule:make': no module named 'nosuchmodule'"),
    (f"{MODULE}:nothing", rf"model: model '{MODULE}:nothing': module {MODULE} has no attribute 'nothing'"),
    (f"{MODULE}:broken", r"model: model 'usermodels:broken' called with .* raised RuntimeError: this factory is broken"),
    (f"{MODULE}:not_a_module", r"model: model 'usermodels:not_a_module' returned a dict, not a torch.nn.Module"),
    (f"{MODULE}:NOT_CALLABLE", r"model: model 'usermodels:NOT_CALLABLE' is a int, not a callable"),
    ("torchvision:resnet19", r"model: unknown torchvision model 'resnet19'; did you mean"),
    (f"{MODULE}:fixed_classes", r"model: usermodels:fixed_classes outputs 7 classes but dataset 'digits' has 10"),
]


@pytest.mark.parametrize("model,pattern", BAD_MODELS, ids=[m for m, _ in BAD_MODELS])
def test_bad_model_is_one_line_at_its_key(project, tmp_path, model, pattern):
    import re

    results = tmp_path / "results"
    space = write_space(project, model=model)
    line = one_error_line(cli("search", "--space", str(space), "--dispatch", "local", "--results-dir", str(results),
                              cwd=project, timeout=120))
    assert re.search(rf"{re.escape(str(space))}:2: {pattern}", line), line
    assert not results.exists()  # no study created


def test_bad_plugin_is_one_line(project, tmp_path):
    space = write_space(project, model="user_tinynet", plugins=["nosuchplugin"])
    line = one_error_line(cli("search", "--space", str(space), "--results-dir", str(tmp_path / "r"), cwd=project))
    assert "plugins[0]: plugin 'nosuchplugin': no module named 'nosuchplugin'" in line
    line = one_error_line(cli("search", "--space", str(space), "--plugin", "also_missing", cwd=project))
    assert "--plugin 'also_missing': no module named 'also_missing'" in line


# ------------------------------------------------------------------ layers of any model
def test_transformer_linear_layers_compress_and_train(project, monkeypatch):
    """linear1/linear2 and self_attn.out_proj (read as a weight by MultiheadAttention, also on its fused
    inference path) are factorized: gradients reach the factors, eval (fused) equals train-mode output."""
    import torch

    from stsearch.compress import compress, fold_for_inference
    from stsearch.plan import LayerPlan, NetworkPlan

    monkeypatch.syspath_prepend(str(project))
    from usermodels import SeqClassifier

    torch.manual_seed(0)
    dense = SeqClassifier()
    plan = NetworkPlan(layers={"encoder.*": LayerPlan("stt", rank=4, t=2, n_modes=2)})
    net = compress(dense, plan)
    assert type(net.encoder.self_attn.out_proj).__name__ == "FactorizedLinear"
    x = torch.randn(3, 1, 8, 8)
    net(x).sum().backward()
    for name in ("encoder.self_attn.out_proj", "encoder.linear1", "encoder.linear2"):
        grad = net.get_submodule(name).weight_tensor.factors[0].grad
        assert grad is not None and grad.abs().sum() > 0, name
    with torch.no_grad():
        train_out = net.train()(x)
        eval_out = net.eval()(x)
        folded, _ = fold_for_inference(net, (1, 8, 8))
        assert torch.allclose(train_out, eval_out, atol=1e-5)
        assert torch.allclose(folded(x), eval_out, atol=1e-4)
    assert torch.backends.mha.get_fastpath_enabled()  # restored after each call


def test_group_types_select_layers(project, monkeypatch):
    from stsearch.space import load_space

    monkeypatch.chdir(project)
    layers = [{"types": ["Linear"], "match": "encoder.*", "families": ["tt", "stt"], "ranks": [2, 4], "n_modes": [2]}]
    space = load_space(write_space(project, model=f"{MODULE}:seq_classifier", layers=layers))
    assert list(space.layers()) == ["encoder.self_attn.out_proj", "encoder.linear1", "encoder.linear2"]
    space = load_space(write_space(project, model=f"{MODULE}:make_net", layers=[{"types": ["Conv2d"]}]))
    assert list(space.layers()) == ["conv1", "conv2"]


def test_layers_command(project):
    out = cli("layers", "--model", "torchvision:mobilenet_v2", "--input-shape", "3", "32", "32", cwd=project)
    assert out.returncode == 0, out.stderr
    assert "features.1.conv.0.0" in out.stdout and "depthwise convolution (groups=32)" in out.stdout
    assert "classifier.1" in out.stdout and "Linear" in out.stdout
    space = write_space(project, model="user_tinynet", plugins=[MODULE])
    out = cli("layers", str(space), cwd=project)
    assert out.returncode == 0, out.stderr
    assert all(w in out.stdout for w in ("conv1", "conv2", "head", "group0", "share"))


@pytest.mark.slow
def test_transformer_search_tt_stt(project, tmp_path):
    """A transformer-encoder classifier whose Linear layers are searched with tt and stt, end to end."""
    layers = [{"types": ["Linear"], "match": "encoder.*", "families": ["tt", "stt"], "ranks": [2, 4],
               "t": [2], "n_modes": [2]}]
    space = write_space(project, model=f"{MODULE}:seq_classifier", layers=layers, name="seq",
                        baselines=[{"family": "tt", "rank": 4, "n_modes": 2},
                                   {"family": "stt", "rank": 4, "t": 2, "n_modes": 2}])
    results = tmp_path / "results"
    out = cli("search", "--space", str(space), "--dispatch", "local", "--results-dir", str(results), "--no-progress",
              cwd=project)
    assert out.returncode == 0 and "2/2 trained" in out.stdout, out.stderr
    families = {json.loads(p.read_text())["family"] for p in (results / "seq" / "trials").glob("*/metrics.json")}
    assert families == {"tt", "stt"}


BAD_GROUPS = [
    ({"types": ["Conv2dd"]}, r"layers\[0\]\.types\[0\]: 'Conv2dd' is not a module class"),
    ({"types": ["usermodels:make_net"]}, r"layers\[0\]\.types\[0\]: 'usermodels:make_net' is not a module class"),
    ({"types": ["Conv2d"], "match": "head"}, r"layers\[0\]: group0 selects no conv/linear layer"),
]


@pytest.mark.parametrize("group,pattern", BAD_GROUPS, ids=["unknown", "function", "none"])
def test_bad_group_types(project, tmp_path, group, pattern):
    import re

    space = write_space(project, layers=[group])
    line = one_error_line(cli("search", "--space", str(space), "--results-dir", str(tmp_path / "r"), cwd=project))
    assert re.search(rf"{re.escape(str(space))}:\d+: {pattern}", line), line


def test_group_of_only_depthwise_layers_names_them(tmp_path):
    import re

    layers = [{"match": "features.1.conv.0.*"}]
    space = write_space(tmp_path, model="torchvision:mobilenet_v2", dataset="synthetic:3x32x32:10:64",
                        layers=layers, input_shape=[3, 32, 32])
    line = one_error_line(cli("search", "--space", str(space), "--results-dir", str(tmp_path / "r"), cwd=tmp_path))
    assert re.search(r"layers\[0\]\.match: .features\.1\.conv\.0\.\*. selects only layers no family can represent: "
                     r"features\.1\.conv\.0\.0 \(depthwise convolution \(groups=32\)", line), line


@pytest.mark.slow
def test_torchvision_model_the_issue_does_not_name(tmp_path):
    """``torchvision:mobilenet_v2`` (depthwise convolutions, inverted residuals): its widest 1x1 conv and its
    classifier searched, the best trial exported and loaded."""
    layers = [{"match": ["features.18.0", "classifier.1"], "families": ["tt", "stt"], "ranks": [4], "t": [2]}]
    space = write_space(tmp_path, model="torchvision:mobilenet_v2", dataset="synthetic:3x32x32:10:64",
                        layers=layers, name="mnv2", trials=1,
                        train={"epochs": 1, "max_steps": 2, "batch_size": 16, "lr": 0.01, "num_threads": 1})
    results = tmp_path / "results"
    out = cli("search", "--space", str(space), "--dispatch", "local", "--results-dir", str(results), "--no-progress",
              cwd=tmp_path)
    assert out.returncode == 0 and "1/1 trained" in out.stdout, out.stderr
    exp = cli("export", "mnv2", "--results-dir", str(results), "--out", str(tmp_path / "exp"), cwd=tmp_path)
    assert exp.returncode == 0, exp.stderr
    code = (f"import stsearch, torch; m = stsearch.load({str(tmp_path / 'exp')!r}); "
            f"print(type(m).__name__, tuple(m(torch.zeros(2, 3, 32, 32)).shape))")
    loaded = python(code, cwd=tmp_path)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "MobileNetV2 (2, 10)", loaded.stderr
