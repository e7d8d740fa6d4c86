"""Training on a learnable fixture: loss goes down, scopes, training the top on cached outputs
matches the full forward pass, and the pasted TF-Slim command works. (Resume, checkpoints kept,
kill -9 and signals: test_train_resume.py.)"""

import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from fixtures_records import write_both_label_kinds, write_dataset
from recordkit import checkpoints, models, optimization, runs, train
from recordkit.cli import main
from recordkit.errors import RecordkitError
from training_setup import tiny_config


@pytest.fixture(scope="module")
def fixed_batch(tmp_path_factory):
    """8 training images per label kind: with FIXED_BATCH every step sees all of them."""
    return write_both_label_kinds(tmp_path_factory, "fixed-", {"train": 8, "validation": 4})


# Whole-set batches, no augmentation, dropout or shuffle buffer: each step evaluates the same
# deterministic objective, so the loss curve is smooth instead of batch-to-batch noise.
FIXED_BATCH = dict(batch_size=8, augment=False, dropout=0.0, shuffle_buffer=1)


def _falls(losses, k=4, ratio=0.8):
    return np.mean(losses[-k:]) < ratio * np.mean(losses[:k])


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_trains_both_label_kinds(tmp_path, tiny_data, kind):
    keras.utils.set_random_seed(0)
    result = train.train(tiny_config(tmp_path, tiny_data[kind], max_number_of_steps=20))
    assert result.step == 20 and result.feature_cache is None
    assert all(np.isfinite(result.losses))
    if kind == "single":  # with augmentation; multi-label learning: test_whole_network_learns_a_fixed_batch
        assert _falls(result.losses), result.losses
    meta = runs.read_run_metadata(str(tmp_path / "train"))
    assert meta["loss"] == {"single": "softmax", "multi": "sigmoid"}[kind]
    assert meta["label_kind"] == kind and meta["num_classes"] == 4 and meta["preprocessing"] == "vgg"
    assert glob.glob(str(tmp_path / "train" / "events.out.tfevents.*"))


@pytest.mark.slow
@pytest.mark.parametrize("model_name,kind,learning_rate,steps", [
    ("tiny_vgg", "multi", 1e-2, 16), ("inception_v3", "single", 1e-3, 6),
])
def test_whole_network_learns_a_fixed_batch(tmp_path, fixed_batch, model_name, kind, learning_rate, steps):
    """Every layer trains from scratch; multi-label runs use the masked sigmoid loss. (That
    loss does not depend on the network, so tiny_vgg shows it learning;
    test_inception_trains_both_label_kinds[multi-auto] runs Inception V3 with it.)"""
    keras.utils.set_random_seed(0)
    size = models.get(model_name).min_size
    result = train.train(tiny_config(tmp_path, fixed_batch[kind], model_name=model_name, image_size=size,
                                     max_number_of_steps=steps, learning_rate=learning_rate, **FIXED_BATCH))
    assert _falls(result.losses, k=3, ratio=0.7), result.losses
    assert runs.read_run_metadata(str(tmp_path / "train"))["loss"] == {"single": "softmax", "multi": "sigmoid"}[kind]


def test_sigmoid_loss_ignores_difficult_only_classes():
    targets = {"multi_hot": tf.constant([[1.0, 0.0, 0.0]]), "mask": tf.constant([[1.0, 0.0, 1.0]])}
    logits = tf.constant([[2.0, -3.0, -1.0]])
    loss = optimization.per_example_loss("sigmoid", logits, targets)
    expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2  # mean over the 2 kept classes
    np.testing.assert_allclose(loss.numpy(), [expected], rtol=1e-6)
    moved = optimization.per_example_loss("sigmoid", tf.constant([[2.0, 9.0, -1.0]]), targets)
    np.testing.assert_allclose(moved.numpy(), loss.numpy(), rtol=1e-6)


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus_matches_default(tmp_path, fixed_batch):
    """Both input paths (streamed batches, cached head features) under MirroredStrategy
    with 2 replicas give the default strategy's losses, and a mirrored run resumes."""
    helper = os.path.join(os.path.dirname(__file__), "two_cpus_run.py")
    done = subprocess.run([sys.executable, helper, fixed_batch["single"], str(tmp_path)],
                          capture_output=True, text=True, check=True)
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["replicas"] == 2
    for path in ("stream", "cached"):
        assert out[f"mirrored/{path}"]["resumed_at"] == 3
        # Two replicas sum the gradients in another order: float differences (1e-6 at step 2)
        # that grow over the steps; a wrong batch split or loss scale shows at the 1e-2 level.
        np.testing.assert_allclose(out[f"mirrored/{path}"]["losses"], out[f"default/{path}"]["losses"], rtol=1e-4)
    assert _falls(out["mirrored/stream"]["losses"], k=1)


def test_mixed_precision_runs_on_cpu_and_resumes_only_with_the_flag(tmp_path, fixed_batch):
    keras.utils.set_random_seed(0)
    cfg = tiny_config(tmp_path, fixed_batch["single"], max_number_of_steps=2, mixed_precision=True,
                      learning_rate=5e-5, **FIXED_BATCH)
    first = train.train(cfg)
    cfg.max_number_of_steps = 3
    resumed = train.train(cfg)
    assert resumed.start_step == 2 and all(np.isfinite(first.losses + resumed.losses))
    assert keras.mixed_precision.global_policy().name == "float32"  # reset for the next run
    assert runs.read_run_metadata(cfg.train_dir)["mixed_precision"] is True
    cfg.mixed_precision, cfg.max_number_of_steps = False, 4
    with pytest.raises(RecordkitError, match="mixed_precision: train_dir has True"):
        train.train(cfg)


def test_jit_compile_and_synthetic_input_keep_the_steps(tmp_path, fixed_batch):
    """--jit_compile (XLA) gives the plain step's losses; --synthetic_input steps on one held
    batch, here the whole fixed set, so its losses are those of reading it; a cached-feature
    run refuses it (there is no image step to measure)."""
    losses = {}
    for name, extra in (("plain", {}), ("xla", {"jit_compile": True}), ("synthetic", {"synthetic_input": True})):
        keras.utils.set_random_seed(0)
        losses[name] = train.train(tiny_config(tmp_path / name, fixed_batch["single"], max_number_of_steps=4,
                                               **FIXED_BATCH, **extra)).losses
    np.testing.assert_allclose(losses["xla"], losses["plain"], rtol=1e-4)
    np.testing.assert_allclose(losses["synthetic"], losses["plain"], rtol=1e-5)
    assert _falls(losses["plain"], k=1, ratio=0.99), losses["plain"]
    with pytest.raises(RecordkitError, match="--synthetic_input measures the image path"):
        train.train(tiny_config(tmp_path / "cached", fixed_batch["single"], trainable_scopes=["tiny_vgg/fc8"],
                                synthetic_input=True))


@pytest.mark.slow
@pytest.mark.parametrize("kind,cache", [("single", "off"), ("multi", "auto")])
def test_inception_trains_both_label_kinds(tmp_path, tiny_data, kind, cache):
    """Only the logits train (streamed or on cached features): they change, while the backbone,
    BatchNorm statistics included, stays exactly at its initial values. (Whether Inception
    learns is test_whole_network_learns_a_fixed_batch's subject: 12 augmented steps on random
    features are too noisy to show it.)"""
    keras.utils.set_random_seed(0)
    cfg = tiny_config(tmp_path, tiny_data[kind], model_name="inception_v3", image_size=75, max_number_of_steps=12,
                      trainable_scopes=["InceptionV3/Logits"], feature_cache=cache, learning_rate=0.05)
    result = train.train(cfg)
    assert result.feature_cache == ("backbone" if cache == "auto" else None)
    assert result.step == 12 and all(np.isfinite(result.losses))
    trained, meta = runs.load_for_inference(cfg.train_dir)
    keras.utils.set_random_seed(cfg.seed)  # the run's seed → the run's initial weights
    initial = runs.build_model(meta)
    for before, after in zip(initial.get_layer(models.BACKBONE).weights, trained.get_layer(models.BACKBONE).weights):
        assert np.array_equal(before.numpy(), after.numpy()), after.path
    assert not np.array_equal(initial.get_layer(models.LOGITS).kernel.numpy(),
                              trained.get_layer(models.LOGITS).kernel.numpy())


def test_same_flags_and_seed_give_the_same_losses(tmp_path, tiny_data):
    """Initialisation, dropout, input order and augmentation all follow --seed, not whatever
    random state the process happens to be in."""
    runs = []
    for name, global_seed, seed in (("a", 1, 5), ("b", 2, 5), ("c", 1, 6)):
        keras.utils.set_random_seed(global_seed)
        runs.append(train.train(tiny_config(tmp_path / name, tiny_data["single"], max_number_of_steps=3, seed=seed,
                                            dropout=0.5, optimizer="sgd", learning_rate=0.01)).losses)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def _notop(tmp_path) -> str:
    """A Keras include_top=False weights file of tiny_vgg (like the real HED VGG16)."""
    notop = str(tmp_path / "notop.weights.h5")
    models.get("tiny_vgg").keras_application(None, include_top=False).save_weights(notop)
    return notop


def test_head_defaults_to_pooling_when_the_weights_have_no_fc_layers(tmp_path, tiny_data):
    """A Keras notop file (like the real HED VGG16) cannot fill fc6/fc7: the run pools instead,
    records it, and eval/export rebuild the same model; explicit --head wins."""
    notop = _notop(tmp_path)
    result = train.train(tiny_config(tmp_path / "auto", tiny_data["single"], max_number_of_steps=1, checkpoint_path=notop,
                                     checkpoint_exclude_scopes=["logits"]))
    model, meta = runs.load_for_inference(str(tmp_path / "auto" / "train"))
    assert meta["head"] == "pool_bn" and result.step == 1
    assert {models.GLOBAL_POOL, models.HEAD_NORM} <= {l.name for l in model.layers}
    assert "fc6" not in [l.name for l in model.layers]
    train.train(tiny_config(tmp_path / "slim", tiny_data["single"], max_number_of_steps=1, checkpoint_path=notop,
                            head="slim", checkpoint_exclude_scopes=["tiny_vgg/fc6", "tiny_vgg/fc7", "logits"]))
    assert runs.read_run_metadata(str(tmp_path / "slim" / "train"))["head"] == "slim"
    train.train(tiny_config(tmp_path / "scratch", tiny_data["single"], max_number_of_steps=1))
    assert runs.read_run_metadata(str(tmp_path / "scratch" / "train"))["head"] == "slim"


def test_a_second_phase_starts_from_the_first_runs_weights(tmp_path, tiny_data):
    """Keras' recipe in two runs: the head on cached features, then the last block too, starting
    from run one's train_dir: same head, preprocessing and weights, logits included."""
    notop = _notop(tmp_path)
    first = tiny_config(tmp_path / "one", tiny_data["single"], max_number_of_steps=2, checkpoint_path=notop,
                        head="pool", checkpoint_exclude_scopes=["logits"], trainable_scopes=["logits"])
    assert train.train(first).feature_cache == models.GLOBAL_POOL
    trained, _ = runs.load_for_inference(first.train_dir)
    second = tiny_config(tmp_path / "two", tiny_data["single"], max_number_of_steps=1, checkpoint_path=first.train_dir,
                         trainable_scopes=["tiny_vgg/conv2", "logits"], learning_rate=0.0)
    assert train.train(second).feature_cache == "block1_pool"
    model, meta = runs.load_for_inference(second.train_dir)
    assert meta["head"] == "pool" and meta["preprocessing"] == "caffe" and meta["weights"] == f"run:{first.train_dir}"
    for a, b in zip(trained.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_pool_bn_and_backbone_output_carry_into_eval_and_a_second_phase(tmp_path, tiny_data):
    """The recipe for a backbone whose last blocks learned another task: end it early, train
    pooling + BatchNorm + logits (the BatchNorm trains with the logits' scope) on cached pooled
    features. eval rebuilds that model, and a run starting from it gets the same head, end and
    trained BatchNorm statistics."""
    notop = _notop(tmp_path)
    first = tiny_config(tmp_path / "one", tiny_data["single"], max_number_of_steps=3, checkpoint_path=notop,
                        backbone_output="block1_pool", checkpoint_exclude_scopes=["logits"], trainable_scopes=["logits"])
    assert train.train(first).feature_cache == models.GLOBAL_POOL
    model, meta = runs.load_for_inference(first.train_dir)
    assert meta["head"] == "pool_bn" and meta["backbone_output"] == "block1_pool"
    assert "block2_conv1" not in {l.name for l in model.get_layer(models.BACKBONE).layers}
    assert np.abs(model.get_layer(models.HEAD_NORM).moving_mean.numpy()).max() > 0  # it trained
    keras.utils.set_random_seed(0)
    fresh = runs.build_model(meta)
    checkpoints.load(fresh, models.get("tiny_vgg"), checkpoints.source_for(first.train_dir))
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    second = tiny_config(tmp_path / "two", tiny_data["single"], max_number_of_steps=1, checkpoint_path=first.train_dir,
                         trainable_scopes=["logits"])
    train.train(second)
    again = runs.read_run_metadata(second.train_dir)
    assert (again["head"], again["backbone_output"]) == ("pool_bn", "block1_pool")
    other = tiny_config(tmp_path / "three", tiny_data["single"], max_number_of_steps=1, checkpoint_path=first.train_dir,
                        head="pool", checkpoint_exclude_scopes=["logits", "tiny_vgg/conv2"])  # another head: whole backbone
    train.train(other)
    assert runs.read_run_metadata(other.train_dir)["backbone_output"] is None


def test_trainable_scopes_freeze_exactly_the_rest(tmp_path, tiny_data):
    keras.utils.set_random_seed(2)
    cfg = tiny_config(tmp_path, tiny_data["single"], max_number_of_steps=2, feature_cache="off",
                      trainable_scopes=["tiny_vgg/fc7", "logits"])
    train.train(cfg)
    spec = models.get("tiny_vgg")
    model, _ = runs.load_for_inference(cfg.train_dir)
    keras.utils.set_random_seed(cfg.seed)
    initial = models.build(spec, 4, 32)  # the run's seed → the run's initial weights
    trained = {e.slim_name: e.variable.numpy() for e in models.slim_entries(spec, model)}
    for entry in models.slim_entries(spec, initial):
        changed = not np.array_equal(trained[entry.slim_name], entry.variable.numpy())
        assert changed == entry.slim_name.startswith(("tiny_vgg/fc7/", "tiny_vgg/fc8/")), entry.slim_name


def test_inception_scopes_select_slim_scopes_and_freeze_batchnorm():
    spec = models.get("inception_v3")
    model = models.build(spec, 3, 75)
    names = train.apply_trainable_scopes(model, spec, ["InceptionV3/Mixed_7c", "InceptionV3/AuxLogits"])
    expected = {id(e.variable) for e in models.slim_entries(spec, model)
                if e.slim_name.startswith("InceptionV3/Mixed_7c/") and not e.slim_name.endswith(("mean", "variance"))}
    assert {id(v) for v in model.trainable_variables} == expected and len(expected) == 18
    frozen_bn = [l for l in model.get_layer(models.BACKBONE).layers
                 if isinstance(l, keras.layers.BatchNormalization) and not l.trainable]
    assert len(frozen_bn) == 94 - 9 and len(names) == 18
    with pytest.raises(RecordkitError, match="match no variable"):
        train.apply_trainable_scopes(model, spec, ["InceptionV3/Mixed_9z"])


@pytest.mark.parametrize("scopes,cut", [(["tiny_vgg/fc8"], "fc7"),
                                       (["tiny_vgg/conv2/conv2_2", "tiny_vgg/fc6", "tiny_vgg/fc7", "tiny_vgg/fc8"], "block2_conv1")])
def test_cached_top_matches_full_forward(tmp_path, tiny_data, scopes, cut):
    results = {}
    for cache in ("on", "off"):
        keras.utils.set_random_seed(4)
        # Full-batch steps without augmentation or dropout: both paths see identical batches.
        cfg = tiny_config(tmp_path / cache, tiny_data["single"], max_number_of_steps=5, batch_size=24,
                          trainable_scopes=scopes, feature_cache=cache, augment=False, dropout=0.0,
                          optimizer="momentum", learning_rate=0.01, shuffle_buffer=1)
        results[cache] = train.train(cfg)
        results[cache + "_kernel"] = runs.load_for_inference(cfg.train_dir)[0].get_layer("logits").kernel.numpy()
    assert results["on"].feature_cache == cut and results["off"].feature_cache is None
    np.testing.assert_allclose(results["on"].losses, results["off"].losses, rtol=1e-4)
    np.testing.assert_allclose(results["on_kernel"], results["off_kernel"], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_tutorial_command_with_a_slim_checkpoint(tmp_path, tiny_data, capsys, slim_inception):
    ckpt = slim_inception.path
    argv = ["train", f"--train_dir={tmp_path}/train_dir", "--dataset_name=toy",
            "--dataset_split_name=train", f"--dataset_dir={tiny_data['single']}", "--model_name=inception_v3",
            f"--checkpoint_path={ckpt}", "--checkpoint_exclude_scopes=InceptionV3/Logits,InceptionV3/AuxLogits",
            "--trainable_scopes=InceptionV3/Logits,InceptionV3/AuxLogits", "--max_number_of_steps=5",
            "--batch_size=8", "--learning_rate=0.001", "--learning_rate_decay_type=fixed",
            "--save_interval_secs=300", "--save_summaries_secs=2", "--log_every_n_steps=10",
            "--optimizer=rmsprop", "--weight_decay=0.00004", "--image-size=75"]
    assert main(argv) == 0
    assert "steps 0→5" in capsys.readouterr().out
    model, meta = runs.load_for_inference(str(tmp_path / "train_dir"))
    assert meta["weights"] == f"slim:{ckpt}" and meta["preprocessing"] == "inception"
    pretrained, _ = checkpoints.pretrained_model("inception_v3", ckpt, image_size=75)
    np.testing.assert_array_equal(  # the frozen backbone is exactly the checkpoint's
        model.get_layer(models.BACKBONE).weights[0].numpy(), pretrained.get_layer(models.BACKBONE).weights[0].numpy())
    argv[argv.index("--max_number_of_steps=5")] = "--max_number_of_steps=7"
    assert main(argv) == 0
    assert "steps 5→7" in capsys.readouterr().out


def test_multi_worker_strategy_is_not_offered(tmp_path, capsys):
    """It wrote every worker's checkpoints into one train_dir (issue 16): removed, not shipped."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", f"--train_dir={tmp_path}", f"--dataset_dir={tmp_path}", "--strategy=multi_worker"])
    assert exit_info.value.code == 2 and "invalid choice: 'multi_worker'" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["file", "file/below"])
def test_a_train_dir_that_is_or_sits_below_a_file_is_a_one_line_error(tmp_path, tiny_data, capsys, where):
    (tmp_path / "file").write_text("not a folder")
    assert main(["train", f"--train_dir={tmp_path / where}", f"--dataset_dir={tiny_data['single']}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recordkit train: error: ") and str(tmp_path / where) in err and "\n" not in err


def test_a_folder_without_dataset_json_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", f"--train_dir={tmp_path / 'run'}", f"--dataset_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "dataset.json not found" in err and "\n" not in err and "Traceback" not in err


def test_an_empty_training_split_is_named_in_the_error(tmp_path):
    data_dir = str(tmp_path / "empty")
    write_dataset(data_dir, "single", num_classes=2, sizes={"train": 0, "validation": 2})
    with pytest.raises(RecordkitError, match=f"split 'train' of {data_dir} has no records"):
        train.train(tiny_config(tmp_path, data_dir))


def test_cli_help_does_not_import_tensorflow():
    """`recordkit --help` took seconds when a subcommand module imported TensorFlow."""
    code = ("import sys\nfrom recordkit.cli import main\n"
            "for argv in (['--help'], *([c, '--help'] for c in ('train', 'eval', 'export', 'classify', 'inspect'))):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'\n"
            "import os\nassert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '2'\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


def test_imagenet_weights_without_network_are_one_line_and_leave_nothing_behind(tmp_path, tiny_data):
    """The download is pointed at a closed local port (a proxy that refuses), so the test never
    downloads anything; the next run in that train_dir must not think it holds imagenet weights.
    (Inception V3: Keras builds the application before it fetches, and VGG16 with its top is
    138M weights.)"""
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    done = subprocess.run(
        [sys.executable, "-m", "recordkit", "train", "--train_dir", str(tmp_path / "train"), "--dataset_dir",
         tiny_data["single"], "--model_name", "inception_v3", "--image_size", "75", "--checkpoint_path", "imagenet",
         "--max_number_of_steps", "1"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("recordkit train: error: cannot download the ImageNet weights for inception_v3")
    assert "no network? pass a local .weights.h5 or slim .ckpt" in lines[-1]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "train" / runs.RUN_JSON).exists()
