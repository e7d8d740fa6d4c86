"""What the training tests share beside conftest's `tiny_data`: a small TrainConfig on
tiny_vgg, and the command line with tiny_vgg registered."""

import os
import pathlib

from recordkit import train

TINY_CLI = os.path.join(os.path.dirname(__file__), "tiny_cli.py")  # `recordkit` with tiny_vgg registered


def tiny_config(tmp_path: pathlib.Path, data_dir: str, **kw) -> train.TrainConfig:
    """4 Adam steps of batch 8 on tiny_vgg at 32 px, seed 3, nothing logged or saved on a
    timer; `kw` overrides."""
    base = dict(train_dir=str(tmp_path / "train"), dataset_dir=data_dir, model_name="tiny_vgg",
                image_size=32, batch_size=8, max_number_of_steps=4, optimizer="adam",
                learning_rate=1e-4, opt_epsilon=1e-7, learning_rate_decay_type="fixed",
                seed=3, log_every_n_steps=0, save_summaries_secs=3600, save_interval_secs=3600)
    base.update(kw)
    return train.TrainConfig(**base)
