"""The Python API (stsearch.Search): create -> optimize -> pareto/plot/export -> open, and callable models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import stsearch
from stsearch.models.registry import list_models


def tiny_model(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A module-level factory: importable as tests.test_api:tiny_model."""
    return _Tiny(num_classes, in_channels)


class _Tiny(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def _space(model: object = "resnet8_digits", match: str = "layer*.conv*", trials: int = 2) -> dict:
    return {
        "name": "api",
        "model": model,
        "dataset": "digits",
        "layers": [{"match": match, "share": True, "families": ["tt", "stt"], "ranks": [4], "t": [2],
                    "n_modes": [2]}],
        "objectives": [{"name": "accuracy", "direction": "maximize"}, {"name": "compression", "direction": "maximize"}],
        "train": {"epochs": 1, "batch_size": 128, "lr": 0.05, "num_threads": 1},
        "sampler": {"name": "random", "seed": 0},
        "trials": trials,
    }


def test_import_is_light() -> None:
    code = "import sys, stsearch; assert 'torch' not in sys.modules; stsearch.Search; assert 'stsearch.api' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.slow
def test_create_optimize_results_export_open(tmp_path: Path) -> None:
    results = tmp_path / "results"
    seen: list[int] = []
    run = stsearch.Search.create(_space(), name="api", results_dir=results)
    assert run.study.study_name == "api" and run.counts()["trained"] == 0
    run.optimize(progress=lambda t: seen.append(t.number))
    assert run.counts()["trained"] == 2 and len(seen) >= 2

    front = run.pareto(csv=tmp_path / "front.csv")
    assert isinstance(front, pd.DataFrame) and len(front) >= 1 and (tmp_path / "front.csv").is_file()
    trials = run.trials()
    assert isinstance(trials, pd.DataFrame) and set(trials["status"]) >= {"completed"}
    assert "study api" in run.status()

    written = run.plot(tmp_path / "plots")
    assert written and all(Path(p).is_file() for p in written)

    out = run.export(tmp_path / "export", knee=True)
    model = stsearch.load(out)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)

    again = stsearch.Search.open("api", storage=run.storage_url, results_dir=results)
    assert [t.number for t in again.study.trials] == [t.number for t in run.study.trials]
    with pytest.raises(ValueError, match="no study 'nope'"):
        stsearch.Search.open("nope", results_dir=results)
    with pytest.raises(ValueError, match="exists|already"):
        stsearch.Search.create(_space(), name="api", results_dir=results)  # as 'stsearch search --name api'


@pytest.fixture
def model_registry():
    """The model registry as it was: a callable registered in-process must not leak into other tests."""
    from stsearch.models import registry

    before = dict(registry._REGISTRY)  # noqa: SLF001
    yield
    registry._REGISTRY.clear()  # noqa: SLF001
    registry._REGISTRY.update(before)  # noqa: SLF001


@pytest.mark.slow
def test_main_callable_model_local_only(tmp_path: Path, model_registry) -> None:
    def make(num_classes: int = 10) -> nn.Module:  # not importable: registered in this process
        return _Tiny(num_classes)

    results = tmp_path / "results"
    for dispatch in ("ray", "none"):
        with pytest.raises(ValueError) as err:
            stsearch.Search.create(_space(make, match="conv*", trials=1), name="main", results_dir=results,
                                   dispatch=dispatch)
        assert str(err.value).startswith("model ") and "is a Python callable defined in __main__; Ray trials and " \
            "workers import it by reference: move it to a module and pass 'package.module:callable'" in str(err.value)
        assert "\n" not in str(err.value)
    assert not (results / "main").exists()  # no study created

    run = stsearch.Search.create(_space(make, match="conv*", trials=1), name="main", results_dir=results)
    assert run.space.model in list_models()
    with pytest.raises(ValueError, match="Python callable defined in __main__"):
        run.optimize(dispatch="ray")
    run.optimize(progress=False)
    assert run.counts()["trained"] == 1


def test_module_callable_becomes_import_path(tmp_path: Path) -> None:
    run = stsearch.Search.create(_space(tiny_model, match="conv*", trials=1), name="mod",
                                 results_dir=tmp_path / "results", dispatch="ray")
    assert run.space.model == "tests.test_api:tiny_model"
    recorded = run.study.user_attrs["space"]
    assert recorded["model"] == "tests.test_api:tiny_model"
    assert str(Path(__file__).resolve().parents[1]) in recorded["python_path"]


def test_bad_dispatch_and_space(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dispatch must be one of"):
        stsearch.Search.create(_space(), results_dir=tmp_path, dispatch="slurm")
    with pytest.raises(FileNotFoundError, match="no search space 'nope'"):
        stsearch.Search.create("nope", results_dir=tmp_path)


def blob_loader() -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """A module-level dataset loader: importable as tests.test_api:blob_loader (3 classes, 1x8x8)."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    x = torch.randn(90, 1, 8, 8, generator=g) * 0.2 + y.view(-1, 1, 1, 1)
    ds = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.Subset(ds, range(60)), torch.utils.data.Subset(ds, range(60, 90))


@pytest.fixture
def user_registries():
    """The dataset and trainer registries as they were (in-process registrations must not leak)."""
    from stsearch.data import user
    from stsearch.train import custom

    before = dict(user._REGISTRY), dict(custom._TRAINERS)  # noqa: SLF001
    yield
    for table, saved in zip((user._REGISTRY, custom._TRAINERS), before):  # noqa: SLF001
        table.clear()
        table.update(saved)


def test_dataset_and_trainer_callables(tmp_path: Path, model_registry, user_registries) -> None:
    """A module-level loader becomes its import path; a (train, val) pair and a trainer defined here are
    registered in this process: they train locally and are refused for Ray."""
    calls: list[int] = []

    def fit(model: nn.Module, train_ds, val_ds, context) -> dict:
        calls.append(len(train_ds))
        return {"accuracy": 0.5}

    space = {**_space(tiny_model, match="conv*", trials=1), "dataset": blob_loader}
    run = stsearch.Search.create(space, name="loader", results_dir=tmp_path / "results", dispatch="ray")
    assert run.space.dataset == "tests.test_api:blob_loader" and run.space.num_classes == 3

    pair = blob_loader()
    space = {**_space(tiny_model, match="conv*", trials=1), "dataset": pair, "trainer": fit}
    with pytest.raises(ValueError, match=r"^dataset __main__\.datasets_\w+ is a Python callable defined in __main__"):
        stsearch.Search.create(space, name="pair", results_dir=tmp_path / "results", dispatch="ray")
    run = stsearch.Search.create(space, name="pair", results_dir=tmp_path / "results")
    assert run.space.num_classes == 3 and run.space.trainer.endswith("test_dataset_and_trainer_callables._locals_.fit")
    run.optimize(progress=False)
    assert run.counts()["trained"] == 1 and calls == [60]
