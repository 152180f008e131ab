"""The training loop: one budgeted, resumable, failure-tolerant training run.

Budget rule
-----------
``epochs`` and ``max_steps`` define a *planned* number of optimiser steps
(the smaller one when both are set; fractional epochs round up to whole
steps). ``max_seconds`` is a wall-clock cap counted over the whole run
(training, evaluation and checkpointing, summed over resumed sessions).

* With a planned step count, ``budget_fraction = steps_done / planned`` and
  the LR schedule runs over the planned steps. If the time cap stops training
  first the run is ``"completed"`` with ``stopped_by="max_seconds"``, a
  ``reason``, and ``budget_fraction < 1``.
* With ``max_seconds`` as the *only* budget, the LR schedule runs over the
  elapsed fraction of ``max_seconds`` and reaching the limit is the full
  budget: ``budget_fraction = 1.0``. Such runs are not reproducible.
* A callback stop gives ``"pruned"`` with ``budget_fraction < 1``; a callback
  returning True after the last epoch changes nothing (``"completed"``).

Checkpoints (when ``checkpoint_dir`` is given) are written after every epoch
and resumed when their config matches (ignoring :data:`RESUME_IGNORED_KEYS`);
a resumed run on CPU ends bit-identical to an uninterrupted one.

With ``tune_forward`` (on by default on CUDA) the forward mode of each ``auto``
factorized layer is measured once before the first step
(:func:`stsearch.layers.tune_forward_modes`); like the rest of the set-up, this
is not counted in ``max_seconds``. The choice is stored in the checkpoints and
reused on resume.

With ``compile`` the training and evaluation passes run through ``torch.compile`` (after
the forward modes are fixed); checkpoints hold the plain module's state, so a run may be
resumed with or without compilation. A compiled run ends with ``torch.compiler.reset()``:
its graphs (and CUDA-graph memory pools) are freed, and the next trial of a worker process
starts below torch.compile's recompile limit instead of silently running eager.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from ..layers.tuning import apply_forward_modes, tune_forward_modes
from .checkpoint import get_rng_state, load_latest, save_rotating, set_rng_state
from .config import RESUME_IGNORED_KEYS, TrainConfig
from .metrics import autocast, evaluate, to_device

__all__ = ["TrainResult", "train", "seed_everything", "resolve_device", "LRSchedule", "runtime"]

CHECKPOINT_VERSION = 1
_REQUIRED_KEYS = ("version", "config", "model", "optimizer", "scheduler", "rng", "history",
                  "steps_done", "seconds", "steps_per_epoch", "num_train")


@dataclass
class TrainResult:
    """Outcome of :func:`train`; ``status`` is ``completed``, ``failed`` or ``pruned``."""

    status: str
    reason: str | None
    val_acc: float | None
    val_top5: float | None
    val_loss: float | None
    history: list[dict[str, Any]]
    epochs_done: float
    steps_done: int
    budget_fraction: float
    wall_seconds: float
    device: str
    amp: str | None
    stopped_by: str | None = None  # "epochs" | "max_steps" | "max_seconds" | "callback" | "error"
    resumed_from_step: int | None = None
    planned_steps: int | None = field(default=None)
    forward_modes: dict[str, str] | None = None  # measured choice per auto layer (tune_forward)
    tune_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; anything else as given, if this machine has it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(f"device {name!r} is not available: torch sees {count} CUDA device(s) here; "
                             "use --device cpu or auto, or run on a machine with that GPU")
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} is not available: torch sees no MPS device here; use --device cpu or auto")
    return device


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _mix(*xs: int) -> int:
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (x & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def _seed_worker(worker_id: int) -> None:
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def _on_cpu(ds: Dataset) -> bool:
    """Whether the dataset's samples are CPU tensors (only those can be pinned)."""
    try:
        x = ds[0][0]
    except Exception:
        return True
    return not isinstance(x, torch.Tensor) or x.device.type == "cpu"


class _EpochSampler(Sampler[int]):
    """Permutation fixed by (seed, epoch), optionally skipping its first ``start`` indices.

    It yields keys ``epoch * n + index`` for :class:`_SeededSamples`, which knows the epoch from them.
    """

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
        offset = self.epoch * self.n
        yield from (offset + i for i in torch.randperm(self.n, generator=g)[self.start:].tolist())

    def __len__(self) -> int:
        return self.n - self.start


class _SeededSamples(Dataset):
    """Training sample ``epoch * n + index`` loaded with torch's RNG seeded by (seed, epoch, index).

    Random augmentation then draws the same numbers in whichever process loads the sample, so
    ``num_workers`` does not change a run, and the trainer's own RNG stream is restored after it.
    """

    def __init__(self, ds: Dataset, n: int, seed: int) -> None:
        self.ds, self.n, self.seed = ds, n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int) -> Any:
        epoch, index = divmod(int(key), self.n)
        rng = torch.default_generator
        state = rng.get_state()
        rng.manual_seed(_mix(self.seed, epoch, index, 2))
        try:
            return self.ds[index]
        finally:
            rng.set_state(state)


class LRSchedule:
    """Per-step LR: linear warmup, then cosine / step / constant over the budget.

    Progress is ``step / planned_steps`` when the step count is known, else
    ``elapsed / max_seconds``. Milestones are fractions of that progress.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 planned_steps: int | None, warmup_steps: int) -> None:
        self.optimizer, self.cfg = optimizer, config
        self.planned, self.warmup = planned_steps, warmup_steps
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]

    def factor(self, step: int, elapsed: float) -> float:
        """LR multiplier before optimiser step ``step`` (0-based)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.planned is not None:
            p = (step - self.warmup) / max(1, self.planned - self.warmup)
        else:
            p = elapsed / self.cfg.max_seconds
        p = min(max(p, 0.0), 1.0)
        if self.cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * p))
        if self.cfg.schedule == "step":
            return self.cfg.step_gamma ** sum(p >= m for m in self.cfg.step_milestones)
        return 1.0

    def apply(self, step: int, elapsed: float) -> float:
        """Set the optimiser's LRs for ``step``; return the first group's LR."""
        f = self.factor(step, elapsed)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        """Serialisable state (the LR is a pure function of step and time)."""
        return {"base_lrs": list(self.base_lrs), "planned": self.planned, "warmup": self.warmup}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.base_lrs = list(state["base_lrs"])


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW; no weight decay on 1-d params (biases, norms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.momentum > 0)


def _loss_fn(cfg: TrainConfig, teacher: nn.Module | None) -> Callable[..., torch.Tensor]:
    """CE with label smoothing, blended with a distillation KL term when a teacher is used."""
    alpha, t = cfg.distill_alpha, cfg.distill_temperature

    def loss(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        if teacher is None or alpha == 0:
            return ce
        with torch.no_grad():
            t_logits = teacher(x).float()
        kl = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(t_logits / t, dim=1),
                      reduction="batchmean", log_target=True)
        return (1 - alpha) * ce + alpha * t * t * kl

    return loss


@contextlib.contextmanager
def runtime(device: torch.device, cfg: TrainConfig) -> Iterator[None]:
    """The run's CPU threads (``cfg.num_threads``) and cuDNN autotuning, restored afterwards."""
    threads = torch.get_num_threads()
    bench = torch.backends.cudnn.benchmark
    if device.type == "cpu":
        torch.set_num_threads(cfg.num_threads or _default_threads())
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = bench


class _NonFinite(Exception):
    pass


# ------------------------------------------------------------------ the run
class _Run:
    """State of one call to :func:`train`."""

    def __init__(self, model: nn.Module, train_ds: Dataset, val_ds: Dataset, cfg: TrainConfig,
                 teacher: nn.Module | None, ckpt_dir: Path | None,
                 callback: Callable[[dict], bool | None] | None, progress: bool) -> None:
        self.cfg, self.ckpt_dir, self.callback, self.progress = cfg, ckpt_dir, callback, progress
        self.device = resolve_device(cfg.device)
        use_amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if use_amp else None
        self.channels_last = (cfg.channels_last if cfg.channels_last is not None
                              else self.device.type == "cuda")
        self.tune = cfg.tune_forward if cfg.tune_forward is not None else self.device.type == "cuda"
        self.forward_modes: dict[str, str] | None = None
        self.tune_seconds: float | None = None
        self.model, self.train_ds, self.val_ds = model, train_ds, val_ds
        self.teacher = teacher if cfg.distill_alpha > 0 else None
        self.n = len(train_ds)  # type: ignore[arg-type]
        bs = cfg.batch_size
        # never leave a 1-sample last batch (BatchNorm cannot train on it)
        self.drop_last = self.n > bs and self.n % bs == 1
        self.spe = self.n // bs if self.drop_last else math.ceil(self.n / bs)
        if self.spe == 0:
            raise ValueError("train: the training set is empty")
        plans = []
        if cfg.epochs is not None:
            plans.append((max(1, math.ceil(round(cfg.epochs * self.spe, 6))), "epochs"))
        if cfg.max_steps is not None:
            plans.append((cfg.max_steps, "max_steps"))
        self.planned, self.plan_name = min(plans) if plans else (None, "max_seconds")
        self.history: list[dict[str, Any]] = []
        self.steps_done, self.prior_seconds, self.resumed_from = 0, 0.0, None

    # ---- setup
    def setup(self) -> None:
        self.pin = self.device.type == "cuda" and _on_cpu(self.train_ds)
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.teacher is not None:
            self.teacher_was_training = self.teacher.training
            self.teacher.to(self.device).eval()
            if self.channels_last:
                self.teacher.to(memory_format=torch.channels_last)
        self.val_loader = DataLoader(self.val_ds, batch_size=2 * self.cfg.batch_size,
                                     shuffle=False, num_workers=self.cfg.num_workers,
                                     pin_memory=self.device.type == "cuda" and _on_cpu(self.val_ds),
                                     # its own seed source: evaluating never draws from the training RNG
                                     generator=torch.Generator().manual_seed(_mix(self.cfg.seed, 3)))
        self.opt = _make_optimizer(self.model, self.cfg)
        warm = round(self.cfg.warmup_epochs * self.spe)
        self.sched = LRSchedule(self.opt, self.cfg, self.planned, warm)
        self.loss = _loss_fn(self.cfg, self.teacher)
        seed_everything(self.cfg.seed)
        if self.ckpt_dir is not None:
            self._try_resume()
        if self.tune and self.forward_modes is None:
            self._tune_forward()
        self.net = self._compiled() if self.cfg.compile else self.model

    def _compiled(self) -> nn.Module:
        """``torch.compile`` of the model in the configured mode (the module itself is kept)."""
        mode = "default" if self.cfg.compile is True else self.cfg.compile
        return torch.compile(self.model, mode=mode)  # type: ignore[return-value]

    def _tune_forward(self) -> None:
        """Measure both forward modes of the auto factorized layers on a training-sized batch."""
        sample = self.train_ds[0][0]
        example = torch.zeros((self.cfg.batch_size, *sample.shape), device=self.device)
        if self.channels_last and example.dim() == 4:
            example = example.contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        timings = tune_forward_modes(self.model, example, seed=self.cfg.seed,
                                     context=lambda: autocast(self.device, self.amp_dtype))
        self.tune_seconds = time.perf_counter() - t0
        self.forward_modes = {t.name: t.chosen for t in timings}

    def _ckpt_config(self, d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in RESUME_IGNORED_KEYS}

    def _try_resume(self) -> None:
        state = load_latest(self.ckpt_dir, _REQUIRED_KEYS)
        if state is None:
            return
        if (state["version"] != CHECKPOINT_VERSION
                or self._ckpt_config(state["config"]) != self._ckpt_config(self.cfg.to_dict())
                or state["steps_per_epoch"] != self.spe or state["num_train"] != self.n):
            warnings.warn(f"checkpoint in {self.ckpt_dir} is from a different config or "
                          "dataset; starting fresh", stacklevel=3)
            return
        backup = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        try:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
        except Exception as e:  # shape mismatch, bad RNG blob: treat as unusable
            self.model.load_state_dict(backup)
            self.opt = _make_optimizer(self.model, self.cfg)
            self.sched = LRSchedule(self.opt, self.cfg, self.planned, self.sched.warmup)
            seed_everything(self.cfg.seed)
            warnings.warn(f"checkpoint in {self.ckpt_dir} does not fit the model "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); starting fresh", stacklevel=3)
            return
        if state.get("forward_modes") is not None:
            apply_forward_modes(self.model, state["forward_modes"])
            self.forward_modes = dict(state["forward_modes"])
        self.history = list(state["history"])
        self.steps_done = int(state["steps_done"])
        self.prior_seconds = float(state["seconds"])
        self.resumed_from = self.steps_done

    def _save(self) -> None:
        if self.ckpt_dir is None:
            return
        save_rotating(self.ckpt_dir, {
            "version": CHECKPOINT_VERSION, "config": self.cfg.to_dict(),
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "rng": get_rng_state(),
            "history": self.history, "steps_done": self.steps_done,
            "seconds": self.elapsed(), "steps_per_epoch": self.spe, "num_train": self.n,
            "forward_modes": self.forward_modes,
        })

    # ---- budget
    def elapsed(self) -> float:
        return self.prior_seconds + (time.perf_counter() - self.t0)

    def steps_left(self) -> bool:
        return self.planned is None or self.steps_done < self.planned

    def time_up(self) -> bool:
        return self.cfg.max_seconds is not None and self.elapsed() >= self.cfg.max_seconds

    # ---- epochs
    def _loader(self, epoch: int, start_step: int) -> DataLoader:
        cfg = self.cfg
        return DataLoader(
            _SeededSamples(self.train_ds, self.n, cfg.seed), batch_size=cfg.batch_size, drop_last=self.drop_last,
            sampler=_EpochSampler(self.n, cfg.seed, epoch, start_step * cfg.batch_size),
            num_workers=cfg.num_workers, pin_memory=self.pin,
            generator=torch.Generator().manual_seed(_mix(cfg.seed, epoch, 1)),
            worker_init_fn=_seed_worker if cfg.num_workers > 0 else None,
        )

    def run_epoch(self, epoch: int) -> dict[str, Any] | None:
        """Train up to one epoch (0-based ``epoch``); ``None`` if no step was taken."""
        start = self.steps_done - epoch * self.spe
        end = self.spe if self.planned is None else min(self.spe, self.planned - epoch * self.spe)
        n_epochs = None if self.planned is None else math.ceil(self.planned / self.spe)
        sync_every = 1 if self.device.type == "cpu" else 25
        self.model.train()
        t_epoch = time.perf_counter()
        dev = self.device
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        seen, steps, window, lr = 0, 0, [], self.opt.param_groups[0]["lr"]
        desc = f"epoch {epoch + 1}" + (f"/{n_epochs}" if n_epochs else "")
        bar = tqdm(total=end - start, desc=desc, disable=True if not self.progress else None,
                   leave=True, dynamic_ncols=True)
        try:
            it = iter(self._loader(epoch, start))
            for i in range(start, end):
                if self.time_up():
                    break
                x, y = next(it)
                lr = self.sched.apply(self.steps_done, self.elapsed())
                x, y = to_device(x, dev, self.channels_last), y.to(dev, non_blocking=True)
                with autocast(dev, self.amp_dtype):
                    logits = self.net(x)
                    loss = self.loss(logits.float(), y, x)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if self.cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                self.opt.step()
                self.steps_done += 1
                steps += 1
                window.append(loss.detach())
                if y.dim() == 1:
                    correct += (logits.detach().argmax(1) == y).sum()
                seen += y.shape[0]
                if len(window) >= sync_every or i == end - 1:
                    self._flush(window, epoch, loss_sum)
                    bar.update(len(window))
                    window = []
                    bar.set_postfix(loss=f"{loss_sum.item() / steps:.4f}",
                                    acc=f"{correct.item() / max(seen, 1):.3f}", refresh=False)
            if window:
                self._flush(window, epoch, loss_sum)
        finally:
            bar.close()
        if steps == 0:
            return None
        return {
            "epoch": epoch + 1, "epochs_done": self.steps_done / self.spe, "step": self.steps_done,
            "train_loss": loss_sum.item() / steps,
            "train_acc": correct.item() / seen if seen else None,
            "val_loss": None, "val_acc": None, "val_top5": None,
            "lr": lr, "seconds": time.perf_counter() - t_epoch,
        }

    def _flush(self, window: list[torch.Tensor], epoch: int, loss_sum: torch.Tensor) -> None:
        """Add the window's losses to ``loss_sum``; raise ``_NonFinite`` on NaN/inf."""
        losses = torch.stack(window).double()
        bad = ~torch.isfinite(losses)
        if bad.any():
            k = int(bad.nonzero()[0, 0])
            step = self.steps_done - len(window) + k + 1
            raise _NonFinite(f"non-finite loss ({losses[k].item()}) at epoch {epoch + 1} "
                             f"step {step}")
        loss_sum += losses.sum()

    def evaluate(self) -> dict[str, float | None]:
        return evaluate(self.net, self.val_loader, self.device, self.amp_dtype,
                        channels_last=self.channels_last)

    def _fill_eval(self, rec: dict[str, Any]) -> None:
        m = self.evaluate()
        rec.update(val_loss=m["loss"], val_acc=m["acc"], val_top5=m["top5"])

    # ---- main loop
    def loop(self) -> tuple[str, str | None, str | None]:
        """Train until the budget ends; return (status, reason, stopped_by)."""
        epoch = self.steps_done // self.spe
        while True:
            if not self.steps_left():
                return "completed", None, self.plan_name
            if self.time_up():
                return self._time_stop()
            t_rec = time.perf_counter()
            rec = self.run_epoch(epoch)
            if rec is None:
                continue  # time ran out before the first step; handled above
            final = not self.steps_left() or self.time_up()
            if self.cfg.eval_every_epoch or final:
                self._fill_eval(rec)
            rec["seconds"] = time.perf_counter() - t_rec
            self.history.append(rec)
            self._save()
            if self.callback is not None and self.callback(dict(rec)) and not final:
                return "pruned", f"stopped by epoch_callback after epoch {rec['epoch']}", "callback"
            epoch += 1

    def _time_stop(self) -> tuple[str, str | None, str | None]:
        if self.planned is None:
            return "completed", None, "max_seconds"
        return ("completed", f"time limit max_seconds={self.cfg.max_seconds} reached after "
                f"{self.steps_done} of {self.planned} planned steps", "max_seconds")

    def budget_fraction(self, stopped_by: str | None) -> float:
        if self.planned is not None:
            return min(1.0, self.steps_done / self.planned)
        if stopped_by == "max_seconds":
            return 1.0
        return min(1.0, self.elapsed() / self.cfg.max_seconds)

    def _diverged(self, last: Mapping[str, Any]) -> str | None:
        """Why the trained model is unusable (non-finite weights or validation loss), or ``None``."""
        bad = next((n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())), None)
        if bad is not None:
            return (f"non-finite weights ({bad}) after step {self.steps_done}: training diverged; "
                    f"lower lr or set grad_clip")
        loss = last.get("val_loss")
        if loss is not None and not math.isfinite(loss):
            return (f"non-finite validation loss ({loss}) after step {self.steps_done}: training diverged; "
                    f"lower lr or set grad_clip")
        return None

    def result(self, status: str, reason: str | None, stopped_by: str | None) -> TrainResult:
        last = self.history[-1] if self.history else None
        if status != "failed" and last is not None:
            if last["val_acc"] is None:
                self._fill_eval(last)  # e.g. pruned with eval_every_epoch=False
            # The loss check sees each step's loss before its update: a last step that made the
            # weights diverge shows only here (NaN logits still argmax to some class).
            diverged = self._diverged(last)
            if diverged:
                status, reason, stopped_by = "failed", diverged, "error"
        ok = status != "failed" and last is not None
        return TrainResult(
            status=status, reason=reason,
            val_acc=last["val_acc"] if ok else None,
            val_top5=last["val_top5"] if ok else None,
            val_loss=last["val_loss"] if ok else None,
            history=self.history, epochs_done=self.steps_done / self.spe,
            steps_done=self.steps_done, budget_fraction=self.budget_fraction(stopped_by),
            wall_seconds=self.elapsed(), device=str(self.device),
            amp="bf16" if self.amp_dtype is not None else None, stopped_by=stopped_by,
            resumed_from_step=self.resumed_from, planned_steps=self.planned,
            forward_modes=self.forward_modes, tune_seconds=self.tune_seconds,
        )


def train(model: nn.Module, train_ds: Dataset, val_ds: Dataset, config: TrainConfig, *,
          teacher: nn.Module | None = None, checkpoint_dir: str | Path | None = None,
          epoch_callback: Callable[[dict], bool | None] | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``model`` in place on ``train_ds`` within ``config``'s budget; see the module doc.

    Non-finite losses and CUDA out-of-memory end the run with status
    ``"failed"``; other exceptions propagate. ``epoch_callback`` receives each
    epoch record and may return True to stop (``"pruned"``). The model is left
    on the training device. Global RNGs are seeded from ``config.seed``.
    """
    config.validate()
    if config.distill_alpha > 0 and teacher is None:
        raise ValueError("TrainConfig.distill_alpha: > 0 needs a teacher; pass teacher=...")
    if teacher is not None and config.distill_alpha == 0:
        warnings.warn("train: teacher given but distill_alpha == 0; teacher unused", stacklevel=2)
    run = _Run(model, train_ds, val_ds, config, teacher,
               Path(checkpoint_dir) if checkpoint_dir is not None else None,
               epoch_callback, progress)
    was_training = model.training
    with runtime(run.device, config):
        run.t0 = time.perf_counter()
        oom: str | None = None
        try:
            try:
                run.setup()
                run.t0 = time.perf_counter()
                status, reason, stopped_by = run.loop()
            except _NonFinite as e:
                status, reason, stopped_by = "failed", str(e), "error"
            except torch.OutOfMemoryError as e:
                oom = (str(e).strip().splitlines() or [""])[0]
            if oom is not None:  # outside the except block so the traceback's tensors are freed
                if hasattr(run, "opt"):
                    run.opt.zero_grad(set_to_none=True)
                gc.collect()
                if run.device.type == "cuda":
                    torch.cuda.empty_cache()
                kind = "CUDA" if run.device.type == "cuda" else run.device.type.upper()
                status, reason, stopped_by = "failed", f"{kind} out of memory: {oom}", "error"
            return run.result(status, reason, stopped_by)
        finally:
            if config.compile:
                torch.compiler.reset()
            model.train(was_training)
            if run.teacher is not None and hasattr(run, "teacher_was_training"):
                run.teacher.train(run.teacher_was_training)
