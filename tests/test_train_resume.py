"""A run that stops, however it stops, continues exactly where it was: step, optimizer state and
data position; the newest five checkpoints are kept; a resume that would change what the
checkpoint holds is refused; kill -9 and SIGTERM/SIGINT lose at most the steps since the last
save; one train_dir serves one run at a time."""

import glob
import os
import re
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from recordkit import runs, train
from recordkit.errors import RecordkitError
from training_setup import TINY_CLI, tiny_config


@pytest.mark.parametrize("scopes", [[], ["tiny_vgg/fc8"]], ids=["streamed", "cached_features"])
def test_resume_continues_step_optimizer_and_data_position(tmp_path, tiny_data, scopes):
    """The resumed half builds a model with other random weights: only the checkpoint (restored
    before the head-only path caches the body's features) can make it continue exactly."""
    keras.utils.set_random_seed(1)
    straight = train.train(tiny_config(tmp_path / "a", tiny_data["single"], max_number_of_steps=6, dropout=0.0,
                                       trainable_scopes=scopes))
    keras.utils.set_random_seed(1)
    train.train(tiny_config(tmp_path / "b", tiny_data["single"], max_number_of_steps=3, dropout=0.0, trainable_scopes=scopes))
    resumed = train.train(tiny_config(tmp_path / "b", tiny_data["single"], max_number_of_steps=6, dropout=0.0,
                                      trainable_scopes=scopes, checkpoint_path="ignored-when-resuming.ckpt"))
    assert resumed.resumed_from.endswith("model.ckpt-3") and (resumed.start_step, resumed.step) == (3, 6)
    np.testing.assert_allclose(resumed.losses, straight.losses[3:], rtol=1e-4)
    model, meta = runs.load_for_inference(str(tmp_path / "b" / "train"))
    assert meta["checkpoint"].endswith("model.ckpt-6") and model.output.shape[-1] == 4


def test_keeps_newest_five_checkpoints(tmp_path, tiny_data):
    result = train.train(tiny_config(tmp_path, tiny_data["single"], max_number_of_steps=7, save_interval_secs=0,
                                     optimizer="sgd"))  # no slot variables: a third of adam's checkpoint
    state = tf.train.get_checkpoint_state(str(tmp_path / "train"))
    kept = [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]
    assert kept == [3, 4, 5, 6, 7] and result.checkpoint.endswith("model.ckpt-7")
    assert len(glob.glob(str(tmp_path / "train" / "model.ckpt-*.index"))) == 5


def test_stale_train_dir_is_refused(tmp_path, tiny_data):
    train.train(tiny_config(tmp_path, tiny_data["single"], max_number_of_steps=1))
    with pytest.raises(RecordkitError, match="image_size: train_dir has 32, this run 48"):
        train.train(tiny_config(tmp_path, tiny_data["single"], max_number_of_steps=2, image_size=48))


def test_resume_refuses_changes_to_model_loss_inputs_or_optimizer_state_and_logs_the_rest(tmp_path, tiny_data, caplog):
    train.train(tiny_config(tmp_path, tiny_data["single"], max_number_of_steps=1, trainable_scopes=["logits"]))
    refused = {"trainable_scopes": ["tiny_vgg/fc7", "logits"], "loss": "sigmoid", "dropout": 0.1,
               "preprocessing": "caffe", "augment": False, "optimizer": "sgd", "head": "pool",
               "backbone_output": "block1_pool"}
    for name, value in refused.items():
        with pytest.raises(RecordkitError, match=re.escape(f"{name}: train_dir has ") + f".*, this run {re.escape(repr(value))}"):
            train.train(tiny_config(tmp_path, tiny_data["single"], max_number_of_steps=2, **{"trainable_scopes": ["logits"], name: value}))
    with caplog.at_level("INFO", logger="recordkit"):
        result = train.train(tiny_config(tmp_path, tiny_data["single"], max_number_of_steps=2, trainable_scopes=["logits"],
                                         learning_rate=5e-5, weight_decay=0.0))
    assert (result.start_step, result.step) == (1, 2)
    assert "learning_rate: 0.0001 → 5e-05; weight_decay: 4e-05 → 0.0" in caplog.text
    assert runs.read_run_metadata(str(tmp_path / "train"))["adjustable"]["learning_rate"] == 5e-5


@pytest.mark.slow
def test_resumes_after_kill_9(tmp_path, tiny_data):
    train_dir = tmp_path / "train"
    command = [sys.executable, TINY_CLI, "train", f"--train_dir={train_dir}",
               f"--dataset_dir={tiny_data['single']}", "--model_name=tiny_vgg", "--image_size=32",
               "--batch_size=4", "--save_interval_secs=0", "--seed=1", "--max_number_of_steps=100000"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while (time.time() < deadline and process.poll() is None
               and len(glob.glob(str(train_dir / "model.ckpt-*.index"))) < 3):
            time.sleep(0.2)
    finally:
        process.kill()  # SIGKILL; a no-op if the process already died
        process.wait()
    latest = tf.train.latest_checkpoint(str(train_dir))
    assert latest is not None
    last = int(latest.rsplit("-", 1)[1])
    result = train.train(tiny_config(tmp_path, tiny_data["single"], optimizer="rmsprop", batch_size=4,
                                max_number_of_steps=last + 2))
    assert (result.start_step, result.step) == (last, last + 2)


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_saves_a_checkpoint_and_exits_128_plus_its_number(tmp_path, tiny_data, signal_name):
    train_dir = tmp_path / "train"
    command = [sys.executable, TINY_CLI, "train", f"--train_dir={train_dir}",
               f"--dataset_dir={tiny_data['single']}", "--model_name=tiny_vgg", "--image_size=32", "--head=pool",
               "--batch_size=4", "--seed=1", "--log_every_n_steps=1", "--optimizer=sgd"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:  # bounded by the test timeout
            if " step 3: loss " in line:
                break
        process.send_signal(getattr(signal, signal_name))
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    number = getattr(signal, signal_name).value
    assert process.returncode == 128 + number, err
    saved = int(re.search(r"interrupted by %s: saved step (\d+) " % signal_name, err).group(1))
    assert saved >= 3 and tf.train.latest_checkpoint(str(train_dir)).endswith(f"model.ckpt-{saved}")
    result = train.train(tiny_config(tmp_path, tiny_data["single"], batch_size=4, optimizer="sgd", head="pool",
                                     max_number_of_steps=saved + 1))
    assert (result.start_step, result.step) == (saved, saved + 1)


def test_a_train_dir_in_use_is_refused_and_a_stale_lock_taken_over(tmp_path, tiny_data):
    """Two runs in one train_dir interleave checkpoints, and the one that fails first removes
    the other's recordkit_run.json (it happened while benchmarking)."""
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    lock = train_dir / train.LOCK
    lock.write_text(f"{socket.gethostname()} {os.getpid()}")  # a live holder: this process
    with pytest.raises(RecordkitError, match=f"in use by another recordkit train \\(process {os.getpid()} "):
        train.train(tiny_config(tmp_path, tiny_data["single"], max_number_of_steps=1))
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(f"{socket.gethostname()} {finished.stdout.strip()}")  # its process is gone
    assert train.train(tiny_config(tmp_path, tiny_data["single"], max_number_of_steps=1)).step == 1
    assert not lock.exists()


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path, tiny_data):
    cfg = tiny_config(tmp_path, tiny_data["single"], max_number_of_steps=1)
    train.train(cfg)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    tf.train.Checkpoint(model=other).save(os.path.join(cfg.train_dir, train.CHECKPOINT_NAME))
    with pytest.raises(RecordkitError, match="does not match the model"):
        train.train(tiny_config(tmp_path, tiny_data["single"], max_number_of_steps=2))
