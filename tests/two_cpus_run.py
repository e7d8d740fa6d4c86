"""Train under --strategy=default and --strategy=mirrored on two logical CPUs, one process.

Logical devices can only be split before TensorFlow initialises them, so test_train.py runs
this file as its own process: `python tests/two_cpus_run.py DATASET_DIR ROOT`. Prints JSON:
{"replicas": n, "<strategy>/<path>": {"losses": [...], "resumed_at": step}}.
"""

from __future__ import annotations

import json
import sys

import tensorflow as tf


def main(dataset_dir: str, root: str) -> dict:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    import tiny_model  # noqa: F401  (registers tiny_vgg)
    from recordkit import train

    out = {"replicas": train._strategy("mirrored").num_replicas_in_sync}
    for path, scopes in (("stream", []), ("cached", ["tiny_vgg/fc8"])):
        for strategy in ("default", "mirrored"):
            keras.utils.set_random_seed(0)
            cfg = dict(train_dir=f"{root}/{strategy}-{path}", dataset_dir=dataset_dir, model_name="tiny_vgg",
                       image_size=32, batch_size=8, augment=False, dropout=0.0, shuffle_buffer=1, seed=3,
                       optimizer="adam", learning_rate=5e-5, opt_epsilon=1e-7,
                       learning_rate_decay_type="fixed", log_every_n_steps=0, save_summaries_secs=0,
                       save_interval_secs=3600, strategy=strategy, trainable_scopes=scopes)
            runs = [train.train(train.TrainConfig(**cfg, max_number_of_steps=n))
                    for n in ((5,) if strategy == "default" else (3, 5))]  # mirrored resumes
            out[f"{strategy}/{path}"] = {"losses": sum((r.losses for r in runs), []),
                                         "resumed_at": runs[-1].start_step}
    return out


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
