"""Registers the tests' tiny model (tiny_model.py) for every test, and frees what Keras holds
after each test module and each slow test, and returns it to the OS (without it the test
process kept ~2.5 GB after the VGG16 tests and grew over the suite; after every test it cost
2.5 minutes). Also shares one slim Inception V3 checkpoint among the test processes."""

import ctypes
import ctypes.util
import gc
import sys

import pytest

from recordkit.cli import quiet_tensorflow_start

_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None


def _free_keras_state():
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)  # glibc keeps freed heap pages otherwise


def _xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")  # pytest-xdist gives its workers their input here


def pytest_configure(config):
    """Processes that run tests get the tiny model; pytest-xdist's controller runs none and so
    never imports TensorFlow (~0.3 GB)."""
    if _xdist_worker(config) or not config.getoption("numprocesses", None):
        quiet_tensorflow_start()  # its C++ start-up lines would reach the terminal
        import tiny_model  # noqa: F401


@pytest.fixture(autouse=True, scope="module")
def _free_after_each_module():
    yield
    _free_keras_state()


@pytest.fixture(autouse=True)
def _free_after_a_slow_test(request):
    """Slow tests build Inception V3 or VGG16: what they leave would stay for the module."""
    yield
    if request.node.get_closest_marker("slow"):
        _free_keras_state()


@pytest.fixture(scope="session")
def slim_inception(request, tmp_path_factory):
    """slim_checkpoints.SlimInception, built once per run; under pytest-xdist every worker's
    temporary folder lies in one folder of the run, where the first worker builds it."""
    from slim_checkpoints import shared_inception

    root = tmp_path_factory.getbasetemp()
    return shared_inception(root.parent if _xdist_worker(request.config) else root)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A learnable 4-class dataset of each label kind (24 train, 8 validation records), for
    the training tests (test_train*.py; configs: training_setup.tiny_config)."""
    from fixtures_records import write_both_label_kinds

    return write_both_label_kinds(tmp_path_factory, "", {"train": 24, "validation": 8})
