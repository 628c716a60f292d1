"""pytest-benchmark suites of the selection latency (``test_*.py`` here).

    pytest benchmarks/ --benchmark-only                     # time every case, grouped tables
    pytest benchmarks/ --benchmark-disable                  # each case once, as a test (CI)
    pytest benchmarks/ --benchmark-only --bench-size large  # bigger inputs (or SVP_BENCH_SIZE=large)

The scripts beside them (bench_cpu.py, bench_gpu.py, experiment_*.py) are run by
hand; pytest does not collect them (they are not named test_*.py), and nothing
here is imported by them.
"""

import os

from svp_fast.bench import SUITES


def pytest_addoption(parser):
    parser.addoption("--bench-size", choices=tuple(SUITES),
                     default=os.environ.get("SVP_BENCH_SIZE", "small"),
                     help="input sizes of the latency suite: small (default; every case in "
                          "seconds) or large (for measuring); also SVP_BENCH_SIZE")
