"""The CLI's command registry: each module of :mod:`stsearch.commands` registers its sub-commands here
with :func:`command`; :mod:`stsearch.cli` builds the parser from :data:`COMMANDS`. Imports nothing of
stsearch, so commands and the CLI import it without a cycle."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["COMMANDS", "Command", "command", "positive_int", "non_negative_float"]

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, add_args: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    """Register a sub-command: ``add_args`` fills its parser, the function runs it."""

    def deco(fn: Command) -> Command:
        COMMANDS[name] = (add_args, fn)
        return fn

    return deco


def positive_int(text: str) -> int:
    """``argparse`` type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """``argparse`` type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value
