"""`recordkit convert`: image folders or PASCAL VOC to sharded TFRecords, as an Apache Beam pipeline.

Flags not listed here (--runner, --project, --region, --temp_location, --setup_file,
--direct_num_workers, ...) go to Beam unchanged.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

from recordkit.cli import flags
from recordkit.errors import RecordkitError
from recordkit.metadata import REPORT_JSON, join


def register(commands) -> None:
    parser = commands.add_parser(
        "convert",
        help="convert an image dataset into sharded TFRecords (Apache Beam)",
        description=__doc__,
    )
    actions = []

    def add(group, *args, **kwargs) -> None:
        actions.append(flags.add(group, *args, **kwargs))

    add(parser, "tensorflow-data-dir", "-t", "--input-dir", dest="input_dir",
              help="dataset root holding train/<class>/* and validation/<class>/* (folder mode)")
    add(parser, "output-dir", help="where shards, label.txt and dataset.json go "
              "(default: the input folder; any path Beam/tf.io.gfile understands, e.g. gs://)")
    add(parser, "dataset-name", default="satellite", help="shard file prefix (default: %(default)s)")
    add(parser, "train-shards", type=int, default=2, help="default: %(default)s")
    add(parser, "validation-shards", type=int, default=2, help="default: %(default)s")
    add(parser, "num-threads", type=int, default=os.cpu_count() or 1,
              help="local worker processes of the default runner (default: number of CPUs)")
    add(parser, "image-size", help="resize to N×N or WxH (default: keep the source size, "
              "JPEG bytes pass through untouched)")
    add(parser, "resize-mode", choices=("stretch", "crop"), default="stretch",
              help="stretch: exactly the size; crop: shorter side fits, centre crop (default: %(default)s)")
    add(parser, "jpeg-quality", type=int, default=95,
              help="for images that are re-encoded (default: %(default)s)")
    add(parser, "max-pixels", type=int, default=None,
              help="larger images are skipped as decompression bombs (default: Pillow's limit)")
    add(parser, "validation-fraction", type=float, default=None,
              help="input is ROOT/<class>/* with no train/validation folders: hold out this "
              "fraction of each class, chosen per file by a seeded hash of its name")
    add(parser, "seed", type=int, default=0, help="record order seed (default: %(default)s)")
    add(parser, "strict", action="store_true",
              help="any skipped file is an error: exit 1 and publish only the report")
    add(parser, "drop-duplicates", action="store_true",
              help="keep one copy of identical images: the first train copy (by path); an image "
              "under different labels is dropped everywhere (default: keep all, report them)")
    add(parser, "drop-near-duplicates", action="store_true",
              help="the same rule for near copies (the same photo re-saved, resized or cropped a "
              "little): keep the first, drop the rest; both when their labels differ")
    add(parser, "no-near-duplicates", action="store_true",
              help="skip the search for near copies and the fingerprints it needs (exact duplicates "
              "are still found)")
    add(parser, "no-progress", action="store_true", help="no progress bar")
    add(parser, "verbose", "-v", action="store_true",
              help="show Beam's and the workers' log lines (default: kept in a log file, named if the run fails)")
    voc = parser.add_argument_group("PASCAL VOC (--format voc)")
    add(voc, "format", choices=("folders", "voc"), default=None,
              help="input layout (default: voc when --voc-root is given, else folders)")
    add(voc, "voc-root", help="folder with Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<split>.txt")
    add(voc, "splits", default="trainval,test",
              help="two VOC splits, written as train and validation (default: %(default)s)")
    add(voc, "classes", help="a label.txt or a comma-separated list (default: the 20 VOC classes)")
    add(voc, "unknown-classes", choices=("error", "skip"), default="error",
              help="an object of a class not in the list: error (report it, publish nothing, exit 1) "
              "or skip (drop the object, keep the image, warn) (default: %(default)s)")
    add(voc, "check-devkit", action="store_true",
              help="compare the labels with ImageSets/Main/<class>_<split>.txt and report disagreements")
    ours = [s for action in actions for s in action.option_strings if s.startswith("--")]
    parser.set_defaults(run=run, pass_through=True, flag_names=ours)


def check_beam_args(beam_args: list[str], ours: list[str]) -> None:
    """Flags we don't know go to Beam, which only warns about ones it doesn't know either:
    a typo like --validaton-shards would silently run with the default."""
    import difflib

    from recordkit.convert import parse_beam_args

    options = parse_beam_args(beam_args)
    known = options.get_all_options(retain_unknown_options=False)
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(known)
    typed = [a.split("=", 1)[0] for a in beam_args if a.startswith("--")]
    hints = []
    for flag in dict.fromkeys(f for f in typed if f[2:].replace("-", "_") in unknown):
        close = difflib.get_close_matches(flag, ours + [f"--{name}" for name in known], n=1)
        hints.append(flag + (f" (did you mean {close[0]}?)" if close else ""))
    if hints:
        raise RecordkitError(f"unknown flag{'s' if len(hints) > 1 else ''}: {', '.join(hints)}")


def options_from(args):
    from recordkit import images
    from recordkit.convert import ConvertOptions

    for name in ("train_shards", "validation_shards", "num_threads"):
        if getattr(args, name) < 1:
            raise RecordkitError(f"--{name.replace('_', '-')} must be at least 1")
    try:
        image = images.ImageOptions(
            size=images.parse_size(args.image_size) if args.image_size else None,
            resize_mode=args.resize_mode,
            jpeg_quality=args.jpeg_quality,
            **({"max_pixels": args.max_pixels} if args.max_pixels else {}),
        )
    except ValueError as e:
        raise RecordkitError(str(e)) from None
    return ConvertOptions(
        input_dir=args.input_dir,
        dataset_name=args.dataset_name,
        output_dir=args.output_dir,
        train_shards=args.train_shards,
        validation_shards=args.validation_shards,
        num_workers=args.num_threads,
        image=image,
        seed=args.seed,
        strict=args.strict,
        validation_fraction=args.validation_fraction,
        drop_duplicates=args.drop_duplicates,
        near_duplicates=not args.no_near_duplicates,
        drop_near_duplicates=args.drop_near_duplicates,
    )


def run(args, beam_args) -> int:
    root = logging.getLogger()
    level = root.level
    if not args.verbose:  # Beam warns at import time about optional GCP libraries
        root.setLevel(logging.ERROR)
    try:
        return convert(args, beam_args)
    finally:
        root.setLevel(level)


def convert(args, beam_args) -> int:
    check_beam_args(beam_args, args.flag_names)
    if args.no_near_duplicates and args.drop_near_duplicates:
        raise RecordkitError("--drop-near-duplicates needs the search that --no-near-duplicates turns off: give one")
    log = None
    if not args.verbose:
        handle, log = tempfile.mkstemp(prefix="recordkit-convert-", suffix=".log")
        os.close(handle)
    failed = False
    try:
        return run_voc(args, beam_args, log) if args.format == "voc" or (args.format is None and args.voc_root) \
            else run_folders(args, beam_args, log)
    except RecordkitError:  # our own one-line errors need no log
        raise
    except Exception as e:  # a failed pipeline: one line here, the workers' story in the log
        failed = True
        where = f"; Beam's and the workers' output is in {log}" if log else ""
        last = (str(e).strip().splitlines() or [""])[-1]  # Beam wraps worker errors in pages of context
        raise RecordkitError(f"the conversion failed: {type(e).__name__}: {last}{where}") from None
    finally:
        if log and not failed:
            os.remove(log)


def run_folders(args, beam_args, log: str | None) -> int:
    from recordkit.folders import convert_folders

    if not args.input_dir:
        raise RecordkitError("-t/--input-dir is required (or --format voc --voc-root DIR)")
    result = convert_folders(options_from(args), beam_args, show_progress=not args.no_progress, log=log)
    print_summary(result)
    if "error" in result.report:
        print(f"recordkit convert: error: {result.report['error']}", file=sys.stderr)
        return 1
    return 1 if result.report["skipped"] and args.strict else 0


def run_voc(args, beam_args, log: str | None) -> int:
    import dataclasses

    from recordkit import voc

    root = args.voc_root or args.input_dir
    if not root:
        raise RecordkitError("--format voc needs --voc-root (the folder holding Annotations/ and JPEGImages/)")
    if args.validation_fraction is not None:
        raise RecordkitError("--validation-fraction is for folder datasets; VOC splits come from --splits")
    voc_options = voc.VocOptions(
        splits=tuple(s.strip() for s in args.splits.split(",")),
        classes=voc.load_classes(args.classes),
        check_devkit=args.check_devkit,
        unknown_classes=args.unknown_classes,
    )
    options = dataclasses.replace(options_from(args), input_dir=root)
    result = voc.convert_voc(options, voc_options, beam_args, show_progress=not args.no_progress, log=log)
    print_summary(result)
    if args.check_devkit:
        found = sum(w.startswith(voc.DEVKIT_CHECK) for w in result.report["warnings"])
        print(f"{voc.DEVKIT_CHECK}: " + (f"{found} disagreements (listed in report.json)" if found else
              f"all {result.records} converted images agree with ImageSets/Main/<class>_<split>.txt"))
    unknown = sum(s["reason"].startswith(voc.UNKNOWN_CLASS) for s in result.report["skipped"])
    if unknown:
        print(f"error: {unknown} annotations name classes not in the class list; pass the full list "
              "with --classes, or --unknown-classes skip to drop those objects", file=sys.stderr)
        return 1
    return 1 if result.report["skipped"] and args.strict else 0


def print_summary(result) -> None:
    for line in result.recovered:
        print(f"recovered: {line}", file=sys.stderr)
    report = result.report
    for warning in report["warnings"][:10]:
        print(f"warning: {warning}", file=sys.stderr)
    if len(report["warnings"]) > 10:
        print(f"warning: ... and {len(report['warnings']) - 10} more in report.json", file=sys.stderr)
    counts = ", ".join(f"{n} {split}" for split, n in report["records"].items())
    skipped = report["skipped"]
    print(f"records: {counts} ({result.records} in all)")
    if skipped:
        print(f"skipped: {len(skipped)} files (listed with reasons in {join(result.output_dir, REPORT_JSON)}):")
        for entry in skipped[:10]:
            print(f"  {entry['path']}: {entry['reason']}")
        if len(skipped) > 10:
            print(f"  ... and {len(skipped) - 10} more")
    else:
        print("skipped: 0 files")
    print_duplicates(report["duplicates"])
    near = result.info.near_duplicates if result.info is not None else None  # None: nothing published
    if near is not None and not near["checked"]:
        print("near duplicates: not checked (--no-near-duplicates)")
    elif near is not None:
        print_duplicates(report["near_duplicates"], "near duplicates (pairs)", "--drop-near-duplicates", " ~ ",
                         near["dropped"])
    rate = result.records / result.seconds if result.seconds else 0.0
    print(f"time: {result.seconds:.1f} s, {rate:.0f} images/s")
    if result.info is None:
        print(f"nothing published to {result.output_dir} except report.json", file=sys.stderr)
    else:
        shards = sum(s.num_shards for s in result.info.splits.values())
        print(f"wrote {shards} shards, label.txt and dataset.json to {result.output_dir}")


def print_duplicates(findings: list[dict], title: str = "duplicates", flag: str = "--drop-duplicates",
                     between: str = " = ", dropped: int | None = None) -> None:
    """Exact duplicates (groups of copies), or near ones (pairs, `between` " ~ "), worst kind
    first; `dropped` when the findings' own lists over-count (a record in several pairs)."""
    from recordkit.duplicates import DESCRIPTIONS

    if not findings:
        print(f"{title}: none")
        return
    counts = ", ".join(f"{text}: {sum(f['kind'] == k for f in findings)}" for k, text in DESCRIPTIONS.items())
    print(f"{title}: {counts} (details in report.json)")
    for finding in sorted(findings, key=lambda f: -list(DESCRIPTIONS).index(f["kind"]))[:5]:
        paths = between.join(f"{c['path']} [{','.join(c['label'])}]" for c in finding["copies"])
        print(f"  {DESCRIPTIONS[finding['kind']]}: {paths}")
    if len(findings) > 5:
        print(f"  ... and {len(findings) - 5} more")
    dropped = sum(len(f["dropped"]) for f in findings) if dropped is None else dropped
    if dropped:
        print(f"  {flag} left out {dropped} copies")
