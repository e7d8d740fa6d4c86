"""Folder-per-class images → sharded TFRecords, as a standalone Beam job (e.g. for Dataflow).

Same flags and library code as `recordkit convert` (so `--format voc` works too); Beam's own
flags pass through:

    python -m pipelines.folder_to_tfrecord -t gs://BUCKET/pic --output-dir gs://BUCKET/data \\
        --dataset-name satellite --train-shards 16 --validation-shards 4 \\
        --runner DataflowRunner --project PROJECT --region REGION --temp_location gs://BUCKET/tmp \\
        --extra_package dist/recordkit-0.1.0-py3-none-any.whl
"""

from __future__ import annotations

import sys

from recordkit.cli import main


def run(argv: list[str] | None = None) -> int:
    return main(["convert", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(run())
