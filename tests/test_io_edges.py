"""Every I/O edge fails in one line: damaged or unreachable storages, unusable output paths, malformed
trial files and spaces; failed exports and cut-short creations leave nothing behind; a constrained best
is a point of the front.

Real studies, real CLI calls (``stsearch.cli.main`` or a subprocess), real SQLite, Redis and PostgreSQL
(skipped with a reason when a server is not reachable).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from stsearch.cli import main
from stsearch.results.frame import trials_frame
from stsearch.results.pareto import best_at_constraint, pareto_front
from stsearch.search.local import run_local
from stsearch.search.run import SearchRun
from stsearch.space import load_space

from .test_export import SPACE
from .test_results import OBJ2, add, new_study
from .test_search import _env, _postgres_url

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> SearchRun:
    """A finished two-trial study (resnet8 on digits, one epoch per trial)."""
    root = tmp_path_factory.mktemp("io")
    (root / "tiny.yaml").write_text(SPACE.replace("trials: 3", "trials: 2"))
    run = SearchRun.create(load_space(str(root / "tiny.yaml")), results_dir=root / "results")
    run_local(run)
    return run


def _one_error(capsys, *argv: str) -> str:
    """Run ``stsearch ARGV``: exit code 2 and a single ``stsearch: error:`` line; returns it."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("stsearch: error: "), (code, err[-3000:])
    return lines[0]


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("x")
    return path


# ---------------------------------------------------------------- the constrained best is on the front
def test_best_at_a_compression_floor_with_tied_accuracies_is_the_front_point() -> None:
    """Trials 1 and 2 tie in accuracy; 2 compresses more, so 1 is dominated: 2 is the answer of
    ``pareto --min-cf`` and ``export --min-cf`` alike."""
    from stsearch.export.selection import _by_rule

    study = new_study(OBJ2)
    add(study, values=[0.98, 5.0], family="dense")
    add(study, values=[0.9694, 30.17], family="tt")
    add(study, values=[0.9694, 34.5], family="tt")
    add(study, values=[0.95, 60.0], family="stt")
    df = trials_frame(study)
    front = set(pareto_front(df)["number"])
    assert 1 not in front and 2 in front
    best = best_at_constraint(df, "accuracy", {"compression": (">=", 10)})
    assert int(best["number"]) == 2
    assert _by_rule(study, knee=False, min_cf=10.0).number == 2
    add(study, values=[0.9694, 34.5], family="tt")  # an exact twin of 2: the lower number still wins
    assert int(best_at_constraint(trials_frame(study), "accuracy", {"compression": (">=", 10)})["number"]) == 2


# ---------------------------------------------------------------- storages
def _study_file(tmp_path: Path, name: str = "db") -> tuple[Path, Path]:
    """A study with queued trials (nothing trained) in its default SQLite file: (results, study.db)."""
    (tmp_path / "tiny.yaml").write_text(SPACE)
    results = tmp_path / "results"
    SearchRun.create(load_space(str(tmp_path / "tiny.yaml")), name=name, results_dir=results, trials=40)
    return results, results / name / "study.db"


def _overwrite_page(db: Path, table: str) -> None:
    """Overwrite the root page of ``table`` in SQLite file ``db`` with random bytes."""
    with sqlite3.connect(db) as con:
        root = con.execute("select rootpage from sqlite_master where name = ?", (table,)).fetchone()[0]
        size = con.execute("pragma page_size").fetchone()[0]
    con.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(random.Random(16).randbytes(size))


@pytest.mark.parametrize("command", ["status", "pareto"])
def test_a_damaged_page_of_study_db_is_one_line_naming_the_file(command, tmp_path, capsys):
    results, db = _study_file(tmp_path)
    _overwrite_page(db, "trials")
    before = sorted(p.name for p in db.parent.iterdir())
    msg = _one_error(capsys, command, "db", "--results-dir", str(results))
    assert str(db) in msg and "damaged" in msg and "backup" in msg
    assert sorted(p.name for p in db.parent.iterdir()) == before  # nothing created (no pareto.csv)


@pytest.mark.skipif(importlib.util.find_spec("redis") is None, reason="the redis package is not installed")
def test_an_unreachable_redis_is_one_line_naming_the_url(tmp_path, capsys):
    msg = _one_error(capsys, "status", "x", "--storage", "redis://127.0.0.1:1/0", "--results-dir", str(tmp_path))
    assert "redis://127.0.0.1:1/0" in msg and "reachable" in msg
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- output paths
def test_results_dir_that_is_a_file_or_lies_under_one(tmp_path, capsys):
    afile = _a_file(tmp_path)
    (tmp_path / "tiny.yaml").write_text(SPACE)
    space = str(tmp_path / "tiny.yaml")
    for results in (afile, afile / "sub"):
        msg = _one_error(capsys, "search", "--space", space, "--dispatch", "none", "--results-dir", str(results))
        assert f"{afile} is a file, not a folder" in msg and "--results-dir" in msg
    assert afile.read_text() == "x" and sorted(tmp_path.iterdir()) == [afile, tmp_path / "tiny.yaml"]


def test_csv_and_out_under_a_file(trained, tmp_path, capsys):
    afile = _a_file(tmp_path)
    results = str(trained.results_dir)
    msg = _one_error(capsys, "pareto", trained.name, "--results-dir", results, "--csv", str(afile / "front.csv"))
    assert "--csv" in msg and f"{afile} is a file" in msg
    msg = _one_error(capsys, "plot", trained.name, "--results-dir", results, "--out", str(afile / "plots"))
    assert "--out" in msg and f"{afile} is a file" in msg
    msg = _one_error(capsys, "export", trained.name, "--results-dir", results, "--out", str(afile / "model"))
    assert "--out" in msg and f"{afile} is a file" in msg
    assert afile.read_text() == "x" and list(tmp_path.iterdir()) == [afile]


@pytest.fixture
def immutable(tmp_path):
    """An empty folder nobody, root included, may write into (``chattr +i``)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                         capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE)")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_immutable_output_folders(trained, immutable, tmp_path, capsys):
    results = str(trained.results_dir)
    msg = _one_error(capsys, "pareto", trained.name, "--results-dir", results, "--csv", str(immutable / "f.csv"))
    assert "--csv" in msg and str(immutable) in msg and "operation not permitted" in msg
    msg = _one_error(capsys, "plot", trained.name, "--results-dir", results, "--out", str(immutable))
    assert "--out" in msg and str(immutable) in msg
    for out in (immutable / "m", immutable):
        msg = _one_error(capsys, "export", trained.name, "--results-dir", results, "--out", str(out))
        assert "--out" in msg and str(immutable) in msg and ".partial" not in msg
    (tmp_path / "tiny.yaml").write_text(SPACE)
    msg = _one_error(capsys, "search", "--space", str(tmp_path / "tiny.yaml"), "--dispatch", "none",
                     "--results-dir", str(immutable))
    assert str(immutable) in msg and "--results-dir" in msg
    assert not any(immutable.iterdir())


# ---------------------------------------------------------------- malformed files
@pytest.mark.parametrize("content,problem", [
    (b"[]", "an array"), (b"null", "null"), (b"{}", "lacks val_acc"),
    (b"\xff\xfe\x00binary", "not UTF-8"), (b'{"val_acc": 0.9,', "not JSON"),
])
def test_a_malformed_metrics_json_is_one_line_naming_the_file(trained, content, problem, tmp_path, capsys):
    number = max(t.number for t in trained.trials())
    metrics = Path(next(t for t in trained.trials() if t.number == number).user_attrs["artifact_dir"]) / "metrics.json"
    good = metrics.read_bytes()
    metrics.write_bytes(content)
    try:
        msg = _one_error(capsys, "export", trained.name, "--trial", str(number), "--results-dir",
                         str(trained.results_dir), "--out", str(tmp_path / "model"))
    finally:
        metrics.write_bytes(good)
    assert str(metrics) in msg and problem in msg and "delete it" in msg
    assert not any(tmp_path.iterdir())


def test_a_binary_space_file_is_one_line_naming_it(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_bytes(b"\xcf\x80\xff\x00" * 64)
    msg = _one_error(capsys, "search", "--space", str(space), "--dispatch", "none",
                     "--results-dir", str(tmp_path / "results"))
    assert str(space) in msg and "UTF-8" in msg
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------- half-done work
def test_a_failed_export_leaves_no_folder_and_keeps_an_earlier_export(trained, tmp_path, capsys, monkeypatch):
    import stsearch.export.card as card

    results = str(trained.results_dir)
    out = tmp_path / "new" / "model"

    def disk_full(*_args, **_kwargs):  # the card is written last: weights and program are already out
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "MODEL_CARD.md"))

    with monkeypatch.context() as patch:
        patch.setattr(card, "model_card", disk_full)
        msg = _one_error(capsys, "export", trained.name, "--results-dir", results, "--out", str(out))
    assert "no space left on device" in msg
    assert not any(tmp_path.iterdir())  # neither the folder nor the parent made for it

    assert main(["export", trained.name, "--results-dir", results, "--out", str(out)]) == 0
    first = (out / "export.json").read_text()
    with monkeypatch.context() as patch:
        patch.setattr(card, "model_card", disk_full)
        _one_error(capsys, "export", trained.name, "--results-dir", results, "--out", str(out))
    assert (out / "export.json").read_text() == first and (out / "MODEL_CARD.md").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]  # no .partial or .old folder
    assert main(["export", trained.name, "--results-dir", results, "--out", str(out)]) == 0  # replaced whole
    assert (out / "export.json").read_text() != first

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    msg = _one_error(capsys, "export", trained.name, "--results-dir", results, "--out", str(other))
    assert "holds other files" in msg and (other / "notes.txt").read_text() == "keep"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stsearch", *args]


def _kill_when(proc: subprocess.Popen, ready, after: float = 0.0, timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` ``after`` seconds once ``ready()`` holds (fail if it ends or times out first)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the creation never reached the point to kill it at"
        time.sleep(0.05)
    time.sleep(after)
    assert proc.poll() is None, "the creation finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_side_files_of_a_killed_sqlite_creation_are_removed_by_the_next_run(tmp_path):
    (tmp_path / "tiny.yaml").write_text(SPACE)
    results = tmp_path / "results"
    argv = ["search", "--space", str(tmp_path / "tiny.yaml"), "--name", "k", "--dispatch", "none",
            "--results-dir", str(results)]
    proc = subprocess.Popen(_cli(*argv, "--trials", "3000"), env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    folder = results / "k"
    _kill_when(proc, lambda: folder.is_dir() and any(p.name.endswith(".creating") for p in folder.iterdir()), 1.0)
    assert any(p.name.endswith(".creating") for p in folder.iterdir())
    assert not (folder / "study.db").exists()
    done = subprocess.run(_cli(*argv, "--trials", "2"), env=_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in folder.iterdir()) == ["study.db"]
    assert SearchRun.open("k", results_dir=results).target == 2


@pytest.mark.postgres
def test_a_killed_postgresql_creation_is_recreated_by_search_and_resume_says_so(tmp_path):
    url = _postgres_url() or pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432; set STSEARCH_TEST_POSTGRES")
    name = f"cut-{uuid.uuid4().hex[:8]}"
    (tmp_path / "tiny.yaml").write_text(SPACE)
    results = str(tmp_path / "results")
    argv = ["search", "--space", str(tmp_path / "tiny.yaml"), "--name", name, "--storage", url,
            "--dispatch", "none", "--results-dir", results]
    storage = optuna.storages.RDBStorage(url)

    def has_queued_trials() -> bool:
        try:
            return len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)) >= 5
        except KeyError:
            return False

    proc = subprocess.Popen(_cli(*argv, "--trials", "3000"), env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _kill_when(proc, has_queued_trials)
        assert "space" not in optuna.load_study(study_name=name, storage=storage).user_attrs
        resumed = subprocess.run(_cli("resume", name, "--storage", url, "--dispatch", "none", "--results-dir", results),
                                 env=_env(tmp_path), capture_output=True, text=True, timeout=300)
        lines = resumed.stderr.strip().splitlines()
        assert resumed.returncode == 2 and len(lines) == 1, resumed.stderr[-3000:]
        assert "never fully created" in lines[0] and f"'stsearch search --name {name} --storage {url}" in lines[0]
        done = subprocess.run(_cli(*argv, "--trials", "2"), env=_env(tmp_path), capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "never fully created" in done.stderr and "creating it again" in done.stderr
        run = SearchRun.open(name, storage=url, results_dir=results)
        assert run.target == 2 and [t.state for t in run.trials()] == [TrialState.WAITING] * 2
        again = subprocess.run(_cli(*argv, "--trials", "2"), env=_env(tmp_path), capture_output=True, text=True,
                               timeout=300)
        assert again.returncode == 2 and "already exists" in again.stderr and "stsearch resume" in again.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:
            pass


class _Proxy:
    """A TCP proxy to PostgreSQL that can be cut: the server 'goes away' for the client mid-session."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket
        import threading

        self.target, self.socks = target, []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        import socket

        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() that close() alone would leave listening
        except OSError:
            pass
        self.server.close()
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


@pytest.mark.postgres
def test_a_postgresql_server_lost_mid_session_is_one_line(tmp_path):
    url = _postgres_url() or pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432; set STSEARCH_TEST_POSTGRES")
    from urllib.parse import urlsplit

    import optuna

    from stsearch.search.storage import open_storage

    parts = urlsplit(url)
    proxy = _Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    via = url.replace(parts.netloc, f"{parts.username + '@' if parts.username else ''}127.0.0.1:{proxy.port}")
    store = open_storage(via)
    name = f"lost-{os.getpid()}"
    study = optuna.create_study(study_name=name, storage=store)
    study.enqueue_trial({})
    proxy.cut()  # the server restarts / the network goes
    with pytest.raises(ValueError, match=r"^lost the connection to storage postgresql://.*; check that the server is up"):
        study.get_trials()
    optuna.delete_study(study_name=name, storage=url)
