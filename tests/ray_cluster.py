"""A throw-away Ray cluster on this machine for the tests: a head and worker nodes started with
``ray start --block`` in sessions of their own, each stopped by its process group (never
``ray stop --force``, which would stop every Ray process of the machine).

Authentication stays Ray's default: a node started where a token is available runs with token
authentication. Each node may get its own home folder, so that a token reaches it only the way
it would reach another machine (``RAY_AUTH_TOKEN``), never by a shared ``~/.ray/auth_token``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert port != 6379
    return port


def generate_token(home: Path, env: dict[str, str]) -> str:
    """``ray get-auth-token --generate`` under ``home``: the token it wrote to ``home/.ray/auth_token``."""
    home.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([RAY, "get-auth-token", "--generate"], env={**env, "HOME": str(home)}, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return (home / ".ray" / "auth_token").read_text().strip()


def cluster_cpus(port: int, env: dict[str, str]) -> float:
    """Total CPUs of the cluster at ``port`` (``ray status``), 0 when it does not answer."""
    out = subprocess.run([RAY, "status", f"--address=127.0.0.1:{port}"], env=env, capture_output=True, text=True,
                         timeout=60)
    found = re.search(r"[\d.]+/([\d.]+) CPU", out.stdout)
    return float(found.group(1)) if found else 0.0


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.5 s until it holds; ``TimeoutError`` naming ``what`` after ``timeout`` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


class Cluster:
    """The nodes of a running test cluster (``procs[0]`` is the head)."""

    def __init__(self, port: int, env: dict[str, str], log_dir: Path, client_env: dict[str, str]) -> None:
        self.port = port
        self.env = env
        self.client_env = {**env, **client_env}  # what `ray status` runs under
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.cpus = 0.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add_node(self, cpus: int, node_env: dict[str, str], *, head: bool = False) -> subprocess.Popen:
        """Start a node with ``cpus`` CPUs under ``node_env`` (added to the cluster's env); wait until it joined."""
        where = ["--head", f"--port={self.port}", "--include-dashboard=false"] if head else [f"--address={self.address}"]
        log = (self.log_dir / f"node{len(self.procs)}.log").open("w")
        proc = subprocess.Popen([RAY, "start", *where, f"--num-cpus={cpus}", "--block", "--disable-usage-stats"],
                                env={**self.env, **node_env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        target = self.cpus + cpus
        wait_for(lambda: proc.poll() is None and cluster_cpus(self.port, self.client_env) == target, 120,
              f"node {len(self.procs) - 1} to join (log: {log.name})")
        self.cpus = target
        return proc

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` and everything it runs."""
        try:
            os.killpg(self.procs[index].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """Stop every node by its process group: SIGTERM (Ray's own clean-up), SIGKILL after 30 s."""
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever outlived its node
            except ProcessLookupError:
                pass


@contextmanager
def ray_cluster(env: dict[str, str], log_dir: Path, *, head_cpus: int, head_env: dict[str, str],
                client_env: dict[str, str]) -> Iterator[Cluster]:
    """A head node (``head_env`` added to ``env``), stopped with every node added to it on exit;
    ``client_env`` (added to ``env``) is how ``ray status`` reaches the cluster."""
    cluster = Cluster(free_port(), env, log_dir, client_env)
    try:
        cluster.add_node(head_cpus, head_env, head=True)
        yield cluster
    finally:
        cluster.stop()
