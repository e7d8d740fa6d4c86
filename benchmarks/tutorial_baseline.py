"""The tutorial's converter (inception's build_image_data.py), ported to TF 2 as faithfully as
timing needs: one shared TF JPEG decoder used by N threads, every image decoded to read its
shape, each thread writing its own shards with tf.io.TFRecordWriter.

    python benchmarks/tutorial_baseline.py INPUT_DIR OUTPUT_DIR [--threads 2] [--shards 2]
"""

from __future__ import annotations

import argparse
import os
import random
import threading

import tensorflow as tf


class ImageCoder:
    """One decoder shared by all threads, as the tutorial shares one tf.Session."""

    def __init__(self):
        self._decode = tf.function(lambda data: tf.io.decode_jpeg(data, channels=3))

    def decode_jpeg(self, data: bytes):
        image = self._decode(tf.constant(data))
        if image.shape[2] != 3:
            raise ValueError("not RGB")
        return image


def find_image_files(data_dir: str) -> tuple[list[str], list[int], list[str]]:
    labels = sorted(tf.io.gfile.listdir(data_dir))
    filenames, label_ids, texts = [], [], []
    for index, text in enumerate(labels):
        matches = tf.io.gfile.glob(f"{data_dir}/{text.rstrip('/')}/*")
        filenames += matches
        label_ids += [index] * len(matches)
        texts += [text] * len(matches)
    order = list(range(len(filenames)))
    random.seed(12345)
    random.shuffle(order)
    return [filenames[i] for i in order], [label_ids[i] for i in order], [texts[i] for i in order]


def to_example(filename: str, data: bytes, label: int, text: str, height: int, width: int) -> bytes:
    def b(v): return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
    def i(v): return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
    return tf.train.Example(features=tf.train.Features(feature={
        "image/height": i(height), "image/width": i(width), "image/colorspace": b(b"RGB"),
        "image/channels": i(3), "image/class/label": i(label), "image/class/text": b(text.encode()),
        "image/format": b(b"JPEG"), "image/filename": b(os.path.basename(filename).encode()),
        "image/encoded": b(data),
    })).SerializeToString()


def process_batch(coder, thread, ranges, name, filenames, labels, texts, num_shards, output_dir):
    shards_per_thread = num_shards // len(ranges)
    start, end = ranges[thread]
    bounds = [start + (end - start) * k // shards_per_thread for k in range(shards_per_thread + 1)]
    for s in range(shards_per_thread):
        shard = thread * shards_per_thread + s
        path = os.path.join(output_dir, f"{name}-{shard:05d}-of-{num_shards:05d}")
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(bounds[s], bounds[s + 1]):
                with tf.io.gfile.GFile(filenames[i], "rb") as f:
                    data = f.read()
                image = coder.decode_jpeg(data)
                writer.write(to_example(filenames[i], data, labels[i], texts[i], image.shape[0], image.shape[1]))


def process_split(name: str, directory: str, output_dir: str, threads: int, shards: int) -> int:
    filenames, labels, texts = find_image_files(directory)
    bounds = [len(filenames) * k // threads for k in range(threads + 1)]
    ranges = list(zip(bounds, bounds[1:]))
    coder = ImageCoder()
    workers = [threading.Thread(target=process_batch, args=(coder, t, ranges, name, filenames, labels,
                                                            texts, shards, output_dir))
               for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(filenames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input_dir")
    parser.add_argument("output_dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()
    if args.shards % args.threads:
        raise SystemExit("the tutorial needs shards divisible by threads")
    os.makedirs(args.output_dir, exist_ok=True)
    total = sum(process_split(split, os.path.join(args.input_dir, split), args.output_dir,
                              args.threads, args.shards) for split in ("train", "validation"))
    print(f"records: {total}")


if __name__ == "__main__":
    main()
