"""`recordkit export`: a SavedModel that takes image bytes, from a run or a pretrained checkpoint."""

from __future__ import annotations

from recordkit.cli import flags


def register(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="write a SavedModel (image bytes in; logits, probabilities, top classes out)",
        description="From a training run: --checkpoint_path is its train_dir (newest checkpoint) "
        "or one checkpoint; classes and preprocessing come from the run. From a pretrained "
        "ImageNet checkpoint with its original head: give --num_classes (1001 for slim "
        "inception_v3, 1000 for slim vgg_16 and Keras files) and --model_name; "
        "--checkpoint_path may also be `imagenet` (Keras' weights).",
    )
    flags.add(parser, "checkpoint_path", required=True,
              help="train_dir, a checkpoint, a slim .ckpt, a Keras .weights.h5 or `imagenet`")
    flags.add(parser, "output_dir", required=True, help="where the SavedModel goes (local directory)")
    flags.add(parser, "model_name", help="checked against the run; required for a pretrained checkpoint")
    flags.add(parser, "dataset_name", help="checked against the run (tutorial compatibility)")
    flags.add(parser, "num_classes", type=int,
              help="export a pretrained checkpoint with its original ImageNet head (1000 or 1001)")
    flags.add(parser, "image_size", type=int, help="pretrained only (default: the model's native size)")
    flags.add(parser, "label_path", help="pretrained only: ImageNet names, one per line "
              "(default: the 1,000 ImageNet classes shipped with recordkit)")
    flags.add(parser, "top_k", type=int, default=5, help="top classes the signature returns (default 5)")
    flags.add(parser, "overwrite", action="store_true", help="replace an existing export")
    parser.set_defaults(run=run)


def run(args, extra) -> int:
    from recordkit import export
    from recordkit.errors import RecordkitError

    if args.num_classes is not None or args.checkpoint_path == "imagenet":
        if not args.model_name:
            raise RecordkitError("exporting a pretrained checkpoint needs --model_name")
        model, info = export.pretrained(args.model_name, args.checkpoint_path, args.num_classes,
                                        args.image_size, args.label_path)
    else:
        model, info = export.from_run(args.checkpoint_path, args.model_name, args.dataset_name)
    path = export.write_saved_model(model, info, args.output_dir, args.top_k, args.overwrite)
    print(f"exported {info.description.get('model_name', 'model')} ({len(info.classes)} classes, "
          f"{info.label_kind}-label, input {info.image_size[0]}x{info.image_size[1]}) to {path}")
    print(f"signature {export.SIGNATURE}: {export.INPUT} (encoded JPEG/PNG, tf.string [N]) -> "
          "logits, probabilities, top_classes, top_class_ids")
    return 0
