"""Search spaces: loading and validation of the YAML description of one search.

Top-level keys (all validated; an unknown key is an error):

``name``          default study name (default: the file's stem, else the model name)
``model``         a registered model (``stsearch.models.list_models()``), ``torchvision:NAME`` or an import
                  path ``package.module:callable`` returning an ``nn.Module`` (required;
                  :mod:`stsearch.models.reference`)
``plugins``       modules imported first, in every process that builds the model (e.g. ones calling
                  ``register_model`` / ``register_dataset``); their folders are recorded in ``python_path``
``python_path``   folders put on ``sys.path`` before importing user code (filled in from the plugins)
``input_shape``   ``[C, H, W]`` of one sample (default: the model registry's, else the dataset's)
``transforms``    image transforms of an ``imagefolder:PATH`` or ``torchvision:NAME`` dataset
                  (:mod:`stsearch.data.imagefolder`), or passed to a user dataset's loader
``dataset_info``  ``{num_classes: N, input_shape: [C, H, W]}`` the dataset gives, declared so that it is not
                  read to find out (stsearch records it in each study: opening one needs no data)
``trainer``       ``package.module:callable`` (or a registered name): a user ``fit(model, train_dataset,
                  val_dataset, context) -> dict`` instead of the built-in trainer (:mod:`stsearch.train.custom`)
``pretrained``    state dict of the dense model (.pt/.pth/.safetensors), checked against the model; or
                  ``train``: the study trains it first, as its trial 0 (:mod:`stsearch.search.pretrain`)
``pretrained_train``  train overrides of the study's own dense training (``pretrained: train``)
``init``          ``random`` | ``decompose`` (needs ``pretrained``; the default with ``pretrained: train``)
``distill``       ``{alpha, temperature}``: distil from the pretrained dense model (:mod:`stsearch.space.training`)
``model_kwargs``  keyword arguments of the model factory, e.g. ``{num_classes: 100}`` (default ``{}``)
``dataset``       a built-in name, ``imagefolder:PATH``, ``torchvision:NAME``, a registered name or an import
                  path ``package.module:callable`` returning ``(train, val)`` (required; :mod:`stsearch.data`)
``data_dir``      folder of a local dataset copy (CIFAR, torchvision sets, user loaders); ``null`` = give
                  ``--data-dir`` at run time
``layers``        the searchable layers: a list of groups, in order (later groups override earlier
                  ones on the layers they both match). Group keys:

    ``match``           dotted-path globs (fnmatch; ``*`` crosses dots), a string or a list (required);
                        each must match a conv/linear layer of the model
    ``name``            key of the group in parameter names when ``share: true`` (default ``group<i>``)
    ``share``           ``false`` (default): every matching layer has its own choices;
                        ``true``: one family/t/rank/n_modes choice for the whole group
    ``families``        subset of ``tucker, tt, tr, sttu, stt, str, dense`` (default: all seven)
    ``ranks``           ``{low, high, step}`` (step default 1), or an explicit list ``[4, 8, 12]``, or one int
    ``t``               STP factors (ints >= 2) for the ST families (default ``[2]``); classical use t=1.
                        Each t must divide some mode an ST family would reduce on some layer of the group
    ``n_modes``         modes each channel count is split into, train/ring families (default ``[3]``)
    ``tucker_n_modes``  the same for Tucker families (default ``[1]``, i.e. Tucker-2)
    ``mode_splits``     ``auto`` (default): every ordered factorization of the channel count into
                        n factors within ``split_bounds``, plus ``default_split``;
                        ``default``: ``stsearch.layers.default_split`` only (the paper's splits);
                        or a mapping ``{16: [[4, 2, 2], [2, 2, 4]], 32: [...]}`` (channel counts not
                        listed, or with no split of the wanted length, use ``default_split``)
    ``split_bounds``    ``{min, max}`` factor bounds for ``auto`` (default ``{min: 2, max: 16}``)
    ``forward``         ``auto`` | ``dense`` | ``factorized`` (default ``auto``)

``objectives``    list of ``{name, direction}`` (or bare names); names: ``accuracy`` (maximize),
                  ``compression`` (maximize), ``macs``, ``latency_ms``, ``params`` (minimize);
                  direction may be left out (default: accuracy and compression)
``constraints``   list of ``{metric, min, max}`` (at least one bound); metric names as objectives;
                  ``compression``, ``macs`` and ``params`` are analytic: checked before training
``train``         a ``TrainConfig`` dict (``stsearch.train.TrainConfig.from_dict``)
``sampler``       ``{name: tpe|nsga2|gp|random, seed, ...}``, other keys go to the sampler (default tpe)
``baselines``     uniform plans enqueued first: ``{family, rank, t, n_modes, name}`` (``t`` required
                  for ST families; ``n_modes`` default 3, Tucker 1; channel splits ``default_split``);
                  each applies to every searchable layer and must be a point of the space
``trials``        default number of trials (default 20)

Errors are one line: ``<file>:<line>: <key path>: <problem>; <fix>``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..compress import LayerGeometry, layer_geometries
from ..plan import DENSE, LayerPlan, NetworkPlan
from ..plugins import UserCodeError
from ..tensors.spec import BASE_FAMILY, ST_FAMILIES
from .groups import check_t_reduces, check_tie, parse_groups
from .samplers import SamplerConfigError, check_sampler_config
from .types import (ALL_FAMILIES, ANALYTIC_METRICS, GROUP_KEYS, OBJECTIVES, TIE_MODES, TOP_KEYS,  # noqa: F401
                    Constraint, LayerGroup, Objective, Path_, RankSpec, SpaceError, _check_keys, _fail, _int, _is_int)

if TYPE_CHECKING:
    import optuna

    from .sampling import Unit

__all__ = [
    "OBJECTIVES", "ANALYTIC_METRICS", "SpaceError", "Objective", "Constraint", "RankSpec", "LayerGroup",
    "SearchSpace", "load_space", "space_dir", "TOP_KEYS", "GROUP_KEYS",
]

# ------------------------------------------------------------------ the space
class SearchSpace:
    """A validated search space; build with :meth:`load` or :meth:`from_dict`."""

    def __init__(
        self, *, name: str, model: str, model_kwargs: dict[str, Any], dataset: str, data_dir: str | None,
        groups: list[LayerGroup], objectives: list[Objective], constraints: list[Constraint],
        train: dict[str, Any], sampler: dict[str, Any], baselines: list[dict[str, Any]], trials: int,
        source: str | None = None, raw: Mapping[str, Any] | None = None, tie: tuple[str, ...] = TIE_MODES,
        plugins: list[str] | None = None, python_path: list[str] | None = None,
        input_shape: tuple[int, int, int] | None = None, transforms: dict[str, Any] | None = None,
        dataset_info: tuple[int, tuple[int, ...]] | None = None,
    ) -> None:
        self.transforms = transforms
        self._dataset_info = dataset_info
        self.trainer: str | None = None  # set by stsearch.space.training.check_training
        self.pretrained: str | None = None  # a state-dict path, or "train" (the study trains it)
        self.pretrained_train: dict[str, Any] | None = None
        self.init, self.distill = "random", None
        self.tie = tuple(tie)
        self.plugins, self.python_path = list(plugins or []), list(python_path or [])
        self._input_shape = input_shape
        self.name, self.model, self.model_kwargs = name, model, model_kwargs
        self.dataset, self.data_dir = dataset, data_dir
        self.groups, self.objectives, self.constraints = groups, objectives, constraints
        self.train, self.sampler, self.baselines, self.trials = train, sampler, baselines, trials
        self.source, self.raw = source, dict(raw or {})

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_meta", None)  # the meta-device model is rebuilt on demand
        return state

    def __repr__(self) -> str:
        return f"SearchSpace(name={self.name!r}, model={self.model!r}, layers={len(self.layers())})"

    # -------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path) -> "SearchSpace":
        """Parse and validate a YAML file; errors name the file and line."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"search space {path} does not exist; pass a YAML file or a name in {space_dir()}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"search space {path} is not a UTF-8 text file ({err.reason} at byte {err.start}); "
                             f"pass a YAML file, or a name in {space_dir()}") from None
        try:
            lines = _key_lines(text, str(path))
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
            line = mark.line + 1 if mark is not None else 1
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise SpaceError((), f"YAML syntax error: {problem}; fix the YAML syntax",
                             source=str(path), line=line) from None
        try:
            return cls.from_dict(data if data is not None else {}, source=str(path))
        except SpaceError as err:
            raise SpaceError(err.path, err.message, source=str(path), line=_line_of(lines, err.path)) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | Path | None = None) -> "SearchSpace":
        """Validate a parsed space; raise :class:`SpaceError` naming the key path."""
        return _parse(data, None if source is None else str(source))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with every default spelled out; ``from_dict`` accepts it back."""
        return {
            "name": self.name, "model": self.model, "model_kwargs": dict(self.model_kwargs),
            "dataset": self.dataset, "data_dir": self.data_dir,
            "layers": [g.to_dict() for g in self.groups],
            "objectives": [{"name": o.name, "direction": o.direction} for o in self.objectives],
            "constraints": [{"metric": c.metric, "min": c.min, "max": c.max} for c in self.constraints],
            "train": copy.deepcopy(self.train), "sampler": dict(self.sampler),
            "baselines": [dict(b) for b in self.baselines], "trials": self.trials, "tie": list(self.tie),
            "plugins": list(self.plugins), "python_path": list(self.python_path),
            "input_shape": None if self._input_shape is None else list(self._input_shape),
            "transforms": copy.deepcopy(self.transforms),
            "trainer": self.trainer, "pretrained": self.pretrained, "pretrained_train": self.pretrained_train,
            "init": self.init,
            "distill": None if self.distill is None else dict(self.distill),
            "dataset_info": None if self.data_meta is None else {"num_classes": int(self.data_meta[0]),
                                                                 "input_shape": [int(v) for v in self.data_meta[1]]},
        }

    # -------------------------------------------------------------- layers
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample: the space's ``input_shape``, else the model registry's (``in_channels``
        in model_kwargs overrides C), else the dataset's."""
        from ..models.reference import registered_input_shape

        if self._input_shape is not None:
            return self._input_shape
        shape = registered_input_shape(self.model)
        if shape is not None:
            c, h, w = shape
            return int(self.model_kwargs.get("in_channels", c)), h, w
        if self.data_meta is None:
            raise _fail(("input_shape",), f"{self.model} needs the input shape, and dataset {self.dataset!r} cannot "
                                          f"be read without its data folder; set input_shape: [C, H, W] in the "
                                          f"space, or data_dir: (--data-dir)")
        return tuple(self.data_meta[1])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int | None:
        """Classes the model outputs: ``model_kwargs.num_classes``, else the dataset's (``None`` if unknown)."""
        return self.model_kwargs.get("num_classes", None if self.data_meta is None else self.data_meta[0])

    @cached_property
    def data_meta(self) -> tuple[int, tuple[int, ...]] | None:
        """``(num_classes, input_shape)`` of the dataset (:func:`stsearch.data.dataset_meta`); ``None`` when it
        must be read from a data folder that is not given yet (``data_dir: null``, ``--data-dir`` at run time)."""
        from .user import dataset_meta_of

        if self._dataset_info is not None:
            return self._dataset_info
        return dataset_meta_of(self.dataset, self.data_dir, self.transforms, self.python_path)

    @cached_property
    def _meta(self) -> Any:
        from ..models.reference import meta_model

        return meta_model(self.model, self.model_kwargs, num_classes=self.num_classes, paths=self.python_path)

    @cached_property
    def all_layers(self) -> dict[str, LayerGeometry]:
        """Every conv/linear layer of the model, in model order."""
        return layer_geometries(self._meta, self.input_shape())

    @cached_property
    def assignment(self) -> dict[str, LayerGroup]:
        """Searchable layer -> the last group that matches it, in model order."""
        from ..compress import factorizable_layers

        modules = factorizable_layers(self._meta)
        out: dict[str, LayerGroup] = {}
        for name in self.all_layers:
            for group in self.groups:
                if group.matches(name, modules[name]):
                    out[name] = group
        return out

    def layers(self) -> dict[str, LayerGeometry]:
        """Geometry of each searchable layer, in model order."""
        return {n: self.all_layers[n] for n in self.assignment}

    def units(self) -> list["Unit"]:
        """Sampling units: one per layer, or one per shared group (computed once)."""
        from .sampling import units

        if "_units" not in self.__dict__:
            self.__dict__["_units"] = units(self)
        return self.__dict__["_units"]

    # -------------------------------------------------------------- sampling
    def suggest(self, trial: "optuna.trial.BaseTrial") -> dict[str, Any]:
        """Sample every layer choice (define-by-run); the flat params, as in ``trial.params``."""
        from .sampling import suggest

        return suggest(self, trial)

    def plan_from_params(self, params: Mapping[str, Any]) -> NetworkPlan:
        """The plan the params decode to; it covers every searchable layer."""
        from .sampling import decode

        return decode(self, params)

    def baseline_params(self) -> list[dict[str, Any]]:
        """Params that decode to each uniform baseline (for ``study.enqueue_trial``)."""
        from .sampling import baseline_params

        return [baseline_params(self, b) for b in self.baselines]

    def uniform_plan(self, baseline: Mapping[str, Any]) -> NetworkPlan:
        """The uniform plan of a baseline on every searchable layer (default splits)."""
        lp = _baseline_layer_plan(baseline)
        return NetworkPlan(layers={n: lp for n in self.layers()}, model=self.model)

    # -------------------------------------------------------------- metrics
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def analytic_metrics(self, plan: NetworkPlan | Mapping[str, Any]) -> dict[str, float]:
        """``compression``, ``params``, ``dense_params``, ``macs`` and ``dense_macs`` of ``plan``.

        The same numbers as :func:`stsearch.summary.summarize` (tests check it), from per-layer
        costs cached on the space: a plan costs microseconds once its layers were seen.
        """
        from ..compress import resolve_plan

        net = plan if isinstance(plan, NetworkPlan) else NetworkPlan.from_dict(plan)
        dense_params, dense_macs = self._dense_totals
        params, macs = dense_params, dense_macs
        for name, lp in resolve_plan(net, list(self.all_layers)).items():
            if lp is None or lp.is_dense:
                continue
            d_params, d_macs = self._layer_delta(name, lp, net.batch_hint)
            params += d_params
            macs += d_macs
        return {"compression": dense_params / params, "params": params, "dense_params": dense_params,
                "macs": macs, "dense_macs": dense_macs}

    @cached_property
    def _dense_totals(self) -> tuple[int, int]:
        from ..summary import summarize

        tot = summarize(self._meta, None, input_shape=self.input_shape())
        return int(tot.dense_params), int(tot.dense_macs)

    def _layer_delta(self, name: str, lp: LayerPlan, batch_hint: int) -> tuple[int, int]:
        """(params, MACs) of layer ``name`` under ``lp`` minus its dense ones (cached)."""
        cache = self.__dict__.setdefault("_layer_costs", {})
        key = (name, lp, batch_hint)
        if key not in cache:
            from ..summary import planned_layer_cost

            g = self.all_layers[name]
            _, _, cost, mode = planned_layer_cost(g, lp, batch_hint)
            cache[key] = (cost.params - g.dense_params, cost.macs(mode) - g.dense_params * g.p_out)
        return cache[key]

    def constraint_values(self, metrics: Mapping[str, float]) -> list[float]:
        """Violation of each constraint (Optuna's ``constraints_func`` values); a missing metric gives 0."""
        return [c.violation(float(metrics[c.metric])) if c.metric in metrics else 0.0 for c in self.constraints]

    def constraint_items(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """``{constraint.key: violation}``, for ``trial.set_constraint`` (Optuna >= 5)."""
        return {c.key: v for c, v in zip(self.constraints, self.constraint_values(metrics))}

    def is_feasible(self, metrics: Mapping[str, float]) -> bool:
        """Whether every constraint whose metric is in ``metrics`` holds."""
        return all(c.violation(float(metrics[c.metric])) <= 0 for c in self.constraints if c.metric in metrics)


def space_dir() -> Path:
    """The shipped ``search_spaces/`` folder: the package data ``stsearch.search_spaces`` of an installed
    wheel (or of an editable install), else the repository's top-level ``search_spaces/``."""
    import importlib.util

    repo = Path(__file__).resolve().parents[2] / "search_spaces"
    try:
        spec = importlib.util.find_spec("stsearch.search_spaces")
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        if any(Path(folder).glob("*.yaml")):
            return Path(folder).resolve()
    return repo


def load_space(path_or_name: str | Path) -> SearchSpace:
    """Load a space from a path, or by bare name from ``search_spaces/`` (e.g. ``"digits"``)."""
    path = Path(path_or_name)
    if path.is_file():
        return SearchSpace.load(path)
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    for folder in (Path.cwd() / "search_spaces", space_dir()):
        cand = folder / f"{stem}.yaml"
        if len(path.parts) == 1 and cand.is_file():
            return SearchSpace.load(cand)
    known = ", ".join(sorted(p.stem for p in space_dir().glob("*.yaml")))
    raise FileNotFoundError(f"no search space {str(path_or_name)!r}: not a file, and not a name in {space_dir()} "
                            f"(known: {known})")


# ------------------------------------------------------------------ YAML lines
def _key_lines(text: str, source: str) -> dict[tuple[str, ...], int]:
    """Line (1-based) of every key / list item, by key path; duplicate keys are an error."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...], shown: Path_) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value in node.value:
                key = str(key_node.value)
                if key in seen:
                    raise SpaceError((*shown, key), "duplicate key; keep only one",
                                     source=source, line=key_node.start_mark.line + 1)
                seen.add(key)
                lines[(*path, key)] = key_node.start_mark.line + 1
                walk(value, (*path, key), (*shown, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, str(i))] = item.start_mark.line + 1
                walk(item, (*path, str(i)), (*shown, i))

    if root is not None:
        lines[()] = root.start_mark.line + 1
        walk(root, (), ())
    return lines


def _line_of(lines: Mapping[tuple[str, ...], int], path: Path_) -> int:
    key = tuple(str(p) for p in path)
    while key not in lines and key:
        key = key[:-1]
    return lines.get(key, 1)


# ------------------------------------------------------------------ parsing
def _parse(data: Mapping[str, Any], source: str | None) -> SearchSpace:
    from .training import check_training
    from .user import check_dataset, check_dataset_info, check_input_shape, check_model, check_output, check_plugins, record_roots

    data = _check_keys(data, TOP_KEYS, (), "{model: resnet8_digits, dataset: digits, layers: [...]}")
    plugins, python_path = check_plugins(data)
    model = check_model(data.get("model"), python_path)
    input_shape = check_input_shape(data.get("input_shape"))
    model_kwargs = data.get("model_kwargs") or {}
    if not isinstance(model_kwargs, Mapping):
        raise _fail(("model_kwargs",), f"expected a mapping, got {model_kwargs!r}; e.g. {{num_classes: 10}}")
    dataset, transforms, dataset_module = check_dataset(data.get("dataset"), data.get("transforms"), python_path)
    data_dir = data.get("data_dir")
    if data_dir is not None and not isinstance(data_dir, str):
        raise _fail(("data_dir",), f"expected a folder path or null, got {data_dir!r}; e.g. data_dir: ~/data/cifar10")
    name = data.get("name", Path(source).stem if source else model)
    if not isinstance(name, str) or not name:
        raise _fail(("name",), f"expected a non-empty string, got {name!r}; e.g. name: my-study")
    trials = _int(data.get("trials", 20), ("trials",), 1, "trials")
    tie = data.get("tie", list(TIE_MODES))
    tie = [tie] if isinstance(tie, str) else tie
    if not isinstance(tie, list) or not tie or any(v not in TIE_MODES for v in tie):
        raise _fail(("tie",), f"expected a non-empty list of {', '.join(TIE_MODES)}, got {data.get('tie')!r}; "
                              f"e.g. tie: [per_layer, uniform]")

    space = SearchSpace(
        name=name, model=model, model_kwargs=dict(model_kwargs), dataset=dataset, data_dir=data_dir,
        groups=[], objectives=_objectives(data.get("objectives")), constraints=_constraints(data.get("constraints")),
        train=_train(data.get("train")), sampler=_sampler(data.get("sampler")), baselines=[], trials=trials,
        source=source, raw=data, tie=tuple(dict.fromkeys(tie)), plugins=plugins,
        python_path=record_roots(plugins, model, python_path, [dataset_module] if dataset_module else []),
        input_shape=input_shape, transforms=transforms, dataset_info=check_dataset_info(data.get("dataset_info")),
    )
    _check_num_classes(model_kwargs, space)
    try:
        check_output(space, space._meta)
        check_training(space, data)  # trainer / pretrained / init / distill (stsearch.space.training)
        layers = space.all_layers
    except SpaceError:
        raise
    except UserCodeError as err:
        raise _fail(("model",), str(err)) from None
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise _fail(("model_kwargs",), f"{model} cannot be built with {dict(model_kwargs)}: {detail}; "
                                       f"fix or remove model_kwargs") from None
    space.groups = parse_groups(data.get("layers"), list(layers), space._meta)
    check_tie(space)
    check_t_reduces(space)
    space.baselines = _baselines(data.get("baselines"), space)
    return space


def _check_num_classes(model_kwargs: Mapping[str, Any], space: SearchSpace) -> None:
    if "num_classes" not in model_kwargs:
        return
    n, want = model_kwargs["num_classes"], None if space.data_meta is None else space.data_meta[0]
    path = ("model_kwargs", "num_classes")
    if not _is_int(n) or n < 1:
        fix = f"use num_classes: {want}" if want is not None else "e.g. num_classes: 10"
        raise _fail(path, f"num_classes must be an int >= 1, got {n!r}; {fix} or leave it out (the dataset sets it)")
    if want is not None and n != want:
        raise _fail(path, f"num_classes {n} does not match dataset {space.dataset!r} with {want} classes; "
                          f"use num_classes: {want} or leave it out (the dataset sets it)")


def _objectives(raw: Any) -> list[Objective]:
    if raw is None:
        return [Objective("accuracy", "maximize"), Objective("compression", "maximize")]
    if not isinstance(raw, list) or not raw:
        raise _fail(("objectives",), f"expected a non-empty list, got {raw!r}; e.g. [{{name: accuracy}}]")
    out: list[Objective] = []
    for i, item in enumerate(raw):
        path = ("objectives", i)
        item = {"name": item} if isinstance(item, str) else item
        item = _check_keys(item, ("name", "direction"), path, "{name: accuracy, direction: maximize}")
        name = item.get("name")
        if name not in OBJECTIVES:
            raise _fail((*path, "name"), f"unknown objective {name!r}; allowed: {', '.join(OBJECTIVES)}")
        direction = item.get("direction", OBJECTIVES[name])
        if direction != OBJECTIVES[name]:
            raise _fail((*path, "direction"), f"{name} is always {OBJECTIVES[name]}d, got {direction!r}; "
                                              f"use direction: {OBJECTIVES[name]} or leave it out")
        if any(o.name == name for o in out):
            raise _fail((*path, "name"), f"objective {name!r} is listed twice; keep one")
        out.append(Objective(name, direction))
    return out


def _constraints(raw: Any) -> list[Constraint]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _fail(("constraints",), f"expected a list, got {raw!r}; e.g. [{{metric: compression, min: 2}}]")
    out: list[Constraint] = []
    for i, item in enumerate(raw):
        path = ("constraints", i)
        item = _check_keys(item, ("metric", "min", "max"), path, "{metric: compression, min: 2}")
        metric = item.get("metric")
        if metric not in OBJECTIVES:
            raise _fail((*path, "metric"), f"unknown metric {metric!r}; allowed: {', '.join(OBJECTIVES)}")
        bounds = {}
        for key in ("min", "max"):
            val = item.get(key)
            number = isinstance(val, (int, float)) and not isinstance(val, bool) and math.isfinite(val)
            if val is not None and not number:
                raise _fail((*path, key), f"expected a number, got {val!r}; e.g. {key}: 2")
            bounds[key] = None if val is None else float(val)
        if bounds["min"] is None and bounds["max"] is None:
            raise _fail(path, f"constraint on {metric} has neither min nor max; add min: and/or max:")
        if bounds["min"] is not None and bounds["max"] is not None and bounds["min"] > bounds["max"]:
            raise _fail((*path, "min"), f"min {bounds['min']} > max {bounds['max']}; swap them")
        out.append(Constraint(metric, bounds["min"], bounds["max"]))
    return out


def _train(raw: Any) -> dict[str, Any]:
    from ..train.config import TrainConfig

    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _fail(("train",), f"expected a TrainConfig mapping, got {raw!r}; e.g. {{epochs: 2, lr: 0.05}}")
    try:
        TrainConfig.from_dict(dict(raw))
    except (ValueError, TypeError) as err:
        msg = str(err)
        key = next((k for k in raw if f"TrainConfig.{k}:" in msg or f"key {k!r}" in msg), None)
        raise _fail(("train",) if key is None else ("train", key), msg) from None
    return copy.deepcopy(dict(raw))


def _sampler(raw: Any) -> dict[str, Any]:
    try:
        return check_sampler_config(raw)
    except SamplerConfigError as err:
        raise _fail(("sampler",) if err.key is None else ("sampler", err.key), str(err)) from None


def _baseline_layer_plan(b: Mapping[str, Any]) -> LayerPlan:
    if b["family"] == DENSE:
        return LayerPlan(DENSE)
    return LayerPlan(b["family"], rank=b["rank"], t=b.get("t", 1), n_modes=b.get("n_modes"))


def _baselines(raw: Any, space: SearchSpace) -> list[dict[str, Any]]:
    from .sampling import check_baseline

    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _fail(("baselines",), f"expected a list, got {raw!r}; e.g. [{{family: tt, rank: 8}}]")
    out = []
    for i, item in enumerate(raw):
        path = ("baselines", i)
        item = _check_keys(item, ("family", "rank", "t", "n_modes", "name"), path, "{family: stt, rank: 8, t: 2}")
        fam = str(item.get("family", "")).lower()
        if fam not in ALL_FAMILIES:
            raise _fail((*path, "family"), f"unknown family {item.get('family')!r}; allowed: {', '.join(ALL_FAMILIES)}")
        b: dict[str, Any] = {"family": fam}
        if fam != DENSE:
            if "rank" not in item:
                raise _fail(path, "missing rank; add rank: <int>, e.g. rank: 8")
            b["rank"] = _int(item["rank"], (*path, "rank"), 1, "rank")
            if fam in ST_FAMILIES:
                if "t" not in item:
                    raise _fail(path, f"{fam} needs an STP factor; add t: 2 (or another t of the groups)")
                b["t"] = _int(item["t"], (*path, "t"), 2, "t")
            elif item.get("t", 1) != 1:
                st = {"tucker": "sttu", "tt": "stt", "tr": "str"}[fam]
                raise _fail((*path, "t"), f"{fam} is classical and takes t=1, got {item['t']!r}; use {st} for t>1")
            default_d = 1 if BASE_FAMILY[fam] == "tucker" else 3
            b["n_modes"] = _int(item.get("n_modes", default_d), (*path, "n_modes"), 1, "n_modes")
        tag = f"-r{b['rank']}" + (f"-t{b['t']}" if "t" in b else "") if fam != DENSE else ""
        name = item.get("name", f"{fam}{tag}")
        if not isinstance(name, str) or not name:
            raise _fail((*path, "name"), f"expected a non-empty string, got {name!r}; e.g. name: tt-r8")
        b["name"] = name
        check_baseline(space, b, path)
        out.append(b)
    return out
