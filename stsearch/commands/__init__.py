"""Sub-commands of the ``stsearch`` CLI (each module registers its own)."""

from . import export, layers, results, search, summary, train  # noqa: F401
