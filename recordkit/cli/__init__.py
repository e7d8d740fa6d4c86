"""The `recordkit` command: flags, printing and exit codes; the work is in the library."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from recordkit import __version__
from recordkit.errors import Interrupted, RecordkitError

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
        if args.command != "convert":  # conversion never loads TensorFlow
            quiet_tensorflow_start()
        return args.run(args, extra) or 0
    except RecordkitError as e:
        print(f"recordkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"recordkit {args.command}: {e}", file=sys.stderr)
        return 128 + e.signal_number
    except KeyboardInterrupt:
        print(f"recordkit {args.command}: interrupted", file=sys.stderr)
        return 130


def quiet_tensorflow_start() -> None:
    """Import TensorFlow and look for GPUs with the process's stderr in a temporary file.

    TensorFlow's C++ start-up lines (absl's "log messages before InitializeLog", oneDNN and
    CUDA-driver notices, a cuInit error on machines without a GPU) ignore
    TF_CPP_MIN_LOG_LEVEL. What they say is printed if the import itself fails.
    """
    import tempfile

    from recordkit import quiet

    with tempfile.TemporaryFile() as captured:
        try:
            with quiet.stderr_to(captured):
                import tensorflow as tf

                tf.config.list_physical_devices("GPU")
        except BaseException:
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise


def quiet_libraries() -> None:
    """TensorFlow's C++ start-up chatter and Beam's per-worker INFO lines bury the summary."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_beams_redundant_notices)


def _not_beams_redundant_notices(record: logging.LogRecord) -> bool:
    """Beam warns on import that its optional GCP libraries are missing (only gs:// needs them,
    and Beam says so itself when a gs:// path is used), and about flags it does not know, which
    `recordkit convert` reports itself as a one-line error naming the likely intended flag."""
    return not str(record.msg).startswith(("apitools not found", "Discarding unparseable args"))


if __name__ == "__main__":
    sys.exit(main())
