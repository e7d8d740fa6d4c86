"""Flag spelling shared by the subcommands.

Users paste TF-Slim commands (`--train_dir=...`) as often as they type `--train-dir`, so
every long flag answers to both spellings.
"""

from __future__ import annotations

import argparse


def add(parser, name: str, *short: str, **kwargs) -> argparse.Action:
    """Add `--name-with-dashes` with its `--name_with_underscores` alias (and short forms) to a
    parser or an argument group."""
    dashed = "--" + name.replace("_", "-")
    underscored = "--" + name.replace("-", "_")
    spellings = [*short, dashed] + ([underscored] if underscored != dashed else [])
    kwargs.setdefault("dest", name.replace("-", "_"))
    return parser.add_argument(*spellings, **kwargs)
