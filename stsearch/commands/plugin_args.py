"""The ``--plugin MODULE`` option shared by the commands that build a model."""

from __future__ import annotations

import argparse

__all__ = ["add_plugin_arg", "import_cli_plugins"]


def add_plugin_arg(p: argparse.ArgumentParser) -> None:
    """Add ``--plugin MODULE`` (repeatable) to a command's parser."""
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (e.g. one calling register_model / register_dataset); repeatable; "
                        "a search records it, so resume, worker and export import it again")


def import_cli_plugins(args: argparse.Namespace) -> list[str]:
    """Import the ``--plugin`` modules (the current folder searched too); returns their names."""
    from ..plugins import import_plugins

    names = list(getattr(args, "plugin", None) or [])
    import_plugins(names, what="--plugin")
    return names
