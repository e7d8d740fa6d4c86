"""Registers the tests' tiny model (tiny_model.py) for every test."""

import tiny_model  # noqa: F401
