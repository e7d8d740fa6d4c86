"""A tiny real training run (recordkit.train) for the eval/export/classify end-to-end tests."""

from __future__ import annotations

import os

from fixtures_records import write_dataset

from recordkit import train


def tiny_run(root: str, label_kind: str = "single", steps: int = 2) -> tuple[str, str]:
    """(dataset_dir, train_dir) of a tiny_vgg run at 32 px trained for `steps` steps."""
    dataset_dir, train_dir = os.path.join(root, "data"), os.path.join(root, "train_dir")
    write_dataset(dataset_dir, label_kind, 3, {"train": 8, "validation": 6}, 40, 2)
    train.train(train.TrainConfig(
        train_dir=train_dir, dataset_dir=dataset_dir, model_name="tiny_vgg", image_size=32,
        max_number_of_steps=steps, batch_size=4, seed=0, learning_rate=0.001,
        save_interval_secs=1e9, save_summaries_secs=1e9,
    ))
    return dataset_dir, train_dir
