"""Bad command-line input is refused before anything is written: study names, counts, devices, storages."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from stsearch.cli import main
from stsearch.search.run import SearchRun
from stsearch.search.storage import check_study_name, open_storage
from stsearch.space import SearchSpace
from stsearch.train.trainer import resolve_device

from .test_search import _space


@pytest.mark.parametrize("name", ["../escape", "", "a/b", ".hidden", "with space"])
def test_study_names_that_are_not_plain_folder_names_are_refused(name, tmp_path):
    with pytest.raises(ValueError, match="study name .* is not allowed"):
        check_study_name(name)
    space = SearchSpace.load(_space(tmp_path))
    with pytest.raises(ValueError, match="is not allowed"):
        SearchRun.create(space, name=name, results_dir=tmp_path / "results", trials=1)
    assert not (tmp_path / "results").exists() and not (tmp_path / "escape").exists()


@pytest.mark.parametrize("kwargs,match", [({"trials": 0}, "--trials must be >= 1"), ({"seed": -1}, "--seed must be")])
def test_a_refused_search_leaves_no_study_behind(kwargs, match, tmp_path):
    space = SearchSpace.load(_space(tmp_path))
    with pytest.raises(ValueError, match=match):
        SearchRun.create(space, results_dir=tmp_path / "results", **kwargs)
    assert not (tmp_path / "results").exists()
    run = SearchRun.create(space, results_dir=tmp_path / "results", trials=1)
    assert run.name == "tiny"  # not tiny-2: nothing was left under the name


def test_opening_a_missing_sqlite_file_does_not_create_it(tmp_path, capsys):
    db = tmp_path / "none.db"
    assert main(["status", "x", "--storage", f"sqlite:///{db}", "--results-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not db.exists()


@pytest.mark.parametrize("argv", [["worker", "--name", "s", "--num-threads", "0"],
                                  ["worker", "--name", "s", "--max-trials", "-1"],
                                  ["status", "s", "--last", "-3"],
                                  ["search", "--cpus-per-trial", "-1"],
                                  ["search", "--concurrency", "0"]])
def test_counts_below_one_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "must be" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_device_this_machine_lacks_stops_the_search_before_any_trial(tmp_path, capsys):
    with pytest.raises(ValueError, match="torch sees 0 CUDA device"):
        resolve_device("cuda:7")
    assert resolve_device("auto").type == "cpu"
    space = _space(tmp_path)
    space.write_text(space.read_text().replace("num_threads: 1}", "num_threads: 1, device: 'cuda:7'}"))
    results = tmp_path / "results"
    assert main(["search", "--space", str(space), "--dispatch", "local", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert "'cuda:7' is not available" in err and "train.device" in err and err.count("\n") == 1
    assert not results.exists()
    # a study for other machines can still be created here, and a worker here refuses it before claiming
    assert main(["search", "--space", str(space), "--dispatch", "none", "--results-dir", str(results)]) == 0
    assert main(["worker", "--name", "tiny", "--results-dir", str(results)]) == 2
    trials = SearchRun.open("tiny", results_dir=results).trials()
    assert trials and all(t.state.name == "WAITING" for t in trials)


@pytest.mark.skipif(importlib.util.find_spec("redis") is not None, reason="the redis package is installed")
def test_redis_storage_without_its_package_is_a_one_line_error():
    with pytest.raises(ValueError, match="needs the redis package"):
        open_storage("redis://127.0.0.1:1/0")


def test_a_space_whose_constraints_exclude_every_configuration_is_refused(tmp_path):
    path = _space(tmp_path, min_cf=1000.0)  # the tiny space compresses at most ~50x
    with pytest.raises(ValueError, match="none of 2000 random configurations of the space meets the constraints"):
        SearchRun.create(SearchSpace.load(path), results_dir=tmp_path / "results", trials=2)
    assert not (tmp_path / "results").exists()


def _redis_url() -> str | None:
    import os

    url = os.environ.get("STSEARCH_TEST_REDIS", "redis://127.0.0.1:6379/15")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception:
        return None
    return url


def test_a_study_on_redis_trains_and_reopens(tmp_path):
    """The README's redis:// storage (Optuna's journal on Redis), on the local server's database 15."""
    import uuid

    import optuna

    from stsearch.search.local import run_local

    url = _redis_url()
    if url is None:
        pytest.skip("no Redis server at 127.0.0.1:6379 (or the redis package is missing); set STSEARCH_TEST_REDIS")
    name = f"redis-{uuid.uuid4().hex[:8]}"
    run = SearchRun.create(SearchSpace.load(_space(tmp_path)), name=name, storage=url, results_dir=tmp_path / "r", trials=1)
    try:
        assert run_local(run) == 1
        again = SearchRun.open(name, storage=url, results_dir=tmp_path / "r")
        assert again.counts()["trained"] == 1
        assert [t.user_attrs["status"] for t in again.trials() if t.state.is_finished()] == ["completed"]
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(url))
