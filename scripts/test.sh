#!/usr/bin/env bash
# The test suite (what CI runs). Extra arguments go to pytest, e.g. -k convert.
# Two worker processes (pytest-xdist), one per core of CI's 2-core machine; each test file runs
# whole in one worker (--dist loadfile), so a module's fixtures are built once.
# RECORDKIT_TEST_WORKERS=0 runs everything in one process, as before.
source "$(dirname "$0")/_env.sh"
python -m pytest -q -n "${RECORDKIT_TEST_WORKERS:-2}" --dist loadfile "$@"
