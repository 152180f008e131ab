"""Evaluation metrics (loss, top-1, top-5) and inference latency."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["evaluate", "measure_latency", "topk_correct", "to_device", "autocast"]


def autocast(
    device: torch.device, amp_dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    """Autocast context for ``device`` with ``amp_dtype``, or a no-op when ``None``."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def to_device(
    x: torch.Tensor, device: torch.device, channels_last: bool = False
) -> torch.Tensor:
    """Copy a batch tensor to ``device`` (asynchronously where possible)."""
    if channels_last and x.dim() == 4:
        return x.to(device, non_blocking=True, memory_format=torch.channels_last)
    return x.to(device, non_blocking=True)


def topk_correct(logits: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """Number of rows whose ``target`` is among the ``k`` largest logits (0-d tensor)."""
    top = logits.topk(k, dim=1).indices
    return (top == target.unsqueeze(1)).any(dim=1).sum()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    device: torch.device | str,
    amp_dtype: torch.dtype | None = None,
    *,
    channels_last: bool = False,
) -> dict[str, float | None]:
    """Mean cross-entropy ``loss``, top-1 ``acc`` and ``top5`` of ``model`` on ``loader``.

    ``top5`` is ``None`` when the model has fewer than 5 classes; all three are
    ``None`` for an empty loader. The model's train/eval mode is restored.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    n, num_classes = 0, 0
    try:
        for x, y in loader:
            x, y = to_device(x, device, channels_last), y.to(device, non_blocking=True)
            with autocast(device, amp_dtype):
                logits = model(x)
            logits = logits.float()
            num_classes = logits.shape[1]
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            top1 += topk_correct(logits, y, 1)
            if num_classes >= 5:
                top5 += topk_correct(logits, y, 5)
            n += y.shape[0]
    finally:
        model.train(was_training)
    if n == 0:
        return {"loss": None, "acc": None, "top5": None}
    return {
        "loss": loss_sum.item() / n,
        "acc": top1.item() / n,
        "top5": top5.item() / n if num_classes >= 5 else None,
    }


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    warmup: int = 3,
    repeats: int = 10,
) -> dict[str, Any]:
    """Forward-pass latency in milliseconds: fastest, median and 90th percentile of ``repeats`` runs.

    The fastest run is the figure least moved by other processes competing for the machine
    (what ``timeit`` recommends); the median and p90 show the spread.

    ``input_shape`` is the shape of one sample, without the batch dimension.
    The model runs in eval mode under ``torch.inference_mode`` on ``device``; afterwards it is moved back to
    the device it came from and its train/eval mode is restored.
    """
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise ValueError("measure_latency: need repeats >= 1, warmup >= 0, batch_size >= 1")
    device = torch.device(device)
    p = next(iter(model.parameters()), None)
    home = p.device if p is not None else torch.device("cpu")
    was_training = model.training
    model.to(device).eval()
    x = torch.randn(batch_size, *input_shape, device=device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    times: list[float] = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                sync()
                t0 = time.perf_counter()
                model(x)
                sync()
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
    finally:
        model.to(home).train(was_training)
    times.sort()
    p90 = times[max(0, math.ceil(0.9 * len(times)) - 1)]  # nearest-rank
    return {
        "ms_min": times[0],
        "ms_median": statistics.median(times),
        "ms_p90": p90,
        "batch_size": batch_size,
        "device": str(device),
    }
