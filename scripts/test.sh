#!/usr/bin/env bash
# The test suite (what CI runs). Extra arguments go to pytest, e.g. -k convert.
source "$(dirname "$0")/_env.sh"
python -m pytest -q "$@"
