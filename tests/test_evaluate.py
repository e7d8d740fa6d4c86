"""Eval reports: metrics wiring, table, JSON + TensorBoard output, the watch loop."""

import json

import numpy as np
import pytest

from recordkit import evaluate

CLASSES = ["cloud", "desert", "water"]


def _single_report():
    labels = np.array([0, 0, 1, 2, 2])
    scores = np.array([[3, 1, 0], [0, 2, 1], [0, 3, 1], [1, 0, 2], [2, 0, 1]], dtype=float)
    scalars, per_class, matrix = evaluate.single_label_metrics(labels, scores, CLASSES, k=2)
    return evaluate.Report("train_dir/ckpt-7.weights.h5", 7, "satellite", "validation", "single",
                           5, scalars, per_class, matrix, CLASSES)


def test_single_label_metrics():
    report = _single_report()
    assert report.scalars == {"eval/Accuracy": pytest.approx(3 / 5), "eval/Recall_2": pytest.approx(4 / 5)}
    assert report.confusion_matrix == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert report.per_class["cloud"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert report.per_class["water"]["precision"] == 1.0


def test_multi_label_metrics_ignore_difficult_only():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.5, 0.5], [0.4, 0.6]])
    multi_hot = np.array([[1, 0], [0, 0], [0, 1], [1, 0], [0, 0], [1, 0]])
    difficult = np.array([[0, 0], [1, 0], [0, 0], [0, 0], [0, 0], [0, 0]])
    scalars, per_class = evaluate.multi_label_metrics(scores, multi_hot, difficult, ["cat", "dog"])
    assert per_class["cat"]["ap"] == pytest.approx(8.4 / 11)  # tests/test_metrics.py's example
    assert per_class["cat"]["ap_area"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert per_class["cat"]["ignored"] == 1 and per_class["cat"]["positives"] == 3
    # dog's only positive is ranked 4th of 6: precision 1/4 at recall 1.
    assert per_class["dog"]["ap"] == pytest.approx(0.25)
    assert per_class["dog"]["ap_area"] == pytest.approx(0.25)
    assert scalars["eval/mAP"] == pytest.approx((per_class["cat"]["ap"] + per_class["dog"]["ap"]) / 2)


def test_table_lists_scalars_classes_and_matrix():
    table = evaluate.format_table(_single_report())
    assert "eval/Accuracy = 0.6000" in table
    assert "eval/Recall_2 = 0.8000" in table
    assert any(line.split()[:3] == ["cloud", "0.5000", "0.5000"] for line in table.splitlines())
    assert "confusion matrix" in table and "(step 7)" in table


def test_write_report_json_and_tensorboard(tmp_path):
    tf = pytest.importorskip("tensorflow")
    report = _single_report()
    report.per_class["desert"]["precision"] = float("nan")
    path = evaluate.write_report(report, str(tmp_path))
    data = json.loads(open(path).read())
    assert data["scalars"]["eval/Accuracy"] == pytest.approx(0.6)
    assert data["per_class"]["desert"]["precision"] is None
    assert json.loads((tmp_path / "eval.json").read_text()) == data
    tags = {}
    for event_file in tmp_path.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                tags[value.tag] = (event.step, float(tf.make_ndarray(value.tensor)))
    assert tags["eval/Accuracy"] == (7, pytest.approx(0.6))
    assert tags["eval/Recall_2"][1] == pytest.approx(0.8)
    assert "eval/per_class/recall/cloud" in tags
    assert "eval/per_class/precision/desert" not in tags  # NaN is not plotted


def test_checkpoint_step():
    assert evaluate.checkpoint_step("train/ckpt-1200.weights.h5") == 1200
    assert evaluate.checkpoint_step("train/model.ckpt-40") == 40
    assert evaluate.checkpoint_step("train/best.weights.h5") is None


def test_watch_evaluates_each_new_checkpoint_once_then_times_out():
    appearing = iter([None, "ckpt-1", "ckpt-1", "ckpt-3", None, None, None, None])
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    evaluated = list(evaluate.watch(lambda: next(appearing), lambda c: c.upper(), timeout_s=25,
                                    interval_s=10, sleep=sleep, clock=lambda: now[0]))
    assert evaluated == ["CKPT-1", "CKPT-3"]
    assert now[0] == 50  # one wait before ckpt-1, one before ckpt-3, three after it


@pytest.fixture(scope="module")
def toy_single(tmp_path_factory):
    from fixtures_records import write_dataset

    directory = tmp_path_factory.mktemp("toy_single")
    return str(directory), write_dataset(str(directory), "single", 3, {"validation": 12}, 40, 2)


def _colour_model(kernel):
    """Logits = mean RGB (inception scaling) @ kernel: the fixture's colours make it an oracle."""
    keras = pytest.importorskip("keras")
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(3, use_bias=False)
    model = keras.Model(inputs, dense(pooled))
    dense.set_weights([np.asarray(kernel, np.float32)])
    return model


def _run(info, **extra):
    return {"model_name": "inception_v3", "image_size": 32, "preprocessing": "inception",
            "classes": info.classes, "label_kind": info.label_kind, "dataset_name": info.name,
            "checkpoint": "train_dir/ckpt-12.weights.h5", **extra}


def test_evaluate_model_single_label_end_to_end(toy_single, tmp_path):
    directory, info = toy_single
    swapped = np.eye(3)[:, [0, 2, 1]]  # red -> class 0, green -> class 2, blue -> class 1
    report = evaluate.evaluate_model(_colour_model(swapped), _run(info), directory, "validation",
                                     batch_size=5, k=3)
    assert report.num_examples == 12 and report.step == 12
    assert report.confusion_matrix == [[4, 0, 0], [0, 0, 4], [0, 4, 0]]
    assert report.scalars["eval/Accuracy"] == pytest.approx(1 / 3)
    assert report.scalars["eval/Recall_3"] == 1.0
    assert [row["recall"] for row in report.per_class.values()] == [1.0, 0.0, 0.0]
    perfect = evaluate.evaluate_model(_colour_model(np.eye(3)), _run(info), directory)
    assert perfect.scalars["eval/Accuracy"] == 1.0


def test_evaluate_model_multi_label_ignores_difficult_only(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from fixtures_records import write_dataset

    from recordkit import records

    info = write_dataset(str(tmp_path), "multi", 3, {"validation": 30}, 40, 2)
    description = records.parse_spec(records.spec_for("multi"), 3)
    masks = [tf.io.parse_single_example(r, description)
             for r in tf.data.TFRecordDataset(info.shard_paths(str(tmp_path), "validation"))]
    difficult = np.array([m[records.DIFFICULT_ONLY].numpy() for m in masks])
    positives = np.array([m[records.MULTI_HOT].numpy() for m in masks])
    assert difficult.sum() > 0  # the fixture must exercise the ignore rule
    report = evaluate.evaluate_model(_colour_model(np.eye(3)), _run(info), str(tmp_path))
    for c, name in enumerate(info.classes):
        assert report.per_class[name]["ignored"] == difficult[:, c].sum()
        assert report.per_class[name]["positives"] == positives[:, c].sum()
        assert 0 < report.per_class[name]["ap"] <= 1
    assert report.scalars["eval/mAP"] == pytest.approx(
        np.mean([row["ap"] for row in report.per_class.values()]))
    assert "eval/mAP_area" in report.scalars


def test_run_and_dataset_mismatches_are_clear_errors(toy_single):
    from recordkit.errors import RecordkitError

    directory, info = toy_single
    run = _run(info)
    assert evaluate.check_run(run, "inception_v3", "toy") is run
    with pytest.raises(RecordkitError, match="--model_name vgg_16 does not match"):
        evaluate.check_run(run, "vgg_16")
    with pytest.raises(RecordkitError, match="--dataset_name flowers does not match"):
        evaluate.check_run(run, None, "flowers")
    with pytest.raises(RecordkitError, match="wrong labels"):
        evaluate.evaluate_model(_colour_model(np.eye(3)), _run(info, classes=["a", "b", "c"]),
                                directory)


@pytest.mark.slow
def test_eval_cli_on_a_train_dir(tmp_path, capsys):
    from tiny_training_run import tiny_run

    from recordkit.cli import main

    dataset_dir, train_dir = tiny_run(str(tmp_path))
    eval_dir = tmp_path / "eval_dir"
    args = ["eval", f"--checkpoint_path={train_dir}", f"--eval_dir={eval_dir}",
            "--dataset_name=toy", "--dataset_split_name=validation", f"--dataset_dir={dataset_dir}",
            "--model_name=tiny_vgg"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "toy/validation: 6 examples" in out and "eval/Recall_5 = 1.0000" in out
    data = json.loads((eval_dir / "eval_2.json").read_text())
    assert data["step"] == 2 and data["checkpoint"].endswith("model.ckpt-2")
    assert sum(map(sum, data["confusion_matrix"])) == 6
    assert list(eval_dir.glob("events.out.tfevents.*"))
    assert main(args[:-1] + ["--model_name=inception_v3"]) == 2
    assert "does not match" in capsys.readouterr().err
    assert main(args[:-2] + [f"--dataset_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "dataset.json not found" in err and "\n" not in err
    assert main(args + ["--watch", "--timeout=0", "--eval_interval_secs=0"]) == 0
    assert "eval/Accuracy" in capsys.readouterr().out


def test_table_lists_label_issues_flagged_count_and_in_sample_note():
    report = _single_report()
    report.label_issues_requested, report.label_issues_flagged = 3, 2
    report.label_issues = [
        {"index": 4, "source_id": "water/b.jpg", "filename": "b.jpg", "given": "water",
         "suggested": "cloud", "p_given": 0.000012, "p_suggested": 0.95},
        {"index": 1, "source_id": "", "filename": "", "given": "cloud", "suggested": "desert",
         "p_given": 0.2, "p_suggested": 0.7},
    ]
    table = evaluate.format_table(report)
    assert "2 of 5 records flagged (fewer than the 3 asked for), all listed" in table
    rows = [line.split() for line in table.splitlines()]
    assert ["1", "water/b.jpg", "water", "cloud", "1.2e-05", "0.9500"] in rows
    assert ["2", "record", "1", "cloud", "desert", "0.2000", "0.7000"] in rows  # no ids stored
    assert "in-sample" not in table
    report.label_issues_in_sample = True
    note = [line for line in evaluate.format_table(report).splitlines() if "in-sample" in line]
    assert len(note) == 1 and note[0].startswith("note: the run trained on validation")
    report.label_issues, report.label_issues_flagged, report.label_issues_in_sample = [], 0, False
    assert evaluate.format_table(report).endswith("0 of 5 records flagged")


def _flip_label(path, source_id: str, label: int) -> None:
    """Rewrite one record's image/class/label in a shard (a mislabelled file, made on purpose)."""
    tf = pytest.importorskip("tensorflow")
    from recordkit import records

    examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    with tf.io.TFRecordWriter(path) as writer:
        for example in examples:
            features = example.features.feature
            if features[records.SOURCE_ID].bytes_list.value[0].decode() == source_id:
                features[records.LABEL].int64_list.value[0] = label
            writer.write(example.SerializeToString())


def test_evaluate_model_names_the_mislabelled_record(tmp_path):
    from fixtures_records import write_dataset

    info = write_dataset(str(tmp_path), "single", 3, {"validation": 12}, 40, 2)
    _flip_label(str(tmp_path / info.splits["validation"].files[0]), "img00004", 0)  # green, labelled red
    oracle = _colour_model(np.eye(3) * 50)  # softmax of its logits: 1.0 for the image's colour
    report = evaluate.evaluate_model(oracle, _run(info, dataset_split_name="train"), str(tmp_path),
                                     label_issues=5)
    assert report.label_issues_flagged == 1 and report.label_issues_requested == 5
    assert len(report.label_issues) == 1
    issue = report.label_issues[0]
    assert (issue["source_id"], issue["filename"], issue["given"], issue["suggested"]) == \
        ("img00004", "img00004.jpg", "class0", "class1")
    assert issue["p_given"] < 0.01 and issue["p_suggested"] > 0.99
    assert not report.label_issues_in_sample  # trained on train, evaluated on validation
    in_sample = evaluate.evaluate_model(oracle, _run(info, dataset_split_name="validation"),
                                        str(tmp_path), label_issues=5)
    assert in_sample.label_issues_in_sample
    assert evaluate.evaluate_model(oracle, _run(info), str(tmp_path)).label_issues is None


def test_label_issues_on_a_multi_label_dataset_is_a_clear_error(tmp_path):
    from fixtures_records import write_dataset

    from recordkit.errors import RecordkitError

    info = write_dataset(str(tmp_path), "multi", 3, {"validation": 4}, 40, 1)
    with pytest.raises(RecordkitError, match="--label_issues is for single-label datasets"):
        evaluate.evaluate_model(None, _run(info), str(tmp_path), label_issues=3)


@pytest.mark.slow
def test_eval_cli_label_issues_table_and_json(tmp_path, capsys):
    from fixtures_records import write_dataset
    from tiny_training_run import tiny_run

    from recordkit.cli import main

    dataset_dir, train_dir = tiny_run(str(tmp_path))
    eval_dir = tmp_path / "eval_dir"
    args = ["eval", f"--checkpoint_path={train_dir}", f"--dataset_dir={dataset_dir}", f"--eval_dir={eval_dir}"]
    # On the split it trained on (2 steps: it mostly predicts one class) it flags some records.
    assert main(args + ["--label-issues", "2", "--dataset_split_name=train"]) == 0
    out = capsys.readouterr().out
    data = json.loads((eval_dir / "eval.json").read_text())
    assert data["label_issues_requested"] == 2 and data["label_issues_in_sample"] is True
    rows, flagged = data["label_issues"], data["label_issues_flagged"]
    assert flagged >= 1, "the tiny run should flag records on its training split"
    assert f"likely label errors (confident learning): {flagged} of 8 records flagged" in out
    assert "note: the run trained on train: these probabilities are in-sample" in out
    assert len(rows) == min(2, flagged)
    for rank, row in enumerate(rows, 1):
        assert row["source_id"].startswith("img") and row["filename"] == row["source_id"] + ".jpg"
        assert row["given"] != row["suggested"] and row["p_suggested"] > 0
        assert any(line.split()[:4] == [str(rank), row["source_id"], row["given"], row["suggested"]]
                   for line in out.splitlines())
    assert [row["p_given"] for row in rows] == sorted(row["p_given"] for row in rows)
    assert main(args + ["--label_issues=6"]) == 0  # validation: held out, no note
    out = capsys.readouterr().out
    assert "likely label errors (confident learning):" in out and "in-sample" not in out
    assert json.loads((eval_dir / "eval.json").read_text())["label_issues_in_sample"] is False
    assert main(args) == 0  # off by default
    assert "likely label errors" not in capsys.readouterr().out
    assert json.loads((eval_dir / "eval.json").read_text())["label_issues"] is None
    multi_dir = tmp_path / "multi"
    write_dataset(str(multi_dir), "multi", 3, {"validation": 4}, 40, 1)
    assert main(["eval", f"--checkpoint_path={train_dir}", f"--dataset_dir={multi_dir}", "--label_issues=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--label_issues is for single-label datasets" in err and "\n" not in err
