"""`recordkit inspect DIR`: what is in a converted dataset (reads its dataset.json).

Per split: records, shards, bytes, per-class counts, image sizes; duplicate images (by
image/key/sha256) within a split, across splits and under different labels; the shards
checked against dataset.json. --verify also decodes every image. Exit status: 0 when no
problem was found, 1 when one was (listed by shard and record index), 2 for usage errors.
"""

from __future__ import annotations

import json
import os

from recordkit.cli import flags

LISTED = 20  # per section of the table; --json lists everything


def register(commands) -> None:
    parser = commands.add_parser(
        "inspect",
        help="what is in a set of shards: counts, sizes, duplicates, leaks, broken records",
        description=__doc__,
    )
    parser.add_argument("directory", metavar="DIR", help="output of `recordkit convert` (holds dataset.json)")
    flags.add(parser, "verify", action="store_true",
              help="also decode every image and check its size and sha256 against the record")
    flags.add(parser, "json", action="store_true", help="print the report as JSON instead of a table")
    flags.add(parser, "contact-sheet", metavar="PNG",
              help="write a picture with a row of sample images per class")
    flags.add(parser, "samples-per-class", type=int, default=8,
              help="images per row of the contact sheet (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args, extra) -> int:
    from recordkit import contact_sheet, inspect, metadata
    from recordkit.errors import RecordkitError

    if args.samples_per_class < 1:
        raise RecordkitError("--samples-per-class must be at least 1")
    report, contents = inspect.inspect(args.directory, verify=args.verify)
    print(json.dumps(report.to_json(), indent=2) if args.json else format_table(report))
    if args.contact_sheet:
        info = metadata.load(args.directory)
        sheet = contact_sheet.make(args.directory, info, contents, args.samples_per_class)
        try:
            os.makedirs(os.path.dirname(args.contact_sheet) or ".", exist_ok=True)
            sheet.save(args.contact_sheet)
        except (OSError, ValueError) as e:  # a file where the folder should be, no permission, unknown extension
            raise RecordkitError(f"cannot write the contact sheet to {args.contact_sheet}: {e}") from None
        if not args.json:
            print(f"\nwrote the contact sheet to {args.contact_sheet}")
    return 1 if report.problems else 0


def format_table(report) -> str:
    kind = "single-label" if report.label_kind == "single" else "multi-label"
    lines = [f"{report.name} ({kind}, {len(report.classes)} classes) in {report.directory}", ""]
    lines += _splits_table(report)
    lines += [""] + _classes_table(report)
    lines += [""] + _sizes_table(report)
    lines += [""] + _duplicates(report)
    lines += [""] + _near_duplicates(report)
    lines += [""] + _problems(report)
    return "\n".join(lines)


def _table(header: list[str], rows: list[list]) -> list[str]:
    """First column left-aligned, the others right-aligned."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in cells]


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _splits_table(report) -> list[str]:
    header = ["split", "records", "shards", "bytes"] + (["decoded"] if report.verified else [])
    rows = [[name, s.records, s.shards, _bytes(s.bytes)] + ([s.decoded] if report.verified else [])
            for name, s in report.splits.items()]
    return _table(header, rows)


def _classes_table(report) -> list[str]:
    splits = list(report.splits)
    if report.label_kind == "single":
        rows = [[c] + [report.splits[s].per_class[c] for s in splits] for c in report.classes]
        return _table(["class"] + splits, rows)
    header = ["class"] + [f"{s} {what}" for s in splits for what in ("positive", "difficult-only")]
    rows = [[c] + [report.splits[s].per_class[c][what] for s in splits for what in ("positive", "difficult_only")]
            for c in report.classes]
    return _table(header, rows)


def _sizes_table(report) -> list[str]:
    rows = []
    for name, s in report.splits.items():
        sizes = s.image_sizes
        if not sizes["distinct"]:
            rows.append([name, "-", "-", 0, "-"])
            continue
        spread = {axis: "/".join(f"{sizes[axis][k]:g}" for k in ("min", "median", "max")) for axis in ("width", "height")}
        common = ", ".join(f"{c['size']} ({c['records']})" for c in sizes["most_common"][:3])
        rows.append([name, spread["width"], spread["height"], sizes["distinct"], common])
    return _table(["image sizes", "width min/median/max", "height min/median/max", "distinct", "most common"], rows)


def _duplicates(report) -> list[str]:
    title = "duplicates (same image/key/sha256)"
    if not report.duplicates:
        return [f"{title}: none"]
    count = len(report.duplicates)
    return [f"{title}: {count} image{'s' if count > 1 else ''} stored more than once",
            *_by_kind(report.duplicates, "same image", " = ")]


def _near_duplicates(report) -> list[str]:
    title = "near duplicates (image/key/fingerprint: re-saved, resized or cropped a little)"
    unchecked = (f" (not searched: {report.unfingerprinted} records without a usable fingerprint, converted with "
                 "--no-near-duplicates or by an older recordkit, or damaged)") if report.unfingerprinted else ""
    if not report.near_duplicates:
        return [f"{title}: none{unchecked}"]
    count = len(report.near_duplicates)
    return [f"{title}: {count} pair{'s' if count > 1 else ''}{unchecked}",
            *_by_kind(report.near_duplicates, "near copies", " ~ ")]


def _by_kind(findings: list, subject: str, between: str) -> list[str]:
    """Findings worst kind first: a count per kind, then the first LISTED, copies joined by `between`."""
    from recordkit.duplicates import DESCRIPTIONS, KINDS

    lines = []
    for kind in reversed(KINDS):
        found = [f for f in findings if f.kind == kind]
        if not found:
            continue
        lines.append(f"  {DESCRIPTIONS[kind].replace('same image', subject)}: {len(found)}")
        lines += ["    " + between.join(f"{c.split}/{c.path} ({', '.join(c.label) or 'no label'})" for c in f.copies)
                  for f in found[:LISTED]]
        if len(found) > LISTED:
            lines.append(f"    ... and {len(found) - LISTED} more (--json lists all)")
    return lines


def _problems(report) -> list[str]:
    checked = "shards, records and images checked" if report.verified else "shards and records checked; --verify also decodes the images"
    if not report.problems:
        return [f"problems: none ({checked})"]
    lines = [f"problems: {len(report.problems)} ({checked})"]
    for p in report.problems[:LISTED]:
        where = p.split + (f" {p.shard}" if p.shard else "") + (f" record {p.index}" if p.index is not None else "")
        lines.append(f"  {where}: {p.message}")
    if len(report.problems) > LISTED:
        lines.append(f"  ... and {len(report.problems) - LISTED} more (--json lists all)")
    return lines
