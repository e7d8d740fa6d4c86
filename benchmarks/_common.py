"""What every benchmark needs: the satellite data (replicated), timed commands with peak RSS,
a table on stdout and a JSON file in benchmarks/results/.

Benchmarks compare against a baseline measured in the same run, so the noise of a shared
machine mostly cancels out of the ratios; absolute numbers are printed too.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

REPO = pathlib.Path(__file__).resolve().parent.parent
SATELLITE = REPO.parent / "shared" / "datasets" / "satellite"
SCRATCH = pathlib.Path(os.environ.get("RECORDKIT_BENCH_DIR", "/tmp/recordkit-bench"))
RESULTS = REPO / "benchmarks" / "results"
PYTHON = sys.executable
QUIET_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}

_SOI = b"\xff\xd8"


def image_files(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(root.glob("*/*/*"))


def replicate(times: int, source: pathlib.Path = SATELLITE) -> pathlib.Path:
    """SCRATCH/satellite_x{times}: every image `times` times under new names.

    Each copy gets a JPEG comment naming it, so copies are distinct files (as in a real
    dataset) and the exact-duplicate finder has nothing to report; pixels are unchanged, so
    the copies are near duplicates of each other (benchmarks pass --no-near-duplicates).
    """
    root = SCRATCH / f"satellite_x{times}"
    done = root / ".complete"
    if done.exists():
        return root
    for path in image_files(source):
        data = path.read_bytes()
        relative = path.relative_to(source)
        (root / relative.parent).mkdir(parents=True, exist_ok=True)
        for i in range(times):
            tagged = data if i == 0 else _with_comment(data, f"copy {i}".encode())
            (root / relative.parent / f"r{i}_{path.name}").write_bytes(tagged)
    done.touch()
    return root


def synthetic(count: int, size: int = 64) -> pathlib.Path:
    """SCRATCH/synthetic_{count}: `count` small distinct JPEGs in 6 classes (80% train).

    A few hundred noise images are encoded once; every file is one of them with a JPEG
    comment naming it, so files are distinct and writing 600,000 of them takes a minute.
    """
    import random

    from PIL import Image

    root = SCRATCH / f"synthetic_{count}"
    done = root / ".complete"
    if done.exists():
        return root
    rng = random.Random(0)
    bases = []
    for _ in range(256):
        image = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3)).resize((size, size))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=75)
        bases.append(out.getvalue())
    classes = [f"class{c}" for c in range(6)]
    for split in ("train", "validation"):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        split = "validation" if i % 5 == 4 else "train"
        data = _with_comment(bases[i % len(bases)], f"image {i}".encode())
        (root / split / classes[i % 6] / f"{i:07d}.jpg").write_bytes(data)
    done.touch()
    return root


def warm(root: pathlib.Path) -> None:
    """Read every file under `root` once, so whichever command runs first does not pay for
    the disk while the other reads from the page cache."""
    for path in root.rglob("*"):
        if path.is_file():
            path.read_bytes()


def _with_comment(jpeg: bytes, text: bytes) -> bytes:
    if not jpeg.startswith(_SOI):
        raise ValueError("not a JPEG")
    segment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return _SOI + segment + jpeg[2:]


@dataclass
class Run:
    """A finished command: wall seconds, peak RSS (MiB) of the process and its children, and
    CPU seconds (user + system) of the whole tree: on a shared machine the wall time moves with
    other jobs' load, the CPU time much less, so it shows whether the work itself changed."""

    seconds: float
    launcher_mib: float
    workers_mib: float
    stdout: str
    cpu_seconds: float = 0.0
    tree_mib: float = 0.0  # the largest sum of RSS over the whole process tree at one sample
    tree_pss_mib: float = 0.0  # the same with PSS (shared pages split among their processes)


def run_command(args: Sequence[str], cwd: pathlib.Path = REPO, env: dict[str, str | None] | None = None,
                interval: float = 0.05, with_pss: bool = False) -> Run:
    """Run `args`, sampling the RSS of the process tree every `interval` s (the kernel's peak
    for the launcher, the largest sample for any descendant), and with `with_pss` the summed
    PSS too (reading smaps costs more); `env` adds to QUIET_ENV (None removes a variable)."""
    start, cpu_before = time.monotonic(), _children_cpu()
    environment = {k: v for k, v in {**QUIET_ENV, **(env or {})}.items() if v is not None}
    process = subprocess.Popen(list(args), cwd=cwd, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    peaks = {"launcher": 0.0, "workers": 0.0, "tree": 0.0, "pss": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            tree = pss = 0.0
            for pid in _descendants(process.pid):
                key = "launcher" if pid == process.pid else "workers"
                peaks[key] = max(peaks[key], _proc_mib(pid, "VmHWM" if key == "launcher" else "VmRSS"))
                tree += _proc_mib(pid, "VmRSS")
                pss += _proc_mib(pid, "Pss", "smaps_rollup") if with_pss else 0.0
            peaks["tree"], peaks["pss"] = max(peaks["tree"], tree), max(peaks["pss"], pss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.monotonic() - start
    stop.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({process.returncode}):\n{stderr[-3000:]}")
    return Run(seconds, peaks["launcher"], peaks["workers"], stdout, _children_cpu() - cpu_before, peaks["tree"],
               peaks["pss"])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    queue += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return found


def _proc_mib(pid: int, field: str, source: str = "status") -> float:
    try:
        with open(f"/proc/{pid}/{source}") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def timed(fn: Callable[[], object]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def pipeline_seconds(stdout: str) -> float:
    """The 'time: 8.3 s, ...' line `recordkit convert` prints (the pipeline, without imports)."""
    for line in stdout.splitlines():
        if line.startswith("time: "):
            return float(line.split()[1])
    raise ValueError(f"no time line in:\n{stdout}")


def report(name: str, columns: Sequence[str], rows: list[dict], extra: dict | None = None) -> None:
    """Print `rows` as a table and write them (plus `extra`) to benchmarks/results/NAME.json."""
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
               "rows": rows, **(extra or {})}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_plain) + "\n")
    print(f"wrote {path.relative_to(REPO)}")


def _cell(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _plain(value):
    return asdict(value) if hasattr(value, "__dataclass_fields__") else str(value)


def convert(root: pathlib.Path, out: pathlib.Path, *extra: str, workers: int = 2, code: pathlib.Path | None = None) -> Run:
    """The whole `recordkit convert` command, as a user runs it (imports and start-up included);
    `code`: another checkout's recordkit package instead of this one (e.g. an older commit). It
    also runs there: Beam's worker processes put their working folder first on sys.path."""
    return run_command([str(pathlib.Path(PYTHON).parent / "recordkit"), "convert", "-t", str(root), "--output-dir", str(out),
                        "--num-threads", str(workers), "--no-progress", *extra],
                       cwd=code or REPO, env={"PYTHONPATH": str(code)} if code else None)


def checkout(revision: str) -> pathlib.Path:
    """SCRATCH/recordkit-<revision>: the repository at `revision` (a detached git worktree)."""
    where = SCRATCH / f"recordkit-{revision}"
    if not (where / "recordkit").exists():
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(where), revision], cwd=REPO, check=True,
                       capture_output=True)
    return where


def converted(root: pathlib.Path, image_size: int | None) -> pathlib.Path:
    """Shards of `root` resized to the training size (None: the JPEGs as they are), converted
    once and kept in SCRATCH."""
    out = SCRATCH / f"{root.name}_shards_{image_size or 'passthrough'}"
    if not (out / "dataset.json").exists():
        size = ["--image-size", str(image_size)] if image_size else []
        convert(root, out, *size, "--train-shards", "4", "--validation-shards", "2")
    return out


def subset(per_class: dict[str, int], source: pathlib.Path = SATELLITE) -> pathlib.Path:
    """SCRATCH/satellite_<split><n>...: the first `per_class[split]` images of every class (by name)."""
    root = SCRATCH / ("satellite_" + "_".join(f"{s}{n}" for s, n in per_class.items()))
    if (root / ".complete").exists():
        return root
    for split, n in per_class.items():
        for folder in sorted((source / split).iterdir()):
            (root / split / folder.name).mkdir(parents=True, exist_ok=True)
            for path in sorted(folder.iterdir())[:n]:
                (root / split / folder.name / path.name).write_bytes(path.read_bytes())
    (root / ".complete").touch()
    return root
