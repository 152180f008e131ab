"""Bad input gives one clear line (``stsearch: error: ...``, exit 2), never a traceback."""

import re
from pathlib import Path

import pytest
import yaml

from stsearch.cli import build_parser, main
from stsearch.plan import LayerPlan, NetworkPlan
from stsearch.space import load_space, space_dir
from stsearch.space.samplers import SamplerConfigError, check_sampler_config, make_sampler

GOOD_LAYER = {"family": "tt", "rank": 8}


def cli_error(capsys, argv: list[str]) -> str:
    """The one-line error of a CLI call that must fail with exit code 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stsearch: error: ") and "\n" not in err, err
    return err


def write_plan(tmp_path: Path, layer: dict | None = None, name: str = "plan.yaml", **top) -> Path:
    data = {"model": "resnet8_digits", **top, "layers": {"layer*.conv*": layer or GOOD_LAYER}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def write_space(tmp_path: Path, **changes) -> Path:
    """search_spaces/digits.yaml with top-level keys replaced (``None`` removes one)."""
    data = yaml.safe_load((space_dir() / "digits.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------ plans
def test_plan_file_with_bad_yaml_or_binary_content_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: resnet8_digits\nlayers:\n  'layer*.conv*': {family: tt, rank: 8\n")
    err = cli_error(capsys, ["summary", "resnet8_digits", "--plan", str(bad)])
    assert f"plan file {bad}" in err and "YAML syntax error" in err
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x80\x81binary")
    err = cli_error(capsys, ["summary", "resnet8_digits", "--plan", str(binary)])
    assert f"plan file {binary}" in err and "not UTF-8" in err


def test_plan_in_modes_must_be_a_list_of_positive_ints(tmp_path, capsys):
    path = write_plan(tmp_path, {"family": "tt", "rank": 8, "in_modes": 16})
    err = cli_error(capsys, ["summary", "resnet8_digits", "--plan", str(path)])
    assert "'layer*.conv*'" in err and "in_modes must be a non-empty list of positive ints" in err
    with pytest.raises(ValueError, match="out_modes must be"):
        LayerPlan("tt", out_modes=[4, 0, 4])


@pytest.mark.parametrize("layer, match", [
    ({"family": "tt", "rank": 8.5}, "rank must be a positive int"),
    ({"family": "tt", "rank": "8"}, "rank must be a positive int"),
    ({"family": "tt", "rank": [8, "4"]}, "rank must be a positive int"),
    ({"family": "tt", "rank": 0}, "rank must be a positive int"),
    ({"family": "stt", "rank": 8, "t": "2"}, r"t must be an int >= 1"),
    ({"family": "stt", "rank": 8, "t": 0}, r"t must be an int >= 1"),
    ({"family": "tt", "rank": 8, "n_modes": 0}, r"n_modes must be an int >= 1"),
    ({"family": "tt", "rank": 8, "n_modes": True}, r"n_modes must be an int >= 1"),
])
def test_plan_layer_values_are_checked_not_coerced(tmp_path, capsys, layer, match):
    path = write_plan(tmp_path, layer)
    err = cli_error(capsys, ["summary", "resnet8_digits", "--plan", str(path)])
    assert "plan layer 'layer*.conv*'" in err and re.search(match, err), err


@pytest.mark.parametrize("hint", [0, -1, "abc", True, 12.5])
def test_plan_batch_hint_must_be_a_positive_int(tmp_path, capsys, hint):
    path = write_plan(tmp_path, batch_hint=hint)
    err = cli_error(capsys, ["summary", "resnet8_digits", "--plan", str(path)])
    assert "batch_hint must be an int >= 1" in err


def test_plan_valid_forms_still_load(tmp_path):
    assert LayerPlan("tt", rank=[8, 4, 2]).rank == (8, 4, 2)
    lp = LayerPlan.from_dict({"family": "stt", "rank": 8, "t": 2, "in_modes": [4, 4], "n_modes": 2})
    assert lp.in_modes == (4, 4) and lp.t == 2 and lp.n_modes == 2
    net = NetworkPlan.load(write_plan(tmp_path, {"family": "tt", "rank": [8, 4]}, batch_hint=32))
    assert net.batch_hint == 32 and net.layers["layer*.conv*"].rank == (8, 4)
    with pytest.raises(ValueError, match="plan: expected a mapping"):
        NetworkPlan.from_dict("notadict")  # type: ignore[arg-type]


# ------------------------------------------------------------------ summary
@pytest.mark.parametrize("n", ["-4", "0"])
def test_summary_num_classes_must_be_positive(capsys, n):
    err = cli_error(capsys, ["summary", "resnet8_digits", "--num-classes", n])
    assert f"--num-classes must be an int >= 1, got {n}" in err


def test_summary_without_a_model_lists_models_and_says_to_name_one(capsys):
    assert main(["summary"]) == 2
    out, err = capsys.readouterr()
    assert "resnet8_digits" in out
    assert err.startswith("stsearch: error: no model given") and err.count("\n") == 1


def test_summary_takes_the_model_of_a_plan_file_that_names_one(capsys):
    plan = Path(__file__).resolve().parents[1] / "search_spaces" / "plans" / "resnet32_stt_r14.yaml"
    assert main(["summary", "--plan", str(plan), "--json"]) == 0
    assert '"compression": 9.5' in capsys.readouterr().out


# ------------------------------------------------------------------ train
@pytest.mark.parametrize("config, match", [
    ('{"foo": 1}', "neither trial-spec keys nor search params; give a trial spec"),
    ('{"train": {"epochs": 1}}', "--config has no plan and no search params; give a trial spec"),
    ("[1, 2]", "--config must be a JSON object, got list"),
    ('{"plan": "notadict"}', "plan must be a mapping"),
    ('{"plan": {"layers": {}}, "train": 5}', "train must be a mapping"),
])
def test_train_config_forms_are_explained(capsys, config, match):
    err = cli_error(capsys, ["train", "--space", "digits", "--config", config])
    assert match in err, err


def test_train_config_without_plan_is_fine_with_a_plan_file(tmp_path):
    from stsearch.commands.train import build_spec

    args = build_parser().parse_args(["train", "--space", "digits", "--plan", str(write_plan(tmp_path)),
                                      "--config", '{"train": {"epochs": 1}}', "--device", "cpu"])
    spec = build_spec(args)
    assert spec.train["epochs"] == 1 and spec.plan["layers"]["layer*.conv*"]["family"] == "tt"


def test_train_distill_without_pretrained_names_the_cli_flag(capsys):
    err = cli_error(capsys, ["train", "--space", "digits", "--config", '{"plan": {"layers": {}}}',
                             "--distill-alpha", "0.5", "--device", "cpu"])
    assert "--pretrained PATH" in err and "teacher=" not in err


def test_train_unavailable_device_is_an_error(capsys, monkeypatch):
    import torch

    base = ["train", "--space", "digits", "--config", '{"plan": {"layers": {}}}']
    err = cli_error(capsys, [*base, "--device", "cuda:99"])
    assert "use --device cpu or auto" in err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = cli_error(capsys, [*base, "--device", "cuda"])
    assert "torch sees 0 CUDA device" in err and "use --device cpu or auto" in err
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    err = cli_error(capsys, [*base, "--device", "mps"])
    assert "torch sees no MPS device" in err


# ------------------------------------------------------------------ samplers
@pytest.mark.parametrize("config, key, match", [
    ({"name": "tpe", "n_startup_trials": "x", "screen": False}, "n_startup_trials", "must be an int"),
    ({"name": "tpe", "n_startup_trials": True}, "n_startup_trials", "must be an int"),
    ({"name": "tpe", "multivariate": 1}, "multivariate", "must be true or false"),
    ({"name": "gp", "deterministic_objective": "yes"}, "deterministic_objective", "must be true or false"),
    ({"name": "nsga2", "crossover_prob": "high"}, "crossover_prob", "must be a number"),
    ({"name": "nsga2", "crossover_prob": 1.5}, "crossover_prob", r"in \[0, 1\]"),
    ({"name": "tpe", "seed": -1}, "seed", "seed must be an int >= 0"),
    ({"name": "nsga2", "population_size": 1}, "population_size", "population_size must be an int >= 2"),
    ({"name": "nsga2", "population_size": 2, "crossover": "undx"}, "population_size", "population size"),
])
def test_sampler_option_values_are_checked(config, key, match):
    with pytest.raises(SamplerConfigError, match=match) as info:
        check_sampler_config(config)
    assert info.value.key == key
    with pytest.raises(ValueError, match=f"^sampler.{key}: "):
        make_sampler(config)


def test_sampler_valid_options_and_seed_override():
    assert check_sampler_config({"name": "nsga2", "population_size": 4, "mutation_prob": None, "crossover_prob": 1})
    assert check_sampler_config({"name": "tpe", "n_startup_trials": 0, "seed": None, "multivariate": True})
    with pytest.raises(ValueError, match="sampler seed must be an int"):
        make_sampler({"name": "tpe"}, seed=-1)


def test_sampler_errors_in_a_space_name_file_line_and_key(tmp_path, capsys):
    path = write_space(tmp_path, sampler={"name": "tpe", "n_startup_trials": "x", "screen": False})
    with pytest.raises(ValueError, match=rf"^{path}:\d+: sampler.n_startup_trials: .*must be an int"):
        load_space(path)
    path = write_space(tmp_path, sampler={"name": "nsga2", "population_size": 1})
    with pytest.raises(ValueError, match=rf"^{path}:\d+: sampler.population_size: "):
        load_space(path)


# ------------------------------------------------------------------ spaces
@pytest.mark.parametrize("n, match", [
    (0, "num_classes must be an int >= 1, got 0; use num_classes: 10"),
    (-3, "num_classes must be an int >= 1, got -3"),
    ("ten", "num_classes must be an int >= 1, got 'ten'"),
    (7, "num_classes 7 does not match dataset 'digits' with 10 classes"),
])
def test_space_model_kwargs_num_classes_must_fit_the_dataset(tmp_path, n, match):
    path = write_space(tmp_path, model_kwargs={"num_classes": n})
    with pytest.raises(ValueError, match=rf"^{path}:\d+: model_kwargs.num_classes: {match}"):
        load_space(path)


def test_space_num_classes_of_synthetic_and_matching_value_load(tmp_path):
    load_space(write_space(tmp_path, model_kwargs={"num_classes": 10}))
    load_space(write_space(tmp_path, model_kwargs={"num_classes": 3}, dataset="synthetic:1x8x8:3:64"))
    with pytest.raises(ValueError, match="with 10 classes"):  # synthetic's default
        load_space(write_space(tmp_path, model_kwargs={"num_classes": 3}, dataset="synthetic:1x8x8"))


def test_dataset_meta_table_matches_the_loaded_data():
    from stsearch.data import dataset_meta, load_dataset

    for name in ("digits", "mnist5k", "synthetic:3x8x8:5:40"):
        info = load_dataset(name, limit=8)[2]
        assert dataset_meta(name) == (info.num_classes, info.input_shape), name


def test_space_model_build_runtime_error_is_a_file_line_error(tmp_path):
    path = write_space(tmp_path, model_kwargs={"in_channels": -2})
    with pytest.raises(ValueError, match=rf"^{path}:\d+: model_kwargs: resnet8_digits cannot be built") as info:
        load_space(path)
    assert "\n" not in str(info.value)


def test_space_uniform_only_tie_needs_identical_group_choices(tmp_path):
    data = yaml.safe_load((space_dir() / "digits.yaml").read_text())
    layers = [*data["layers"], {"match": "layer1.*", "families": ["tt"]}]
    path = write_space(tmp_path, layers=layers, tie=["uniform"], baselines=None)
    with pytest.raises(ValueError, match=rf"^{path}:\d+: tie: .*layers\[\d\].*differ in families.*add per_layer"):
        load_space(path)
    load_space(write_space(tmp_path, layers=layers, tie=["per_layer", "uniform"], baselines=None))
    load_space(write_space(tmp_path, tie=["uniform"]))  # one group: identical choices
