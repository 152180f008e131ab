"""Atomic checkpoint files with a fallback to the previous one."""

from __future__ import annotations

import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fence import check_active

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "save_rotating",
    "load_latest",
    "get_rng_state",
    "set_rng_state",
    "LAST_NAME",
    "PREV_NAME",
]

LAST_NAME = "last.pt"
PREV_NAME = "prev.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a reader sees the old or the new file).

    Inside a fenced trial folder (:mod:`stsearch.fence`) a stale attempt raises
    :class:`~stsearch.fence.StaleAttempt` and leaves the folder as it was."""
    path = Path(path)
    check_active(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        check_active(path)  # again: the attempt may have been re-queued while this was written
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """Read a checkpoint; ``None`` (with a warning) if missing-but-expected, corrupt or truncated.

    A file that does not exist returns ``None`` silently.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, wrong format: never fatal
        msg = f"ignoring unreadable checkpoint {path}: {type(e).__name__}: {e}"
        warnings.warn(msg, stacklevel=2)
        return None
    if not isinstance(state, dict):
        warnings.warn(f"ignoring checkpoint {path}: not a dict", stacklevel=2)
        return None
    return state


def save_rotating(directory: str | Path, state: dict[str, Any]) -> Path:
    """Save as ``last.pt`` in ``directory``, keeping the former one as ``prev.pt``."""
    directory = Path(directory)
    last, prev, nxt = directory / LAST_NAME, directory / PREV_NAME, directory / "next.pt"
    save_checkpoint(nxt, state)
    check_active(last)
    if last.exists():
        os.replace(last, prev)
    os.replace(nxt, last)
    return last


def load_latest(directory: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Newest readable checkpoint in ``directory`` having all ``required`` keys, else ``None``."""
    directory = Path(directory)
    for name in (LAST_NAME, PREV_NAME):
        state = load_checkpoint(directory / name)
        if state is None:
            continue
        missing = [k for k in required if k not in state]
        if missing:
            msg = f"ignoring checkpoint {directory / name}: missing {missing}"
            warnings.warn(msg, stacklevel=2)
            continue
        return state
    return None


def get_rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), Python ``random`` and NumPy, as plain data."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (CUDA part only where CUDA exists)."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
