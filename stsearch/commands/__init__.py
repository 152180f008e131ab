"""Sub-commands of the ``stsearch`` CLI (each module registers its own in :mod:`.registry`).

Command modules import only argparse and the registry at load time; each command imports what it
needs when it runs, so ``stsearch --help`` and the commands that only read a study stay light.
"""

from __future__ import annotations

import importlib

MODULES = ("export", "layers", "results", "search", "sensitivity", "summary", "train")


def load_all() -> None:
    """Import every command module (each registers its commands)."""
    for name in MODULES:
        importlib.import_module(f".{name}", __name__)
