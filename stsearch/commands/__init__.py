"""Sub-commands of the ``stsearch`` CLI (each module registers its own)."""

from . import summary, train  # noqa: F401
