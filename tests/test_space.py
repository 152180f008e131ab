"""Search spaces: loading, validation messages, sampling/decoding, baselines, samplers."""

import pickle
import re
import warnings
from pathlib import Path

import optuna
import pytest

from stsearch.plan import LayerPlan, NetworkPlan
from stsearch.space import SAMPLERS, Constraint, SearchSpace, SpaceError, load_space, make_sampler, space_dir
from stsearch.summary import summarize

optuna.logging.set_verbosity(optuna.logging.WARNING)

SHIPPED = sorted(p.stem for p in space_dir().glob("*.yaml"))
PAPER = {
    "resnet32_cifar10_tt_vs_stt": {"tt-r14": 2.68, "stt-r14-t2": 9.53},
    "wrn28_10_cifar10_tr_vs_str": {"tr-r16": 97.28, "str-r16-t2": 179.39},
}


@pytest.fixture(scope="module")
def spaces():
    return {name: load_space(name) for name in SHIPPED}


def test_shipped_spaces_present():
    assert {"digits", "resnet32_cifar10_tt_vs_stt", "wrn28_10_cifar10_tr_vs_str", "all_families"} <= set(SHIPPED)


def test_load_by_name_and_path(spaces):
    sp = load_space("digits")
    assert sp.name == "digits-default" and sp.model == "resnet8_digits" and sp.dataset == "digits"
    assert sp.trials == 20 and sp.directions() == ["maximize", "maximize"]
    assert sp.input_shape() == (1, 8, 8)
    assert list(sp.layers()) == [f"layer{i}.0.conv{j}" for i in (1, 2, 3) for j in (1, 2)]
    assert load_space(space_dir() / "digits.yaml").to_dict() == sp.to_dict()
    with pytest.raises(FileNotFoundError, match="known: .*digits"):
        load_space("no_such_space")


@pytest.mark.parametrize("name", SHIPPED)
def test_random_trials_decode_to_resolvable_plans(spaces, name):
    sp = spaces[name]
    study = optuna.create_study(directions=sp.directions(), sampler=optuna.samplers.RandomSampler(seed=1))
    layers = sp.layers()
    families = set()
    for _ in range(200):
        trial = study.ask()
        params = sp.suggest(trial)
        assert params == trial.params
        plan = sp.plan_from_params(params)
        assert list(plan.layers) == list(layers)
        for lname, lp in plan.layers.items():
            families.add(lp.family)
            if not lp.is_dense:
                g = layers[lname]
                lp.resolve(g.c_out, g.c_in, g.kernel, lname)  # must not raise
    offered = set().union(*(g.families for g in sp.groups))
    assert families == offered


@pytest.mark.parametrize("name", SHIPPED)
def test_baselines_decode_to_uniform_plans(spaces, name):
    sp = spaces[name]
    assert sp.baselines
    study = optuna.create_study(directions=sp.directions())
    for base, params in zip(sp.baselines, sp.baseline_params()):
        # values are valid for the distributions suggest() uses, and an enqueued trial replays them
        study.enqueue_trial(params)
        trial = study.ask()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert sp.suggest(trial) == params
        for key, dist in trial.distributions.items():
            assert dist._contains(dist.to_internal_repr(params[key]))
        plan = sp.plan_from_params(params)
        uniform = sp.uniform_plan(base)
        for lname, g in sp.layers().items():
            got = plan.layers[lname].resolve(g.c_out, g.c_in, g.kernel, lname)
            assert got == uniform.layers[lname].resolve(g.c_out, g.c_in, g.kernel, lname)
        lp = LayerPlan(base["family"], rank=base["rank"], t=base.get("t", 1))
        by_pattern = NetworkPlan.uniform(list({p for g in sp.groups for p in g.match}), lp)
        cf = summarize(sp.model, by_pattern).compression
        metrics = sp.analytic_metrics(plan)
        assert metrics["compression"] == pytest.approx(cf, rel=1e-12)
        assert metrics["params"] * metrics["compression"] == pytest.approx(metrics["dense_params"])
        if name in PAPER:
            assert round(cf, 2) == PAPER[name][base["name"]]
        study.tell(trial, [0.0] * len(sp.directions()))


def test_param_names_and_conditionality(spaces):
    sp = spaces["digits"]
    p = sp.baseline_params()[1]  # stt r8 t2: a point of the uniform branch
    assert p["plan:tie"] == "uniform" and p["uniform:family"] == "stt" and p["uniform:t"] == 2
    assert p["uniform:split3:16to16"] == "4x2x2|4x2x2" and p["uniform:split3:16to32"] == "4x2x2|4x4x2"
    assert not any(k.startswith("layer") for k in p)
    tt = sp.baseline_params()[0]
    assert "uniform:t" not in tt
    # dense layers sample only the family
    params = {f"{n}:family": "dense" for n in sp.layers()}
    assert all(lp.is_dense for lp in sp.plan_from_params(params).layers.values())
    with pytest.raises(ValueError, match="params lack 'layer1.0.conv1:rank'"):
        sp.plan_from_params({**params, "layer1.0.conv1:family": "tt"})


def test_decode_rounds_and_clamps_ranks(spaces):
    sp = spaces["digits"]
    base = {f"{n}:family": "dense" for n in sp.layers()}
    key = "layer1.0.conv1"
    plan = sp.plan_from_params({**base, f"{key}:family": "stt", f"{key}:t": 4, f"{key}:rank": 6,
                                f"{key}:n_modes": 3, f"{key}:split3": "4x2x2|4x2x2"})
    assert plan.layers[key].rank == 8 and plan.layers[key].t == 4  # rounded up to a multiple of t
    # TT on 16x16 split 2x8: modes [9, 4, 64]; bound 36 -> clamp a huge rank
    plan = sp.plan_from_params({**base, f"{key}:family": "tt", f"{key}:rank": 500,
                                f"{key}:n_modes": 2, f"{key}:split2": "2x8|2x8"})
    lp = plan.layers[key]
    assert lp.rank == 36 and lp.in_modes == (2, 8)
    lp.resolve(16, 16, (3, 3), key)


def test_shared_group_names():
    data = load_space("digits").to_dict()
    data["layers"] = [{"match": "layer*.conv*", "share": True, "name": "convs", "families": ["stt", "tt"],
                       "t": [2, 4], "n_modes": [3]}]
    data["baselines"] = [{"family": "stt", "rank": 8, "t": 2}]
    sp = SearchSpace.from_dict(data)
    study = optuna.create_study(directions=sp.directions(), sampler=optuna.samplers.RandomSampler(seed=0))
    params = sp.suggest(study.ask())
    assert {"convs:family", "convs:rank"} <= set(params)
    assert {k for k in params if ":split3:" in k} <= {"convs:split3:16to16", "convs:split3:16to32",
                                                      "convs:split3:32to32", "convs:split3:32to64",
                                                      "convs:split3:64to64"}
    plan = sp.plan_from_params(params)
    assert len({(lp.family, lp.t) for lp in plan.layers.values()}) == 1


def test_pickle(spaces):
    sp = spaces["digits"]
    sp.analytic_metrics(sp.plan_from_params(sp.baseline_params()[0]))
    again = pickle.loads(pickle.dumps(sp))
    assert again.baseline_params() == sp.baseline_params()
    assert again.analytic_metrics(again.plan_from_params(sp.baseline_params()[0]))["compression"] > 1


def test_round_trip(spaces):
    for sp in spaces.values():
        d = sp.to_dict()
        again = SearchSpace.from_dict(d)
        assert again.to_dict() == d
        assert again.baseline_params() == sp.baseline_params()


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_make_sampler(name):
    def cons(_trial):
        return [0.0]

    sampler = make_sampler({"name": name, "seed": 3}, constraints_func=cons)
    assert isinstance(sampler, SAMPLERS[name])
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    sp = load_space("digits")
    for _ in range(3):
        trial = study.ask()
        sp.suggest(trial)
        study.tell(trial, [0.5, 2.0])
    with pytest.raises(ValueError, match="sampler.bogus: unknown option 'bogus'"):
        make_sampler({"name": name, "bogus": 1})


def test_make_sampler_options():
    assert make_sampler({"name": "nsga2", "population_size": 8, "crossover": "sbx"})._population_size == 8
    with pytest.raises(ValueError, match="unknown sampler 'cma'"):
        make_sampler({"name": "cma"})


def test_constraints():
    c = Constraint("compression", min=2.0)
    assert c.violation(3.0) == -1.0 and c.violation(1.5) == 0.5
    both = Constraint("macs", min=10, max=20)
    assert both.violation(15) == -5 and both.violation(25) == 5 and both.violation(5) == 5
    sp = load_space("digits")
    dense = {f"{n}:family": "dense" for n in sp.layers()}
    m = sp.analytic_metrics(sp.plan_from_params(dense))
    assert m["compression"] == 1.0 and not sp.is_feasible(m)
    assert sp.constraint_values(m) == [1.0] and sp.constraint_values({}) == [0.0]
    stt = sp.analytic_metrics(sp.plan_from_params(sp.baseline_params()[1]))
    assert sp.is_feasible(stt) and sp.constraint_values(stt)[0] < 0
    assert sp.is_feasible({"accuracy": 0.1})
    assert sp.constraint_items(m) == {"compression>=2": 1.0}
    assert Constraint("macs", max=5).key == "macs<=5" and both.key == "10<=macs<=20"


# ------------------------------------------------------------------ error messages
GOOD = (Path(__file__).resolve().parents[1] / "search_spaces" / "digits.yaml").read_text()


def _body() -> str:
    """The digits space without its comment block, one key per line."""
    return """name: t
model: resnet8_digits
dataset: digits
layers:
  - match: ["layer*.conv*"]
    families: [tt, stt]
    ranks: {low: 2, high: 16, step: 2}
    t: [2]
objectives:
  - {name: accuracy}
  - {name: compression}
constraints:
  - {metric: compression, min: 2}
train:
  epochs: 1
  lr: 0.05
sampler: {name: tpe}
baselines:
  - {family: tt, rank: 8}
trials: 3
"""


def _error(tmp_path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        SearchSpace.load(path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


BAD = [
    ("top-level key", ("trials: 3", "trials: 3\nbogus: 1"), 21, r"bogus: unknown key 'bogus'; allowed: name, model"),
    ("group key", ("    t: [2]", "    t: [2]\n    rnak: 4"), 9, r"layers\[0\]\.rnak: unknown key 'rnak'"),
    ("model", ("model: resnet8_digits", "model: resnet9"), 2, r"model: unknown model 'resnet9'; known: .*resnet20"),
    ("dataset", ("dataset: digits", "dataset: imagenet"), 3, r"dataset: unknown dataset 'imagenet'; give a built-in name \(digits"),
    ("family", ("families: [tt, stt]", "families: [tt, sst]"), 6, r"layers\[0\]\.families: unknown family 'sst'"),
    ("empty families", ("families: [tt, stt]", "families: []"), 6, r"layers\[0\]\.families: .*non-empty"),
    ("objective", ("{name: compression}", "{name: flops}"), 11, r"objectives\[1\]\.name: unknown objective 'flops'"),
    ("sampler", ("{name: tpe}", "{name: cmaes}"), 17, r"sampler\.name: unknown sampler 'cmaes'; allowed: tpe"),
    ("rank low > high", ("{low: 2, high: 16, step: 2}", "{low: 20, high: 16, step: 2}"), 7,
     r"layers\[0\]\.ranks\.low: low 20 > high 16; swap them"),
    ("t < 2", ("t: [2]", "t: [1, 2]"), 8, r"layers\[0\]\.t: t=1 is not an STP factor; .*>= 2"),
    ("match", ('["layer*.conv*"]', '["block*.conv*"]'), 5,
     r"layers\[0\]\.match: 'block\*\.conv\*' matches no conv/linear layer of the model; "
     r"layer paths look like: conv1, layer1\.0\.conv1"),
    ("train key", ("  lr: 0.05", "  lr: 0.05\n  lr_max: 1"), 17,
     r"train\.lr_max: TrainConfig: unknown key 'lr_max'; allowed keys: epochs"),
    ("train value", ("  lr: 0.05", "  lr: -1"), 16, r"train\.lr: TrainConfig\.lr: got -1; allowed: a number > 0"),
    ("constraint bounds", ("{metric: compression, min: 2}", "{metric: compression}"), 13,
     r"constraints\[0\]: constraint on compression has neither min nor max; add min: and/or max:"),
    ("baseline family", ("{family: tt, rank: 8}", "{family: tr, rank: 8}"), 19,
     r"baselines\[0\]\.family: family 'tr' is not a choice of layers\[0\]"),
    ("baseline rank", ("{family: tt, rank: 8}", "{family: tt, rank: 7}"), 19,
     r"baselines\[0\]\.rank: rank 7 is not a choice"),
    ("duplicate key", ("trials: 3", "trials: 3\ntrials: 4"), 21, r"trials: duplicate key"),
    ("t reduces nothing", ("t: [2]", "t: [2, 3]"), 8,
     r"layers\[0\]\.t: t=3 divides none of the mode sizes of stt on the layers of group0 \(channels \[16, 32, 64\]\), "
     r"so they would train as the classical families under the semi-tensor label; use t values that divide them, "
     r"e\.g\. t: \[2, 4, 8, 16\]"),
]


@pytest.mark.parametrize("case,edit,line,pattern", BAD, ids=[b[0] for b in BAD])
def test_error_messages(tmp_path, case, edit, line, pattern):
    old, new = edit
    body = _body()
    assert old in body, case
    msg = _error(tmp_path, body.replace(old, new, 1))
    assert re.search(rf"^{re.escape(str(tmp_path / 'space.yaml'))}:{line}: {pattern}", msg), msg


def test_a_t_that_reduces_some_family_somewhere_is_accepted():
    """t=3 divides no power-of-two channel mode, but STR's ring holds the 3x3 kernel's mode of 9,
    and an explicit split can carry a factor of 3."""
    base = {"model": "resnet8_digits", "dataset": "digits"}
    SearchSpace.from_dict({**base, "layers": [{"match": "layer*.conv*", "families": ["tt", "stt", "str"], "t": [3]}]})
    SearchSpace.from_dict({**base, "model_kwargs": {"widths": [12, 24, 48]}, "layers": [{"match": "layer1.*", "families": ["stt"],
                                                                              "t": [3]}]})
    with pytest.raises(SpaceError, match=r"t=3 divides none of the mode sizes of stt, sttu"):
        SearchSpace.from_dict({**base, "layers": [{"match": "layer*.conv*", "families": ["stt", "sttu"], "t": [3]}]})


def test_yaml_syntax_error(tmp_path):
    msg = _error(tmp_path, _body().replace("  - {name: accuracy}", "  - {name: accuracy"))
    assert re.search(r"space\.yaml:1[01]: YAML syntax error: .*; fix the YAML syntax", msg), msg


def test_from_dict_errors_name_the_key():
    with pytest.raises(SpaceError, match=r"^layers\[0\]\.ranks\.high: high 15 is not low 2 plus a multiple"):
        SearchSpace.from_dict({"model": "resnet8_digits", "dataset": "digits",
                               "layers": [{"match": "layer*", "ranks": {"low": 2, "high": 15, "step": 2}}]})
    with pytest.raises(SpaceError, match=r"^model: missing"):
        SearchSpace.from_dict({"dataset": "digits"})
    with pytest.raises(SpaceError, match=r"^baselines\[0\]: stt needs an STP factor"):
        SearchSpace.from_dict({"model": "resnet8_digits", "dataset": "digits", "layers": [{"match": "layer*"}],
                               "baselines": [{"family": "stt", "rank": 8}]})


def test_digits_header_documents_every_key():
    header = "\n".join(line for line in GOOD.splitlines() if line.startswith("#"))
    from stsearch.space.schema import GROUP_KEYS, TOP_KEYS

    for key in (*TOP_KEYS, *GROUP_KEYS):
        assert re.search(rf"#\s+{key}\s", header), key


def test_uniform_branch_reaches_uniform_plans(spaces):
    import optuna

    sp = spaces["digits"]
    study = optuna.create_study(directions=sp.directions(), sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        params = sp.suggest(trial)
        plan = sp.plan_from_params(params)
        seen.add(params["plan:tie"])
        if params["plan:tie"] == "uniform":
            fams = {(lp.family, lp.t) for lp in plan.layers.values()}
            assert len(fams) == 1 and not any(k.startswith("layer") for k in params)
        study.tell(trial, [0.0] * len(sp.directions()))
    assert seen == {"uniform", "per_layer"}
    # a space can switch the branch off
    data = sp.to_dict()
    data["tie"] = ["per_layer"]
    from stsearch.space import SearchSpace

    assert "plan:tie" not in SearchSpace.from_dict(data).baseline_params()[0]
    data["tie"] = ["sometimes"]
    with pytest.raises(ValueError, match="tie: expected a non-empty list of per_layer, uniform"):
        SearchSpace.from_dict(data)
