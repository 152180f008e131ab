"""Fenced trial folders: one attempt at a time writes into a trial's folder.

A controller that claims a trial writes a fresh *attempt token* into the trial folder's
``.attempt`` file (:func:`claim_folder`) and keeps touching it while the attempt's heartbeat
runs (:func:`touch`). The process training the attempt holds its token in a :class:`Fence`;
every write into the folder (checkpoints, weights, metrics) first calls :meth:`Fence.check`,
which raises :class:`StaleAttempt` when

* the folder's token is another one: the trial was re-queued and a newer attempt owns the
  folder (a worker that lost its heartbeat, then woke up);
* the token file was not touched for ``stale_after`` seconds: the controller that claimed the
  attempt is gone (an orphaned Ray trial actor of a killed controller).

A stale writer stops without writing. :func:`active` is the fence of the calling thread,
set by :func:`fenced`, so low-level writers (``stsearch.train.checkpoint``) check it without
the fence being passed through every call. This module imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FENCE_FILE", "StaleAttempt", "Fence", "new_token", "claim_folder", "touch", "fenced", "active",
           "check_active", "watch"]

FENCE_FILE = ".attempt"
_local = threading.local()


class StaleAttempt(RuntimeError):
    """This attempt no longer owns its trial folder; it must stop without writing."""


def new_token() -> str:
    """A fresh attempt token."""
    return uuid.uuid4().hex


def claim_folder(folder: str | os.PathLike, token: str) -> Path:
    """Make ``folder`` (if needed) and hand it to attempt ``token``: written atomically, so a reader
    sees the old token or the new one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FENCE_FILE
    tmp = folder / f"{FENCE_FILE}.{os.getpid()}.{token[:8]}.tmp"
    tmp.write_text(token + "\n")
    os.replace(tmp, path)
    return path


def touch(folder: str | os.PathLike, token: str) -> bool:
    """Refresh the token file's time if ``folder`` still belongs to ``token`` (the controller's heartbeat);
    ``False`` when it does not (another attempt took it) or it is gone."""
    path = Path(folder) / FENCE_FILE
    try:
        if path.read_text().strip() != token:
            return False
        os.utime(path)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Fence:
    """The write permission of one attempt on one trial folder.

    ``stale_after``: seconds without a heartbeat (a touch of the token file) after which the
    attempt is judged orphaned; ``None`` checks the token only.
    """

    folder: Path
    token: str
    stale_after: float | None = None

    def problem(self) -> str | None:
        """Why this attempt may not write, or ``None`` when it may."""
        path = Path(self.folder) / FENCE_FILE
        try:
            current = path.read_text().strip()
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return f"{path} is gone"
        except OSError as err:
            return f"{path} cannot be read ({err.strerror or err})"
        if current != self.token:
            return f"trial folder {self.folder} belongs to a newer attempt (re-queued)"
        if self.stale_after is not None and age > self.stale_after:
            return (f"the controller of trial folder {self.folder} stopped beating {age:.0f} s ago "
                    f"(limit {self.stale_after:.0f} s)")
        return None

    def check(self) -> None:
        """Raise :class:`StaleAttempt` unless this attempt still owns its folder."""
        reason = self.problem()
        if reason is not None:
            raise StaleAttempt(f"attempt {self.token[:8]} stops without writing: {reason}")

    def covers(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` lies in this fence's folder."""
        folder = Path(self.folder).resolve()
        p = Path(path).resolve()
        return p == folder or folder in p.parents


@contextlib.contextmanager
def fenced(fence: Fence | None) -> Iterator[Fence | None]:
    """Make ``fence`` the calling thread's active fence for the duration of the block."""
    before = getattr(_local, "fence", None)
    _local.fence = fence
    try:
        yield fence
    finally:
        _local.fence = before


def active() -> Fence | None:
    """The calling thread's fence (see :func:`fenced`), or ``None``."""
    return getattr(_local, "fence", None)


def check_active(path: str | os.PathLike) -> None:
    """Before writing ``path``: check the active fence if ``path`` is inside its folder."""
    fence = active()
    if fence is not None and fence.covers(path):
        fence.check()


def watch(fence: Fence, on_stale, interval: float) -> threading.Event:
    """Check ``fence`` every ``interval`` seconds in a daemon thread and call ``on_stale(reason)`` once when
    it goes stale; set the returned event to stop watching."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(interval):
            reason = fence.problem()
            if reason is not None:
                on_stale(reason)
                return

    threading.Thread(target=loop, daemon=True, name="stsearch-fence").start()
    return done
