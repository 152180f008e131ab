"""``python -m stsearch.models --summary MODEL [--plan FILE]``: the ``stsearch summary`` command."""

from __future__ import annotations

import argparse
import sys

from ..cli import run_guarded
from ..commands.summary import _args, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stsearch.models")
    parser.add_argument("--summary", dest="summary_model", metavar="MODEL", help="model to summarize")
    _args(parser)
    args = parser.parse_args(argv)
    args.model = args.summary_model or args.model
    return run_guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
