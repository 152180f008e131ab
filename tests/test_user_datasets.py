"""Datasets by reference: ``torchvision:NAME`` read from files written in the sets' real on-disk formats
(MNIST idx files, SVHN .mat files, CIFAR pickles), import-path and registered user datasets; their class
counts and input shapes, the space's checks, and a search on each from the command line."""

from __future__ import annotations

import hashlib
import struct
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from stsearch.data import dataset_meta, load_dataset, parse_dataset_ref, register_dataset
from stsearch.plugins import UserCodeError
from stsearch.space import SearchSpace, SpaceError
from tests.test_data import _write_cifar10, trust_local_cifar  # noqa: F401  (a fixture)
from tests.test_user_models import MODULE, cli, python, write_space, write_user_module

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def write_idx(root: Path, name: str = "MNIST", n_train: int = 40, n_test: int = 20, seed: int = 0) -> Path:
    """The four uncompressed MNIST idx files (big-endian header, uint8 body) in ``root/NAME/raw``."""
    rng = np.random.default_rng(seed)
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return root


def write_svhn(root: Path, n_train: int = 30, n_test: int = 20, seed: int = 0) -> Path:
    """``train_32x32.mat`` / ``test_32x32.mat`` as the SVHN site ships them: X (32, 32, 3, N), y (N, 1) in 1..10."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # label 10 is the digit 0
        savemat(root / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": y})
    return root


@pytest.fixture
def trust_local_svhn(monkeypatch: pytest.MonkeyPatch):
    """Points torchvision's SVHN md5 list at the files a test wrote."""
    import torchvision.datasets as tvd

    def trust(root: Path) -> None:
        table = {k: [url, f, hashlib.md5((root / f).read_bytes()).hexdigest() if (root / f).is_file() else md5]
                 for k, (url, f, md5) in tvd.SVHN.split_list.items()}
        monkeypatch.setattr(tvd.SVHN, "split_list", table)

    return trust


# ------------------------------------------------------------------ torchvision:NAME
@pytest.mark.parametrize("name,mean,std", [("MNIST", 0.1307, 0.3081), ("FashionMNIST", 0.2860, 0.3530),
                                           ("KMNIST", 0.1918, 0.3483)])
def test_mnist_family_from_idx_files(tmp_path, name, mean, std):
    root = write_idx(tmp_path / "data", name)
    train, val, info = load_dataset(f"torchvision:{name}", root)
    assert (len(train), len(val), info.num_classes, info.input_shape) == (40, 20, 10, (1, 28, 28))
    raw = np.frombuffer((root / name / "raw" / "t10k-images-idx3-ubyte").read_bytes()[16:], np.uint8)
    x, y = val[3]
    assert y == 3 and x.shape == (1, 28, 28)
    expect = (torch.from_numpy(raw[3 * 784:4 * 784].astype(np.float32)).view(1, 28, 28) / 255 - mean) / std
    torch.testing.assert_close(x, expect)
    for other in (root / name, root / name / "raw"):  # the set's own folders are accepted too
        assert load_dataset(f"torchvision:{name.lower()}", other, limit=10)[2].train_size == 10
    assert dataset_meta(f"torchvision:{name}") == (10, (1, 28, 28))  # known without the files


def test_mnist_missing_files_say_what_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"needs a data folder: put train-images-idx3-ubyte, .* in "
                                                r"DATA/MNIST/raw .*--data-dir DATA") as err:
        load_dataset("torchvision:MNIST")
    assert "\n" not in str(err.value) and "download=True" in str(err.value)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in MNIST_FILES:
        (raw / f"{f}.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(FileNotFoundError, match=rf"are still compressed: run `gunzip {raw}/\*.gz`"):
        load_dataset("torchvision:MNIST", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"lacks train-images-idx3-ubyte, .*https://ossci-datasets"):
        load_dataset("torchvision:MNIST", tmp_path / "empty")


def test_svhn_from_mat_files(tmp_path, trust_local_svhn):
    root = write_svhn(tmp_path / "svhn")
    trust_local_svhn(root)
    train, val, info = load_dataset("torchvision:SVHN", root, augment=False)
    assert (len(train), len(val), info.num_classes, info.input_shape) == (30, 20, 10, (3, 32, 32))
    assert [val[i][1] for i in range(10)] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]  # 10 means the digit 0
    assert load_dataset("torchvision:SVHN", root, limit=10)[2].val_size == 10  # stratified on SVHN's `labels`
    (root / "test_32x32.mat").write_bytes(b"truncated")
    with pytest.raises(RuntimeError, match="failed torchvision's checksum check"):
        load_dataset("torchvision:SVHN", root)


def test_cifar_names_are_the_torchvision_sets(tmp_path, trust_local_cifar):  # noqa: F811
    folder = _write_cifar10(tmp_path)
    trust_local_cifar("CIFAR10", folder)
    a_train, a_val, a = load_dataset("cifar10", tmp_path, augment=False)
    b_train, b_val, b = load_dataset("torchvision:CIFAR10", tmp_path, augment=False)
    assert (a.name, b.name) == ("cifar10", "torchvision:CIFAR10") and a.input_shape == b.input_shape == (3, 32, 32)
    torch.testing.assert_close(a_val[5][0], b_val[5][0])
    _, val, info = load_dataset("torchvision:CIFAR10", folder, transforms={"resize": 16})  # the space's pipeline
    assert info.input_shape == (3, 16, 16) and val[0][0].shape == (3, 16, 16) and float(val[0][0].min()) >= 0


def test_unknown_torchvision_name_and_transforms_meta():
    with pytest.raises(ValueError, match=r"'mnst' is not supported \(did you mean torchvision:MNIST, torchvision:KMNIST\?\); supported: "
                                         r"torchvision:CIFAR10, .*package.module:callable"):
        parse_dataset_ref("torchvision:mnst")
    assert dataset_meta("torchvision:MNIST", None, {"resize": 32}) == (10, (1, 32, 32))  # no files needed
    assert dataset_meta("torchvision:SVHN", None, {"center_crop": 24}) == (10, (3, 24, 24))


# ------------------------------------------------------------------ the user's own datasets
USER_DATA = '''
"""Datasets of a user project, outside stsearch."""
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from stsearch.data import register_dataset

CALLS = []


def _blobs(n, seed, classes=4):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=g) * 0.3 + y.view(-1, 1, 1, 1), y)


def blobs():
    """4 classes, read from the labels; the shape from the first sample."""
    return _blobs(64, 0), _blobs(32, 1)


class Listed(Dataset):
    """No targets attribute: the labels are read sample by sample."""

    def __init__(self, n):
        self.items = [(torch.full((3, 4, 4), float(i % 6)), i % 6) for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def listed(split_seed=0):
    return Listed(30), Listed(12)


def from_dir(data_dir):
    """Reads blobs.pt from data_dir, as a user's own data would be."""
    path = Path(data_dir or ".") / "blobs.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run make_blobs() first")
    d = torch.load(path)
    return TensorDataset(d["x"], d["y"]), TensorDataset(d["xv"], d["yv"])


def make_blobs(folder):
    tr, va = blobs()
    torch.save({"x": tr.tensors[0], "y": tr.tensors[1], "xv": va.tensors[0], "yv": va.tensors[1]},
               Path(folder) / "blobs.pt")


@register_dataset("user_blobs", num_classes=4, input_shape=(1, 8, 8))
def user_blobs(split_seed=0, augment=True):
    CALLS.append((split_seed, augment))
    return blobs()


def broken():
    raise KeyError("no such table")


def not_a_pair():
    return 3


def pil_inputs():
    from PIL import Image

    img = Image.new("L", (8, 8))
    return [(img, 0)], [(img, 0)]


NOT_CALLABLE = 5
'''
DATA_MODULE = "userdata"


@pytest.fixture
def data_project(tmp_path: Path):
    """A user project with ``userdata.py`` (datasets) and ``usermodels.py`` (models), on ``sys.path``."""
    folder = tmp_path / "project"
    write_user_module(folder)
    (folder / f"{DATA_MODULE}.py").write_text(textwrap.dedent(USER_DATA))
    for name in (MODULE, DATA_MODULE):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    from stsearch.data import user

    user._REGISTRY.pop("user_blobs", None)
    for name in (MODULE, DATA_MODULE):
        sys.modules.pop(name, None)


def test_import_path_dataset_infers_classes_and_shape(data_project):
    train, val, info = load_dataset(f"{DATA_MODULE}:blobs")
    assert (len(train), len(val), info.num_classes, info.input_shape) == (64, 32, 4, (1, 8, 8))
    _, _, small = load_dataset(f"{DATA_MODULE}:blobs", limit=8)
    assert (small.train_size, small.val_size) == (8, 8)
    tr, _, listed = load_dataset(f"{DATA_MODULE}:listed", limit=12)
    assert (listed.num_classes, listed.input_shape) == (6, (3, 4, 4))
    assert sorted(tr[i][1] for i in range(12)) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # stratified
    assert dataset_meta(f"{DATA_MODULE}:listed") == (6, (3, 4, 4))


def test_registered_dataset_declares_its_meta(data_project):
    import importlib

    mod = importlib.import_module(DATA_MODULE)
    assert dataset_meta("user_blobs") == (4, (1, 8, 8)) and mod.CALLS == []  # no call needed
    assert parse_dataset_ref("user_blobs").kind == "registered"
    from stsearch.data import list_datasets

    assert list_datasets()[-1] == "user_blobs"
    load_dataset("user_blobs", split_seed=3, augment=False, data_dir="/nowhere")
    assert mod.CALLS == [(3, False)]  # only the arguments its signature names
    with pytest.raises(ValueError, match="dataset name 'digits' is taken"):
        register_dataset("digits")(mod.blobs)
    with pytest.raises(ValueError, match="'user_blobs' is already registered"):
        register_dataset("user_blobs")(mod.blobs)


@pytest.mark.parametrize("ref,pattern", [
    ("broken", r"dataset 'userdata:broken': the loader called with \{\} raised KeyError: 'no such table'; fix"),
    ("not_a_pair", r"the loader returned a int, not \(train_dataset, val_dataset\); return a tuple of two"),
    ("pil_inputs", r"a sample's input is a Image, not a tensor; add transforms.ToTensor\(\)"),
    ("nothing", r"module userdata has no attribute 'nothing'; defined there: "),
    ("NOT_CALLABLE", r"is a int, not a callable"),
])
def test_bad_user_datasets_are_one_line(data_project, ref, pattern):
    with pytest.raises(UserCodeError, match=pattern) as err:
        load_dataset(f"{DATA_MODULE}:{ref}")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ spaces
def _space(folder: Path, **keys) -> SearchSpace:
    return SearchSpace.load(write_space(folder, **keys))


def test_space_with_user_datasets(data_project):
    space = _space(data_project, dataset=f"{DATA_MODULE}:blobs")
    assert space.num_classes == 4 and space.input_shape() == (1, 8, 8)
    assert str(data_project) in space.python_path
    assert space._meta.head.out_features == 4  # the dataset sets the model's classes
    with pytest.raises(SpaceError, match=r"model_kwargs.num_classes: num_classes 10 does not match dataset "
                                         r"'userdata:blobs' with 4 classes"):
        _space(data_project, dataset=f"{DATA_MODULE}:blobs", model_kwargs={"num_classes": 10})
    with pytest.raises(SpaceError, match=r":3: dataset: dataset 'userdata:broken': the loader"):
        _space(data_project, dataset=f"{DATA_MODULE}:broken")
    with pytest.raises(SpaceError, match=r":3: dataset: dataset 'userdata:nope': module userdata has no attribute"):
        _space(data_project, dataset=f"{DATA_MODULE}:nope")
    with pytest.raises(SpaceError, match=r"transforms: transforms apply to imagefolder:, torchvision: and user"):
        _space(data_project, dataset="digits", transforms={"resize": 8})


def test_space_without_its_data_folder_yet(data_project):
    """``data_dir: null`` (``--data-dir`` at run time): the torchvision sets are known without files; a user
    loader that needs the folder defers its check, and then needs ``input_shape``."""
    space = _space(data_project, dataset="torchvision:MNIST", transforms={"resize": 8})
    assert (space.num_classes, space.input_shape()) == (10, (1, 8, 8))
    with pytest.raises(SpaceError, match=r"input_shape: usermodels:make_net needs the input shape, and dataset "
                                         r"'userdata:from_dir' cannot be read without its data folder; set input_shape"):
        _space(data_project, dataset=f"{DATA_MODULE}:from_dir")
    space = _space(data_project, dataset=f"{DATA_MODULE}:from_dir", input_shape=[1, 8, 8])
    assert space.num_classes is None
    with pytest.raises(SpaceError, match=r"dataset: .*blobs.pt is missing: run make_blobs\(\) first"):
        _space(data_project, dataset=f"{DATA_MODULE}:from_dir", data_dir=str(data_project / "nowhere"))
    declared = _space(data_project, dataset=f"{DATA_MODULE}:from_dir", data_dir=str(data_project / "nowhere"),
                      dataset_info={"num_classes": 4, "input_shape": [1, 8, 8]})  # not read: declared
    assert (declared.num_classes, declared.input_shape(), declared._meta.head.out_features) == (4, (1, 8, 8), 4)
    assert SearchSpace.from_dict(declared.to_dict()).to_dict() == declared.to_dict()
    with pytest.raises(SpaceError, match=r"dataset_info: expected \{num_classes: N, input_shape: \[C, H, W\]\}"):
        _space(data_project, dataset=f"{DATA_MODULE}:blobs", dataset_info={"num_classes": 4})


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_search_user_and_torchvision_datasets_export_load_without_data(data_project, tmp_path):
    """A user loader reading its own files from ``--data-dir`` and ``torchvision:MNIST`` from idx files: each
    searched from the command line, exported from another folder, and loaded there with the data gone."""
    results = tmp_path / "results"
    data = tmp_path / "data"
    data.mkdir()
    assert python(f"import {DATA_MODULE}; {DATA_MODULE}.make_blobs({str(data)!r})", cwd=data_project).returncode == 0
    space = write_space(data_project, dataset=f"{DATA_MODULE}:from_dir", input_shape=[1, 8, 8], name="blobs")
    out = cli("search", "--space", str(space), "--data-dir", str(data), "--dispatch", "local",
              "--results-dir", str(results), "--no-progress", cwd=data_project)
    assert out.returncode == 0 and "2/2 trained" in out.stdout, out.stderr

    mnist = write_idx(tmp_path / "tv", n_train=64, n_test=32)
    space = write_space(data_project, dataset="torchvision:MNIST", name="mnist", trials=1, file="mnist.yaml",
                        transforms={"resize": 8, "normalize": {"mean": [0.13], "std": [0.31]}})
    out = cli("search", "--space", str(space), "--data-dir", str(mnist), "--dispatch", "local",
              "--results-dir", str(results), "--no-progress", cwd=data_project)
    assert out.returncode == 0 and "1/1 trained" in out.stdout, out.stderr

    (data / "blobs.pt").unlink()
    (mnist / "MNIST" / "raw" / MNIST_FILES[0]).unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for study, classes in (("blobs", 4), ("mnist", 10)):
        exp = cli("export", study, "--results-dir", str(results), "--out", str(tmp_path / f"exp-{study}"),
                  cwd=elsewhere)
        assert exp.returncode == 0, exp.stderr
        folder = next((results / study / "trials").iterdir())
        code = (f"import stsearch, torch; print([tuple(stsearch.load(p)(torch.zeros(2, 1, 8, 8)).shape) for p in "
                f"({str(tmp_path / f'exp-{study}')!r}, {str(folder)!r})])")
        loaded = python(code, cwd=elsewhere)
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout.strip() == f"[(2, {classes}), (2, {classes})]"
