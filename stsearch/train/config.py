"""Training configuration: a validated, serialisable dataclass."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainConfig", "RESUME_IGNORED_KEYS", "COMPILE_MODES"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")

#: Config keys that do not change the numbers a run produces; a checkpoint
#: written under different values of these keys is still resumed.
RESUME_IGNORED_KEYS = frozenset({"num_threads", "num_workers", "device", "tune_forward", "compile"})

#: Values of ``TrainConfig.compile``: off, on (torch.compile's default mode) or a mode name.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bad(key: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"TrainConfig.{key}: got {value!r}; allowed: {allowed}")


@dataclass
class TrainConfig:
    """Hyper-parameters and runtime options of one training run.

    Budget: any of ``epochs`` (fractional allowed), ``max_steps`` and
    ``max_seconds`` may be set; training stops at the first one reached.
    At least one must be set. ``step_milestones`` are fractions of the budget.
    ``None`` for ``amp`` / ``channels_last`` / ``tune_forward`` means "on for CUDA
    only"; ``None`` for ``num_threads`` means "all CPUs this process may use".
    ``tune_forward`` times both forward modes of each ``auto`` factorized layer
    before training and keeps the faster (:func:`stsearch.layers.tune_forward_modes`);
    off, ``auto`` layers pick by MAC count. The choice only changes speed and
    floating-point rounding; a resumed run reuses the choice in its checkpoint.
    ``compile`` runs training and evaluation through ``torch.compile`` (``True`` is its
    ``"default"`` mode; any of :data:`COMPILE_MODES` may be named). Compilation happens in
    the first steps and counts towards ``max_seconds``; it pays off on long GPU runs, not on
    short CPU trials. Like ``tune_forward`` it changes speed and rounding, not the model.
    """

    epochs: float | None = 1
    max_steps: int | None = None
    max_seconds: float | None = None
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0
    step_milestones: tuple[float, ...] = (0.5, 0.75)
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    tune_forward: bool | None = None
    compile: bool | str = False
    num_threads: int | None = None
    num_workers: int = 0
    grad_clip: float | None = None
    distill_alpha: float = 0.0
    distill_temperature: float = 4.0
    eval_every_epoch: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.step_milestones, list):
            self.step_milestones = tuple(self.step_milestones)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` (one line, naming the key) on any bad value."""
        self._check_budget()
        self._check_optim()
        self._check_runtime()

    def _check_budget(self) -> None:
        if self.epochs is not None and not (_is_number(self.epochs) and self.epochs > 0):
            raise _bad("epochs", self.epochs, "None or a number > 0")
        if self.max_steps is not None and not (_is_int(self.max_steps) and self.max_steps >= 1):
            raise _bad("max_steps", self.max_steps, "None or an int >= 1")
        if self.max_seconds is not None and not (
            _is_number(self.max_seconds) and self.max_seconds > 0
        ):
            raise _bad("max_seconds", self.max_seconds, "None or a number > 0")
        if self.epochs is None and self.max_steps is None and self.max_seconds is None:
            raise ValueError(
                "TrainConfig.epochs: no budget; set at least one of epochs, max_steps, max_seconds"
            )

    def _check_optim(self) -> None:
        if not (_is_int(self.batch_size) and self.batch_size >= 1):
            raise _bad("batch_size", self.batch_size, "an int >= 1")
        if self.optimizer not in OPTIMIZERS:
            raise _bad("optimizer", self.optimizer, ", ".join(map(repr, OPTIMIZERS)))
        if not (_is_number(self.lr) and self.lr > 0):
            raise _bad("lr", self.lr, "a number > 0")
        if not (_is_number(self.momentum) and 0 <= self.momentum < 1):
            raise _bad("momentum", self.momentum, "a number in [0, 1)")
        if not (_is_number(self.weight_decay) and self.weight_decay >= 0):
            raise _bad("weight_decay", self.weight_decay, "a number >= 0")
        if self.schedule not in SCHEDULES:
            raise _bad("schedule", self.schedule, ", ".join(map(repr, SCHEDULES)))
        if not (_is_number(self.warmup_epochs) and self.warmup_epochs >= 0):
            raise _bad("warmup_epochs", self.warmup_epochs, "a number >= 0")
        ms = self.step_milestones
        if not (
            isinstance(ms, tuple)
            and all(_is_number(m) and 0 < m < 1 for m in ms)
            and list(ms) == sorted(ms)
        ):
            raise _bad("step_milestones", ms, "increasing fractions of the budget in (0, 1)")
        if not (_is_number(self.step_gamma) and self.step_gamma > 0):
            raise _bad("step_gamma", self.step_gamma, "a number > 0")
        if not (_is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            raise _bad("label_smoothing", self.label_smoothing, "a number in [0, 1)")
        if self.grad_clip is not None and not (_is_number(self.grad_clip) and self.grad_clip > 0):
            raise _bad("grad_clip", self.grad_clip, "None or a number > 0")
        if not (_is_number(self.distill_alpha) and 0 <= self.distill_alpha <= 1):
            raise _bad("distill_alpha", self.distill_alpha, "a number in [0, 1]")
        if not (_is_number(self.distill_temperature) and self.distill_temperature > 0):
            raise _bad("distill_temperature", self.distill_temperature, "a number > 0")

    def _check_runtime(self) -> None:
        if not (_is_int(self.seed) and 0 <= self.seed <= 2**32 - 1):  # NumPy's and the samplers' seed range
            raise _bad("seed", self.seed, "an int in [0, 2**32 - 1]")
        if not (
            isinstance(self.device, str)
            and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device)
        ):
            raise _bad("device", self.device, "'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
        for key in ("amp", "channels_last", "tune_forward"):
            if getattr(self, key) not in (None, True, False):
                raise _bad(key, getattr(self, key), "None, True, False")
        if not (isinstance(self.compile, bool) or (isinstance(self.compile, str) and self.compile in COMPILE_MODES)):
            raise _bad("compile", self.compile, "False, True, " + ", ".join(map(repr, COMPILE_MODES)))
        nt = self.num_threads
        if nt is not None and not (_is_int(nt) and nt >= 1):
            raise _bad("num_threads", self.num_threads, "None or an int >= 1")
        if not (_is_int(self.num_workers) and self.num_workers >= 0):
            raise _bad("num_workers", self.num_workers, "an int >= 0")
        if self.eval_every_epoch not in (True, False):
            raise _bad("eval_every_epoch", self.eval_every_epoch, "True, False")

    # ----------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict of all fields."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["step_milestones"] = list(self.step_milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys or bad values raise ``ValueError``."""
        if not isinstance(d, dict):
            raise ValueError(f"TrainConfig: expected a dict, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in names:
                raise ValueError(
                    f"TrainConfig: unknown key {key!r}; allowed keys: {', '.join(names)}"
                )
        return cls(**d)

    @classmethod
    def keys(cls) -> list[str]:
        """Names of all config keys."""
        return [f.name for f in dataclasses.fields(cls)]
