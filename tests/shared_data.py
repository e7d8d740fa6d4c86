"""Where the real material beside the repository is (`../shared`), overridable by environment
variables, and the skip marks that say so in CI's output (`-rs`) when it is absent."""

import os
import pathlib

import pytest

_SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
SATELLITE = pathlib.Path(os.environ.get("RECORDKIT_SATELLITE_DIR", _SHARED / "datasets" / "satellite"))
HED_WEIGHTS = pathlib.Path(os.environ.get("RECORDKIT_HED_WEIGHTS", _SHARED / "weights" / "vgg16_hed_notop.weights.h5"))

needs_satellite = pytest.mark.skipif(
    not SATELLITE.is_dir(), reason=f"the real satellite dataset is not at {SATELLITE} (set RECORDKIT_SATELLITE_DIR)")
needs_hed_weights = pytest.mark.skipif(
    not HED_WEIGHTS.is_file(), reason=f"the real VGG16 weights are not at {HED_WEIGHTS} (set RECORDKIT_HED_WEIGHTS)")
