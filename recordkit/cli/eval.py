"""`recordkit eval`: metrics of a checkpoint on a converted split (TF-Slim eval_image_classifier)."""

from __future__ import annotations

from recordkit.cli import flags


def register(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="evaluate a checkpoint: table on stdout, JSON + TensorBoard in --eval_dir",
        description="--checkpoint_path is a train_dir (its newest checkpoint) or one checkpoint. "
        "Single-label: accuracy, recall@k, per-class precision/recall, confusion matrix. "
        "Multi-label: per-class AP and mAP (VOC2007 11-point, difficult-only ignored) and the "
        "area-under-PR variant. --model_name/--dataset_name are only checked against the run. "
        "--label_issues N lists the N likeliest label errors (single-label).",
    )
    flags.add(parser, "checkpoint_path", required=True, help="train_dir or one checkpoint")
    flags.add(parser, "dataset_dir", required=True, help="output of `recordkit convert`")
    flags.add(parser, "eval_dir", help="where eval_<step>.json and TensorBoard events go")
    flags.add(parser, "dataset_split_name", default="validation", help="default: validation")
    flags.add(parser, "dataset_name", help="checked against the run (tutorial compatibility)")
    flags.add(parser, "model_name", help="checked against the run (tutorial compatibility)")
    flags.add(parser, "batch_size", type=int, default=32)
    flags.add(parser, "recall_k", type=int, default=5, help="k of eval/Recall_k (default 5)")
    flags.add(parser, "label_issues", type=int, default=0, metavar="N",
              help="single-label: list the N records whose given label the model finds least "
              "likely (confident learning), with file and suggested label, in the table and JSON "
              "(default 0: off). Needs a split the run did not train on: on its training split "
              "the probabilities are in-sample (overconfident) and memorised errors are missed")
    flags.add(parser, "watch", action="store_true",
              help="keep evaluating each new checkpoint in the train_dir as it appears")
    flags.add(parser, "eval_interval_secs", type=float, default=60,
              help="--watch: seconds between looks for a new checkpoint (default 60)")
    flags.add(parser, "timeout", type=float, default=3600,
              help="--watch: stop after this many seconds without a new checkpoint (default 3600)")
    parser.set_defaults(run=run)


def run(args, extra) -> int:
    import tensorflow as tf

    from recordkit import evaluate
    from recordkit.errors import RecordkitError

    def evaluate_one(checkpoint: str) -> None:
        report = evaluate.evaluate(
            checkpoint, args.dataset_dir, args.dataset_split_name, batch_size=args.batch_size,
            k=args.recall_k, model_name=args.model_name, dataset_name=args.dataset_name,
            label_issues=args.label_issues,
        )
        print(evaluate.format_table(report), flush=True)
        if args.eval_dir:
            print(f"wrote {evaluate.write_report(report, args.eval_dir)}", flush=True)

    if not args.watch:
        evaluate_one(args.checkpoint_path)
        return 0
    if not tf.io.gfile.isdir(args.checkpoint_path):
        raise RecordkitError("--watch needs --checkpoint_path to be a train_dir")
    print(f"watching {args.checkpoint_path} for new checkpoints (stops after {args.timeout:g} s "
          "without one)", flush=True)
    for _ in evaluate.watch(lambda: tf.train.latest_checkpoint(args.checkpoint_path), evaluate_one,
                            args.timeout, args.eval_interval_secs):
        print(flush=True)
    return 0
