"""A search: an Optuna study (the source of truth) plus the rules for claiming and finishing trials.

Exactly-N bookkeeping. A study asks for ``target`` *trained* trials. It starts
with ``target`` WAITING trials ("slots"): the uniform-rank baselines (with their
params) and empty slots (the sampler fills them). A dispatcher claims a slot
atomically (WAITING -> RUNNING, the storage's compare-and-set), samples its
params, and checks the analytic constraints: an infeasible configuration is told
to the study at once (COMPLETE, accuracy 0, positive constraint values,
``status = "infeasible"``) and replaced by a new empty slot, so it never trains
and never uses up the budget. Trained trials end as COMPLETE (``completed``),
PRUNED (``pruned``) or FAIL (``failed``); all three count towards ``target``.

Resume: a RUNNING trial whose owner process is dead (or whose heartbeat is
older than the grace period) is marked FAIL with ``status = "interrupted"`` and
re-queued with its params and its folder, so training resumes from its last
checkpoint. :meth:`SearchRun.reconcile` then tops the queue up (or cancels
surplus slots) so that trained + running + waiting == target.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from .. import __version__
from ..fence import Fence, claim_folder, new_token, touch
from ..metrics import MetricTable, get_metric
from .study import TRAINED, StudyView, creator_alive, open_existing, pid_alive as _pid_alive
from .study import remove_stale_side_files as _remove_stale_side_files
from ..plan import NetworkPlan
from ..trial import TrialSpec, jsonable, plan_family
from .pretrain import PRETRAIN_ATTR, PretrainState, pretrain_state, pretrain_train_config, wants_pretraining
from .storage import (check_study_name, default_storage_url, describe_storage, make_folder, open_storage, sqlite_file,
                      study_exists)

__all__ = ["SearchRun", "Claim", "TRAINED", "METRIC_OF", "constraints_func"]

#: Objective name -> the key of its value in a trial's metrics (a live view of :mod:`stsearch.metrics`).
METRIC_OF = MetricTable(lambda m: m.key)
SCALAR_ATTRS = (
    "status", "reason", "val_acc", "val_top5", "val_loss", "budget_fraction", "full_budget", "epochs_done",
    "steps_done", "params", "dense_params", "compression", "macs", "dense_macs", "family", "device", "amp",
    "train_seconds", "tune_seconds", "latency_ms", "wall_seconds",
)
MAX_INFEASIBLE_IN_A_ROW = 500
HEARTBEAT_SECONDS = 30.0
#: A running trial whose heartbeat is this many intervals old is stale (its process is gone or cut off).
STALE_AFTER_BEATS = 1.5

optuna.logging.set_verbosity(optuna.logging.WARNING)


def constraints_func(trial: FrozenTrial) -> list[float]:
    """Optuna constraints of a trial (<= 0 feasible), as stored by :class:`SearchRun`."""
    return list(trial.user_attrs.get("constraints", [0.0]))


def baseline_labels(baselines: list[Mapping[str, Any]]) -> list[str]:
    """Names of uniform-rank baselines, e.g. ``stt-r8-t2``."""
    out = []
    for b in baselines:
        t = int(b.get("t", 1) or 1)
        out.append(f"{b['family']}-r{b.get('rank')}" + (f"-t{t}" if t > 1 else ""))
    return out


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Claim:
    """A trial this process owns: the Optuna trial, what to train and where."""

    trial: Trial
    spec: TrialSpec
    workdir: Path
    analytic: dict[str, Any]
    attempt: str = ""  # the attempt token fencing ``workdir`` (stsearch.fence)
    stale_after: float | None = None  # seconds without a controller heartbeat after which the attempt stops

    @property
    def number(self) -> int:
        return self.trial.number

    def fence(self) -> "Fence":
        """The write permission of this attempt on its trial folder."""
        return Fence(self.workdir, self.attempt, self.stale_after)


def _new_sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL without query options that does not exist yet, else ``None``."""
    path = sqlite_file(url)
    return None if path is None or "?" in url or path.exists() else path.absolute()


class _FileTaken(ValueError):
    """Another process created the study file first."""


def _free_name(results_dir: Path, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... : the first without a study file under ``results_dir``."""
    name, k = base, 2
    while (results_dir / name / "study.db").exists():
        name, k = f"{base}-{k}", k + 1
    return name


def _link_new(aside: Path, target: Path, name: str, url: str) -> None:
    """Put the finished file ``aside`` at ``target``, unless a file appeared there meanwhile."""
    taken = _FileTaken(f"{describe_storage(url)} was created by another process meanwhile; "
                       f"pick another --name (or 'stsearch resume {name}' if that study is yours)")
    try:
        os.link(aside, target)  # fails if target exists: never replaces a study made meanwhile
    except FileExistsError:
        raise taken from None
    except OSError:  # a file system without hard links
        if target.exists():
            raise taken from None
        os.replace(aside, target)


def _aside_file(db: Path) -> Path:
    """Where a new SQLite study file is built before it is linked into place: ``.study.db.HOST-PID-TOKEN.creating``."""
    return db.with_name(f".{db.name}.{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.creating")





class SearchRun(StudyView):
    """A study plus its search space, results folder and target number of trained trials."""

    def __init__(self, study: optuna.Study, space: Any, *, results_dir: Path, storage_url: str) -> None:
        super().__init__(study, results_dir=results_dir, storage_url=storage_url)
        self.space = space
        self.owner = owner_id()
        self._heartbeat: _Heartbeat | None = None
        self._frame_written = -math.inf  # time.monotonic() of this object's last write_frame

    # ------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        space: Any,
        *,
        name: str | None = None,
        storage: str | None = None,
        results_dir: str | Path = "results",
        trials: int | None = None,
        seed: int | None = None,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> "SearchRun":
        """A new study for ``space``; an existing study of that name is an error (use resume).

        Without an explicit ``name`` the space's name is used, numbered (``-2``, ``-3``...)
        when a study of that name already exists under ``results_dir``.
        """
        results_dir = Path(results_dir).resolve()
        check_study_name(name if name is not None else space.name)
        # Everything that can be refused is checked before a storage (or its folder) is created.
        target = int(trials if trials is not None else space.trials)
        if target < 1:
            raise ValueError(f"--trials must be >= 1, got {target}")
        if not (isinstance(heartbeat, (int, float)) and 0 < heartbeat < math.inf):
            raise ValueError(f"--heartbeat must be a number of seconds > 0, got {heartbeat!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"--seed must be an integer >= 0, got {seed!r}")
        sampler = cls._sampler(space, seed if seed is not None else space.sampler.get("seed"))
        _check_some_feasible(space)
        numbered = name is None and storage is None
        if name is None:
            name = _free_name(results_dir, space.name) if storage is None else space.name
        while True:
            try:
                return cls._create_at(space, name, storage, results_dir, sampler, target, heartbeat)
            except _FileTaken:
                if not numbered:  # an explicit --name: the other process has it
                    raise
                name = _free_name(results_dir, space.name)  # another search took this number meanwhile

    @classmethod
    def _create_at(cls, space: Any, name: str, storage: str | None, results_dir: Path, sampler: Any,
                   target: int, heartbeat: float = HEARTBEAT_SECONDS) -> "SearchRun":
        url = storage or default_storage_url(results_dir, name)
        _remove_stale_side_files(url)
        new_file = _new_sqlite_file(url)
        if new_file is None:
            store = open_storage(url)
            taken = ValueError(f"study {name!r} already exists in {describe_storage(url)}; continue it with "
                               f"'stsearch resume {name}' or pick another --name")
            if study_exists(store, name):
                cls._drop_cut_short(store, name, url, taken)
            try:
                study = cls._build(space, store, name, sampler, target, results_dir, heartbeat)
            except optuna.exceptions.DuplicatedStudyError:  # another process created it meanwhile
                raise taken from None
        else:
            # A new SQLite file is built aside and linked into place whole: a reader (status, a
            # dashboard, another search) never sees a file without tables, so it cannot race this
            # process to create them, and a kill mid-creation leaves no half-made study behind.
            make_folder(new_file.parent, "the study folder under --results-dir")
            aside = _aside_file(new_file)
            try:
                store = open_storage(f"sqlite:///{aside}")
                cls._build(space, store, name, sampler, target, results_dir, heartbeat)
                store.remove_session()
                store.engine.dispose()  # every connection closed: the file is whole on disk
                _link_new(aside, new_file, name, url)
            finally:
                aside.unlink(missing_ok=True)
            study = optuna.load_study(study_name=name, storage=open_storage(url), sampler=sampler)
        run = cls(study, space, results_dir=results_dir, storage_url=url)
        run.folder.mkdir(parents=True, exist_ok=True)
        return run

    @staticmethod
    def _drop_cut_short(store: Any, name: str, url: str, taken: ValueError) -> None:
        """Delete study ``name``, which exists in ``store``, if its creation was cut short (no ``space``,
        its creator gone, no trial ever claimed), so that ``search`` can make it again; else raise ``taken``
        (or why it cannot be replaced)."""
        probe = optuna.load_study(study_name=name, storage=store)
        if "space" in probe.user_attrs:
            raise taken
        if creator_alive(probe.user_attrs):
            raise ValueError(f"study {name!r} in {describe_storage(url)} is being created by another process "
                             f"({probe.user_attrs.get('creator', 'unknown')}); wait for it to finish, then "
                             f"'stsearch resume {name}', or pick another --name")
        if any(t.state != TrialState.WAITING for t in probe.get_trials(deepcopy=False)):
            raise ValueError(f"study {name!r} in {describe_storage(url)} was never fully created yet has claimed "
                             f"trials; delete it with 'optuna delete-study --study-name {name} --storage "
                             f"{describe_storage(url)}' and start it again")
        print(f"stsearch: study {name} in {describe_storage(url)} was never fully created (its creating process "
              "stopped); creating it again", file=sys.stderr)
        try:
            optuna.delete_study(study_name=name, storage=store)
        except KeyError:
            pass  # another search removed it first; creating it below then races that one fairly

    @staticmethod
    def _build(space: Any, store: Any, name: str, sampler: Any, target: int, results_dir: Path,
               heartbeat: float = HEARTBEAT_SECONDS) -> optuna.Study:
        """Study ``name`` in ``store`` with its attrs and ``target`` queued slots; ``space`` is
        written last, so a study that has it is complete (see :meth:`open`)."""
        study = optuna.create_study(study_name=name, storage=store, directions=space.directions(), sampler=sampler)
        attrs = {
            "creator": owner_id(),  # first: a study cut short before "space" can be told from one in the making
            "created": time.time(),
            "objectives": [{"name": o.name, "direction": o.direction} for o in space.objectives],
            "target_trials": target,
            "results_dir": str(results_dir),
            "stsearch_version": __version__,
            "heartbeat_seconds": float(heartbeat),
        }
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        with warnings.catch_warnings():  # experimental in Optuna; it is what optuna-dashboard labels axes with
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.name for o in space.objectives])
        baselines = list(zip(baseline_labels(space.baselines), space.baseline_params()))
        if wants_pretraining(space):  # the dense model first: every other trial starts from it
            study.enqueue_trial({}, user_attrs={"baseline": "dense", PRETRAIN_ATTR: True})
            target -= 1
        for label, params in baselines[:target]:
            study.enqueue_trial(params, user_attrs={"baseline": label})
        for _ in range(target - min(target, len(baselines))):
            study.enqueue_trial({})
        study.set_user_attr("space", space.to_dict())
        return study

    @classmethod
    def open(cls, name: str, *, storage: str | None = None, results_dir: str | Path = "results",
             per_process_seed: bool = False) -> "SearchRun":
        """An existing study (its space comes from the study itself). ``per_process_seed``: the sampler's
        seed is the space's mixed with this process's owner id, so that workers starting together draw
        different configurations instead of replacing each other's duplicates (no run is reproducible
        when several processes share a study anyway)."""
        from ..space import SearchSpace

        found = open_existing(name, storage=storage, results_dir=results_dir)
        space = SearchSpace.from_dict(found.probe.user_attrs["space"])
        seed = space.sampler.get("seed")
        if per_process_seed:
            import zlib

            seed = (zlib.crc32(owner_id().encode()) + (seed or 0)) % 2**32
        study = optuna.load_study(study_name=name, storage=found.store, sampler=cls._sampler(space, seed))
        return cls(study, space, results_dir=found.results_dir, storage_url=found.url)

    @staticmethod
    def _sampler(space: Any, seed: int | None) -> optuna.samplers.BaseSampler:
        from ..space import make_sampler

        return make_sampler(space.sampler, seed=seed, constraints_func=constraints_func, space=space)

    # -------------------------------------------------------------- counts
    def write_frame(self, every: float = 0.0) -> None:
        """Refresh ``trials.csv``/``trials.parquet`` in the study's folder from the study, unless
        this object wrote them less than ``every`` seconds ago."""
        from ..results.frame import save_frame, trials_frame

        if time.monotonic() - self._frame_written < every:
            return
        save_frame(trials_frame(self.study), self.folder)
        self._frame_written = time.monotonic()

    # ------------------------------------------------------------- resume
    def reconcile(self, *, all_running_stale: bool = False, balance: bool = True, target: int | None = None) -> dict[str, int]:
        """Fail and re-queue stale RUNNING trials; with ``balance``, make trained + running + waiting == target.

        Each stale trial is re-queued only by the process whose RUNNING -> FAIL
        transition succeeded, so workers starting together never double it.
        ``balance`` (top-up or cancel slots) is for a single controller (``resume``).
        """
        if target is not None:
            if target < 1:
                raise ValueError(f"--trials must be >= 1, got {target}")
            trained = self.counts()["trained"]
            if target < trained:
                raise ValueError(f"--trials {target} is below the {trained} trials study {self.name} has trained; "
                                 f"pass --trials {trained} or more (or omit it to keep {self.target})")
            self.study.set_user_attr("target_trials", int(target))
        storage = self.study._storage  # noqa: SLF001  (Optuna exposes no public handle)
        retried = self._retried()
        self.requeue_stale(all_running=all_running_stale, retried=retried)
        if not balance:
            return self.counts()
        # An interrupted trial without a retry: its process was killed between failing and
        # re-queuing it. Its params and folder are queued now instead of an empty slot.
        for t in self.trials():
            if t.state == TrialState.FAIL and t.user_attrs.get("status") == "interrupted":
                self._requeue(t, t.user_attrs.get("artifact_dir"), retried)
        if wants_pretraining(self.space) and (st := pretrain_state(self.trials())).kind == "failed":
            # resume after the dense training failed: it is tried again, first, as one more trial
            self.study.enqueue_trial({}, user_attrs={"baseline": "dense", PRETRAIN_ATTR: True, "retry_of": st.number})
            self.study.set_user_attr("target_trials", self.target + 1)
        counts = self.counts()
        need = max(self.target - counts["trained"] - counts["running"], 0)
        waiting = [t for t in self.trials() if t.state == TrialState.WAITING and not t.user_attrs.get(PRETRAIN_ATTR)]
        need = max(need - sum(t.state == TrialState.WAITING for t in self.trials()) + len(waiting), 0)
        # Surplus slots (a kill between enqueue and tell, or a lowered target): cancel empty ones first.
        by_value = sorted(waiting, key=lambda x: (bool(x.system_attrs.get("fixed_params")), -x.number))
        for t in by_value[: max(len(waiting) - need, 0)]:
            storage.set_trial_user_attr(t._trial_id, "status", "cancelled")
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        for _ in range(need - len(waiting)):
            self.study.enqueue_trial({})
        return self.counts()

    @property
    def heartbeat_seconds(self) -> float:
        """How often trials' heartbeats are written (the study's ``heartbeat_seconds``, chosen at creation)."""
        return float(self.study.user_attrs.get("heartbeat_seconds", HEARTBEAT_SECONDS))

    @property
    def stale_after(self) -> float:
        """Age of a heartbeat after which its trial is judged stale and re-queued."""
        return STALE_AFTER_BEATS * self.heartbeat_seconds

    def requeue_stale(self, *, all_running: bool = False, retried: set[int] | None = None) -> list[str]:
        """Fail and re-queue every RUNNING trial that is stale (or all, with ``all_running``); returns a
        line per re-queued trial. Only the process whose RUNNING -> FAIL transition succeeds re-queues."""
        storage = self.study._storage  # noqa: SLF001
        retried = self._retried() if retried is None else retried
        done = []
        for t in self.trials():
            if t.state != TrialState.RUNNING or not (all_running or self._is_stale(t)):
                continue
            try:
                storage.set_trial_user_attr(t._trial_id, "status", "interrupted")
                storage.set_trial_user_attr(t._trial_id, "reason", "the process running it stopped")
                if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another process finished or failed it first
            self._requeue(t, t.user_attrs.get("artifact_dir"), retried)
            beat = t.user_attrs.get("heartbeat")
            age = f"{time.time() - float(beat):.0f} s" if beat is not None else "never"
            done.append(f"trial {t.number} of {t.user_attrs.get('owner', 'unknown')} re-queued "
                        f"(last heartbeat {age} ago)")
        return done

    def wait_for_work(self, poll: float | None = None, report: Any = None, until: Any = None) -> bool:
        """Wait until a slot is waiting (``True``) or no trial is running anywhere (``False``), re-queuing
        stale trials every ``poll`` seconds (default: a quarter heartbeat), so that the last process
        standing finishes the study; ``report`` is called with each re-queue line. With ``until`` (a
        callable), wait until it returns true instead (``True``) or nothing runs (``False``)."""
        poll = self.heartbeat_seconds / 4 if poll is None else poll
        while True:
            for line in self.requeue_stale():
                if report:
                    report(line)
            if until is not None and until():
                return True
            counts = self.counts()
            if until is not None:
                if not counts["running"]:
                    return False
                time.sleep(poll)
                continue
            if counts["waiting"]:
                return True
            if not counts["running"]:
                return False
            time.sleep(poll)

    def _retried(self) -> set[int]:
        """Numbers of the trials a retry was queued for."""
        return {int(t.user_attrs["retry_of"]) for t in self.trials() if t.user_attrs.get("retry_of") is not None}

    def _requeue(self, t: FrozenTrial | Trial, folder: str | None, retried: set[int] | None = None) -> None:
        """Queue a retry of ``t`` with its params and folder, unless one is queued already (a kill
        between :meth:`release`'s re-queue and its FAIL leaves a RUNNING trial that has one)."""
        retried = self._retried() if retried is None else retried
        if t.number in retried:
            return
        if folder:  # fence the folder now: the old attempt, if it still runs somewhere, may no longer write
            try:
                claim_folder(folder, "requeued-" + new_token())
            except OSError:
                pass  # the folder is unreachable from here; the retry's claim fences it
        attrs = {"retry_of": t.number, "resume_dir": folder, "baseline": t.user_attrs.get("baseline"),
                 PRETRAIN_ATTR: t.user_attrs.get(PRETRAIN_ATTR)}
        self.study.enqueue_trial(dict(t.params), user_attrs={k: v for k, v in attrs.items() if v is not None})
        retried.add(t.number)

    def release(self, claim: Claim, reason: str = "interrupted") -> None:
        """Give a claimed trial back: FAIL it as interrupted and re-queue its params and folder."""
        if self._heartbeat is not None:
            self._heartbeat.remove(claim.trial._trial_id)
        t = claim.trial
        self._requeue(t, str(claim.workdir))
        t.set_user_attr("status", "interrupted")
        t.set_user_attr("reason", reason)
        self.study.tell(t, state=TrialState.FAIL)

    def abandon(self, claim: Claim) -> None:
        """Stop beating for a claim whose folder a newer attempt owns (it was re-queued); tell nothing."""
        if self._heartbeat is not None:
            self._heartbeat.remove(claim.trial._trial_id)

    def _is_stale(self, t: FrozenTrial) -> bool:
        owner = str(t.user_attrs.get("owner", ""))
        host, _, pid = owner.rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
            return True
        beat = t.user_attrs.get("heartbeat")
        if beat is None:  # just claimed by someone: judge by its start time
            start = t.datetime_start.timestamp() if t.datetime_start else time.time()
            return time.time() - start > self.stale_after
        return time.time() - float(beat) > self.stale_after

    # -------------------------------------------------------------- claims
    def claim(self) -> Claim | None:
        """The next feasible trial to train, or ``None`` when no slot is left."""
        tries = 0
        while tries < MAX_INFEASIBLE_IN_A_ROW:
            gate = self._pretrain_gate()
            if gate is not None and gate.kind == "running":
                return None  # the dense trial trains elsewhere: see gated()
            trial = self._pop_slot(only_pretrain=gate is not None)
            if trial is None:
                return None
            try:
                claim = self._prepare(trial)
            except optuna.exceptions.UpdateFinishedTrialError:
                # This process stalled (frozen, cut off) mid-claim and another one judged the trial
                # stale, failed and re-queued it: that retry is someone else's now.
                continue
            if claim is not None:
                return claim
            tries += 1
        raise ValueError(
            f"{MAX_INFEASIBLE_IN_A_ROW} sampled configurations in a row violate the constraints "
            f"{[c.__dict__ for c in self.space.constraints]} or repeat a plan already trained, running or "
            "queued; loosen the constraints, widen the space or lower --trials"
        )

    def _pretrain_gate(self) -> PretrainState | None:
        """``None`` when trials may be claimed freely; else the dense trial's state (``waiting``: claim it,
        ``running``: wait). A dense trial with no attempt left raises ``ValueError``."""
        if not wants_pretraining(self.space):
            return None
        state = pretrain_state(self.trials())
        if state.kind == "done":
            self._checkpoint = state.checkpoint
            return None
        if state.kind == "failed":
            raise ValueError(f"the dense pretraining trial {state.number} of study {self.name} failed ({state.reason}); "
                             f"fix the cause, then 'stsearch resume {self.name}' trains it again first")
        return state

    def gated(self) -> bool:
        """Whether claims wait for the dense trial of a warm-start study, which another process trains."""
        gate = self._pretrain_gate()
        return gate is not None and gate.kind == "running"

    def _prepare(self, trial: Trial) -> Claim | None:
        """Sample and decode a popped slot: its :class:`Claim`, or ``None`` when it was told as infeasible
        or as a duplicate (a replacement slot is queued)."""
        storage = self.study._storage  # noqa: SLF001
        dense = bool(trial.user_attrs.get(PRETRAIN_ATTR))
        params = {} if dense else self.space.suggest(trial)
        plan = NetworkPlan(model=self.space.model) if dense else self.space.plan_from_params(params)
        analytic = self.space.analytic_metrics(plan)
        is_baseline = bool(trial.user_attrs.get("baseline"))
        if not is_baseline and not self.space.is_feasible(analytic):
            self._tell_infeasible(trial, plan, analytic)
            return None
        workdir = Path(trial.user_attrs.get("resume_dir") or self.folder / "trials" / f"{trial.number:05d}")
        storage.set_trial_user_attr(trial._trial_id, "artifact_dir", str(workdir))
        storage.set_trial_user_attr(trial._trial_id, "plan", plan.to_dict())
        storage.set_trial_user_attr(trial._trial_id, "family", plan_family(plan))
        if not is_baseline and trial.user_attrs.get("retry_of") is None:
            twin = self._twin_of(trial, plan)
            if twin is not None:
                self._tell_duplicate(trial, twin)
                return None
        spec = TrialSpec(
            model=self.space.model, dataset=self.space.dataset, data_dir=self.space.data_dir,
            model_kwargs=dict(self.space.model_kwargs), plan=plan.to_dict(),
            train=pretrain_train_config(self.space) if dense else dict(self.space.train),
            plugins=list(self.space.plugins), python_path=list(self.space.python_path),
            transforms=self.space.transforms, **_data_fields(self.space),
            **({"trainer": self.space.trainer} if dense and self.space.trainer else
               {} if dense else _training_fields(self.space, getattr(self, "_checkpoint", None))),
        )
        attempt = new_token()  # fences the folder: an older attempt of this trial may no longer write
        storage.set_trial_user_attr(trial._trial_id, "attempt", attempt)
        claim_folder(workdir, attempt)
        if storage.get_trial(trial._trial_id).state.is_finished():  # re-queued in between: the retry fences anew
            raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial.number} was finished by another process")
        claim = Claim(trial=trial, spec=spec, workdir=workdir, analytic=analytic, attempt=attempt,
                      stale_after=self.stale_after)
        if self._heartbeat is not None:
            self._heartbeat.add(trial._trial_id, workdir, attempt)
        return claim

    def _pop_slot(self, only_pretrain: bool = False) -> Trial | None:
        storage = self.study._storage  # noqa: SLF001
        study_id = self.study._study_id  # noqa: SLF001
        for frozen in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
            if only_pretrain and not frozen.user_attrs.get(PRETRAIN_ATTR):
                continue
            try:
                if not storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                    continue
                # Owner first: the sampler may take a while (screening) and a kill in between
                # must leave a trial that resume recognises as this dead process's.
                storage.set_trial_user_attr(frozen._trial_id, "heartbeat", time.time())
                storage.set_trial_user_attr(frozen._trial_id, "owner", self.owner)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # taken, or judged stale and failed by another process in between
            self.study._thread_local.cached_all_trials = None  # noqa: SLF001
            return Trial(self.study, frozen._trial_id)  # the sampler's before_trial runs here
        return None

    def _twin_of(self, trial: Trial, plan: Any) -> int | None:
        """The number of a trial whose plan is ``plan`` and that keeps it before ``trial``: one completed
        or pruned, one queued with fixed params (a baseline, a retry), or one running. ``trial``'s plan is
        in the storage before this reads, so of two concurrent claims of one plan at least one sees the
        other and gives way (both may: then neither trains it, and both slots are replaced)."""
        key = _plan_key(plan.to_dict())
        for t in self.trials():
            if t.number == trial.number:
                continue
            fixed = t.system_attrs.get("fixed_params")
            if t.state == TrialState.WAITING:
                try:
                    queued = _plan_key(self.space.plan_from_params(fixed).to_dict()) if fixed else None
                except (ValueError, KeyError):  # params of another space version: not this plan
                    queued = None
                if queued == key:
                    return t.number
                continue
            if t.user_attrs.get("plan") is None or _plan_key(t.user_attrs["plan"]) != key:
                continue
            status = t.user_attrs.get("status")
            if t.state.is_finished() and status in ("completed", "pruned"):
                return t.number
            if t.state == TrialState.RUNNING:
                return t.number
        return None

    def _tell_duplicate(self, trial: Trial, twin: int) -> None:
        """Give up a claim whose plan trial ``twin`` trains: FAIL it as ``duplicate`` (not trained, not
        counted) and queue a new slot in its place."""
        self.study.enqueue_trial({})  # replacement first, as for an infeasible configuration
        trial.set_user_attr("status", "duplicate")
        trial.set_user_attr("reason", f"the plan of trial {twin}")
        self.study.tell(trial, state=TrialState.FAIL)

    def _tell_infeasible(self, trial: Trial, plan: Any, analytic: Mapping[str, Any]) -> None:
        self.study.enqueue_trial({})  # replacement slot first: a kill in between leaves a surplus, not a gap
        attrs = {**analytic, "status": "infeasible", "plan": plan.to_dict(), "family": plan_family(plan),
                 "full_budget": False, "constraints": self.space.constraint_values(analytic)}
        for key, value in attrs.items():
            trial.set_user_attr(key, jsonable(value))
        values = [self._value(o, analytic, infeasible=True) for o in self.space.objectives]
        self.study.tell(trial, values)

    # -------------------------------------------------------------- finish
    def finish(self, claim: Claim, metrics: Mapping[str, Any] | None, *, error: str | None = None) -> FrozenTrial:
        """Tell the study how a claimed trial ended."""
        if self._heartbeat is not None:
            self._heartbeat.remove(claim.trial._trial_id)
        if metrics is None:
            metrics = {"status": "failed", "reason": error or "the trial raised an error", "full_budget": False}
        metrics = {**claim.analytic, **dict(metrics)}
        try:
            return self._tell(claim.trial, metrics)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another process judged this trial stale and re-queued it; its retry will report.
            warnings.warn(f"trial {claim.number} was already finished by another process; result not recorded", stacklevel=2)
            return self.study._storage.get_trial(claim.trial._trial_id)  # noqa: SLF001

    def _tell(self, trial: Trial, metrics: dict[str, Any]) -> FrozenTrial:
        status = metrics.get("status", "failed")
        if status == "completed" and metrics.get("trainer"):  # a user trainer must return each measured objective
            missing = [o.name for o in self.space.objectives if o.name == "accuracy" and metrics.get("val_acc") is None]
            if missing:
                got = sorted(metrics.get("trainer_metrics") or {})
                metrics = {**metrics, "status": "failed", "reason": (
                    f"trainer {metrics['trainer']} returned no {missing[0]!r} (nor 'val_acc'); it returned keys {got}: "
                    f"return a dict with {missing[0]!r}")}
                status = "failed"
        for key in SCALAR_ATTRS:
            if key in metrics:
                trial.set_user_attr(key, jsonable(metrics[key]))
        if metrics.get("history") is not None:
            trial.set_user_attr("history", jsonable(metrics["history"]))
        for o in self.space.objectives:  # a user metric's value, where the frame and the front read it
            key = get_metric(o.name).key
            if key not in SCALAR_ATTRS and (value := (metrics.get("trainer_metrics") or {}).get(key)) is not None:
                trial.set_user_attr(key, jsonable(value))
        trial.set_user_attr("constraints", self.space.constraint_values(metrics))
        if status == "failed":
            frozen = self.study.tell(trial, state=TrialState.FAIL)
        elif status == "pruned":
            frozen = self.study.tell(trial, state=TrialState.PRUNED)
        else:
            frozen = self.study.tell(trial, [self._value(o, metrics) for o in self.space.objectives])
        return frozen

    def _value(self, objective: Any, metrics: Mapping[str, Any], *, infeasible: bool = False) -> float:
        key = get_metric(objective.name).key
        value = metrics.get(key)
        if value is None:  # a metric the user's trainer returned (stsearch.metrics.register_metric)
            value = (metrics.get("trainer_metrics") or {}).get(key)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            # Not measured (an infeasible configuration, or no latency): the worst value of its direction.
            return 0.0 if objective.direction == "maximize" else float("inf")
        if infeasible and objective.name == "accuracy":
            return 0.0
        return float(value)

    # ----------------------------------------------------------- heartbeat
    def start_heartbeat(self) -> None:
        """Refresh the ``heartbeat`` attr of this process's running trials every :attr:`heartbeat_seconds`."""
        if self._heartbeat is None:
            self._heartbeat = _Heartbeat(self.study, self.heartbeat_seconds)
            self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None


def _training_fields(space: Any, checkpoint: str | None = None) -> dict[str, Any]:
    """The trial fields of the space's ``trainer`` / ``pretrained`` / ``init`` keys (absent: defaults);
    ``checkpoint``: the dense trial's weights, for ``pretrained: train``."""
    out: dict[str, Any] = {}
    if getattr(space, "trainer", None):
        out["trainer"] = space.trainer
    pretrained = checkpoint if wants_pretraining(space) else getattr(space, "pretrained", None)
    if pretrained:
        out["pretrained"] = pretrained
        out["init"] = getattr(space, "init", None) or "random"
    return out


def _data_fields(space: Any) -> dict[str, Any]:
    """``num_classes`` / ``input_shape`` of the space's dataset, recorded in each trial (loading needs no data)."""
    meta = getattr(space, "data_meta", None)
    return {} if meta is None else {"num_classes": int(meta[0]), "input_shape": [int(v) for v in meta[1]]}


class _Heartbeat(threading.Thread):
    def __init__(self, study: optuna.Study, interval: float) -> None:
        super().__init__(daemon=True, name="stsearch-heartbeat")
        self.interval = interval
        self.storage = study._storage  # noqa: SLF001
        self.ids: dict[int, tuple[Path | None, str]] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()

    def add(self, trial_id: int, folder: Path | None = None, attempt: str = "") -> None:
        with self.lock:
            self.ids[trial_id] = (folder, attempt)

    def remove(self, trial_id: int) -> None:
        with self.lock:
            self.ids.pop(trial_id, None)

    def run(self) -> None:
        while not self.done.wait(self.interval):
            with self.lock:
                ids = dict(self.ids)
            for trial_id, (folder, attempt) in ids.items():
                if folder is not None:  # the attempt's writer (a Ray actor, say) sees this controller alive
                    touch(folder, attempt)
                try:
                    self.storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
                except Exception:  # a finished trial, a transient DB error: the next beat retries
                    pass

    def stop(self) -> None:
        self.done.set()


def _check_some_feasible(space: Any, draws: int = 2000) -> None:
    """Raise ``ValueError`` when none of ``draws`` random configurations of ``space`` meets its constraints.

    Compression, parameters and MACs are exact before training, so a space whose constraints
    exclude (nearly) every configuration is refused before a study is created for it.
    """
    if not space.constraints:
        return
    import numpy as np

    from ..space.screening import sample_params

    rng = np.random.default_rng(0)
    for _ in range(draws):
        _, plan = sample_params(space, rng)
        if space.is_feasible(space.analytic_metrics(plan)):
            return
    raise ValueError(
        f"none of {draws} random configurations of the space meets the constraints "
        f"{[c.__dict__ for c in space.constraints]}; loosen the constraints or widen the space (families, ranks, t)"
    )


def _plan_key(plan: Mapping[str, Any]) -> str:
    """A plan's identity: its JSON with sorted keys."""
    import json

    return json.dumps(jsonable(plan), sort_keys=True)


