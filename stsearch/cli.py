"""Command line: ``stsearch <command> ...``.

Every command turns bad input (``ValueError``, ``FileNotFoundError``, ``KeyError``) and a
file it cannot read or write (an ``OSError`` naming it) into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .commands.registry import COMMANDS, Command, command, non_negative_float, positive_int

__all__ = ["main", "build_parser", "run_guarded", "command", "positive_int", "non_negative_float"]

def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .commands import load_all

    load_all()

    parser = argparse.ArgumentParser(prog="stsearch", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"stsearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_args, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else None)
        add_args(p)
        p.set_defaults(_run=fn)
    return parser


def run_guarded(fn: Command, args: argparse.Namespace) -> int:
    """Run ``fn``; user errors become one line on stderr and exit code 2."""
    try:
        return int(fn(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"stsearch: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stsearch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `stsearch status NAME | head`: the reader left; stop quietly, as a C tool would
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 141
    except OSError as err:  # a file that could not be read or written where no edge check named it first
        if not err.filename:
            raise
        from .search.storage import os_error_reason

        print(f"stsearch: error: cannot use {err.filename}: {os_error_reason(err, err.filename)}; check that "
              "the path exists, is of the right kind (file or folder) and that this user may write there",
              file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return run_guarded(args._run, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
