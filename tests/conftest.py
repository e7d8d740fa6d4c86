"""Registers the tests' tiny model (tiny_model.py) for every test, and frees what Keras holds
after each test module and returns it to the OS (without it the test process kept ~2.5 GB after
the VGG16 tests and grew over the suite; after every test instead of every module it cost 2.5
minutes)."""

import ctypes
import ctypes.util
import gc
import sys

import pytest

import tiny_model  # noqa: F401

_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None


@pytest.fixture(autouse=True, scope="module")
def _free_keras_state():
    yield
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)  # glibc keeps freed heap pages otherwise
