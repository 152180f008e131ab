"""A Python API mirroring the CLI, for notebooks and scripts.

>>> run = stsearch.Search.create("digits", name="demo", trials=4, epochs=1)   # stsearch search
>>> run.optimize(dispatch="local")                                            # trains the trials
>>> run.pareto()                     # DataFrame of the front (stsearch pareto)
>>> run.plot("plots/")               # written files (stsearch plot)
>>> model = stsearch.load(run.export("out/", knee=True))                     # stsearch export
>>> stsearch.Search.open("demo")     # stsearch resume / status / ... of an existing study

Errors are the CLI's one-line messages, raised (``ValueError``, ``FileNotFoundError``), never ``SystemExit``.
A ``model``, ``dataset`` or ``trainer`` given as a Python callable is turned into its
``package.module:callable`` import path when it has one; one defined in ``__main__`` (or inside a
function) is registered in this process only, so it works with ``dispatch="local"`` and is refused for
Ray and workers. A ``dataset`` may also be a ``(train_dataset, val_dataset)`` pair (this process only).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["Search"]

DISPATCHES = ("local", "ray", "none")


def _import_path(obj: Any) -> str | None:
    """``module:qualname`` of a callable importable by that path from a real module, else ``None``."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    mod = sys.modules.get(module)
    if mod is None or not getattr(mod, "__file__", None):
        return None
    target: Any = mod
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return f"{module}:{qualname}" if target is obj else None


def _local_name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "__main__"
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or f"callable_{id(obj):x}"
    return re.sub(r"[^A-Za-z0-9_.]+", "_", f"{module}.{qualname}")


def _register_local_model(fn: Callable[..., Any], data: Mapping[str, Any]) -> str:
    """Register ``fn`` as a model of this process under a generated name (``__main__.<qualname>``)."""
    from .data import dataset_meta
    from .models.reference import _takes
    from .models.registry import _REGISTRY, register_model

    name = _local_name(fn)
    shape = data.get("input_shape")
    classes = 10
    if "dataset" in data and isinstance(data["dataset"], str):
        try:
            classes, ds_shape = dataset_meta(data["dataset"], data.get("data_dir"), data.get("transforms"))
            shape = shape or ds_shape
        except Exception:  # noqa: BLE001  (the space's own check reports a bad dataset)
            pass
    shape = tuple(int(v) for v in (shape or (3, 32, 32)))

    def factory(**kwargs: Any) -> Any:
        return fn(**{k: v for k, v in kwargs.items() if k not in ("num_classes", "in_channels") or _takes(fn, k)})

    factory.__doc__ = fn.__doc__
    _REGISTRY.pop(name, None)  # a notebook cell run again redefines it
    register_model(name, input_shape=shape, num_classes=int(classes))(factory)
    return name


def _register_local_dataset(obj: Any) -> str:
    """Register a loader (or a ``(train, val)`` pair) as a dataset of this process (``__main__.<qualname>``)."""
    from .data import register_dataset
    from .data.user import _REGISTRY

    if isinstance(obj, (tuple, list)):
        pair = tuple(obj)
        name = f"__main__.datasets_{id(pair[0]):x}"

        def loader() -> tuple[Any, Any]:
            return pair[0], pair[1]
    else:
        name, loader = _local_name(obj), obj
    _REGISTRY.pop(name, None)  # a notebook cell run again redefines it
    register_dataset(name)(loader)
    return name


def _register_local_trainer(fn: Callable[..., Any]) -> str:
    from .train.custom import _TRAINERS, register_trainer

    name = _local_name(fn)
    _TRAINERS.pop(name, None)
    register_trainer(name)(fn)
    return name


def _user_objects(data: dict[str, Any], local: list[str]) -> None:
    """Replace a callable ``model`` / ``trainer`` / ``dataset`` (or a dataset pair) of ``data`` by a reference."""
    for key in ("dataset", "model", "trainer"):  # the dataset first: a local model reads its classes from it
        obj = data.get(key)
        pair = key == "dataset" and isinstance(obj, (tuple, list)) and len(obj) == 2
        if not (callable(obj) or pair):
            continue
        path = None if pair else _import_path(obj)
        if path is None:
            register = {"model": lambda o: _register_local_model(o, data), "dataset": _register_local_dataset,
                        "trainer": _register_local_trainer}[key]
            data[key] = register(obj)
            local.append(f"{key} {data[key]}")
        else:
            data[key] = path  # its folder goes to python_path (record_roots)


def _space_from(space: Any, *, data_dir: str | None, epochs: float | None, plugins: list[str]) -> tuple[Any, list[str]]:
    """A :class:`SearchSpace` from a space, a dict, a path or a name; and the in-process-only names."""
    from .plugins import import_plugins
    from .space import SearchSpace, load_space

    if plugins:
        import_plugins(plugins)
    local: list[str] = []
    if isinstance(space, SearchSpace):
        data, source = space.to_dict(), space.source
    elif isinstance(space, Mapping):
        data, source = dict(space), None
        _user_objects(data, local)
    else:
        loaded = load_space(space)
        data, source = loaded.to_dict(), loaded.source
    if plugins:  # recorded in the study, as the CLI's --plugin
        have = data.get("plugins") or []
        data["plugins"] = list(dict.fromkeys([*([have] if isinstance(have, str) else have), *plugins]))
    if data_dir is not None:
        data["data_dir"] = data_dir
        if "dataset_info" not in (getattr(space, "raw", None) or (space if isinstance(space, Mapping) else {})):
            data.pop("dataset_info", None)  # read from the new folder
    if epochs is not None:
        data["train"] = {**data.get("train", {}), "epochs": epochs}
    return SearchSpace.from_dict(data, source=source), local


def _refuse_local(local: list[str], dispatch: str, workers: bool = False) -> None:
    if local and (dispatch != "local" or workers):
        raise ValueError(f"{local[0]} is a Python callable defined in __main__; Ray trials and workers "
                         f"import it by reference: move it to a module and pass 'package.module:callable'")


class Search:
    """A study: created with :meth:`create`, reopened with :meth:`open`; ``study`` is its ``optuna.Study``."""

    def __init__(self, run: Any, *, local: list[str] | None = None, fresh: bool = False) -> None:
        self.run = run  # the stsearch.search.run.SearchRun
        self._local = list(local or [])
        self._fresh = fresh

    # ------------------------------------------------------------ opening
    @classmethod
    def create(cls, space: Any = "digits", *, name: str | None = None, storage: str | None = None,
               results_dir: str | Path = "results", trials: int | None = None, seed: int | None = None,
               heartbeat: float = 30.0, data_dir: str | None = None, epochs: float | None = None,
               plugins: list[str] | tuple[str, ...] = (), dispatch: str = "local") -> "Search":
        """``stsearch search`` without training: a new study of ``space`` (a ``SearchSpace``, a dict
        of the YAML keys, a path, or a name in ``search_spaces/``). An existing study of an explicit
        ``name`` is an error (reopen it with :meth:`open`); without a name the space's is numbered.
        ``dispatch`` is checked here already: a ``__main__`` callable model is refused for
        ``"ray"``/``"none"`` before any study is created."""
        from .commands.search import _check_data
        from .search.run import SearchRun

        if dispatch not in DISPATCHES:
            raise ValueError(f"dispatch must be one of {', '.join(DISPATCHES)}, got {dispatch!r}")
        sp, local = _space_from(space, data_dir=data_dir, epochs=epochs, plugins=list(plugins))
        _refuse_local(local, dispatch)
        _check_data(sp)
        run = SearchRun.create(sp, name=name, storage=storage, results_dir=results_dir, trials=trials, seed=seed,
                               heartbeat=heartbeat)
        return cls(run, local=local, fresh=True)

    @classmethod
    def open(cls, name: str, *, storage: str | None = None, results_dir: str | Path = "results",
             plugins: list[str] | tuple[str, ...] = ()) -> "Search":
        """An existing study (``stsearch resume | status | pareto | ...``); its space comes from the study."""
        from .plugins import import_plugins
        from .search.run import SearchRun

        if plugins:
            import_plugins(list(plugins))
        return cls(SearchRun.open(name, storage=storage, results_dir=results_dir))

    # ------------------------------------------------------------ running
    def optimize(self, trials: int | None = None, *, dispatch: str = "local", address: str | None = None,
                 concurrency: int | None = None, cpus_per_trial: float = 1, gpus_per_trial: float = 0,
                 max_failures: int = 2, scheduler: str = "none", num_cpus: int | None = None,
                 progress: bool | Callable[[Any], None] = True) -> "Search":
        """Train the study's trials: ``local`` in this process, one at a time, or over ``ray`` (``address``
        of a cluster, else a local Ray). ``trials``: a new total (as ``stsearch resume --trials``);
        interrupted trials are re-queued first when the study was opened. ``progress``: the CLI's bar
        on stderr (``True``), none (``False``) or a callable getting each finished ``FrozenTrial``."""
        from .commands.search import _check_data

        if dispatch not in DISPATCHES:
            raise ValueError(f"dispatch must be one of {', '.join(DISPATCHES)}, got {dispatch!r}")
        _refuse_local(self._local, dispatch)
        run = self.run
        _check_data(run.space, dispatch == "local" or (dispatch == "ray" and not address))
        if dispatch == "ray" and address:
            from .search.ray_backend import connect_driver

            connect_driver(address)
        if trials is not None or not self._fresh:
            run.reconcile(target=trials)
        self._fresh = False
        if dispatch == "none":
            return self
        from .search.progress import SearchProgress

        bar = SearchProgress(run, enabled=progress is True)

        def on_finish(trial: Any) -> None:
            bar(trial)
            if callable(progress):
                progress(trial)

        try:
            if dispatch == "local":
                from .search.local import run_local

                run_local(run, on_finish=on_finish, num_threads=max(1, int(cpus_per_trial)))
            else:
                from .search.ray_backend import run_ray

                run_ray(run, address=address, concurrency=concurrency, cpus_per_trial=cpus_per_trial,
                        gpus_per_trial=gpus_per_trial, max_failures=max_failures, scheduler=scheduler,
                        on_finish=on_finish, num_cpus=num_cpus)
        finally:
            bar.close()
            run.write_frame()
        return self

    # ------------------------------------------------------------ results
    @property
    def study(self) -> Any:
        return self.run.study

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def space(self) -> Any:
        return self.run.space

    @property
    def folder(self) -> Path:
        return self.run.folder

    @property
    def storage_url(self) -> str:
        return self.run.storage_url

    def counts(self) -> dict[str, int]:
        """Trials by state: trained, completed, pruned, failed, infeasible, running, waiting, interrupted."""
        return self.run.counts()

    def status(self, last: int = 15) -> str:
        """The text of ``stsearch status``: counts, recent trials, front so far and ETA."""
        from .commands.search import status_text

        return status_text(self.run, last=last)

    def trials(self) -> Any:
        """Every trial as a pandas DataFrame (the study's trials.csv)."""
        from .results import trials_frame

        return trials_frame(self.run.study)

    def pareto(self, csv: str | Path | None = None) -> Any:
        """The Pareto front (finished full-budget feasible trials) as a DataFrame, as ``stsearch pareto``
        prints; written to ``csv`` too when given. Empty while no trial has finished."""
        from .results import pareto_table
        from .search.storage import make_folder

        table = pareto_table(self.run.study)
        if csv is not None:
            out = Path(csv)
            if out.is_dir():
                raise ValueError(f"--csv {out} is a folder; give a file name, e.g. --csv {out / 'pareto.csv'}")
            make_folder(out.parent, "the folder of --csv")
            table.to_csv(out, index=False)
        return table

    def plot(self, out: str | Path | None = None, compare: list["Search"] | tuple["Search", ...] = ()) -> list[Path]:
        """``stsearch plot``: front, hypervolume history, layer heat map (and a comparison with the
        ``compare`` studies) as PNG + SVG in ``out`` (default results/<study>/plots); the written files."""
        from .commands.results import write_plots

        return write_plots(self.run, out, [s.run if isinstance(s, Search) else s for s in compare])

    def export(self, out: str | Path | None = None, *, trial: int | None = None, knee: bool = False,
               min_cf: float | None = None, finetune: float | None = None, fold_weights: bool = True,
               batch: int = 1) -> Path:
        """``stsearch export``: the most accurate trial (or ``trial``, the ``knee``, the most accurate with
        compression >= ``min_cf``) as a standalone model folder (default results/<study>/export/trial-<N>);
        returns the folder, for :func:`stsearch.load`."""
        from .export import export_trial, select_trial

        chosen = select_trial(self.run, trial=trial, knee=knee, min_cf=min_cf)
        if batch < 1:
            raise ValueError(f"--batch must be >= 1, got {batch}")
        path = Path(out) if out is not None else self.run.folder / "export" / f"trial-{chosen.number}"
        pick = (f", trial={trial}" if trial is not None else "") + (", knee=True" if knee else "") + \
            (f", min_cf={min_cf}" if min_cf is not None else "")
        command = f"stsearch.Search.open({self.name!r}).export({str(path)!r}{pick})"
        return export_trial(self.run, chosen, path, finetune_epochs=finetune, command=command,
                            fold_weights=fold_weights, batch=batch)

    def __repr__(self) -> str:
        return f"Search(name={self.name!r}, storage={self.storage_url!r})"
