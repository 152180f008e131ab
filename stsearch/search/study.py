"""Existing studies, opened to be read: found and checked the way every command needs, without the
search space's model (no torch).

:func:`open_existing` finds a study by name (in ``--storage``, else ``results/<name>/study.db``) and
says in one line why it cannot be used (no file, no such study, still being created, cut short).
:class:`StudyView` is what the read-only commands (``status``, ``pareto``, ``plot``) work on;
:class:`~stsearch.search.run.SearchRun` adds the space, sampling and bookkeeping on top.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from .storage import default_storage_url, describe_storage, open_storage, sqlite_file, study_exists

__all__ = ["TRAINED", "Found", "StudyView", "open_existing", "count_trials", "creator_alive", "pid_alive",
           "remove_stale_side_files", "CREATION_GRACE_SECONDS"]

#: Statuses of trials that used their training slot.
TRAINED = ("completed", "pruned", "failed")
#: A study lacking its ``space`` whose creation began on another host this recently is still being created.
CREATION_GRACE_SECONDS = 120.0
_SIDE_FILE = re.compile(r"(?:(?P<host>.+)-)?(?P<pid>\d+)-[0-9a-f]{8}\.creating(?:-journal|-wal|-shm)?")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def creator_alive(attrs: Mapping[str, Any]) -> bool:
    """Whether the process creating a study (``attrs``: the study's user attrs, without ``space``) may
    still be at it: its PID is alive on this host, or, on another host, it began less than
    :data:`CREATION_GRACE_SECONDS` ago."""
    host, _, pid = str(attrs.get("creator", "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return pid_alive(int(pid))
    created = attrs.get("created")
    return isinstance(created, (int, float)) and time.time() - created < CREATION_GRACE_SECONDS


def remove_stale_side_files(url: str) -> None:
    """Remove what a creation of the SQLite file of ``url`` killed mid-way left beside it (the
    ``.creating`` file and its ``-journal``): only files of this host whose creating process is gone."""
    db = sqlite_file(url)
    if db is None:
        return
    prefix = f".{db.name}."
    try:
        entries = list(db.absolute().parent.iterdir()) if db.absolute().parent.is_dir() else []
    except OSError:
        return
    for entry in entries:
        m = _SIDE_FILE.fullmatch(entry.name[len(prefix):]) if entry.name.startswith(prefix) else None
        if m and m["host"] in (None, socket.gethostname()) and not pid_alive(int(m["pid"])):
            try:
                entry.unlink()
            except OSError:
                pass  # read-only folder, or another process removed it first


def count_trials(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """Trials by status: trained, running, waiting, infeasible, interrupted, cancelled, completed, ..."""
    out = {"trained": 0, "running": 0, "waiting": 0, "infeasible": 0, "interrupted": 0, "cancelled": 0,
           "completed": 0, "pruned": 0, "failed": 0}
    for t in trials:
        status = t.user_attrs.get("status")
        if t.state == TrialState.RUNNING:
            out["running"] += 1
        elif t.state == TrialState.WAITING:
            out["waiting"] += 1
        elif status in out:
            out[status] += 1
        if status in TRAINED and t.state.is_finished():
            out["trained"] += 1
    return out


@dataclass(frozen=True)
class Found:
    """A fully created study: its storage, URL, a first loaded copy and its results folder."""

    store: BaseStorage
    url: str
    probe: optuna.Study
    results_dir: Path


def open_existing(name: str, *, storage: str | None = None, results_dir: str | Path = "results") -> Found:
    """Find study ``name``; a one-line ``ValueError`` when it is missing, still being created or cut short."""
    results_dir = Path(results_dir).resolve()
    missing = sqlite_file(storage)
    if missing is not None and not missing.exists():
        raise ValueError(f"no study {name!r}: the SQLite file {missing} does not exist; check --storage")
    if storage is None and not (results_dir / name / "study.db").exists():
        raise ValueError(
            f"no study {name!r} under {results_dir}; start one with 'stsearch search --name {name}', "
            "or pass --storage URL for a study kept elsewhere"
        )
    url = storage or default_storage_url(results_dir, name)
    remove_stale_side_files(url)
    store = open_storage(url)
    if not study_exists(store, name):
        known = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
        raise ValueError(f"no study {name!r} in {describe_storage(url)}; known studies: {known or 'none'}")
    probe = optuna.load_study(study_name=name, storage=store)
    if "space" not in probe.user_attrs:  # written last by create: still being created, or cut short
        where = f"--storage {describe_storage(url)}" if storage else f"--results-dir {results_dir}"
        if creator_alive(probe.user_attrs):
            raise ValueError(f"study {name!r} in {describe_storage(url)} is still being created "
                             f"({probe.user_attrs.get('creator', 'unknown')}); wait for it and try again")
        raise ValueError(
            f"study {name!r} in {describe_storage(url)} was never fully created (its creating process "
            f"stopped); run the same 'stsearch search --name {name} {where} --space SPACE' again: search "
            "creates anew a study that was never fully created")
    stored_dir = probe.user_attrs.get("results_dir")
    base = Path(stored_dir) if (storage is not None and stored_dir) else results_dir
    return Found(store=store, url=url, probe=probe, results_dir=base)


class StudyView:
    """An existing study opened to be read: name, folder, target and trial counts, and the model and
    dataset its space names (from the stored space, without building the model)."""

    def __init__(self, study: optuna.Study, *, results_dir: Path, storage_url: str) -> None:
        self.study = study
        self.results_dir = Path(results_dir)
        self.storage_url = storage_url

    @classmethod
    def open(cls, name: str, *, storage: str | None = None, results_dir: str | Path = "results") -> "StudyView":
        found = open_existing(name, storage=storage, results_dir=results_dir)
        return cls(found.probe, results_dir=found.results_dir, storage_url=found.url)

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def folder(self) -> Path:
        return self.results_dir / self.name

    @property
    def target(self) -> int:
        return int(self.study.user_attrs["target_trials"])

    @property
    def space_dict(self) -> dict[str, Any]:
        """The study's search space as it was stored (``SearchSpace.to_dict``)."""
        return dict(self.study.user_attrs.get("space") or {})

    def trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def counts(self) -> dict[str, int]:
        """Trials by status: trained, running, waiting, infeasible, interrupted, cancelled."""
        return count_trials(self.trials())
