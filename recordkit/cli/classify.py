"""`recordkit classify`: not yet available."""

from __future__ import annotations

import sys


def register(commands) -> None:
    parser = commands.add_parser("classify", help="(not yet available)")
    parser.set_defaults(run=run, pass_through=True)


def run(args, extra) -> int:
    print("recordkit classify: not yet available in this version", file=sys.stderr)
    return 3
