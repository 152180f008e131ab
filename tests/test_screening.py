"""Analytic screening: exact cached costs, candidate walks, the accuracy model, hypervolume gains,
and the sampler inside a real study (claims and finishes through SearchRun, accuracy from a
known function of the plan instead of training)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import optuna
import pytest

from stsearch.plan import NetworkPlan
from stsearch.results.pareto import hypervolume
from stsearch.search.run import SearchRun
from stsearch.space import SearchSpace, load_space, make_sampler
from stsearch.space.screening import (
    AccuracyModel, ScreeningSampler, check_screen_config, hypervolume_gains, plan_features, plan_key, sample_params,
)
from stsearch.summary import summarize


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return load_space("digits")


def test_cached_analytic_metrics_equal_summarize(space):
    rng = np.random.default_rng(0)
    for _ in range(40):
        _, plan = sample_params(space, rng)
        fast = space.analytic_metrics(plan)
        slow = summarize(space._meta, plan, input_shape=space.input_shape()).totals()
        assert {k: fast[k] for k in fast} == {k: slow[k] for k in fast}


def test_sampled_params_decode_to_the_sampled_plan_and_mutation_keeps_the_parent(space):
    rng = np.random.default_rng(1)
    ties = set()
    for _ in range(30):
        params, plan = sample_params(space, rng)
        ties.add(params.get("plan:tie"))
        assert plan_key(space.plan_from_params(params)) == plan_key(plan)
        same, same_plan = sample_params(space, rng, parent=params, rate=0.0)
        assert same == params and plan_key(same_plan) == plan_key(plan)
        changed = [sample_params(space, rng, parent=params, rate=1.0)[0] for _ in range(5)]
        assert any(c != params for c in changed)
    assert ties == {"uniform", "per_layer"}


def test_plan_features(space):
    rng = np.random.default_rng(2)
    _, plan = sample_params(space, rng)
    m = space.analytic_metrics(plan)
    f = plan_features(space, plan, m)
    assert f[0] == pytest.approx(math.log(m["compression"]))
    assert 0 <= f[2] + f[3] + f[4] <= 1 + 1e-9 and 0 <= f[5] <= 1
    dense = NetworkPlan.from_dict({"layers": {n: {"family": "dense"} for n in space.layers()}, "model": space.model})
    assert np.allclose(plan_features(space, dense, space.analytic_metrics(dense)), 0)


def test_accuracy_model_follows_the_trend_and_is_sure_only_near_data():
    x = np.zeros((6, 7))
    x[:, 0] = np.log([2, 4, 8, 16, 32, 64])
    y = 0.95 - 0.05 * x[:, 0]
    model = AccuracyModel().fit(x, y)
    assert model.slope < 0
    mean, std = model.predict(x)
    assert np.max(np.abs(mean - y)) < 0.02
    far = np.zeros((1, 7))
    far[0, 0], far[0, 3] = np.log(64), 5.0  # an unseen family mix
    _, std_far = model.predict(far)
    assert std_far[0] > 1.4 * std.max() and std_far[0] == pytest.approx(model.scale, rel=1e-3)


def test_hypervolume_gains_equal_brute_force():
    rng = np.random.default_rng(3)
    directions = ["maximize", "maximize", "minimize"]
    ref = [0.0, 1.0, 100.0]
    front = np.column_stack([rng.uniform(0.5, 1, 8), rng.uniform(1, 50, 8), rng.uniform(10, 90, 8)])
    cands = np.column_stack([rng.uniform(0.5, 1, 20), rng.uniform(1, 50, 20), rng.uniform(10, 90, 20)])
    gains = hypervolume_gains(front, cands, directions, ref)
    base = hypervolume(front, directions, ref)
    for c, g in zip(cands, gains):
        assert g == pytest.approx(hypervolume(np.vstack([front, c]), directions, ref) - base, abs=1e-9)
    dominated = front[:1] * [0.9, 0.9, 1.1]
    assert hypervolume_gains(front, dominated, directions, ref)[0] == pytest.approx(0, abs=1e-9)


def test_screen_config_validation():
    assert check_screen_config(False) is None and check_screen_config(True).candidates == 512
    assert check_screen_config({"candidates": 64, "explore": 0.5}).explore == 0.5
    with pytest.raises(ValueError, match="unknown screen option 'bogus'"):
        check_screen_config({"bogus": 1})
    with pytest.raises(ValueError, match="screen.mutate must be a number in"):
        check_screen_config({"mutate": 2})
    with pytest.raises(ValueError, match="sampler.screen"):
        SearchSpace.from_dict({**load_space("digits").to_dict(), "sampler": {"name": "tpe", "screen": {"candidates": 0}}})


def test_screening_is_the_default_except_for_random(space):
    assert isinstance(make_sampler({"name": "tpe"}, space=space), ScreeningSampler)
    assert isinstance(make_sampler({"name": "nsga2"}, space=space), ScreeningSampler)
    assert isinstance(make_sampler({"name": "random"}, space=space), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler({"name": "tpe", "screen": False}, space=space), optuna.samplers.TPESampler)
    assert isinstance(make_sampler({"name": "tpe"}), optuna.samplers.TPESampler)  # no space: nothing to screen
    latency = SearchSpace.from_dict({**space.to_dict(), "objectives": [
        {"name": "accuracy", "direction": "maximize"}, {"name": "latency_ms", "direction": "minimize"}]})
    assert not make_sampler({"name": "tpe"}, space=latency).applies()


# ------------------------------------------------------------------ in a study
def toy_accuracy(space: SearchSpace, plan: NetworkPlan) -> float:
    """A known accuracy shaped like the digits runs (0.96 up to CF 7, about 0.8 at CF 45); ST layers lose less."""
    m = space.analytic_metrics(plan)
    f = plan_features(space, plan, m)
    return float(np.clip(0.96 - 0.05 * max(f[0] - 2.0, 0.0) ** 2 + 0.03 * f[5], 0.05, 1.0))


def drive(space: SearchSpace, tmp_path, name: str, trials: int, *, parallel: int = 1) -> SearchRun:
    run = SearchRun.create(space, name=name, results_dir=tmp_path, trials=trials)
    while True:
        claims = [c for c in (run.claim() for _ in range(parallel)) if c is not None]
        if not claims:
            return run
        for c in claims:
            plan = NetworkPlan.from_dict(c.spec.plan)
            run.finish(c, {"status": "completed", "val_acc": toy_accuracy(space, plan), "full_budget": True})


def front_hv(space: SearchSpace, run: SearchRun) -> float:
    pts = [(t.user_attrs["val_acc"], t.user_attrs["compression"]) for t in run.trials()
           if t.user_attrs.get("status") == "completed"]
    return hypervolume(np.array(pts), ["maximize", "maximize"], [0.0, 1.0])


def test_screening_sampler_in_a_study_no_duplicates_only_feasible_and_repeatable(space, tmp_path):
    data = {**space.to_dict(), "constraints": [{"metric": "compression", "min": 4}],
            "sampler": {"name": "tpe", "seed": 7, "screen": {"candidates": 128}}}
    sp = SearchSpace.from_dict(data)
    runs = [drive(sp, tmp_path, f"screen-{k}", 12) for k in range(2)]
    trials = runs[0].trials()
    keys = [plan_key(t.user_attrs["plan"]) for t in trials if t.user_attrs.get("status") == "completed"]
    assert len(keys) == 12 and len(set(keys)) == 12
    assert not [t for t in trials if t.user_attrs.get("status") == "infeasible"]
    screened = [t for t in trials if "screen_gain" in t.user_attrs]
    assert len(screened) == 12 - len(sp.baselines)  # every sampled trial after the baselines
    assert all(t.user_attrs["screen_gain"] > 0 and t.user_attrs["compression"] >= 4 for t in screened)
    assert [t.params for t in runs[0].trials()] == [t.params for t in runs[1].trials()]


def test_parallel_claims_get_distinct_plans(space, tmp_path):
    sp = SearchSpace.from_dict({**space.to_dict(), "sampler": {"name": "tpe", "seed": 1, "screen": {"candidates": 128}}})
    run = drive(sp, tmp_path, "par", 10, parallel=3)
    keys = [plan_key(t.user_attrs["plan"]) for t in run.trials() if t.user_attrs.get("status") == "completed"]
    assert len(keys) == 10 and len(set(keys)) == 10


def test_screening_beats_random_search_on_a_known_accuracy(space, tmp_path):
    """With the same 12 trials, screening's front beats the best of 3 random-search seeds, and their mean by 20%."""
    base = {**space.to_dict(), "baselines": []}
    screened = SearchSpace.from_dict({**base, "sampler": {"name": "tpe", "seed": 0, "screen": {"min_trials": 2}}})
    hv_screen = front_hv(screened, drive(screened, tmp_path, "scr", 12))
    hv_random = []
    for seed in range(3):
        rand = SearchSpace.from_dict({**base, "sampler": {"name": "random", "seed": seed}})
        hv_random.append(front_hv(rand, drive(rand, tmp_path, f"rnd{seed}", 12)))
    assert hv_screen > max(hv_random) and hv_screen > 1.2 * np.mean(hv_random), (hv_screen, hv_random)


def test_a_uniform_parent_flipped_to_per_layer_starts_every_layer_from_its_uniform_choices(space):
    uniform = space.baseline_params()[1]  # stt r8 t2 on every searchable layer
    assert uniform["plan:tie"] == "uniform"
    params, plan = sample_params(space, np.random.default_rng(0), parent={**uniform, "plan:tie": "per_layer"}, rate=0.0)
    assert params["plan:tie"] == "per_layer" and not any(k.startswith("uniform:") for k in params)
    assert plan_key(plan) == plan_key(space.plan_from_params(uniform))
