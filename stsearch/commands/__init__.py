"""Sub-commands of the ``stsearch`` CLI (each module registers its own)."""

from . import export, results, search, summary, train  # noqa: F401
