"""The search controller: studies and their bookkeeping, Ray Tune and worker dispatch, progress.

Submodules load on first use: reading a study (``stsearch.search.study``) imports no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SearchRun", "Claim", "constraints_func", "default_storage_url", "open_storage", "StudyView"]

_WHERE = {"SearchRun": "run", "Claim": "run", "constraints_func": "run", "default_storage_url": "storage",
          "open_storage": "storage", "StudyView": "study"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
