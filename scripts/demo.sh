#!/usr/bin/env bash
# The main job end to end on sample_data/ with the embedded default (DirectRunner, CPU):
# convert the folders into shards in out/sample/.
source "$(dirname "$0")/_env.sh"
recordkit convert -t sample_data --output-dir out/sample --dataset-name sample \
    --train-shards 2 --validation-shards 1 --num-threads 2 "$@"
