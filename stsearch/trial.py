"""One trial: a model, a compression plan and a training budget in; measured metrics out.

A trial's folder (``workdir``) holds everything needed to rebuild and reuse it:
``trial.json`` (the :class:`TrialSpec`), ``ckpt/`` (per-epoch checkpoints, so a
restarted trial resumes), ``model.safetensors`` (final weights) and
``metrics.json``. :func:`stsearch.export.load` rebuilds the model from it.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .compress import compress, fold_for_inference
from .fence import Fence, check_active, fenced
from .plan import NetworkPlan
from .train import TrainConfig, measure_latency, runtime, seed_everything, train

__all__ = ["TrialSpec", "run_trial", "build_model", "plan_family", "jsonable", "TRIAL_FILE", "WEIGHTS_FILE", "METRICS_FILE"]

TRIAL_FILE = "trial.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
INIT_MODES = ("random", "decompose")


@dataclass
class TrialSpec:
    """What one trial trains: model, data, plan and budget (JSON-serialisable)."""

    model: str
    dataset: str
    plan: dict[str, Any] = field(default_factory=dict)  # NetworkPlan.to_dict()
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig.to_dict()
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    init: str = "random"  # "random" | "decompose" (needs `pretrained`)
    pretrained: str | None = None  # dense checkpoint (state dict, .pt or .safetensors) of the same model
    refine_steps: int = 0  # gradient refinement of a decomposition warm start
    measure_latency: bool = True
    plugins: list[str] = field(default_factory=list)  # modules imported before the model/dataset are built
    python_path: list[str] = field(default_factory=list)  # folders put on sys.path first (user code)
    transforms: dict[str, Any] | None = None  # image transforms of an imagefolder: dataset
    trainer: str | None = None  # user trainer (package.module:callable or registered name); None: built-in
    num_classes: int | None = None  # the dataset's, recorded so that loading a trial needs no data
    input_shape: list[int] | None = None  # shape of one sample, recorded likewise

    def __post_init__(self) -> None:
        if self.init not in INIT_MODES:
            raise ValueError(f"trial init must be one of {', '.join(INIT_MODES)}, got {self.init!r}")
        if self.init == "decompose" and not self.pretrained:
            raise ValueError("trial init 'decompose' needs a pretrained dense checkpoint: set 'pretrained' (--pretrained PATH)")
        if isinstance(self.plan, NetworkPlan):
            self.plan = self.plan.to_dict()
        if isinstance(self.train, TrainConfig):
            self.train = self.train.to_dict()
        TrainConfig.from_dict(self.train)  # validates
        NetworkPlan.from_dict(self.plan)

    def import_user_code(self) -> None:
        """Put ``python_path`` on ``sys.path`` and import the ``plugins`` (every process building this trial)."""
        from .plugins import import_plugins

        import_plugins(self.plugins, self.python_path)

    def network_plan(self) -> NetworkPlan:
        return NetworkPlan.from_dict(self.plan)

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.train)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrialSpec":
        known = set(cls.__dataclass_fields__)
        extra = set(data) - known
        if extra:
            raise ValueError(f"trial spec: unknown key(s) {sorted(extra)}; allowed: {sorted(known)}")
        return cls(**dict(data))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TRIAL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "TrialSpec":
        path = Path(directory) / TRIAL_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: not a trial folder (it needs {TRIAL_FILE})")
        return cls.from_dict(json.loads(path.read_text()))


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (a bare state dict or ``{"model": ...}``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass the path of a saved state dict")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def dense_model(spec: TrialSpec, num_classes: int | None = None) -> nn.Module:
    """The dense model ``spec`` names (its plugins imported first), randomly initialised."""
    from .models.reference import build_model as build_reference

    spec.import_user_code()
    return build_reference(spec.model, spec.model_kwargs, num_classes=num_classes, paths=spec.python_path)


def build_model(spec: TrialSpec, num_classes: int | None = None, *, load_pretrained: bool = True) -> tuple[nn.Module, nn.Module | None]:
    """The compressed model of ``spec`` and, when a pretrained dense model is given, that dense model."""
    model = dense_model(spec, num_classes)
    dense = None
    if spec.pretrained and load_pretrained:
        try:
            model.load_state_dict(load_state_dict_file(spec.pretrained))
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            detail = first[1].strip() if len(first) > 1 else first[0]
            raise ValueError(
                f"pretrained checkpoint {spec.pretrained} does not fit the dense {spec.model} ({detail[:200]}); "
                f"pass a state dict of the same model"
            ) from None
        dense = copy.deepcopy(model).eval()
    init = spec.init if dense is not None else "random"
    compressed = compress(model, spec.network_plan(), init=init, refine_steps=spec.refine_steps, inplace=True)
    return compressed, dense


def plan_family(plan: NetworkPlan | Mapping[str, Any]) -> str:
    """The family every planned layer uses, ``dense`` for an empty plan, else ``mixed``."""
    net = plan if isinstance(plan, NetworkPlan) else NetworkPlan.from_dict(plan)
    fams = {lp.family for lp in net.layers.values()}
    if not fams:
        return "dense"
    return fams.pop() if len(fams) == 1 else "mixed"


def run_trial(
    spec: TrialSpec,
    *,
    workdir: str | Path | None = None,
    epoch_callback: Callable[[dict[str, Any]], bool | None] | None = None,
    progress: bool = True,
    fence: Fence | None = None,
) -> dict[str, Any]:
    """Build, train and measure one trial; returns the metrics (also written to ``workdir``).

    Failures inside training (non-finite loss, CUDA OOM) come back as
    ``status = "failed"`` with a ``reason``; bad input raises ``ValueError``. With a ``fence``
    (the attempt's token on ``workdir``, :mod:`stsearch.fence`) every write into the folder is
    checked first: an attempt that lost the folder raises :class:`~stsearch.fence.StaleAttempt`
    and writes nothing more.
    """
    with fenced(fence):
        return _run_trial(spec, workdir, epoch_callback, progress, fence)


def _run_trial(spec: TrialSpec, workdir: str | Path | None, epoch_callback: Any, progress: bool,
               fence: Fence | None) -> dict[str, Any]:
    from .data import load_dataset
    from .models.reference import meta_model
    from .summary import summarize

    start = time.perf_counter()
    spec.import_user_code()  # a plugin may register the dataset or the model
    cfg = spec.train_config()
    train_ds, val_ds, info = load_dataset(spec.dataset, spec.data_dir, split_seed=0, transforms=spec.transforms,
                                          paths=spec.python_path)
    if spec.num_classes is not None and spec.num_classes != info.num_classes:
        raise ValueError(f"dataset {spec.dataset!r} has {info.num_classes} classes here, but the study recorded "
                         f"{spec.num_classes}: its data changed since; point data_dir at the study's data")
    seed_everything(cfg.seed)  # the factors' random init is part of the trial's seed
    model, dense = build_model(spec, num_classes=info.num_classes)
    analytic = summarize(meta_model(spec.model, spec.model_kwargs, num_classes=info.num_classes,
                                    paths=spec.python_path), spec.network_plan(), input_shape=info.input_shape)
    n_params = sum(p.numel() for p in model.parameters())
    if n_params != analytic.params:  # the two counts share their formulas; a mismatch is a bug
        raise RuntimeError(f"measured {n_params} parameters but the analytic count is {analytic.params}")

    folder = Path(workdir) if workdir is not None else None
    if folder is not None:
        check_active(folder / TRIAL_FILE)
        spec.save(folder)
    teacher = dense if (dense is not None and cfg.distill_alpha > 0) else None
    user_metrics: dict[str, Any] | None = None
    if spec.trainer:
        result, user_metrics = _run_user_trainer(spec, model, train_ds, val_ds, cfg, teacher,
                                                 None if folder is None else folder / "ckpt", epoch_callback)
    else:
        result = train(model, train_ds, val_ds, cfg, teacher=teacher,
                       checkpoint_dir=None if folder is None else folder / "ckpt",
                       epoch_callback=epoch_callback, progress=progress)

    metrics: dict[str, Any] = {
        "status": result.status,
        "reason": result.reason,
        "val_acc": result.val_acc,
        "val_top5": result.val_top5,
        "val_loss": result.val_loss,
        "budget_fraction": result.budget_fraction,
        "full_budget": result.status == "completed" and result.budget_fraction >= 1.0 - 1e-9,
        "epochs_done": result.epochs_done,
        "steps_done": result.steps_done,
        "history": result.history,
        "params": n_params,
        "dense_params": analytic.dense_params,
        "compression": analytic.compression,
        "macs": analytic.macs,
        "dense_macs": analytic.dense_macs,
        "family": plan_family(spec.plan),
        "device": result.device,
        "amp": result.amp,
        "train_seconds": result.wall_seconds,
        "forward_modes": result.forward_modes,
        "tune_seconds": result.tune_seconds,
        "latency_ms": None,
    }
    if user_metrics is not None:  # the trainer's own metrics, next to (never over) stsearch's measurements
        metrics["trainer"] = spec.trainer
        metrics["trainer_metrics"] = user_metrics
    if result.status != "failed" and spec.measure_latency:  # as exported: modes tuned at batch 1, folded
        # Under the trial's own thread count: with the process default, a trial given 1 of many
        # cores would time every operator across all of them, waiting on busy ones (100x slower).
        with runtime(torch.device(result.device), cfg):
            deployed, _ = fold_for_inference(model, tuple(info.input_shape), batch=1)
            lat = measure_latency(deployed, info.input_shape, batch_size=1, device=result.device)
        metrics["latency_ms"] = lat["ms_min"]  # the fastest run: robust to a busy machine
    metrics["wall_seconds"] = time.perf_counter() - start
    if fence is not None:
        metrics["attempt"] = fence.token
    if folder is not None:
        if result.status != "failed":
            save_weights(model, folder / WEIGHTS_FILE)
        check_active(folder / METRICS_FILE)
        (folder / METRICS_FILE).write_text(json.dumps(jsonable(metrics), indent=2))
    return metrics


def _run_user_trainer(spec: TrialSpec, model: nn.Module, train_ds: Any, val_ds: Any, cfg: TrainConfig,
                      teacher: nn.Module | None, folder: Path | None, epoch_callback: Any) -> tuple[Any, dict[str, Any]]:
    """Train with the space's ``trainer`` (:mod:`stsearch.train.custom`): a TrainResult and its metrics."""
    from .plugins import UserCodeError
    from .train.custom import TrainContext, accuracy_of, call_trainer, resolve_trainer
    from .train.trainer import TrainResult, resolve_device

    device = resolve_device(cfg.device)
    model.to(device)
    if teacher is not None:
        teacher.to(device)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    ctx = TrainContext(device=device, seed=int(cfg.seed), folder=folder, config=cfg, teacher=teacher,
                       callback=epoch_callback)
    try:
        fn = resolve_trainer(spec.trainer or "", spec.python_path)
    except UserCodeError as err:
        fn, outcome = None, None
        status, reason, out, seconds = "failed", str(err), {}, 0.0
    if fn is not None:
        seed_everything(cfg.seed)  # the trainer's own randomness (shuffling, dropout) follows the trial's seed
        with runtime(device, cfg):
            outcome = call_trainer(fn, spec.trainer or "", model, train_ds, val_ds, ctx)
        status, reason, out, seconds = outcome.status, outcome.reason, outcome.metrics, outcome.seconds
    acc = accuracy_of(out)
    budget = float(cfg.epochs) if cfg.epochs else None  # None: a max_steps / max_seconds budget
    epochs = float(ctx.history[-1]["epoch"]) if ctx.history else (budget or 0.0)
    fraction = 1.0 if status == "completed" else (min(1.0, epochs / budget) if budget else 0.0)
    result = TrainResult(
        status=status, reason=reason, val_acc=acc, val_top5=out.get("val_top5"), val_loss=out.get("val_loss"),
        history=ctx.history, epochs_done=epochs, steps_done=0, budget_fraction=fraction,
        wall_seconds=seconds, device=str(device), amp=None,
        stopped_by={"completed": "epochs", "pruned": "callback"}.get(status, "error"))
    return result, out


def save_weights(model: nn.Module, path: str | Path) -> None:
    """The model's state dict as safetensors (contiguous CPU copies), written atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    check_active(path)
    save_file(state, str(tmp))
    check_active(path)
    tmp.replace(path)


def jsonable(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (strict JSON has no NaN) and
    dict keys as strings (as JSON writes them)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj
