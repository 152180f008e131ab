"""Facts about the machine a benchmark runs on, for the headers of its reports."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["available_cores", "cpu_model", "load_average", "report_header", "sync", "versions"]


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """The 1/5/15-minute load averages as ``a/b/c``."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not available
        return "n/a"


def versions() -> str:
    """Python, torch, optuna and ray versions (``not installed`` for a missing one)."""
    import importlib

    import torch

    def version(name: str) -> str:
        try:
            return importlib.import_module(name).__version__
        except ImportError:
            return "not installed"

    return f"python {platform.python_version()}, torch {torch.__version__}, optuna {version('optuna')}, ray {version('ray')}"


def sync(device: "torch.device") -> None:
    """Wait for the device's queued work (a no-op off CUDA), so that wall-clock timings are whole."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def report_header(title: str, command: str) -> list[str]:
    """First lines of a Markdown report: its title and the command that made it."""
    return [f"# {title}", "", "Command:", "", "```bash", command, "```", ""]
