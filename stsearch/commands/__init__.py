"""Sub-commands of the ``stsearch`` CLI (each module registers its own)."""

from . import search, summary, train  # noqa: F401
