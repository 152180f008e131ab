"""Analytic screening: the next configuration is the candidate with the largest optimistic hypervolume gain.

Compression, parameters and MACs of a plan are exact arithmetic, known before training
(:meth:`SearchSpace.analytic_metrics`); only accuracy has to be learnt. A
:class:`ScreeningSampler` wraps an Optuna sampler and, for every new (non-enqueued)
trial:

1. draws ``candidates`` configurations of the space: random walks of the define-by-run
   space (both ``plan:tie`` branches) and mutations of the current Pareto front's
   configurations (each choice re-drawn with probability ``mutate_rate``);
2. drops the ones that violate an analytic constraint and the plans already tried,
   running or queued (the study's ``plan`` attributes and enqueued params), so no
   configuration is trained twice;
3. predicts each candidate's accuracy with :class:`AccuracyModel` (a linear trend in
   log compression plus a kernel average of the residuals, with an uncertainty that
   shrinks near observed plans) and scores it by the hypervolume it would add to the
   front of finished trials (running trials enter the front at their predicted
   accuracy, so parallel workers spread out) at the optimistic accuracy
   ``mean + explore * std``, its other objectives exact;
4. gives the best candidate's params to the trial (``sample_independent`` returns
   them); the wrapped sampler answers when screening does not apply: fewer than
   ``min_trials`` finished full-budget trials, an objective that is not analytic
   besides accuracy (e.g. ``latency_ms``), or no candidate with a positive gain.

The reference point of the hypervolume is the dense network: accuracy 0, compression
1, and the dense parameter and MAC counts. The sampler writes ``screen_pred_acc``,
``screen_std`` and ``screen_gain`` to the trial's user attributes.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from ..metrics import MetricTable
from ..plan import NetworkPlan
from ..tensors.spec import BASE_FAMILY, ST_FAMILIES
from .types import RankSpec
from ..results.pareto import hypervolume, nondominated_mask
from .sampling import UNIFORM, Slot, _walk

if TYPE_CHECKING:
    from optuna.study import Study

    from .schema import SearchSpace

__all__ = [
    "ScreenConfig", "ScreeningSampler", "AccuracyModel", "sample_params", "plan_key", "plan_features",
    "hypervolume_gains", "check_screen_config",
]

#: Objectives whose value is known from the plan alone (besides ``accuracy``, which is learnt).
ANALYTIC_OBJECTIVES = MetricTable(lambda m: True, where=lambda m: m.analytic)  # live view of stsearch.metrics


@dataclass(frozen=True)
class ScreenConfig:
    """``sampler.screen`` options of a search space."""

    candidates: int = 512
    explore: float = 1.0
    min_trials: int = 2
    mutate: float = 0.5  # share of the candidates mutated from front configurations
    mutate_rate: float = 0.2  # probability of re-drawing each choice of a mutated configuration


def check_screen_config(value: Any) -> ScreenConfig | None:
    """``None`` (off) or the config; raise ``ValueError`` naming the bad key."""
    if value is False or value is None:
        return None
    if value is True:
        return ScreenConfig()
    if not isinstance(value, Mapping):
        raise ValueError(f"screen must be true, false or a mapping like {{candidates: 512, explore: 1.0}}, got {value!r}")
    fields = ScreenConfig.__dataclass_fields__
    for key in value:
        if key not in fields:
            raise ValueError(f"unknown screen option {key!r}; allowed: {', '.join(fields)}")
    cfg = ScreenConfig(**dict(value))
    if not (isinstance(cfg.candidates, int) and cfg.candidates >= 1):
        raise ValueError(f"screen.candidates must be an int >= 1, got {cfg.candidates!r}")
    if not (isinstance(cfg.min_trials, int) and cfg.min_trials >= 1):
        raise ValueError(f"screen.min_trials must be an int >= 1, got {cfg.min_trials!r}")
    for key in ("explore", "mutate", "mutate_rate"):
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (key != "explore" and v > 1):
            bound = ">= 0" if key == "explore" else "in [0, 1]"
            raise ValueError(f"screen.{key} must be a number {bound}, got {v!r}")
    return cfg


# ------------------------------------------------------------------ candidates
def _options(slot: Slot) -> list[Any]:
    return slot.choices.values() if isinstance(slot.choices, RankSpec) else list(slot.choices)


def sample_params(
    space: "SearchSpace", rng: np.random.Generator, parent: Mapping[str, Any] | None = None, rate: float = 0.0
) -> tuple[dict[str, Any], NetworkPlan]:
    """(params, plan) of a random point of ``space``; with ``parent``, each choice keeps the
    parent's value with probability ``1 - rate`` (choices the parent lacks are drawn; when a
    uniform parent's ``plan:tie`` flips to ``per_layer``, every layer starts from the uniform
    choices)."""
    params: dict[str, Any] = {}

    def inherited(slot: Slot) -> Any:
        """The parent's value of this choice; a per-layer choice of a uniform parent takes the
        parent's uniform value, so a uniform plan can be refined layer by layer."""
        if parent is None:
            return None
        if slot.name in parent:
            return parent[slot.name]
        key, _, what = slot.name.partition(":")
        if key == UNIFORM:
            return None
        if slot.kind == "split":
            return parent.get(f"{UNIFORM}:split{slot.d}:{slot.c_in}to{slot.c_out}")
        return parent.get(f"{UNIFORM}:{what}")

    def choose(slot: Slot) -> Any:
        if slot.fixed is not None:
            return slot.fixed
        old = inherited(slot)
        if old is not None and slot.contains(old) and rng.random() >= rate:
            value = old
        else:
            options = _options(slot)
            value = options[int(rng.integers(len(options)))]
        params[slot.name] = value
        return value

    layers = _walk(space, choose)
    return params, NetworkPlan(layers=layers, model=space.model)


def plan_key(plan: NetworkPlan | Mapping[str, Any]) -> str:
    """A canonical string of a plan's layers (equal plans, equal keys)."""
    net = plan if isinstance(plan, NetworkPlan) else NetworkPlan.from_dict(plan)
    return json.dumps(net.to_dict()["layers"], sort_keys=True)


# ------------------------------------------------------------------ the accuracy model
#: Kernel length scale of each feature (see :func:`plan_features`).
LENGTH_SCALES = np.array([0.35, 0.5, 0.5, 0.5, 0.5, 0.5, 0.75])


def plan_features(space: "SearchSpace", plan: NetworkPlan, metrics: Mapping[str, float]) -> np.ndarray:
    """log compression, log MAC reduction, the dense-parameter-weighted shares of Tucker, TT
    and TR layers and of ST layers, and the weighted mean log2 t of the searchable layers."""
    geoms = space.layers()
    total = sum(g.dense_params for g in geoms.values()) or 1
    share = {"tucker": 0.0, "tt": 0.0, "tr": 0.0}
    st = log_t = 0.0
    for name, g in geoms.items():
        lp = plan.layers.get(name)
        if lp is None or lp.is_dense:
            continue
        w = g.dense_params / total
        share[BASE_FAMILY[lp.family]] += w
        if lp.family in ST_FAMILIES:
            st += w
            log_t += w * math.log2(max(lp.t, 1))
    return np.array([
        math.log(metrics["compression"]), math.log(metrics["dense_macs"] / metrics["macs"]),
        share["tucker"], share["tt"], share["tr"], st, log_t,
    ])


class AccuracyModel:
    """Accuracy from plan features: a ridge line in log compression plus a Gaussian-kernel
    average of the residuals (one pseudo-observation of weight ``prior_weight`` pulls to the
    line); the standard deviation is ``scale * sqrt(prior_weight / (prior_weight + sum of
    kernel weights))``, the data's spread far from any observation and less near them."""

    def __init__(self, *, ridge: float = 0.25, prior_weight: float = 1.0, min_scale: float = 0.05) -> None:
        self.ridge, self.prior_weight, self.min_scale = ridge, prior_weight, min_scale

    def fit(self, x: np.ndarray, y: np.ndarray) -> "AccuracyModel":
        self.x, self.y = np.asarray(x, float), np.asarray(y, float)
        c = self.x[:, 0]
        self.c0, self.y0 = float(c.mean()), float(self.y.mean())
        self.slope = float(np.sum((c - self.c0) * (self.y - self.y0)) / (np.sum((c - self.c0) ** 2) + self.ridge))
        self.resid = self.y - self._line(self.x)
        self.scale = max(float(self.y.std()), self.min_scale)
        return self

    def _line(self, x: np.ndarray) -> np.ndarray:
        return self.y0 + self.slope * (x[:, 0] - self.c0)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) for rows of ``x``."""
        x = np.asarray(x, float)
        d2 = (((x[:, None, :] - self.x[None, :, :]) / LENGTH_SCALES) ** 2).sum(-1)
        w = np.exp(-0.5 * d2)
        total = w.sum(1)
        mean = self._line(x) + (w @ self.resid) / (self.prior_weight + total)
        std = self.scale * np.sqrt(self.prior_weight / (self.prior_weight + total))
        return np.clip(mean, 0.0, 1.0), std


# ------------------------------------------------------------------ hypervolume gains
def hypervolume_gains(
    front: np.ndarray, candidates: np.ndarray, directions: Sequence[str], reference: Sequence[float]
) -> np.ndarray:
    """Hypervolume added by each candidate row to ``front`` (rows in objective space)."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    base_pts = np.asarray(front, float).reshape(-1, len(directions))
    if len(base_pts):
        base_pts = base_pts[nondominated_mask(base_pts * signs)]
    base = hypervolume(base_pts, directions, reference)
    return np.array([hypervolume(np.vstack([base_pts, c[None, :]]), directions, reference) - base for c in candidates])


# ------------------------------------------------------------------ the sampler
class ScreeningSampler(BaseSampler):
    """An Optuna sampler that picks configurations by analytic screening, else asks ``base``."""

    def __init__(self, base: BaseSampler, space: "SearchSpace", *, config: ScreenConfig | None = None,
                 seed: int | None = None) -> None:
        self.base = base
        self.space = space
        self.config = config or ScreenConfig()
        self.seed = seed if seed is not None else int(np.random.SeedSequence().entropy % (2**31))
        self._pending: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]  # Ray pickles the searcher, and with it the study and its sampler
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- Optuna's sampler interface
    def infer_relative_search_space(self, study: "Study", trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if trial._trial_id in self._pending:  # noqa: SLF001
            return {}
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study: "Study", trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial._trial_id in self._pending:  # noqa: SLF001
            return {}
        return self.base.sample_relative(study, trial, search_space)

    def sample_independent(self, study: "Study", trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        chosen = self._pending.get(trial._trial_id, {})  # noqa: SLF001
        if param_name in chosen:
            return chosen[param_name]
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: "Study", trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)
        if trial.system_attrs.get("fixed_params") or trial._trial_id in self._pending:  # noqa: SLF001
            return
        choice = self.screen(study, trial)
        if choice is None:
            return
        params, info = choice
        with self._lock:
            self._pending[trial._trial_id] = params  # noqa: SLF001
        for key, value in info.items():
            study._storage.set_trial_user_attr(trial._trial_id, key, value)  # noqa: SLF001

    def after_trial(self, study: "Study", trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        with self._lock:
            self._pending.pop(trial._trial_id, None)  # noqa: SLF001
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    # -- screening
    def applies(self) -> bool:
        names = [o.name for o in self.space.objectives]
        return "accuracy" in names and all(n == "accuracy" or n in ANALYTIC_OBJECTIVES for n in names)

    def screen(self, study: "Study", trial: FrozenTrial) -> tuple[dict[str, Any], dict[str, float]] | None:
        """(params, info) of the best candidate, or ``None`` when the base sampler should answer."""
        if not self.applies():
            return None
        space, cfg = self.space, self.config
        observed: list[tuple[NetworkPlan, float]] = []
        busy: list[NetworkPlan] = []
        tried: set[str] = set()
        finished: list[tuple[str, dict[str, Any]]] = []  # (plan key, params) of COMPLETE trials: mutation parents
        for t in study.get_trials(deepcopy=False):
            plan_d = t.user_attrs.get("plan")
            if plan_d is None and t.state == TrialState.WAITING and t.system_attrs.get("fixed_params"):
                try:
                    plan = space.plan_from_params(t.system_attrs["fixed_params"])
                except (ValueError, KeyError):
                    continue
                busy.append(plan)
                tried.add(plan_key(plan))
                continue
            if plan_d is None:
                continue
            plan = NetworkPlan.from_dict(plan_d)
            key = plan_key(plan)
            tried.add(key)
            if t.state == TrialState.COMPLETE and t.params:
                finished.append((key, dict(t.params)))
            if t.state == TrialState.RUNNING:
                busy.append(plan)
            elif (t.state == TrialState.COMPLETE and t.user_attrs.get("status") == "completed"
                  and t.user_attrs.get("full_budget", True) is not False
                  and all(v <= 0 for v in t.user_attrs.get("constraints", [0.0]))
                  and t.user_attrs.get("val_acc") is not None):
                observed.append((plan, float(t.user_attrs["val_acc"])))
        with self._lock:
            for other_id, params in self._pending.items():
                if other_id != trial._trial_id:  # noqa: SLF001
                    plan = space.plan_from_params(params)
                    busy.append(plan)
                    tried.add(plan_key(plan))
        if len(observed) < cfg.min_trials:
            return None

        rng = np.random.default_rng([self.seed, trial.number])
        names = [o.name for o in space.objectives]
        obs_metrics = [space.analytic_metrics(p) for p, _ in observed]
        obs_x = np.array([plan_features(space, p, m) for (p, _), m in zip(observed, obs_metrics)])
        obs_y = np.array([acc for _, acc in observed])
        model = AccuracyModel().fit(obs_x, obs_y)

        def row(acc: float, m: Mapping[str, float]) -> list[float]:
            return [acc if n == "accuracy" else float(m[n]) for n in names]

        front = [row(acc, m) for (_, acc), m in zip(observed, obs_metrics)]
        if busy:
            busy_metrics = [space.analytic_metrics(p) for p in busy]
            mean, _ = model.predict(np.array([plan_features(space, p, m) for p, m in zip(busy, busy_metrics)]))
            front += [row(float(a), m) for a, m in zip(mean, busy_metrics)]

        signs = np.array([-1.0 if o.direction == "maximize" else 1.0 for o in space.objectives])
        on_front = np.flatnonzero(nondominated_mask(np.array(front[: len(observed)]) * signs))
        front_keys = {plan_key(observed[i][0]) for i in on_front}
        parents = [params for key, params in finished if key in front_keys]
        cands: dict[str, tuple[dict[str, Any], NetworkPlan, dict[str, float]]] = {}
        n_mut = int(round(cfg.candidates * cfg.mutate)) if parents else 0
        for k in range(cfg.candidates):
            parent = parents[int(rng.integers(len(parents)))] if k < n_mut else None
            params, plan = sample_params(space, rng, parent, cfg.mutate_rate)
            key = plan_key(plan)
            if key in tried or key in cands:
                continue
            metrics = space.analytic_metrics(plan)
            if space.is_feasible(metrics):
                cands[key] = (params, plan, metrics)
        if not cands:
            return None
        items = list(cands.values())
        x = np.array([plan_features(space, p, m) for _, p, m in items])
        mean, std = model.predict(x)
        optimistic = np.clip(mean + cfg.explore * std, 0.0, 1.0)
        pts = np.array([row(float(a), m) for a, (_, _, m) in zip(optimistic, items)])
        reference = [0.0 if n == "accuracy" else (1.0 if n == "compression" else float(items[0][2][f"dense_{n}"]))
                     for n in names]
        directions = [o.direction for o in space.objectives]
        gains = hypervolume_gains(np.array(front), pts, directions, reference)
        if not np.any(gains > 0):
            return None
        best = int(np.argmax(gains + 1e-12 * rng.random(len(gains))))
        info = {"screen_pred_acc": float(mean[best]), "screen_std": float(std[best]), "screen_gain": float(gains[best]),
                "screen_candidates": len(items)}
        return items[best][0], info
