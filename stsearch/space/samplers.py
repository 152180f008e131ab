"""Optuna sampler factory: ``make_sampler({"name": "tpe", "seed": 0, ...})``.

Names: ``tpe`` (default; multivariate, group and constant-liar on, since the
search space is conditional and trials run in parallel), ``nsga2``, ``gp`` and
``random``. Any other key of the config is passed to the sampler's constructor
(e.g. ``population_size`` for ``nsga2``, ``n_startup_trials`` for ``tpe``/``gp``);
``nsga2``'s ``crossover`` may be given by name (``uniform``, ``blxalpha``, ``sbx``,
``vsbx``, ``undx``, ``spx``).

``screen`` (default ``true`` except for ``random``) wraps the sampler in
:class:`stsearch.space.screening.ScreeningSampler` when a search space is given: the
next configuration is the candidate with the largest optimistic hypervolume gain, its
compression/params/MACs computed exactly; ``screen: false`` turns it off and a mapping
sets its options (``candidates``, ``explore``, ``min_trials``, ``mutate``, ``mutate_rate``).
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.samplers import BaseSampler, GPSampler, NSGAIISampler, RandomSampler, TPESampler

__all__ = ["SAMPLERS", "SamplerConfigError", "check_sampler_config", "make_sampler"]

SAMPLERS: dict[str, type[BaseSampler]] = {
    "tpe": TPESampler,
    "nsga2": NSGAIISampler,
    "gp": GPSampler,
    "random": RandomSampler,
}

#: Constructor defaults that differ from Optuna's (a config key overrides them).
DEFAULTS: dict[str, dict[str, Any]] = {
    "tpe": {"multivariate": True, "group": True, "constant_liar": True},
}

#: Constructor arguments that are objects or set by the caller, not config keys.
_NOT_CONFIGURABLE = {"constraints_func", "independent_sampler", "mutation", "after_trial_strategy",
                     "elite_population_selection_strategy", "child_generation_strategy", "gamma", "weights"}

_CROSSOVERS = {
    "uniform": "UniformCrossover",
    "blxalpha": "BLXAlphaCrossover",
    "sbx": "SBXCrossover",
    "vsbx": "VSBXCrossover",
    "undx": "UNDXCrossover",
    "spx": "SPXCrossover",
}


class SamplerConfigError(ValueError):
    """A bad sampler config; ``key`` names the offending key (``None`` for the whole config)."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


#: Lower bounds of numeric options (Optuna's NSGA-II needs two parents; numpy seeds are >= 0).
_MINIMA = {"seed": 0, "population_size": 2, "n_startup_trials": 0, "n_ei_candidates": 1}
#: Options that are probabilities.
_PROBABILITIES = ("mutation_prob", "crossover_prob", "swapping_prob")
_MAX_SEED = 2**32 - 1
_WHAT = {bool: "true or false", int: "an int", float: "a number"}


def _options(name: str) -> list[str]:
    params = inspect.signature(SAMPLERS[name]).parameters
    return [p for p in params if p not in _NOT_CONFIGURABLE]


def _value_type(param: inspect.Parameter) -> tuple[type | None, bool]:
    """(bool, int, float or ``None`` if unknown, whether null is allowed) of a constructor parameter."""
    default = param.default
    for typ in (bool, int, float):
        if type(default) is typ:
            return typ, False
    ann = param.annotation
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", None) or str(ann)
    tokens = set(re.findall(r"\w+", text)) - {"None", "Optional"}
    for typ in (bool, int, float):
        if tokens == {typ.__name__}:
            return typ, default is None
    return None, True


def _check_value(name: str, key: str, value: Any) -> None:
    """Raise :class:`SamplerConfigError` unless ``value`` fits option ``key`` of sampler ``name``."""
    param = inspect.signature(SAMPLERS[name]).parameters[key]
    typ, nullable = _value_type(param)
    default = DEFAULTS.get(name, {}).get(key, param.default)
    if typ is None or (value is None and nullable):
        return
    if value is None:
        raise SamplerConfigError(key, f"{key} of sampler {name} cannot be null; give {_WHAT[typ]} or leave it out")
    is_bool = isinstance(value, bool)
    ok = {bool: is_bool, int: isinstance(value, int) and not is_bool,
          float: isinstance(value, (int, float)) and not is_bool and math.isfinite(value)}[typ]
    if not ok:
        hint = f"e.g. {key}: {_yaml_scalar(default)}" if default is not None else "or leave it out"
        raise SamplerConfigError(key, f"{key} of sampler {name} must be {_WHAT[typ]}, got {value!r}; {hint}")
    low = _MINIMA.get(key)
    if low is not None and value < low:
        why = " (Optuna's NSGA-II needs two parents)" if key == "population_size" else ""
        example = default if isinstance(default, int) and default >= low else low
        raise SamplerConfigError(key, f"{key} must be an int >= {low}{why}, got {value!r}; e.g. {key}: {example}")
    if key == "seed" and value > _MAX_SEED:
        raise SamplerConfigError(key, f"seed must be at most 2**32 - 1, got {value!r}; e.g. seed: 0")
    if key in _PROBABILITIES and not 0 <= value <= 1:
        raise SamplerConfigError(key, f"{key} is a probability, got {value!r}; give a number in [0, 1]")


def _yaml_scalar(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_sampler_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The normalized config (``name`` lower-case, first); raise :class:`SamplerConfigError` if invalid."""
    if config is None:
        return {"name": "tpe"}
    if not isinstance(config, Mapping):
        raise SamplerConfigError(None, f"expected a mapping like {{name: tpe, seed: 0}}, got {config!r}; "
                                       f"names: {', '.join(SAMPLERS)}")
    name = str(config.get("name", "tpe")).lower()
    if name not in SAMPLERS:
        raise SamplerConfigError("name", f"unknown sampler {config.get('name')!r}; allowed: {', '.join(SAMPLERS)}")
    allowed = _options(name)
    for key, value in config.items():
        if key == "name":
            continue
        if key == "screen":
            from .screening import check_screen_config

            try:
                check_screen_config(value)
            except (TypeError, ValueError) as err:
                raise SamplerConfigError(key, str(err)) from None
            continue
        if key not in allowed:
            hint = "allowed for {}: {}".format(name, ", ".join(allowed))
            if key == "constraints_func":
                hint = "constraints come from the constraints: key"
            raise SamplerConfigError(key, f"unknown option {key!r} for sampler {name}; {hint}")
        if key == "seed" and value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise SamplerConfigError(key, f"seed must be an int or null, got {value!r}; e.g. seed: 0")
        if key == "crossover" and (not isinstance(value, str) or value.lower() not in _CROSSOVERS):
            raise SamplerConfigError(key, f"unknown crossover {value!r}; allowed: {', '.join(_CROSSOVERS)}")
        _check_value(name, key, value)
    cfg = {"name": name, **{k: v for k, v in config.items() if k != "name"}}
    try:  # what only the constructor checks (e.g. population_size against the crossover's parents)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecations are reported once, by make_sampler
            _construct(name, {k: v for k, v in cfg.items() if k not in ("name", "screen")})
    except (TypeError, ValueError) as err:
        key = next((k for k in cfg if k != "name" and k in str(err)), None)
        raise SamplerConfigError(key, f"{str(err).rstrip('.')}; fix the sampler options") from None
    return cfg


def _construct(name: str, options: Mapping[str, Any], **extra: Any) -> BaseSampler:
    """Sampler ``name`` with its :data:`DEFAULTS`, ``options`` (crossover by name) and ``extra``."""
    kwargs: dict[str, Any] = {**DEFAULTS.get(name, {}), **options, **extra}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*constraints_func", category=FutureWarning)
        if isinstance(kwargs.get("crossover"), str):
            from optuna.samplers import nsgaii

            kwargs["crossover"] = getattr(nsgaii, _CROSSOVERS[kwargs["crossover"].lower()])()
        return SAMPLERS[name](**kwargs)


def make_sampler(
    config: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    constraints_func: Callable[[optuna.trial.FrozenTrial], list[float]] | None = None,
    space: Any = None,
) -> BaseSampler:
    """An Optuna sampler from a config mapping.

    ``seed`` (when not ``None``) overrides the config's ``seed``. ``constraints_func``
    is given to the samplers that take one (``tpe``, ``nsga2``, ``gp``); ``random``
    ignores it. Optuna >= 5 deprecates ``constraints_func`` in favour of
    ``trial.set_constraint(key, value)`` (see ``SearchSpace.constraint_items``), which
    these samplers read without it; its deprecation warning is silenced here.
    With a search ``space``, ``screen`` (on by default except for ``random``) wraps the
    sampler in a :class:`~stsearch.space.screening.ScreeningSampler`.
    """
    try:
        cfg = check_sampler_config(config)
    except SamplerConfigError as err:
        where = f"sampler.{err.key}: " if err.key else "sampler: "
        raise ValueError(f"{where}{err}") from None
    name = cfg.pop("name")
    screen = cfg.pop("screen", name != "random")
    kwargs: dict[str, Any] = dict(cfg)
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= _MAX_SEED:
            raise ValueError(f"sampler seed must be an int in [0, 2**32 - 1], got {seed!r}; e.g. --seed 0")
        kwargs["seed"] = seed
    extra: dict[str, Any] = {}
    if constraints_func is not None and "constraints_func" in inspect.signature(SAMPLERS[name]).parameters:
        extra["constraints_func"] = constraints_func
    sampler = _construct(name, kwargs, **extra)
    from .screening import ScreeningSampler, check_screen_config

    screen_cfg = check_screen_config(screen)
    if space is None or screen_cfg is None:
        return sampler
    return ScreeningSampler(sampler, space, config=screen_cfg, seed=kwargs.get("seed"))
