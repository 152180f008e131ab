"""Connecting this process (the driver) to a Ray cluster, token authentication included.

Ray turns token authentication on for a cluster whose head finds a token when it starts
(``ray get-auth-token --generate`` writes one to ``~/.ray/auth_token``; a local ``ray.init()``
writes one too), but a driver that connects to an explicit ``--address`` does not turn it on
by itself, so it is refused with ``InvalidAuthToken``. When ``RAY_AUTH_MODE`` is unset and a
token is available (``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names, or
``~/.ray/auth_token``), :func:`prepare_auth` asks the cluster whether it needs one and matches
it. :func:`connect` turns a failed connection into one ``ValueError`` line that names the
address and the fix.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["token_source", "prepare_auth", "connect", "AUTH_FIX"]

AUTH_FIX = ("give this process the head's token: 'export RAY_AUTH_TOKEN=...' (what 'ray get-auth-token' prints "
            "on the head) or 'export RAY_AUTH_TOKEN_PATH=FILE'; nodes joining the cluster need "
            "RAY_AUTH_MODE=token and the same token (see the README, 'On a Ray cluster')")


def token_source(environ: "os._Environ[str] | dict[str, str] | None" = None) -> str | None:
    """Where a Ray authentication token is available to this process, or ``None``: the variable
    ``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``."""
    env = os.environ if environ is None else environ
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    named = env.get("RAY_AUTH_TOKEN_PATH")
    if named:
        return f"RAY_AUTH_TOKEN_PATH={named}" if Path(named).expanduser().is_file() else None
    default = Path(env.get("HOME") or Path.home()) / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def _set_mode(mode: str) -> None:
    """Set ``RAY_AUTH_MODE`` for this process and the Ray config it already read (as Ray does for ``auto``)."""
    os.environ["RAY_AUTH_MODE"] = mode
    if "ray._raylet" in sys.modules:
        from ray._raylet import Config

        Config.initialize("")


def _refuses(address: str) -> bool:
    """Whether the cluster's GCS at ``address`` refuses this process's authentication (one quick call)."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        with tempfile.TemporaryFile() as log, _stderr_to(log):  # the core's retry warnings: not for the user
            GcsClient(address=address).internal_kv_get(b"stsearch-auth-probe", None, timeout=10)
    except AuthenticationError:
        return True
    except Exception:  # noqa: BLE001  (not an authentication answer: ray.init reports it)
        return False
    return False


def prepare_auth(address: str) -> str | None:
    """Match the authentication of the cluster at ``address`` when ``RAY_AUTH_MODE`` is unset and a token
    is available: token mode if the cluster refuses a connection without one (a driver in token mode
    cannot run tasks on a cluster without authentication, so it is not turned on blindly). Returns the
    token's source when token mode is on, else ``None``."""
    mode = os.environ.get("RAY_AUTH_MODE")
    source = token_source()
    if mode is None and source is not None:
        _set_mode("disabled")
        if not _refuses(address):
            return None
        _set_mode("token")
        return source
    return source if (mode or "").lower() == "token" else None


def _reachable(address: str, timeout: float = 5.0) -> bool:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return True  # not host:port (ray://..., auto): let Ray judge it
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def _stderr_to(sink: IO[bytes]) -> Iterator[None]:
    """Send file descriptor 2 (Ray's C++ core writes its retries there) to ``sink`` for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _refused(address: str, source: str | None) -> ValueError:
    """The one-line error for a cluster that refused this process's authentication."""
    how = f"with the token from {source}" if source else "without a token"
    return ValueError(f"the Ray cluster at {address} refused this process's authentication (it tried {how}); "
                      f"{AUTH_FIX}")


def connect(address: str, **init_kwargs: object) -> None:
    """``ray.init(address=address, ...)``, authenticated as :func:`prepare_auth` says; a failure is one
    ``ValueError`` line naming the address and the fix."""
    if not _reachable(address):
        raise ValueError(f"no Ray cluster answers at {address}: nothing listens there; start one with "
                         f"'ray start --head --port=PORT' and pass --address HOST:PORT (check with "
                         f"'ray status --address {address}')")
    source = prepare_auth(address)
    import ray

    if _refuses(address):
        raise _refused(address, source)
    with tempfile.TemporaryFile() as log:
        try:
            with _stderr_to(log):
                ray.init(address=address, **init_kwargs)
        except (ConnectionError, RuntimeError, ray.exceptions.AuthenticationError) as err:
            log.seek(0)
            said = log.read().decode("utf-8", "replace")
            if "InvalidAuthToken" in said or "uthenticat" in str(err):
                raise _refused(address, source) from None
            last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            raise ValueError(f"could not connect to the Ray cluster at {address} ({last}); check the address "
                             f"with 'ray status --address {address}'; if the cluster uses token authentication, "
                             f"{AUTH_FIX}") from None
        log.seek(0)
        sys.stderr.write(log.read().decode("utf-8", "replace"))  # a connection's warnings stay visible
