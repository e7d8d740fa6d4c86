"""The test suite's time and memory: two pytest-xdist workers (what `bash scripts/test.sh` and CI
run) against one process (RECORDKIT_TEST_WORKERS=0), in the same script.

    .venv/bin/python benchmarks/bench_suite.py [--rounds 1]

Each row is the whole `bash scripts/test.sh` after set-up, with CI's environment (warnings and
TensorFlow's log level as set by nobody). Memory, sampled every 0.25 s: the largest RSS of any
single process, and the largest sum over every process at one sample, of RSS and of PSS
(shared pages, e.g. TensorFlow's libraries, split among the processes that map them: what the
suite holds at once).
"""

from __future__ import annotations

import argparse
import re

import _common

CI_ENV = {"PYTHONWARNINGS": None, "TF_CPP_MIN_LOG_LEVEL": None}  # not _common.QUIET_ENV's: as CI runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for round_ in range(args.rounds):
        for workers in ("2", "0"):
            run = _common.run_command(["bash", "scripts/test.sh", "-p", "no:cacheprovider"],
                                      env={"RECORDKIT_TEST_WORKERS": workers, **CI_ENV}, interval=0.25, with_pss=True)
            summary = re.search(r"(\d+) passed", run.stdout)
            rows.append({"workers": workers, "round": round_, "passed": int(summary.group(1)) if summary else 0,
                         "wall s": run.seconds, "CPU s": run.cpu_seconds,
                         "largest process MiB": run.workers_mib, "sum RSS MiB": run.tree_mib,
                         "sum PSS MiB": run.tree_pss_mib})
    _common.report("bench_suite", list(rows[0]), rows)


if __name__ == "__main__":
    main()
