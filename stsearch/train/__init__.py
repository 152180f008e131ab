"""Training engine: budgeted, resumable training runs of one model."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .metrics import evaluate, measure_latency
from .trainer import LRSchedule, TrainResult, resolve_device, runtime, seed_everything, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "evaluate",
    "measure_latency",
    "save_checkpoint",
    "load_checkpoint",
    "seed_everything",
    "resolve_device",
    "runtime",
    "LRSchedule",
]
