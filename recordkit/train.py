"""Fine-tuning: a plain custom loop around a registry model, resumable from train_dir.

The loop is deliberately small: build the model, load pretrained weights (unless train_dir
already has a checkpoint, which wins, as in TF-Slim, and we say so), freeze everything outside
`trainable_scopes`, then step an optimizer over `dataset.make` batches. A
`tf.train.Checkpoint` holds model, optimizer, step and the tf.data iterator, so a restarted run
(even after kill -9: CheckpointManager only points at fully written checkpoints) continues with
the same step, optimizer state and data position. `recordkit_run.json` records everything
eval/export/classify need (model, size, classes, preprocessing), so they cannot get it wrong.

When only the top of the network trains (the new head, VGG's fc layers, the last blocks), the
frozen body's outputs are computed once and the top trains on them (`feature_cache`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from recordkit import (
    __version__, checkpoints, dataset, feature_cache, files, locks, metadata, metrics, models, optimization,
    preprocessing, runs, summaries,
)
from recordkit.errors import Interrupted, RecordkitError
from recordkit.train_config import LOSSES, STRATEGIES, TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "model.ckpt"
MAX_TO_KEEP = 5


@dataclass
class TrainResult:
    """What a run did, for the CLI's summary line and for tests."""

    start_step: int
    step: int
    seconds: float
    images_per_second: float
    last_loss: float
    resumed_from: str | None
    checkpoint: str
    feature_cache: str | None  # the layer whose cached outputs the top trained on
    losses: list[float]


# --- run metadata -----------------------------------------------------------------------------


def _new_run_metadata(cfg: TrainConfig, info: metadata.DatasetInfo, spec: models.ModelSpec,
                      source: checkpoints.WeightsSource) -> dict:
    loss = cfg.loss or optimization.default_loss(info.label_kind)
    if loss not in LOSSES:
        raise RecordkitError(f"unknown --loss {loss!r}; expected one of {', '.join(LOSSES)}")
    if loss == "softmax" and info.label_kind != "single":
        raise RecordkitError("softmax needs one label per image; this dataset is multi-label")
    seed = cfg.seed if cfg.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    return {
        "recordkit_version": __version__,
        "model_name": spec.name,
        "image_size": cfg.image_size or spec.native_size,
        "num_classes": info.num_classes,
        "classes": list(info.classes),
        "label_kind": info.label_kind,
        "label_offset": 0,
        "loss": loss,
        "preprocessing": preprocessing.check_mode(
            cfg.preprocessing or checkpoints.preprocessing_for(spec, source)
        ),
        "weights": source.describe(),
        "dataset_name": info.name,
        "dataset_dir": cfg.dataset_dir,
        "dataset_split_name": cfg.dataset_split_name,
        "dropout": cfg.dropout,
        "head": cfg.head or default_head(spec, source),
        # a run source's end comes with its head; another --head starts from the whole backbone
        "backbone_output": cfg.backbone_output or (None if cfg.head else _run_source(source).get("backbone_output")),
        "optimizer": cfg.optimizer,
        "batch_size": cfg.batch_size,
        "mixed_precision": cfg.mixed_precision,
        "trainable_scopes": list(cfg.trainable_scopes),
        "augment": cfg.augment,
        "adjustable": runs.adjustable(cfg),
        "seed": seed,
        "checkpoint": "tf.train.Checkpoint(model=...) in train_dir, prefix model.ckpt-<step>",
    }


def default_head(spec: models.ModelSpec, source: checkpoints.WeightsSource) -> str:
    """The original top when the weights can fill it, else global average pooling and BatchNorm:
    VGG's fc6 and fc7 from random values are 120M parameters to learn, on features whose scale
    the pretrained convolutions set (49% on satellite in issue 13), and a linear layer learns
    best on standardised features (docs/performance.md section 5)."""
    if source.kind == "run":  # phase 2 of a recipe continues phase 1's model
        return _run_source(source).get("head", "slim")
    neck = [f"{scope}/weights" for layer, scope in spec.dense_slim_scopes.items() if layer != models.LOGITS]
    if not neck or source.kind == "none":
        return "slim"
    return "slim" if checkpoints.holds(spec, source, neck) else "pool_bn"


def _run_source(source: checkpoints.WeightsSource) -> dict:
    """The metadata of the run the weights come from ({} for other sources)."""
    return runs.read_run_metadata(runs.run_folder(source.path)) if source.kind == "run" else {}


# --- model and scopes ------------------------------------------------------------------------


def _leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer that is not itself a model, through nested models (the backbone)."""
    leaves = []
    for layer in model.layers:
        leaves += _leaf_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return leaves


def apply_trainable_scopes(model: keras.Model, spec: models.ModelSpec, scopes: list[str]) -> list[str]:
    """Freeze every layer with no variable under `scopes` (slim names or our layer names).

    Frozen layers are `trainable=False`, so their BatchNorm runs in inference mode
    (keras#7085). No scopes = everything trains. Returns the trainable layers' names.
    """
    if not scopes:
        return [l.name for l in _leaf_layers(model) if l.weights]
    entries = models.slim_entries(spec, model)
    unmatched = [s for s in scopes if not any(checkpoints.in_scopes(e, [s]) for e in entries)]
    absent = [s for s in unmatched if any(s.startswith(a) for a in spec.absent_slim_scopes)]
    for scope in absent:
        log.info("--trainable_scopes %s: the Keras model has no such part; ignored", scope)
    unknown = sorted(set(unmatched) - set(absent))
    if unknown:
        tops = sorted({e.slim_name.rsplit("/", 2)[0] for e in entries})[:8]
        raise RecordkitError(
            f"--trainable_scopes {', '.join(unknown)} match no variable of {spec.name}; "
            f"scopes look like {', '.join(tops)} (or our layer names, e.g. logits)"
        )
    chosen = {id(e.variable) for e in entries if checkpoints.in_scopes(e, scopes)}
    trainable = []
    for layer in _leaf_layers(model):
        layer.trainable = any(id(v) in chosen for v in layer.weights)
        if layer.trainable:
            trainable.append(layer.name)
    return trainable


def _metric(kind: str, logits: np.ndarray, targets: dict) -> tuple[str, float]:
    if kind == "softmax":
        return "accuracy", float(np.mean(np.argmax(logits, -1) == targets["label"]))
    gt = metrics.voc_ground_truth(targets["multi_hot"], 1 - targets["mask"])
    return "mAP", metrics.mean_ap(metrics.average_precisions(logits, gt, "area"))


@functools.cache
def _strategy(name: str) -> tf.distribute.Strategy:
    """One strategy per name and process: TF keys collectives per strategy instance, so a
    second MirroredStrategy in the same process can clash with the first one's programs."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise RecordkitError(f"unknown --strategy {name!r}; expected one of {', '.join(STRATEGIES)}")


# --- the loop ---------------------------------------------------------------------------------


class _Run:
    """State shared by the two input paths (tf.data batches, cached body outputs)."""

    def __init__(self, cfg: TrainConfig, meta: dict, model, optimizer, step, strategy, spec, stop_requested):
        self.cfg, self.meta, self.model, self.optimizer = cfg, meta, model, optimizer
        self.step, self.strategy, self.spec = step, strategy, spec
        self.stop_requested = stop_requested  # non-empty once SIGINT/SIGTERM asked to stop
        self.trainable = model.trainable_variables
        self.writer = tf.summary.create_file_writer(cfg.train_dir)

    def train_step(self, forward):
        """A compiled step: forward(inputs) → logits in training mode; returns loss, logits, targets."""
        kind, wd, global_batch = self.meta["loss"], self.cfg.weight_decay, self.cfg.batch_size

        def replica_step(inputs, targets):
            with tf.GradientTape() as tape:
                logits = forward(inputs)
                loss = tf.nn.compute_average_loss(
                    optimization.per_example_loss(kind, logits, targets), global_batch_size=global_batch
                )
                total = loss + tf.nn.scale_regularization_loss(optimization.weight_decay_loss(self.trainable, wd))
                scaled = self.optimizer.scale_loss(total)
            grads = tape.gradient(scaled, self.trainable)
            self.optimizer.apply_gradients(zip(grads, self.trainable))
            return loss, logits, targets

        if self.cfg.jit_compile:  # per replica, as Keras' fit(jit_compile=True) does
            replica_step = tf.function(replica_step, jit_compile=True)

        @tf.function
        def distributed_step(inputs, targets):
            loss, logits, targets = self.strategy.run(replica_step, args=(inputs, targets))
            self.step.assign_add(1)
            return (
                self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                self.strategy.gather(logits, axis=0),
                {k: self.strategy.gather(v, axis=0) for k, v in targets.items()},
            )

        return lambda inputs, targets: distributed_step(*self.split_batch((inputs, targets)))

    def split_batch(self, batch):
        """Replica i gets the i-th slice of the global batch. Slicing (rather than
        experimental_distribute_dataset) keeps one plain tf.data iterator, which
        tf.train.Checkpoint can save, and serves the cached-feature path the same way."""
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            return batch
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.nest.map_structure(
                lambda t: tf.split(t, replicas)[ctx.replica_id_in_sync_group], batch
            )
        )

    def learning_rate(self) -> float:
        return float(self.optimizer.learning_rate.numpy())

    def summarise(self, loss: float, window: deque, images=None) -> None:
        logits = np.concatenate([w[0] for w in window])
        targets = {k: np.concatenate([w[1][k] for w in window]) for k in window[0][1]}
        name, value = _metric(self.meta["loss"], logits, targets)
        step = int(self.step.numpy())
        with self.writer.as_default(step=step):
            summaries.scalar("loss", loss)
            summaries.scalar("learning_rate", self.learning_rate())
            summaries.scalar(name, value)
            if images is not None:
                first = tf.nest.map_structure(lambda t: t[:3], images)
                _images("inputs", dataset.finish(first, self.meta["image_size"], self.meta["preprocessing"]))
        self.writer.flush()


def _images(name: str, images: tf.Tensor) -> None:
    """A few model inputs, each stretched to [0, 255], in TensorBoard's image layout."""
    images = tf.cast(images, tf.float32)
    low = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
    pixels = tf.cast(255 * (images - low) / tf.maximum(high - low, 1e-6), tf.uint8)
    shape = tf.strings.as_string(tf.shape(pixels)[1:3])
    encoded = tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.string)
    tf.summary.write(name, tf.concat([shape[::-1], encoded], 0), metadata=summaries.plugin_metadata("images"))


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) training in cfg.train_dir; see the module docstring."""
    info = metadata.load(cfg.dataset_dir)
    if cfg.dataset_name and cfg.dataset_name != info.name:
        raise RecordkitError(
            f"--dataset_name {cfg.dataset_name!r} but {cfg.dataset_dir}/dataset.json is {info.name!r}"
        )
    split = _split(info, cfg.dataset_split_name)
    if not split.num_records:
        raise RecordkitError(
            f"split {cfg.dataset_split_name!r} of {cfg.dataset_dir} has no records (every file "
            f"was skipped at conversion? see {metadata.REPORT_JSON} there): nothing to train on"
        )
    spec = models.get(cfg.model_name)
    if cfg.batch_size < 1:
        raise RecordkitError("--batch_size must be at least 1")
    files.make_folder(cfg.train_dir, "--train_dir")
    with locks.folder_lock(cfg.train_dir, LOCK, "recordkit train"):
        return _locked_train(cfg, info, spec, split)


def _locked_train(cfg: TrainConfig, info, spec, split) -> TrainResult:
    latest = tf.train.latest_checkpoint(cfg.train_dir)
    source = checkpoints.source_for(None if latest else cfg.checkpoint_path)
    if latest:
        meta = runs.read_run_metadata(cfg.train_dir)
        changes = runs.check_resumable(meta, cfg, info, spec)
        if changes:
            log.info("resuming with changed settings (applied from here on): %s", "; ".join(changes))
            meta["adjustable"] = runs.adjustable(cfg)
            runs.write_run_metadata(cfg.train_dir, meta)
    else:
        meta = _new_run_metadata(cfg, info, spec, source)
        runs.write_run_metadata(cfg.train_dir, meta)
    if cfg.seed is not None and cfg.seed != meta["seed"]:
        log.warning("resuming with the run's seed %d, not --seed %d", meta["seed"], cfg.seed)
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with _stop_requests() as requested:
            result = _train(cfg, meta, info, spec, source, latest, split.num_records, requested)
        if requested:
            raise Interrupted(f"interrupted by {signal.Signals(requested[0]).name}: saved step {result.step} "
                              f"({result.checkpoint})", requested[0])
        return result
    except BaseException:
        if not latest and not tf.train.latest_checkpoint(cfg.train_dir):
            # Nothing to resume: the run metadata written above must not steer the next run.
            tf.io.gfile.remove(metadata.join(cfg.train_dir, runs.RUN_JSON))
        raise
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _split(info: metadata.DatasetInfo, name: str) -> metadata.SplitInfo:
    try:
        return info.split(name)
    except KeyError as e:
        raise RecordkitError(str(e.args[0])) from None


def _train(cfg, meta, info, spec, source, latest, num_samples, stop_requested: list) -> TrainResult:
    strategy = _strategy(cfg.strategy)
    if cfg.batch_size % strategy.num_replicas_in_sync:
        raise RecordkitError(f"--batch_size {cfg.batch_size} must be a multiple of the "
                             f"{strategy.num_replicas_in_sync} replicas of --strategy={cfg.strategy}")
    # One seed for initialisation, dropout and input order: same flags + seed, same losses on
    # CPU. (GPU kernels such as cuDNN's convolution gradients may still differ in the last bits.)
    keras.utils.set_random_seed(meta["seed"])
    with strategy.scope():
        model = runs.build_model(meta)
        if not latest:
            checkpoints.load(model, spec, source, cfg.checkpoint_exclude_scopes)
        trainable_layers = apply_trainable_scopes(model, spec, cfg.trainable_scopes)
        optimizer = optimization.make_optimizer(cfg, optimization.learning_rate_schedule(cfg, num_samples))
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    run = _Run(cfg, meta, model, optimizer, step, strategy, spec, stop_requested)
    log.info("%s at %dpx, %d classes, %s loss, %s preprocessing, %s; training %d layers (%s)",
             spec.name, meta["image_size"], meta["num_classes"], meta["loss"], meta["preprocessing"],
             "resuming" if latest else ("random initialisation" if source.kind == "none" else source.describe()),
             len(trainable_layers), ", ".join(trainable_layers[:4]) + (" ..." if len(trainable_layers) > 4 else ""))
    cut = feature_cache.split(model, spec)
    if cfg.feature_cache == "on" and cut is None:
        raise RecordkitError("--feature_cache=on needs --trainable_scopes that leave the first "
                             "layers frozen (e.g. the head, or the last blocks and the head)")
    cached = cut is not None and (
        cfg.feature_cache == "on" or (cfg.feature_cache == "auto" and feature_cache.worth_caching(cut, meta["image_size"]))
    )
    if cached and cfg.synthetic_input:
        raise RecordkitError("--synthetic_input measures the image path; add --feature_cache=off")
    if cached:
        state = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    else:
        ds = dataset.make(
            cfg.dataset_dir, cfg.dataset_split_name, image_size=meta["image_size"],
            mode=meta["preprocessing"], batch_size=cfg.batch_size, training=True,
            seed=meta["seed"], info=info, augment=cfg.augment, shuffle_buffer=cfg.shuffle_buffer,
            finish_in_step=True,
        )
        iterator = iter(ds)
        state = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step, iterator=iterator)
    manager = tf.train.CheckpointManager(
        state, cfg.train_dir, max_to_keep=MAX_TO_KEEP, checkpoint_name=CHECKPOINT_NAME, step_counter=step
    )
    if latest:
        runs.restore_model(model, latest)  # a mismatch must fail, not train from random weights
        state.restore(latest).expect_partial()  # optimizer, step, iterator (absent in cached runs)
        log.info("resumed from %s at step %d (a checkpoint in train_dir wins: --checkpoint_path "
                 "is not loaded again)", latest, int(step.numpy()))
    if not cached:
        forward = _forward(model, cut)

        if cfg.synthetic_input:
            held = tf.nest.map_structure(tf.identity, next(iterator))  # copied to the accelerator, if any
            log.info("--synthetic_input: stepping on one batch held in device memory (a speed ceiling)")

            def next_batch():
                return *held, held[0]
        else:

            def next_batch():
                inputs, batch_targets = next(iterator)
                return inputs, batch_targets, inputs

        step_fn = run.train_step(lambda inputs: forward(dataset.finish(inputs, meta["image_size"], meta["preprocessing"])))
        return _loop(run, step_fn, next_batch, manager, latest, None)
    # After the restore: a resumed run's body has its checkpointed weights only from here on.
    cache = feature_cache.build(
        cut, cfg.dataset_dir, cfg.dataset_split_name, num_records=num_samples,
        image_size=meta["image_size"], mode=meta["preprocessing"], batch_size=cfg.batch_size,
        mirror=cfg.augment and cfg.feature_cache_mirror, info=info,
    )

    def next_cached_batch():
        rows = feature_cache.stream_indices(meta["seed"], int(step.numpy()), cfg.batch_size, len(cache))
        return (*cache.batch(rows), None)

    try:
        return _loop(run, run.train_step(lambda x: cut.top(x, training=True)), next_cached_batch,
                     manager, latest, cut.cut)
    finally:
        cache.close()


def _forward(model: keras.Model, cut: feature_cache.Split | None):
    """The training forward pass: a frozen body runs in inference mode (as the cached outputs
    were made), the layers after it in training mode."""
    if cut is None:
        return lambda images: model(images, training=True)
    return lambda images: cut.top(cut.body(images, training=False), training=True)


LOCK = ".recordkit-train.lock"


@contextlib.contextmanager
def _stop_requests():
    """SIGINT/SIGTERM ask the loop to stop after the current step (it then saves; during
    feature caching, before the first step); a second signal stops at once. Outside the main thread (tests, notebooks' workers) nothing changes."""
    requested: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        log.info("%s: stopping after this step and saving a checkpoint (again to stop at once)",
                 signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _loop(run: _Run, step_fn, next_batch, manager, latest, cut_name: str | None) -> TrainResult:
    cfg = run.cfg
    start = int(run.step.numpy())
    stop = cfg.max_number_of_steps
    if stop is not None and start >= stop:
        log.info("train_dir is already at step %d >= --max_number_of_steps %d; nothing to do", start, stop)
    t0 = last_save = last_summary = last_log = time.monotonic()
    window: deque = deque(maxlen=20)
    losses, loss = [], float("nan")
    steps_since_log = 0
    while (stop is None or int(run.step.numpy()) < stop) and not run.stop_requested:
        inputs, targets, images = next_batch()
        loss_t, logits, batch_targets = step_fn(inputs, targets)
        loss = float(loss_t.numpy())
        losses.append(loss)
        window.append((logits.numpy(), {k: v.numpy() for k, v in batch_targets.items()}))
        steps_since_log += 1
        current = int(run.step.numpy())
        now = time.monotonic()
        if not np.isfinite(loss):
            raise RecordkitError(f"loss is {loss} at step {current}; lower --learning_rate")
        if cfg.log_every_n_steps and current % cfg.log_every_n_steps == 0:
            rate = steps_since_log * cfg.batch_size / max(now - last_log, 1e-9)
            log.info("step %d%s: loss %.4f, lr %.3g, %.1f images/s", current,
                     f"/{stop}" if stop else "", loss, run.learning_rate(), rate)
            last_log, steps_since_log = now, 0
        if now - last_summary >= cfg.save_summaries_secs:
            run.summarise(loss, window, images)
            last_summary = now
        if now - last_save >= cfg.save_interval_secs:
            log.info("saved %s", manager.save(checkpoint_number=current))
            last_save = now
    end = int(run.step.numpy())
    if window:
        run.summarise(loss, window)
    path = manager.save(checkpoint_number=end) if end > start or not latest else latest
    seconds = time.monotonic() - t0
    rate = (end - start) * cfg.batch_size / max(seconds, 1e-9)
    log.info("done: steps %d→%d in %.1f s (%.1f images/s), final loss %.4f; checkpoint %s",
             start, end, seconds, rate, loss, path)
    return TrainResult(start, end, seconds, rate, loss, latest, path, cut_name, losses)
