"""Optuna storages by URL, with a per-study default under ``results/<study>/``.

* ``None``: SQLite at ``results/<study>/study.db``.
* ``sqlite:///path.db``, ``postgresql://...``, ``mysql://...``: Optuna ``RDBStorage``.
* ``journal:PATH`` (or a path ending in ``.log``): ``JournalStorage`` on a file (NFS-safe locks).
* ``redis://host:port/db``: ``JournalStorage`` on Redis.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage

__all__ = ["default_storage_url", "open_storage", "describe_storage", "check_study_name", "sqlite_file", "make_folder",
           "os_error_reason"]

RDB_PREFIXES = ("sqlite:", "postgresql", "postgres:", "mysql", "oracle", "mssql")


_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_study_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` can name a study and its folder ``results/<name>/``."""
    if not isinstance(name, str) or not _STUDY_NAME.fullmatch(name):
        raise ValueError(f"study name {name!r} is not allowed: use letters, digits, '.', '_' and '-', starting with "
                         "a letter or digit (no '/'), e.g. --name resnet32-stt")


def sqlite_file(url: str | None) -> Path | None:
    """The file of a ``sqlite:///PATH[?query]`` URL (``None`` for other URLs and in-memory SQLite)."""
    if not url or not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path not in ("", ":memory:") else None


def default_storage_url(results_dir: str | Path, name: str) -> str:
    """SQLite file of study ``name`` under ``results_dir``."""
    path = Path(results_dir).resolve() / name / "study.db"
    make_folder(path.parent, "the study folder under --results-dir", probe=False)
    return f"sqlite:///{path}"


def open_storage(url: str) -> BaseStorage:
    """The Optuna storage behind ``url`` (see the module docstring for the forms)."""
    if url.startswith("journal:") or url.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:").removeprefix("//"))
        make_folder(path.parent, f"the folder of storage {url}")
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise ValueError(f"cannot open storage {url}: {os_error_reason(err, path)}; "
                             "give a journal file this user can write") from None
    if url.startswith("redis://"):
        from optuna.storages.journal import JournalRedisBackend

        try:
            with warnings.catch_warnings():  # experimental in Optuna, and documented here as supported
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return JournalStorage(JournalRedisBackend(url))
        except ImportError as err:
            raise ValueError(f"storage {_redact(url)} needs the redis package ({err}); pip install redis") from None
        except Exception as err:  # redis.exceptions.ConnectionError, AuthenticationError, ResponseError...
            raise _unreachable(url, err) from None
    if url.startswith(RDB_PREFIXES):
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        kwargs = {"pool_pre_ping": True} if not url.startswith("sqlite") else {"connect_args": {"timeout": 60}}
        try:
            store = RDBStorage(url, engine_kwargs=kwargs)
        except (ImportError, ModuleNotFoundError) as err:
            hint = ("pip install 'stsearch[postgres]'" if url.startswith("postgres") else
                    "e.g. pip install pymysql and a mysql+pymysql:// URL" if url.startswith("mysql") else
                    "pip install the SQLAlchemy driver of this database")
            raise ValueError(f"storage {_redact(url)} needs a database driver ({err}); {hint}") from None
        except Exception as err:  # sqlalchemy.exc.OperationalError and friends
            raise _unreachable(url, err) from None
        if url.startswith("sqlite"):
            _report_corruption(store, url)
        else:
            _report_lost_connection(store, url)
        return store
    raise ValueError(
        f"unsupported storage URL {url!r}; use sqlite:///file.db, postgresql://user@host/db, "
        "mysql://..., journal:/path/file.log or redis://host:port/db"
    )


def _unreachable(url: str, err: BaseException) -> ValueError:
    first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
    return ValueError(f"cannot open storage {_redact(url)}: {first}; check the URL and that the server is reachable")


def _report_corruption(store: RDBStorage, url: str) -> None:
    """Make a damaged SQLite file (a page overwritten, "database disk image is malformed") a one-line
    ``ValueError`` naming the file wherever a query meets it, instead of Optuna's StorageInternalError."""
    import sqlite3

    from sqlalchemy import event

    def handle_error(context: Any) -> None:
        # exactly sqlite3.DatabaseError: its subclasses (IntegrityError, OperationalError: locked...) are Optuna's
        if type(context.original_exception) is sqlite3.DatabaseError:
            raise ValueError(f"storage {url} is damaged ({context.original_exception}); restore the file from a "
                             f"backup, or try 'sqlite3 {sqlite_file(url)} .recover' into a new file") from None

    event.listen(store.engine, "handle_error", handle_error)


def _report_lost_connection(store: RDBStorage, url: str) -> None:
    """Make a database server that goes away mid-command (restarted, network cut, connection killed) a
    one-line ``ValueError`` naming the storage, instead of SQLAlchemy's OperationalError traceback."""
    from sqlalchemy import event, exc

    def handle_error(context: Any) -> None:
        err = context.original_exception
        if getattr(context, "is_pre_ping", False):  # a stale pooled connection: SQLAlchemy reconnects by itself
            return
        if context.is_disconnect or isinstance(context.sqlalchemy_exception, exc.OperationalError):
            first = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(".")
            raise ValueError(f"lost the connection to storage {_redact(url)} ({first}); check that the server is "
                             f"up and reachable, then rerun: finished trials are kept, and a trial that was "
                             f"running is re-queued by the next worker or 'stsearch resume'") from None

    event.listen(store.engine, "handle_error", handle_error)


def make_folder(path: str | Path, what: str, *, probe: bool = True) -> Path:
    """Create folder ``path`` (and its parents) and, with ``probe``, check that a file can be written
    in it; a one-line ``ValueError`` naming ``what`` and ``path`` when it is a file, lies under a file,
    or cannot be written (read-only, immutable, no permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if probe:
            test = path / f".stsearch-probe-{os.getpid()}"
            test.touch()
            test.unlink()
    except OSError as err:
        raise ValueError(f"cannot write {what} {path}: {os_error_reason(err, path)}; "
                         "give a folder this user can write") from None
    return path


def os_error_reason(err: OSError, about: str | Path | None = None) -> str:
    """``err`` in a few words, e.g. "/a is a file, not a folder" or "permission denied"; the file it
    names is added unless it is ``about`` (the path the message already names)."""
    if isinstance(err, (FileExistsError, NotADirectoryError)) and err.filename:
        path = Path(err.filename)
        blocker = next((p for p in [*reversed(path.parents), path] if p.exists() and not p.is_dir()), path)
        return f"{blocker} is a file, not a folder"
    reason = (err.strerror or type(err).__name__).lower()
    return f"{reason} ({err.filename})" if err.filename and str(err.filename) != str(about) else reason


def describe_storage(url: str) -> str:
    """``url`` with any password hidden."""
    return _redact(url)


def _redact(url: str) -> str:
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in cred else url
    return url


def study_exists(storage: BaseStorage, name: str) -> bool:
    """Whether ``storage`` holds a study called ``name``."""
    return any(s.study_name == name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
