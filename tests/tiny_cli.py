"""`python tests/tiny_cli.py ARGS`: the recordkit command line with the tests' tiny model
registered, for tests that run a command in a process of its own (kill -9, signals)."""

import sys

import tiny_model  # noqa: F401
from recordkit.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
