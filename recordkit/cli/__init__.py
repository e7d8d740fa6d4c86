"""The `recordkit` command: flags, printing and exit codes; the work is in the library."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from recordkit import __version__
from recordkit.errors import RecordkitError

COMMANDS = ("convert", "train", "eval", "export", "classify", "inspect")


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()  # before anything imports TensorFlow, which reads it once
    parser = argparse.ArgumentParser(
        prog="recordkit",
        description="Image datasets to sharded TFRecords (Apache Beam) and ImageNet fine-tuning.",
    )
    parser.add_argument("--version", action="version", version=f"recordkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"recordkit.cli.{name}").register(commands)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "pass_through", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args, extra) or 0
    except RecordkitError as e:
        print(f"recordkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"recordkit {args.command}: interrupted", file=sys.stderr)
        return 130


def quiet_libraries() -> None:
    """TensorFlow's C++ start-up chatter and Beam's per-worker INFO lines bury the summary."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
