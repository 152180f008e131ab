"""Export of a study's trial: selection, export folder, load / load_program, CLI, errors, fine-tuning.

One real three-trial study (resnet8 on digits, one epoch per trial) is built per module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import stsearch
from stsearch.cli import main
from stsearch.export import export_trial, load, load_program, read_meta, select_trial
from stsearch.results.frame import trials_frame
from stsearch.results.pareto import knee_point, pareto_front
from stsearch.search.local import run_local
from stsearch.search.run import SearchRun
from stsearch.space import load_space
from stsearch.trial import TrialSpec, build_model

SPACE = """
name: tiny
model: resnet8_digits
dataset: digits
layers:
  - match: "layer*.conv*"
    share: true
    families: [tt, stt, dense]
    ranks: {low: 2, high: 8, step: 2}
    t: [2]
    n_modes: [3]
objectives:
  - {name: accuracy, direction: maximize}
  - {name: compression, direction: maximize}
train: {epochs: 1, batch_size: 128, lr: 0.05, num_threads: 1}
sampler: {name: tpe, seed: 0}
baselines:
  - {family: stt, rank: 4, t: 2}
trials: 3
"""
FILES = ("plan.json", "trial.json", "model.safetensors", "metrics.json", "export.json", "program.pt2", "MODEL_CARD.md")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> SearchRun:
    """A finished three-trial study under a temporary results folder."""
    root = tmp_path_factory.mktemp("export")
    (root / "tiny.yaml").write_text(SPACE)
    run = SearchRun.create(load_space(str(root / "tiny.yaml")), results_dir=root / "results")
    run_local(run)
    return run


@pytest.fixture(scope="module")
def exported(study, tmp_path_factory) -> tuple[Path, int]:
    """The default selection (most accurate trial) exported through the API."""
    trial = select_trial(study)
    out = export_trial(study, trial, tmp_path_factory.mktemp("out") / "best", command="stsearch export tiny")
    return out, trial.number


def _eligible(run: SearchRun) -> list:
    return [t for t in run.trials() if t.user_attrs.get("status") == "completed" and t.user_attrs.get("full_budget")]


def ref_folder(run: SearchRun, number: int) -> Path:
    """The folder of trial ``number``."""
    return Path(next(t for t in run.trials() if t.number == number).user_attrs["artifact_dir"])


def _trained_model(run: SearchRun, number: int) -> torch.nn.Module:
    """The trained model rebuilt by hand from the trial's folder."""
    folder = ref_folder(run, number)
    model, _ = build_model(TrialSpec.load(folder), num_classes=10, load_pretrained=False)
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return model.eval()


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ select
def test_default_selection_is_most_accurate_eligible(study):
    elig = _eligible(study)
    assert len(elig) == 3
    best = max(elig, key=lambda t: (t.user_attrs["val_acc"], -t.number))
    assert select_trial(study).number == best.number


def test_knee_and_min_cf_select_correctly(study):
    df = trials_frame(study.study)
    knee = knee_point(pareto_front(df))
    assert select_trial(study, knee=True).number == int(knee["number"])

    elig = _eligible(study)
    cfs = sorted(t.user_attrs["compression"] for t in elig)
    floor = cfs[1]  # the middle CF: at least two trials qualify, one does not
    qualify = [t for t in elig if t.user_attrs["compression"] >= floor]
    want = max(qualify, key=lambda t: (t.user_attrs["val_acc"], -t.number))
    got = select_trial(study, min_cf=floor)
    assert got.number == want.number and got.user_attrs["compression"] >= floor
    with pytest.raises(ValueError, match="lower --min-cf"):
        select_trial(study, min_cf=cfs[-1] * 2)
    with pytest.raises(ValueError, match="at most one"):
        select_trial(study, knee=True, min_cf=1.0)


# ------------------------------------------------------------- load / program
def test_export_folder_and_load_match_the_trained_model(study, exported):
    out, number = exported
    for name in FILES:
        assert (out / name).is_file(), name
    meta = read_meta(out)
    assert meta["trial"] == number and meta["num_classes"] == 10 and meta["input_shape"] == [1, 8, 8]
    assert meta["program_format"] == "torch.export" and meta["dynamic_batch"]
    assert json.loads((out / "plan.json").read_text()) == TrialSpec.load(out).plan

    ref = _trained_model(study, number)
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref(x)
        for model in (stsearch.load(out), load(ref_folder(study, number))):
            assert not model.training
            assert torch.equal(model(x), want)


def test_program_matches_for_other_batch_sizes(study, exported):
    out, number = exported
    ref = _trained_model(study, number)
    programs = (torch.export.load(str(out / "program.pt2")).module(), load_program(out))
    for batch in (1, 2, 7):  # traced at batch 2
        x = torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = ref(x)
            for program in programs:
                assert torch.allclose(program(x), want, atol=1e-5, rtol=1e-5)


def test_torchscript_fallback_when_export_fails(study, tmp_path, monkeypatch):
    from stsearch.export import program as prog

    def broken(*_a, **_k):
        raise RuntimeError("no export today")

    monkeypatch.setattr(prog, "_torch_export", broken)
    model = _trained_model(study, 0)
    info = prog.write_program(model, (1, 8, 8), tmp_path)
    assert info.format == "torchscript" and "no export today" in info.export_error
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(load_program(tmp_path)(x), model(x), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------- CLI
def test_cli_export_writes_everything(study):
    results = study.results_dir
    proc = subprocess.run([sys.executable, "-m", "stsearch", "export", "tiny", "--knee", "--results-dir", str(results)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    out = Path(lines[0])
    knee = select_trial(study, knee=True)
    assert out == study.folder / "export" / f"trial-{knee.number}"
    assert f"trial {knee.number}" in lines[1] and "CF" in lines[1] and "accuracy" in lines[1]
    for name in FILES:
        assert (out / name).is_file(), name
    card = (out / "MODEL_CARD.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "Compression factor" in card and f"{metrics['compression']:.2f}x" in card
    assert "Top-1 accuracy" in card and f"{metrics['val_acc']:.4f}" in card
    assert f"stsearch export tiny --knee --results-dir {results}" in card
    assert "stsearch.load(" in card and "torch.export.load(" in card


def test_programs_fold_dense_mode_layers_by_default_and_keep_factors_on_request(study, exported, tmp_path, capsys):
    out, number = exported  # the default export
    meta = read_meta(out)
    assert meta["program_weights"] == "folded" and meta["folded_layers"]
    assert all(name.startswith("layer") and ".conv" in name for name in meta["folded_layers"])
    state = torch.export.load(str(out / "program.pt2")).module().state_dict()
    for name in meta["folded_layers"]:  # a plain kernel, no factors
        assert state[f"{name}.weight"].dim() == 4
        assert not any(key.startswith(f"{name}.weight_tensor") for key in state)
    assert "folded in" in (out / "MODEL_CARD.md").read_text()
    folded, factorized = stsearch.load(out, fold=True), stsearch.load(out)
    names = {name for name, m in folded.named_modules() if type(m) is torch.nn.Conv2d}
    assert set(meta["folded_layers"]) <= names and not folded.training
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(folded(x), factorized(x), atol=1e-5, rtol=1e-5)

    code, _, err = _cli(capsys, "export", "tiny", "--trial", str(number), "--no-fold-weights",
                        "--out", str(tmp_path / "factors"), "--results-dir", str(study.results_dir))
    assert code == 0, err
    meta = read_meta(tmp_path / "factors")
    assert meta["program_weights"] == "factorized" and meta["folded_layers"] is None
    assert " --no-fold-weights" in meta["command"]
    assert "factorized weights rebuilt per call" in (tmp_path / "factors" / "MODEL_CARD.md").read_text()
    program = torch.export.load(str(tmp_path / "factors" / "program.pt2")).module()
    assert any(".weight_tensor." in key for key in program.state_dict())
    ref = _trained_model(study, number)
    for batch in (1, 3):
        x = torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            assert torch.allclose(program(x), ref(x), atol=1e-5, rtol=1e-5)


def test_cli_finetune_updates_metrics(study, tmp_path, capsys):
    number = select_trial(study).number
    before = json.loads((ref_folder(study, number) / "metrics.json").read_text())
    code, out, err = _cli(capsys, "export", "tiny", "--trial", str(number), "--finetune", "1",
                          "--out", str(tmp_path / "ft"), "--results-dir", str(study.results_dir))
    assert code == 0, err
    assert out.splitlines()[0] == str(tmp_path / "ft") and "fine-tuned" in out
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    meta = read_meta(tmp_path / "ft")
    assert metrics["finetuned"] is True and meta["finetune"]["epochs"] == 1
    assert meta["finetune"]["val_acc_before"] == before["val_acc"]
    assert metrics["val_acc"] == meta["finetune"]["val_acc"] and len(metrics["finetune_history"]) >= 1
    assert "Fine-tuned | yes" in (tmp_path / "ft" / "MODEL_CARD.md").read_text()
    tuned, orig = stsearch.load(tmp_path / "ft"), _trained_model(study, number)
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), orig.state_dict().values()))


# ------------------------------------------------------------------ errors
def _one_error(capsys, *args: str) -> str:
    code, _, err = _cli(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stsearch: error: "), err
    return lines[0]


def test_error_empty_study(study, capsys):
    SearchRun.create(study.space, name="empty", results_dir=study.results_dir)
    msg = _one_error(capsys, "export", "empty", "--results-dir", str(study.results_dir))
    assert "no finished full-budget trial" in msg and "stsearch status empty" in msg


def test_error_unknown_trial(study, capsys):
    msg = _one_error(capsys, "export", "tiny", "--trial", "99", "--results-dir", str(study.results_dir))
    assert "no trial 99" in msg and "0-" in msg


def test_error_failed_and_interrupted_trials(study, capsys):
    run = SearchRun.create(study.space, name="broken", results_dir=study.results_dir, trials=2)
    claim = run.claim()
    run.finish(claim, {"status": "failed", "reason": "non-finite loss at step 3", "full_budget": False})
    msg = _one_error(capsys, "export", "broken", "--trial", str(claim.number), "--results-dir", str(study.results_dir))
    assert "is failed" in msg and "non-finite loss at step 3" in msg
    claim = run.claim()
    run.release(claim, "killed")
    msg = _one_error(capsys, "export", "broken", "--trial", str(claim.number), "--results-dir", str(study.results_dir))
    assert "is interrupted" in msg and "killed" in msg


def test_a_results_folder_reused_by_a_newer_study_is_not_exported_from(study, tmp_path, capsys):
    """A backed-up study exports its own trial folders, not the ones its stored (absolute) paths now
    point at, where a newer study of the same name has written other runs."""
    import shutil

    number = select_trial(study).number
    folder = ref_folder(study, number)
    backup = tmp_path / "backup"
    shutil.copytree(study.folder, backup / study.name)
    original = folder / "metrics.json"
    text = original.read_text()
    other = json.loads(text) | {"val_acc": 0.123, "family": "str"}
    original.write_text(json.dumps(other))  # the original place now holds another study's run
    try:
        code, _, err = _cli(capsys, "export", study.name, "--trial", str(number), "--results-dir", str(backup),
                            "--out", str(tmp_path / "e"))
        assert code == 0, err
        assert read_meta(tmp_path / "e")["source_dir"] == str(backup / study.name / "trials" / folder.name)
        assert "fastest of 10 runs" in (tmp_path / "e" / "MODEL_CARD.md").read_text()
        shutil.rmtree(backup / study.name / "trials")  # only the reused folder is left
        msg = _one_error(capsys, "export", study.name, "--trial", str(number), "--results-dir", str(backup))
        assert "holds another run" in msg and str(folder) in msg
    finally:
        original.write_text(text)


def test_error_out_is_a_file(study, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    msg = _one_error(capsys, "export", study.name, "--results-dir", str(study.results_dir), "--out", str(afile))
    assert "is a file" in msg and afile.read_text() == "x"


def test_error_missing_weights(study, capsys):
    number = select_trial(study).number
    weights = ref_folder(study, number) / "model.safetensors"
    hidden = weights.with_name("hidden.safetensors")
    weights.rename(hidden)
    try:
        msg = _one_error(capsys, "export", "tiny", "--trial", str(number), "--results-dir", str(study.results_dir))
        assert str(weights) in msg
        with pytest.raises(FileNotFoundError, match="model.safetensors"):
            load(weights.parent)
    finally:
        hidden.rename(weights)
