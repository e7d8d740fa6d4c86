"""The folder pipeline on a real distributed engine: Beam's DaskRunner on a dask.distributed
LocalCluster of two worker processes, byte-identical to the default local runner."""

import hashlib
import pathlib

import pytest

import imagegen
from recordkit.cli import main
from recordkit.convert import ConvertOptions
from recordkit.folders import convert_folders

distributed = pytest.importorskip("dask.distributed", reason="needs recordkit[dask]")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as local:
        yield local


def published(out: pathlib.Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def test_folder_pipeline_on_dask_matches_the_default_runner(cluster, tmp_path, capsys):
    root = tmp_path / "pic"
    imagegen.write_folder_dataset(root, {"train": {"water": 9, "rock": 8, "ice": 7},
                                         "validation": {"water": 3, "rock": 2, "ice": 2}})
    (root / "train" / "rock" / "truncated.jpg").write_bytes(imagegen.jpeg(64, 64)[:700])
    (root / "validation" / "ice" / "leak.jpg").write_bytes((root / "train" / "ice" / "ice_0.jpg").read_bytes())
    options = dict(input_dir=str(root), dataset_name="ds", train_shards=3, validation_shards=2)
    local = convert_folders(ConvertOptions(output_dir=str(tmp_path / "local"), num_workers=2, **options),
                            show_progress=False)
    code = main(["convert", "-t", str(root), "--output-dir", str(tmp_path / "dask"), "--dataset-name", "ds",
                 "--train-shards", "3", "--validation-shards", "2", "--runner", "DaskRunner",
                 f"--dask_client_address={cluster.scheduler_address}", "--dask_npartitions=2"])
    assert code == 0, capsys.readouterr().err
    assert "skipped: 1 files" in capsys.readouterr().out
    assert len(local.report["skipped"]) == 1 and len(local.report["duplicates"]) == 1
    assert published(tmp_path / "dask") == published(tmp_path / "local")
