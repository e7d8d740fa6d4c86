"""The conversion pipelines on Beam's portable runner with out-of-process SDK workers.

As on Dataflow, Flink or Spark, the DoFns are pickled, sent over the Fn API and run in
separate `python` processes started by a worker pool (Beam's EXTERNAL environment). The pool
runs outside the repository with no PYTHONPATH, so the workers only have the installed
package. Whatever the runner, the published files must be byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

import imagegen
import vocgen
from recordkit import voc
from recordkit.convert import ConvertOptions
from recordkit.folders import convert_folders

pytestmark = [pytest.mark.portable, pytest.mark.slow]

STARTED_WORKER = "Starting worker with command"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, pool: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pool.poll() is not None:
            raise RuntimeError(f"worker pool exited with {pool.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"worker pool not listening on {port} after {seconds} s")


@pytest.fixture(scope="module")
def worker_pool(tmp_path_factory):
    """(Beam flags for the portable runner, the pool's log) with a pool of worker processes."""
    where = tmp_path_factory.mktemp("pool")
    log = where / "pool.log"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The pool starts each SDK worker as plain `python`: make that this environment's Python.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    with open(log, "w") as out:
        pool = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
            cwd=where, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, pool)
        yield [
            "--runner=PortableRunner",
            "--job_endpoint=embed",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{port}",
            "--direct_num_workers=2",
        ], log
    finally:
        pool.send_signal(signal.SIGINT)  # lets the pool stop the workers it started
        try:
            pool.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pool.kill()


def published(out: pathlib.Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def assert_ran_in_worker_processes(log: pathlib.Path, before: int) -> None:
    assert log.read_text().count(STARTED_WORKER) > before, log.read_text()[-2000:]


def test_folder_pipeline_on_portable_workers_matches_the_direct_runner(worker_pool, tmp_path):
    flags, log = worker_pool
    root = tmp_path / "pic"
    imagegen.write_folder_dataset(root, {"train": {"water": 6, "rock": 5}, "validation": {"water": 2, "rock": 2}})
    (root / "train" / "rock" / "truncated.jpg").write_bytes(imagegen.jpeg(64, 64)[:700])
    (root / "train" / "water" / "copy.jpg").write_bytes((root / "train" / "water" / "water_0.jpg").read_bytes())
    options = dict(input_dir=str(root), dataset_name="ds", train_shards=3, validation_shards=2)
    direct = convert_folders(ConvertOptions(output_dir=str(tmp_path / "direct"), **options), show_progress=False)
    before = log.read_text().count(STARTED_WORKER)
    portable = convert_folders(ConvertOptions(output_dir=str(tmp_path / "portable"), **options), flags,
                               show_progress=False)
    assert_ran_in_worker_processes(log, before)
    assert portable.report == direct.report and len(direct.report["skipped"]) == 1
    assert published(tmp_path / "portable") == published(tmp_path / "direct")
    assert len([n for n in published(tmp_path / "direct") if n.endswith(".tfrecord")]) == 5


def test_voc_pipeline_on_portable_workers_matches_the_direct_runner(worker_pool, tmp_path):
    flags, log = worker_pool
    root = tmp_path / "VOC2007"
    Img, Obj = vocgen.Img, vocgen.Obj
    vocgen.write_voc(root, {
        "trainval": {"000001": Img([Obj("dog"), Obj("person", (10, 2, 40, 30))]),
                     "000002": Img([Obj("cat"), Obj("cat", difficult=1)]),
                     "000003": Img([Obj("car", truncated=1, pose="Left")]),
                     "000004": Img(xml="<annotation><object><name>dog</name>")},
        "test": {"100001": Img([Obj("cat")]), "100002": Img([Obj("chair", difficult=1), Obj("sofa")])},
    })
    options = dict(input_dir=str(root), dataset_name="voc", train_shards=2, validation_shards=1)
    checked = voc.VocOptions(check_devkit=True)
    direct = voc.convert_voc(ConvertOptions(output_dir=str(tmp_path / "direct"), **options), checked,
                             show_progress=False)
    before = log.read_text().count(STARTED_WORKER)
    portable = voc.convert_voc(ConvertOptions(output_dir=str(tmp_path / "portable"), **options), checked,
                               flags, show_progress=False)
    assert_ran_in_worker_processes(log, before)
    assert portable.report == direct.report and direct.report["records"] == {"train": 3, "validation": 2}
    assert published(tmp_path / "portable") == published(tmp_path / "direct")


REPO = pathlib.Path(__file__).resolve().parent.parent


def _build(kind: str, where: pathlib.Path) -> pathlib.Path:
    """Build the sdist or wheel Dataflow's --extra_package takes, with the build backend
    pyproject.toml names (what `python -m build` and `pip wheel` call)."""
    code = f"from setuptools import build_meta; print(build_meta.build_{kind}({str(where)!r}))"
    name = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout.split()[-1]
    return where / name


def test_sdist_and_wheel_hold_the_package_and_nothing_else(tmp_path):
    import tarfile
    import zipfile

    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "recordkit").rglob("*.py")}
    sdist = _build("sdist", tmp_path)
    prefix = sdist.name.removesuffix(".tar.gz") + "/"
    with tarfile.open(sdist) as tar:
        in_sdist = {n.removeprefix(prefix) for n in tar.getnames()}
    wheel = _build("wheel", tmp_path)
    with zipfile.ZipFile(wheel) as z:
        in_wheel = set(z.namelist())
    for names in (in_sdist, in_wheel):
        assert modules <= names
        assert "recordkit/data/imagenet_classes.tsv" in names  # export names ImageNet classes offline
        assert not [n for n in names if n.startswith(("tests/", "sample_data/", "benchmarks/", "pipelines/"))]
    # A worker that installs only the wheel can import the pipeline code from it.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True)
    where = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); "
                            "import recordkit.pipeline, recordkit.folders, recordkit.voc; print(recordkit.__file__)"],
                           cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    assert where.strip().startswith(str(target))
