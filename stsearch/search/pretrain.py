"""Warm-start studies (``pretrained: train``): the dense model is trained once, as the study's first
trial, and every other trial starts from the decomposition of its weights.

The dense trial is an ordinary trial of the study (user attrs ``pretrain: true``, ``baseline: dense``,
an empty plan) trained with the space's ``train`` budget overridden by ``pretrained_train``. Its
checkpoint is its trial folder's weights file, on the results folder every process shares, so local,
Ray and ``stsearch worker`` trials, and a resumed study, all read the one file. Until it is
complete the study is *gated*: a claim hands out only the dense trial, and other processes wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

__all__ = ["PRETRAIN_ATTR", "PretrainState", "pretrain_state", "pretrain_train_config", "wants_pretraining"]

PRETRAIN_ATTR = "pretrain"
#: Train-config keys a dense pretraining run does not take from the space (it has no teacher).
_NO_TEACHER = ("distill_alpha", "distill_temperature")


def wants_pretraining(space: Any) -> bool:
    """Whether the space asks the study to train its own dense model (``pretrained: train``)."""
    return getattr(space, "pretrained", None) == "train"


@dataclass(frozen=True)
class PretrainState:
    """Where a warm-start study's dense trial stands.

    ``kind``: ``done`` (``checkpoint`` is its weights file), ``waiting`` (a slot is queued), ``running``
    (some process trains it), or ``failed`` (no attempt left: ``reason`` says why).
    """

    kind: str
    number: int | None = None
    checkpoint: str | None = None
    reason: str | None = None


def pretrain_state(trials: list[FrozenTrial]) -> PretrainState:
    """The state of the dense trial among a study's ``trials``."""
    from ..trial import WEIGHTS_FILE

    mine = [t for t in trials if t.user_attrs.get(PRETRAIN_ATTR)]
    for t in mine:
        if t.state == TrialState.COMPLETE and t.user_attrs.get("status") == "completed":
            return PretrainState("done", t.number, str(Path(t.user_attrs["artifact_dir"]) / WEIGHTS_FILE))
    for kind, state in (("running", TrialState.RUNNING), ("waiting", TrialState.WAITING)):
        live = [t for t in mine if t.state == state]
        if live:
            return PretrainState(kind, live[0].number)
    last = max(mine, key=lambda t: t.number, default=None)
    reason = None if last is None else str(last.user_attrs.get("reason") or last.user_attrs.get("status") or "failed")
    return PretrainState("failed", None if last is None else last.number, reason=reason)


def pretrain_train_config(space: Any) -> dict[str, Any]:
    """The dense trial's train config: the space's ``train`` (without distillation), then ``pretrained_train``."""
    base = {k: v for k, v in dict(space.train).items() if k not in _NO_TEACHER}
    return {**base, **dict(getattr(space, "pretrained_train", None) or {})}
