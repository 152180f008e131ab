"""``imagefolder:PATH`` datasets written as PNG files, and torchvision's resnet18 searched on one:
``stsearch layers``, a 2-trial search, export, and the exported program run with torch alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stsearch.data import load_dataset
from stsearch.space import SearchSpace, SpaceError

CLASSES = [f"class{i}" for i in range(10)]


def write_pngs(root: Path, per_class: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """A torchvision ImageFolder tree of RGB PNGs: ``root/<split>/<class>/<i>.png``, each class a colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for k, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([(37 * k) % 256, (91 * k) % 256, (151 * k) % 256], dtype=np.int16)
            for i in range(n):
                pixels = np.clip(base + rng.integers(-20, 21, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, "RGB").save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_pngs(tmp_path_factory.mktemp("imgs") / "data", {"train": 6, "val": 2})


def test_png_folders_load_with_transforms(images):
    transforms = {"resize": 36, "random_crop": {"size": 32, "padding": 2}, "flip": True,
                  "normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    train, val, info = load_dataset(f"imagefolder:{images}", transforms=transforms)
    assert (len(train), len(val), info.num_classes, info.input_shape) == (60, 20, 10, (3, 32, 32))
    x, y = val[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 1  # sorted class folders
    assert info.mean == (0.5, 0.5, 0.5) and float(x.min()) < 0  # normalized around the mean
    _, _, small = load_dataset(f"imagefolder:{images}", limit=10)
    assert (small.train_size, small.val_size) == (10, 10)


def test_a_missing_split_folder_is_one_line_at_the_dataset_key(tmp_path):
    root = write_pngs(tmp_path / "only-train", {"train": 1})
    space = tmp_path / "s.yaml"
    space.write_text(f"model: torchvision:resnet18\ndataset: imagefolder:{root}\nlayers: [{{match: 'layer4.*'}}]\n")
    with pytest.raises(SpaceError) as err:
        SearchSpace.load(space)
    msg = str(err.value)
    assert msg.startswith(f"{space}:2: dataset:") and "has no val/ folder" in msg and "\n" not in msg


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stsearch", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_resnet18_on_a_png_folder_layers_search_export(images, tmp_path):
    space = tmp_path / "rn18.yaml"
    space.write_text(f"""
name: rn18
model: torchvision:resnet18
dataset: imagefolder:{images}
transforms: {{normalize: {{mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}}}
layers:
  - match: "layer4.*.conv*"
    share: true
    families: [tt, stt]
    ranks: [4, 8]
    t: [2]
objectives: [accuracy, compression]
train: {{max_steps: 2, batch_size: 20, lr: 0.01, num_threads: 1}}
sampler: {{name: random, seed: 0}}
trials: 2
""")
    layers = _cli("layers", str(space), cwd=tmp_path)
    assert layers.returncode == 0, layers.stderr
    assert "torchvision:resnet18 on imagefolder:" in layers.stdout and "input [3, 32, 32]" in layers.stdout
    table = {line.split()[0]: line for line in layers.stdout.splitlines()[2:]}
    assert "layer4.1.conv2" in table and "group0" in table["layer4.1.conv2"]  # searched
    assert "conv1" in table and "fc" in table and table["fc"].split()[1] == "Linear"
    results = tmp_path / "results"
    out = _cli("search", "--space", str(space), "--dispatch", "local", "--results-dir", str(results), "--no-progress",
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2/2 trained" in out.stdout, out.stdout[-2000:]
    exp = _cli("export", "rn18", "--results-dir", str(results), "--out", str(tmp_path / "exp"), cwd=tmp_path)
    assert exp.returncode == 0, exp.stderr[-3000:]
    program = next((tmp_path / "exp").glob("*.pt2"), None) or next((tmp_path / "exp").glob("*.pt"))
    code = ("import torch, sys; p = sys.argv[1]; "
            "m = torch.export.load(p).module() if p.endswith('.pt2') else torch.jit.load(p); "
            "print(tuple(m(torch.zeros(1, 3, 32, 32)).shape))")
    ran = subprocess.run([sys.executable, "-c", code, str(program)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == "(1, 10)"
