"""Results analysis: trials frame, Pareto front, hypervolume, knee, plots."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from stsearch.results import (
    best_at_constraint,
    default_reference,
    eligible_mask,
    hypervolume,
    hypervolume_history,
    knee_point,
    load_frame,
    pareto_front,
    pareto_table,
    save_frame,
    trials_frame,
)
from stsearch.results.frame import normalize_objectives

optuna.logging.set_verbosity(optuna.logging.WARNING)

OBJ2 = [("accuracy", "maximize"), ("compression", "maximize")]
OBJ3 = [("accuracy", "maximize"), ("compression", "maximize"), ("macs", "minimize")]
LAYERS = [f"layer{s}.{b}.conv{c}" for s in range(1, 5) for b in range(2) for c in (1, 2)]
FAMILIES = ["tucker", "sttu", "tt", "stt", "tr", "str"]
DENSE_PARAMS, DENSE_MACS = 11_200_000, 557_000_000
DISTS = {
    "family": CategoricalDistribution(FAMILIES + ["mixed"]),
    "rank": IntDistribution(2, 32, log=True),
}


def new_study(objectives: list[tuple[str, str]], name: str = "synthetic") -> optuna.Study:
    study = optuna.create_study(directions=[d for _, d in objectives], storage=None, study_name=name)
    study.set_user_attr("objectives", [{"name": n, "direction": d} for n, d in objectives])
    study.set_user_attr("space", {"families": FAMILIES})
    return study


def add(study: optuna.Study, state: TrialState = TrialState.COMPLETE, values: Any = None, **attrs: Any) -> None:
    attrs.setdefault("status", "completed" if state == TrialState.COMPLETE else state.name.lower())
    attrs.setdefault("full_budget", attrs["status"] == "completed")
    study.add_trial(create_trial(state=state, values=values, user_attrs=attrs))


def _metrics(rng: np.random.Generator, fam: str, rank: int, objectives: list[tuple[str, str]]):
    layers, ratios = {}, []
    for k, name in enumerate(LAYERS):
        lf = rng.choice(FAMILIES) if fam == "mixed" else fam
        r = int(np.clip(round(rank * 2 ** rng.normal(0, 0.6)), 2, 64))
        t = int(rng.choice([1, 2, 4])) if lf.startswith("st") else 1
        if fam == "dense":
            lf, r, t = "dense", None, 1
            ratios.append(1.0)
        else:
            ratios.append(min(1.0, (r / 48) ** 1.5 / t ** 0.7))
        layers[name] = {"family": lf, "rank": r, "t": t, "in_modes": None, "out_modes": None,
                        "n_modes": 3, "forward": "auto", "reading": "B"}
    params = DENSE_PARAMS * (0.008 + 0.992 * float(np.mean(ratios)))
    cf = DENSE_PARAMS / params
    st_bonus = 0.006 if fam.startswith("st") else 0.0
    acc = 0.935 - 0.017 * np.log(cf) ** 1.6 + st_bonus + rng.normal(0, 0.004) - abs(rng.normal(0, 0.012))
    macs = DENSE_MACS * (0.12 + 0.88 * float(np.mean(ratios))) * float(np.exp(rng.normal(0, 0.15)))
    attrs = dict(val_acc=float(acc), val_top5=float(min(1.0, acc + 0.05)), val_loss=float(2.5 * (1 - acc)),
                 compression=float(cf), params=int(params), dense_params=DENSE_PARAMS, macs=float(macs),
                 dense_macs=DENSE_MACS, latency_ms=float(1.5 + macs / 2e8), family=fam,
                 plan={"model": "resnet18", "batch_hint": 128, "layers": layers})
    values = [attrs["val_acc"] if n == "accuracy" else float(attrs[n]) for n, _ in objectives]
    return attrs, values


def synthetic_study(n: int, seed: int = 0, objectives: list[tuple[str, str]] = OBJ2,
                    name: str = "synthetic") -> optuna.Study:
    """A study shaped like the controller writes them: baselines first, then a mix of
    completed, pruned, partial-budget, infeasible, failed and running trials."""
    rng = np.random.default_rng(seed)
    study = new_study(objectives, name)
    baselines = [("dense", "dense", 64)] + [(f"{f}-r8", f, 8) for f in ("tt", "stt", "tucker", "sttu", "tr", "str")]
    t0 = dt.datetime(2025, 1, 1)
    for i in range(n):
        if i < len(baselines):
            bname, fam, rank = baselines[i]
            kind = "completed"
        else:
            bname = None
            fam = str(rng.choice(FAMILIES + ["mixed"], p=[0.15] * 6 + [0.1]))
            rank = int(2 ** rng.uniform(1, 5))
            kind = str(rng.choice(["completed", "pruned", "partial", "infeasible", "failed", "running"],
                                  p=[0.62, 0.18, 0.05, 0.08, 0.05, 0.02]))
        attrs, values = _metrics(rng, fam, rank, objectives)
        attrs.update(baseline=bname, wall_seconds=float(rng.uniform(60, 900)), artifact_dir=f"runs/t{i:05d}",
                     budget_fraction=1.0, full_budget=True, status="completed", reason=None, constraints=[-1.0])
        state = TrialState.COMPLETE
        if kind == "pruned":
            state, values = TrialState.PRUNED, None
            attrs.update(status="pruned", full_budget=False, budget_fraction=float(rng.uniform(0.1, 0.6)),
                         val_acc=attrs["val_acc"] - float(rng.uniform(0.03, 0.4)), reason="asha rung 1")
        elif kind == "partial":
            attrs.update(full_budget=False, budget_fraction=0.5, val_acc=attrs["val_acc"] + 0.05)
            values = [attrs["val_acc"] if n_ == "accuracy" else v for (n_, _), v in zip(objectives, values)]
        elif kind == "infeasible":
            attrs.update(status="infeasible", full_budget=False, budget_fraction=0.0, val_acc=0.0,
                         constraints=[float(rng.uniform(0.1, 5))], reason="params over limit")
            values = [0.0 if n_ == "accuracy" else v for (n_, _), v in zip(objectives, values)]
        elif kind == "failed":
            state, values = TrialState.FAIL, None
            attrs.update(status=str(rng.choice(["failed", "interrupted"])), full_budget=False, val_acc=None,
                         reason="CUDA out of memory")
        elif kind == "running":
            state, values = TrialState.RUNNING, None
            attrs.update(status="running", full_budget=False, val_acc=None)
        ft = create_trial(state=state, values=values, user_attrs=attrs,
                          params={"family": fam if fam != "dense" else "mixed", "rank": int(np.clip(rank, 2, 32))},
                          distributions=DISTS)
        ft.datetime_start = t0 + dt.timedelta(minutes=10 * i)
        if state != TrialState.RUNNING:
            ft.datetime_complete = ft.datetime_start + dt.timedelta(seconds=attrs["wall_seconds"])
        study.add_trial(ft)
    return study


# ---------------------------------------------------------------- frame


def test_frame_columns_and_rows() -> None:
    study = synthetic_study(80, seed=1)
    df = trials_frame(study)
    assert len(df) == 80 and list(df["number"]) == list(range(80))
    required = {"number", "state", "status", "full_budget", "accuracy", "compression", "feasible", "baseline",
                "family", "budget_fraction", "val_acc", "val_top5", "val_loss", "params", "dense_params", "macs",
                "dense_macs", "latency_ms", "wall_seconds", "reason", "artifact_dir", "param:family",
                "param:rank", "datetime_start", "datetime_complete", "duration_s", "plan", "constraints"}
    assert required <= set(df.columns)
    assert df.attrs["objectives"] == OBJ2
    trials = study.get_trials()
    for t, (_, r) in zip(trials, df.iterrows()):
        assert r["state"] == t.state.name
        if t.values is not None:
            assert r["accuracy"] == pytest.approx(t.values[0])
            assert r["compression"] == pytest.approx(t.values[1])
        elif t.user_attrs.get("val_acc") is not None:  # pruned: metrics measured so far
            assert r["accuracy"] == pytest.approx(t.user_attrs["val_acc"])
        assert r["feasible"] == (t.user_attrs["status"] != "infeasible")
        if t.datetime_complete is not None:
            assert r["duration_s"] == pytest.approx(t.user_attrs["wall_seconds"])
    assert df.loc[0, "baseline"] == "dense" and df.loc[1, "baseline"] == "tt-r8"
    assert df["baseline"].iloc[7:].isna().all()
    assert isinstance(df.loc[0, "plan"], dict)


def test_frame_status_fallback_and_constraints_in_system_attrs() -> None:
    study = new_study(OBJ2)
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.9, 5.0]))
    study.add_trial(create_trial(state=TrialState.PRUNED))
    study.add_trial(create_trial(state=TrialState.WAITING))
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.9, 5.0], system_attrs={"constraints": [2.0]}))
    df = trials_frame(study)
    assert list(df["status"]) == ["completed", "pruned", "waiting", "completed"]
    assert list(df["feasible"]) == [True, True, True, False]
    assert list(df["full_budget"]) == [True, False, False, True]
    assert np.isnan(df.loc[1, "accuracy"])


def test_frame_empty_study() -> None:
    df = trials_frame(new_study(OBJ2))
    assert df.empty and {"number", "accuracy", "compression"} <= set(df.columns)
    assert pareto_front(df).empty
    assert hypervolume_history(df).empty


def test_save_and_load_frame(tmp_path: Path) -> None:
    df = trials_frame(synthetic_study(40, seed=2))
    paths = save_frame(df, tmp_path / "out")
    assert [p.name for p in paths] == ["trials.csv", "trials.parquet"]
    assert all(p.stat().st_size > 0 for p in paths)
    back = load_frame(tmp_path / "out")
    assert len(back) == len(df)
    assert back.loc[3, "plan"] == df.loc[3, "plan"]
    assert back.attrs["objectives"] == OBJ2
    csv = load_frame(tmp_path / "out" / "trials.csv")
    assert csv.loc[3, "plan"] == df.loc[3, "plan"]
    pd.testing.assert_series_equal(back["accuracy"], df["accuracy"])


# ---------------------------------------------------------------- front


def frame_of(points: list[tuple[float, ...]], objectives: list[tuple[str, str]]) -> pd.DataFrame:
    study = new_study(objectives)
    for p in points:
        add(study, values=list(p))
    return trials_frame(study)


def brute_front(points: np.ndarray, signs: np.ndarray) -> set[int]:
    m = points * signs
    return {i for i in range(len(m))
            if not any(np.all(m[j] <= m[i]) and np.any(m[j] < m[i]) for j in range(len(m)))}


def test_front_two_objectives_with_duplicates() -> None:
    pts = [(0.90, 2.0), (0.85, 5.0), (0.80, 5.0), (0.85, 5.0), (0.70, 20.0), (0.60, 10.0), (0.92, 1.5)]
    front = pareto_front(frame_of(pts, OBJ2))
    assert list(front["number"]) == [6, 0, 1, 3, 4]  # best accuracy first, duplicates kept
    assert front["accuracy"].is_monotonic_decreasing


def test_front_mixed_directions_and_three_objectives() -> None:
    objs = [("accuracy", "maximize"), ("macs", "minimize")]
    pts = [(0.9, 100.0), (0.8, 50.0), (0.85, 120.0), (0.7, 50.0), (0.95, 300.0)]
    assert set(pareto_front(frame_of(pts, objs))["number"]) == {0, 1, 4}

    rng = np.random.default_rng(3)
    p3 = rng.random((200, 3)).round(1)  # coarse grid: many ties and duplicates
    df = frame_of([tuple(r) for r in p3], OBJ3)
    got = set(pareto_front(df)["number"])
    assert got == brute_front(p3, np.array([-1.0, -1.0, 1.0]))
    # objectives given as dicts / bare names give the same front
    again = pareto_front(df, [{"name": "accuracy", "direction": "maximize"}, "compression", ("macs", "min")])
    assert set(again["number"]) == got


def test_ineligible_trials_never_on_front() -> None:
    study = new_study(OBJ2)
    add(study, values=[0.80, 4.0])  # 0: the only eligible trial
    add(study, TrialState.PRUNED, values=None, val_acc=0.99, compression=50.0, full_budget=False)
    add(study, values=[0.0, 90.0], status="infeasible", full_budget=False, constraints=[3.0])
    add(study, values=[0.97, 80.0], constraints=[0.5])  # violates a constraint
    add(study, values=[0.99, 60.0], full_budget=False, budget_fraction=0.5)  # partial budget
    add(study, TrialState.FAIL, status="failed", val_acc=0.99, compression=99.0)
    add(study, TrialState.FAIL, status="interrupted", val_acc=0.99, compression=99.0)
    add(study, TrialState.RUNNING, status="running", val_acc=0.99, compression=99.0)
    df = trials_frame(study)
    assert list(eligible_mask(df)) == [True] + [False] * 7
    assert list(pareto_front(df)["number"]) == [0]
    assert list(pareto_table(study)["number"]) == [0]

    big = trials_frame(synthetic_study(300, seed=4))
    front = pareto_front(big)
    assert (front["state"] == "COMPLETE").all() and (front["status"] == "completed").all()
    assert front["full_budget"].all() and front["feasible"].all()


# ---------------------------------------------------------------- hypervolume


def test_hypervolume_known_values() -> None:
    mn2 = ["minimize", "minimize"]
    assert hypervolume([[1.0, 1.0]], mn2, [3.0, 2.0]) == pytest.approx(2.0)
    assert hypervolume([[1, 3], [2, 2], [3, 1]], mn2, [4, 4]) == pytest.approx(6.0)  # union of 3 rectangles
    assert hypervolume([[3, 1], [2, 2], [1, 3]], ["maximize"] * 2, [0, 0]) == pytest.approx(6.0)
    assert hypervolume([[0.9, 10.0]], ["maximize", "maximize"], [0.0, 1.0]) == pytest.approx(0.9 * 9.0)
    assert hypervolume([[0.9, 2.0]], ["maximize", "minimize"], [0.0, 4.0]) == pytest.approx(1.8)
    # dominated points and points beyond the reference add nothing
    assert hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]], mn2, [4, 4]) == pytest.approx(6.0)
    assert hypervolume(np.empty((0, 2)), mn2, [1, 1]) == 0.0
    mn3 = ["minimize"] * 3
    assert hypervolume([[0, 0, 0]], mn3, [1, 1, 1]) == pytest.approx(1.0)  # unit cube
    assert hypervolume([[0, 0, 0.5], [0.5, 0.5, 0]], mn3, [1, 1, 1]) == pytest.approx(0.5 + 0.25 - 0.125)
    assert hypervolume([[0, 0, 0, 0]], ["minimize"] * 4, [2, 2, 2, 2]) == pytest.approx(16.0)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_matches_brute_force(m: int) -> None:
    rng = np.random.default_rng(m)
    for _ in range(15):
        pts = rng.integers(0, 5, size=(int(rng.integers(1, 12)), m)).astype(float)
        # exact brute force: unit cells of [0, 5)^m covered by some point's box
        cells = sum(1 for c in itertools.product(range(5), repeat=m) if np.any(np.all(pts <= np.array(c), axis=1)))
        assert hypervolume(pts, ["minimize"] * m, [5.0] * m) == pytest.approx(cells)
        # the same in maximization form
        assert hypervolume(-pts, ["maximize"] * m, [-5.0] * m) == pytest.approx(cells)


def test_hypervolume_matches_optuna() -> None:
    hv_mod = pytest.importorskip("optuna._hypervolume")
    rng = np.random.default_rng(7)
    for m in (2, 3, 4):
        pts = rng.random((40, m))
        ref = np.full(m, 1.2)
        assert hypervolume(pts, ["minimize"] * m, ref) == pytest.approx(hv_mod.compute_hypervolume(pts, ref))


def test_default_reference() -> None:
    df = trials_frame(synthetic_study(100, seed=5, objectives=OBJ3))
    ref = default_reference(df)
    el = df[eligible_mask(df)]
    assert ref[:2] == [0.0, 1.0]
    assert ref[2] == pytest.approx(el["macs"].max() * 1.1)


def test_hypervolume_history_monotone() -> None:
    df = trials_frame(synthetic_study(300, seed=6, objectives=OBJ3))
    hist = hypervolume_history(df)
    assert list(hist["number"]) == list(df["number"])
    assert np.all(np.diff(hist["hypervolume"]) >= 0)
    assert hist["improved"].sum() > 3
    front = pareto_front(df)
    ref = hist.attrs["reference"]
    final = hypervolume(front[["accuracy", "compression", "macs"]].to_numpy(), [d for _, d in OBJ3], ref)
    assert hist["hypervolume"].iloc[-1] == pytest.approx(final)
    assert hist["front_size"].iloc[-1] == len(front.drop_duplicates(["accuracy", "compression", "macs"]))
    assert not hist.loc[~hist["eligible"], "improved"].any()


# ---------------------------------------------------------------- knee, constraint, table


def test_knee_point() -> None:
    pts = [(1.0, 0.0), (0.9, 0.3), (0.75, 0.75), (0.3, 0.9), (0.0, 1.0)]
    objs = [("a", "maximize"), ("b", "maximize")]
    front = pareto_front(frame_of(pts, objs))
    assert len(front) == 5
    assert knee_point(front)["number"] == 2
    # the same front written as minimisation of one objective gives the same knee
    mixed = [(a, 10.0 - 5 * b) for a, b in pts]
    front = pareto_front(frame_of(mixed, [("a", "maximize"), ("c", "minimize")]))
    assert knee_point(front)["number"] == 2
    # compression is judged on a log scale (as plotted): a front straight in log(CF)
    # but bowed in linear CF has its knee inside, not at an end
    curve = [(0.927, 2.0), (0.90, 4.5), (0.87, 10.0), (0.81, 37.0), (0.755, 73.0)]
    front = pareto_front(frame_of(curve, OBJ2))
    assert knee_point(front)["number"] in (1, 2, 3)
    assert knee_point(front, log=())["number"] in (0, 4)
    # one point: itself
    one = pareto_front(frame_of([(0.5, 2.0)], OBJ2))
    assert knee_point(one)["number"] == 0
    # three objectives: the point bulging past the plane through the extremes
    p3 = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.6, 0.6, 0.6), (0.5, 0.4, 0.3)]
    obj3 = [("a", "maximize"), ("b", "maximize"), ("c", "maximize")]
    assert knee_point(pareto_front(frame_of(p3, obj3)))["number"] == 3


def test_best_at_constraint() -> None:
    study = new_study(OBJ3)
    add(study, values=[0.90, 5.0, 100.0], family="tt")
    add(study, values=[0.85, 12.0, 80.0], family="stt")
    add(study, values=[0.80, 20.0, 60.0], family="tt")
    add(study, values=[0.95, 30.0, 60.0], family="tt", full_budget=False)  # partial budget: ignored
    add(study, values=[0.88, 11.0, 90.0], family="tt", constraints=[1.0])  # infeasible: ignored
    df = trials_frame(study)
    assert best_at_constraint(df, "accuracy", {"compression": (">=", 10)})["number"] == 1
    assert best_at_constraint(df, "accuracy", {"compression": (">=", 10), "family": "tt"})["number"] == 2
    assert best_at_constraint(df, "accuracy", {"compression": (">", 100)}) is None
    assert best_at_constraint(df, "macs", {"accuracy": (">=", 0.85)})["number"] == 1
    assert best_at_constraint(df)["number"] == 0
    assert best_at_constraint(df, "accuracy", {"compression": (">=", 10)}, eligible_only=False)["number"] == 3


def test_pareto_table_columns() -> None:
    study = synthetic_study(120, seed=8)
    table = pareto_table(study)
    assert list(table.columns) == ["number", "family", "accuracy", "compression", "macs", "params", "baseline",
                                   "status"]
    assert len(table) >= 2 and (table["status"] == "completed").all()
    assert table["accuracy"].is_monotonic_decreasing


def test_objective_parsing() -> None:
    class Obj:
        name, direction = "latency_ms", "minimize"

    got = normalize_objectives([("accuracy", "max"), {"name": "macs", "direction": "minimize"}, Obj(), "params"])
    assert got == [("accuracy", "maximize"), ("macs", "minimize"), ("latency_ms", "minimize"),
                   ("params", "minimize")]
    with pytest.raises(ValueError):
        normalize_objectives(["mystery"])


# ---------------------------------------------------------------- plots


def _check_images(paths: list[Path], stem: Path) -> None:
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.parent == stem.parent and p.stem == stem.name for p in paths)
    png, svg = paths
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert svg.stat().st_size > 1000 and b"<svg" in svg.read_bytes()[:2000]


def test_plots_written(tmp_path: Path) -> None:
    from stsearch.results.plots import plot_compare, plot_front, plot_hypervolume, plot_layer_heatmap

    df = trials_frame(synthetic_study(200, seed=9))
    other = trials_frame(synthetic_study(150, seed=10, name="other"))
    front = pareto_front(df)
    _check_images(plot_front(df, None, tmp_path / "front"), tmp_path / "front")
    _check_images(plot_hypervolume(hypervolume_history(df), tmp_path / "hv.png"), tmp_path / "hv")
    _check_images(plot_layer_heatmap(front, tmp_path / "sub" / "layers"), tmp_path / "sub" / "layers")
    _check_images(plot_compare({"a": df, "b": other}, OBJ2, tmp_path / "compare"), tmp_path / "compare")


def test_plots_three_objectives_and_degenerate(tmp_path: Path) -> None:
    from stsearch.results.plots import plot_compare, plot_front, plot_hypervolume, plot_layer_heatmap

    df = trials_frame(synthetic_study(150, seed=11, objectives=OBJ3))
    _check_images(plot_front(df, OBJ3, tmp_path / "f3", title="three objectives"), tmp_path / "f3")
    _check_images(plot_hypervolume(hypervolume_history(df), tmp_path / "h3"), tmp_path / "h3")
    # no accuracy objective: compression (log y) against MACs
    cm = [("compression", "maximize"), ("macs", "minimize")]
    _check_images(plot_front(df, cm, tmp_path / "fcm"), tmp_path / "fcm")
    # a study with nothing eligible still draws
    empty = trials_frame(synthetic_study(3, seed=12))
    empty["full_budget"] = False
    _check_images(plot_front(empty, None, tmp_path / "f0"), tmp_path / "f0")
    _check_images(plot_layer_heatmap(pareto_front(df).iloc[:1], tmp_path / "l1"), tmp_path / "l1")
    _check_images(plot_compare({"only": empty}, None, tmp_path / "c0"), tmp_path / "c0")


def test_front_plot_rings_the_knee_that_pareto_and_export_report(tmp_path: Path) -> None:
    """With three objectives the ringed knee is the study's (all objectives), not the plotted pair's."""
    import matplotlib

    from stsearch.results.plots import plot_front

    differs = 0
    for seed in range(40, 52):
        df = trials_frame(synthetic_study(60, seed=seed, objectives=OBJ3))
        want = int(knee_point(pareto_front(df, OBJ3), OBJ3)["number"])
        pair = [("accuracy", "maximize"), ("compression", "maximize")]
        differs += want != int(knee_point(pareto_front(df, pair), pair)["number"])
        with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
            svg = plot_front(df, OBJ3, tmp_path / f"f{seed}")[1].read_text()
        assert f"knee (of all 3 objectives): trial #{want}<" in svg
    assert differs, "the seeds should include fronts whose two knees differ"


# ---------------------------------------------------------------- scale


def bulk_study(n: int, seed: int = 0) -> optuna.Study:
    """A large three-objective study built quickly (vectorised metrics, one shared plan)."""
    rng = np.random.default_rng(seed)
    study = new_study(OBJ3, "bulk")
    cf = np.exp(rng.uniform(0, np.log(100), n))
    acc = 0.935 - 0.017 * np.log(cf) ** 1.6 - np.abs(rng.normal(0, 0.012, n))
    macs = DENSE_MACS / cf ** 0.6 * np.exp(rng.normal(0, 0.15, n))
    kind = rng.choice(["completed", "pruned", "infeasible", "failed"], p=[0.7, 0.15, 0.1, 0.05], size=n)
    fams = rng.choice(FAMILIES, size=n)
    plan = {"model": "resnet18", "layers": {name: {"family": "stt", "rank": 8, "t": 2} for name in LAYERS}}
    for i in range(n):
        attrs: dict[str, Any] = {"status": str(kind[i]), "full_budget": kind[i] == "completed", "family": str(fams[i]),
                                 "val_acc": float(acc[i]), "compression": float(cf[i]), "macs": float(macs[i]),
                                 "params": float(DENSE_PARAMS / cf[i]), "plan": plan}
        state, values = TrialState.COMPLETE, [float(acc[i]), float(cf[i]), float(macs[i])]
        if kind[i] == "pruned":
            state, values = TrialState.PRUNED, None
        elif kind[i] == "failed":
            state, values = TrialState.FAIL, None
        elif kind[i] == "infeasible":
            values[0] = 0.0
            attrs["constraints"] = [1.0]
        study.add_trial(create_trial(state=state, values=values, user_attrs=attrs))
    return study


def test_ten_thousand_trials_fast() -> None:
    study = bulk_study(10_000, seed=13)
    start = time.perf_counter()  # the analysis only, not building the study
    df = trials_frame(study)
    front = pareto_front(df)
    ref = default_reference(df)
    hv = hypervolume(front[["accuracy", "compression", "macs"]].to_numpy(), [d for _, d in OBJ3], ref)
    hist = hypervolume_history(df, reference=ref)
    elapsed = time.perf_counter() - start
    assert len(df) == 10_000 and len(front) > 5
    assert hist["hypervolume"].iloc[-1] == pytest.approx(hv)
    assert elapsed < 10.0, f"frame+front+hypervolume took {elapsed:.1f} s"
