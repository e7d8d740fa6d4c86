#!/usr/bin/env bash
# The main job end to end on sample_data/ with the embedded default (DirectRunner, CPU):
# convert the folders into shards, inspect them, train Inception V3 briefly at 96 px (from
# random weights: the point is the chain, not the accuracy), evaluate, export a SavedModel
# and classify two images with it. Everything goes to out/ (about 2 minutes on 2 cores).
source "$(dirname "$0")/_env.sh"
rm -rf out/sample out/demo
step() { printf '\n== %s\n' "$*"; }

step "convert sample_data/ → out/sample/"
recordkit convert -t sample_data --output-dir out/sample --dataset-name sample \
    --train-shards 2 --validation-shards 1 --num-threads 2 "$@"

step "inspect out/sample/"
recordkit inspect out/sample --verify --contact-sheet out/demo/contact_sheet.png

step "train inception_v3 for 60 steps at 96 px → out/demo/train/"
recordkit train --train_dir out/demo/train --dataset_dir out/sample --model_name inception_v3 \
    --image_size 96 --max_number_of_steps 60 --batch_size 16 --log_every_n_steps 20 \
    --optimizer adam --learning_rate 0.003

step "evaluate on the validation split"
recordkit eval --checkpoint_path out/demo/train --eval_dir out/demo/eval --dataset_dir out/sample \
    --dataset_split_name validation

step "export a SavedModel → out/demo/export/"
recordkit export --checkpoint_path out/demo/train --output_dir out/demo/export

step "classify two images with the export"
recordkit classify --model_path out/demo/export \
    --image_file sample_data/validation/sea/sea_00.jpg sample_data/validation/desert/desert_00.jpg
