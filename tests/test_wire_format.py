"""Records written without TensorFlow are the bytes TensorFlow writes.

Conversion workers serialize tf.train.Example and frame TFRecord files themselves
(records.serialize, tfrecord.py) so they never import TensorFlow; these tests hold them to
TensorFlow's own output, byte for byte, on random values of every kind of feature.
"""

import random
import subprocess
import sys

import pytest
import tensorflow as tf

import imagegen
from recordkit import records, tfrecord


def tensorflow_example(spec, values) -> bytes:
    feature = {}
    for key, kind in spec.items():
        value = values[key]
        items = [value] if kind.shape == "scalar" else list(value)
        if kind.dtype == "bytes":
            encoded = [v.encode() if isinstance(v, str) else v for v in items]
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=encoded))
        elif kind.dtype == "int64":
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=items))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=items))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def random_values(spec, rng: random.Random) -> dict:
    objects = rng.randint(0, 4)  # 0: empty lists (packed fields then have no payload)
    values = {}
    for key, kind in spec.items():
        count = 1 if kind.shape == "scalar" else objects if kind.shape == "list" else 20
        if kind.dtype == "bytes":
            items = [rng.choice([rng.randbytes(rng.randint(0, 300)), "ünïcode", ""]) for _ in range(count)]
        elif kind.dtype == "int64":
            items = [rng.choice([0, 1, -1, 127, 128, 2**40, -(2**63), 2**63 - 1]) for _ in range(count)]
        else:
            items = [rng.choice([0.0, -1.5, 1e-30, 3.4e38, rng.uniform(-1, 1)]) for _ in range(count)]
        values[key] = items[0] if kind.shape == "scalar" else items
    return values


@pytest.mark.parametrize("label_kind", sorted(records.LABEL_KINDS))
def test_serialize_is_byte_identical_to_tensorflow(label_kind):
    spec = records.spec_for(label_kind)
    rng = random.Random(label_kind)
    for _ in range(200):
        values = random_values(spec, rng)
        assert records.serialize(spec, values) == tensorflow_example(spec, values)


def test_out_of_range_numbers_behave_as_in_tensorflow():
    spec = records.MULTI_LABEL_FEATURES
    values = random_values(spec, random.Random(1))
    values[records.BBOX_XMIN] = [1e40, -1e40, 3.5e38]  # past float32: ±inf, as protobuf stores them
    assert records.serialize(spec, values) == tensorflow_example(spec, values)
    values[records.OBJECT_LABEL] = [2**63]
    with pytest.raises(ValueError, match="does not fit in int64"):
        records.serialize(spec, values)


def test_tfrecord_files_are_byte_identical_to_tensorflows_writer(tmp_path):
    rng = random.Random(0)
    payloads = [rng.randbytes(rng.randint(0, 20_000)) for _ in range(40)] + [b"", imagegen.jpeg()]
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for payload in payloads:
            writer.write(payload)
    assert tfrecord.write(str(tmp_path / "ours.tfrecord"), payloads) == len(payloads)
    assert (tmp_path / "ours.tfrecord").read_bytes() == (tmp_path / "tf.tfrecord").read_bytes()
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "ours.tfrecord"))]
    assert read == payloads


def test_concatenated_frames_are_a_valid_tfrecord_file(tmp_path):
    """Shards are byte ranges of run files (framed at spill time), copied in rank order."""
    runs = tmp_path / "runs"
    runs.mkdir()
    frames = {name: [tfrecord.frame(f"{name}-{i}".encode() * (i + 1)) for i in range(5)] for name in ("a", "b")}
    ranges = {}
    for name, framed in frames.items():
        (runs / name).write_bytes(b"".join(framed))
        offset = 0
        for i, frame in enumerate(framed):
            ranges[(name, i)] = (name, offset, len(frame))
            offset += len(frame)
    order = [("b", 3), ("a", 0), ("a", 4), ("b", 0), ("a", 2)]
    tfrecord.concatenate(str(tmp_path / "shard"), str(runs), [ranges[o] for o in order])
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "shard"))]
    assert read == [f"{name}-{i}".encode() * (i + 1) for name, i in order]
    with pytest.raises(IOError, match="ends before"):
        tfrecord.concatenate(str(tmp_path / "bad"), str(runs), [("a", 0, 10_000)])


def test_shards_are_copied_through_python_where_the_kernel_refuses(tmp_path, monkeypatch):
    import errno
    import os

    def refuse(*args):
        raise OSError(errno.ENOSYS, "Function not implemented")

    (tmp_path / "run").write_bytes(tfrecord.frame(b"one") + tfrecord.frame(b"two"))
    monkeypatch.setattr(os, "copy_file_range", refuse)
    length = len(tfrecord.frame(b"one"))
    tfrecord.concatenate(str(tmp_path / "shard"), str(tmp_path), [("run", length, length), ("run", 0, length)])
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "shard"))] == [b"two", b"one"]


NO_TENSORFLOW = """
import sys, pathlib
# Any process that imports TensorFlow (this launcher or a worker it starts) fails loudly.
fake = pathlib.Path(sys.argv[1]) / "tensorflow"
fake.mkdir()
(fake / "__init__.py").write_text("raise ImportError('TensorFlow was imported')")
"""


def test_convert_help_and_a_small_conversion_never_import_tensorflow(tmp_path):
    imagegen.write_folder_dataset(tmp_path / "pic", {"train": {"a": 15, "b": 15}, "validation": {"a": 5, "b": 5}})
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    subprocess.run([sys.executable, "-c", NO_TENSORFLOW, str(blocker)], check=True)
    env = {"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "recordkit", "convert"]
    help_text = subprocess.run(command + ["--help"], env=env, capture_output=True, text=True)
    assert help_text.returncode == 0 and "--num-threads" in help_text.stdout, help_text.stderr
    done = subprocess.run(
        command + ["-t", str(tmp_path / "pic"), "--output-dir", str(tmp_path / "out"), "--num-threads", "2",
                   "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "records: 30 train, 10 validation (40 in all)" in done.stdout
    # The fake package really is the one both kinds of process would import:
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True)
    assert "TensorFlow was imported" in probe.stderr
