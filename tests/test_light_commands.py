"""Commands that only read a study (``status``, ``pareto``, ``plot``, ``--help``) import neither torch nor ray."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from stsearch.search.run import SearchRun
from stsearch.space import load_space


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    results = tmp_path_factory.mktemp("light") / "results"
    run = SearchRun.create(load_space("digits"), name="light", results_dir=results, trials=8)
    rng = random.Random(0)
    while (claim := run.claim()) is not None:  # no-op trials: the bookkeeping of real ones
        run.finish(claim, {"status": "completed", "val_acc": rng.random(), "full_budget": True,
                           "budget_fraction": 1.0, "epochs_done": 1})
    return results


@pytest.mark.parametrize("argv", [["status", "light"], ["pareto", "light"], ["plot", "light"], ["--help"],
                                  ["status", "--help"]], ids=["status", "pareto", "plot", "help", "status-help"])
def test_read_only_commands_import_neither_torch_nor_ray(study, argv):
    code = ("import sys\nfrom stsearch.cli import main\ntry:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    rc = e.code\nheavy = [m for m in ('torch', 'ray', 'torchvision') if m in sys.modules]\n"
            "print('HEAVY', heavy, 'RC', rc)")
    args = [*argv[:1], *argv[1:], *(["--results-dir", str(study)] if "--help" not in argv else [])]
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                         cwd=study.parent)
    assert "HEAVY [] RC 0" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


def test_status_names_the_model_and_dataset_from_the_stored_space(study, capsys):
    from stsearch.cli import main

    assert main(["status", "light", "--results-dir", str(study)]) == 0
    assert "study light (resnet8_digits on digits): 8/8 trained" in capsys.readouterr().out


def test_the_study_names_its_objectives_for_optuna_tools(study):
    import optuna

    loaded = optuna.load_study(study_name="light", storage=f"sqlite:///{study / 'light' / 'study.db'}")
    assert loaded.metric_names == ["accuracy", "compression"]  # optuna-dashboard shows these, not "Objective 0"
