import contextlib
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import svp_fast  # noqa: E402

# Every CPU kernel ISA this machine can run: the tests compare them all.
SIMD_LEVELS = [s for s in ("avx512", "avx2", "generic")
               if s in svp_fast.build_info()["simd_compiled"].split(",")]


def _simd_supported(level: str) -> bool:
    try:
        svp_fast.kcenter(np.zeros((2, 1), np.float32), 1, simd=level)
        return True
    except ValueError:
        return False


SIMD_LEVELS = [s for s in SIMD_LEVELS if _simd_supported(s)]


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    """Every test runs in its own empty folder: subprocesses (``python -m
    svp_fast``, torchrun, spawned ranks) must import the installed package, not
    the source folder a repository-root working directory would put first."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def rng(request):
    # a fresh, test-specific stream: different tests draw different data
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def cuda_available() -> bool:
    if not svp_fast.build_info()["cuda_compiled"]:
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def cuda_skip_reason() -> str:
    info = svp_fast.build_info()
    if not info["cuda_compiled"]:
        return "svp_fast was built without CUDA (no nvcc, or SVP_FAST_CUDA=OFF)"
    return "no CUDA device visible to torch"


# ---------------------------------------------------------------- device runs
# benchmarks/gpu_check.sh sets these for the one GPU call:
#   SVP_REQUIRE_GPU=1     the GPU tests must run: a missing GPU is an error, not a skip
#   SVP_TEST_TIMEOUT=S    a test running longer than S seconds fails (SIGALRM; the
#                         core checks for signals between steps, so a long selection
#                         stops too) instead of eating the device budget


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SVP_REQUIRE_GPU") == "1" and not cuda_available():
        raise pytest.UsageError(f"SVP_REQUIRE_GPU=1 but the GPU tests cannot run: {cuda_skip_reason()}")


class PerTestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _per_test_timeout():
    seconds = int(os.environ.get("SVP_TEST_TIMEOUT", "0") or 0)
    if seconds <= 0:
        yield
        return
    import signal

    def on_alarm(signum, frame):
        raise PerTestTimeout(f"test exceeded SVP_TEST_TIMEOUT={seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- child processes
# A test that starts a process owns it: the process ends with the test, whether
# the test passes or fails (a failed assertion must not leave a selection running
# for minutes). And it must not depend on the signals the test runner inherited:
# under `nohup pytest ... &` SIGINT is ignored, and a child would inherit that.

# Starts `python ARGS...` with SIGINT ignored, as a shell's background job would
# (os.execv keeps an ignored signal ignored): the worst a child can inherit.
SIGINT_IGNORED = [sys.executable, "-c",
                  "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                  "os.execv(sys.executable, [sys.executable] + sys.argv[1:])"]

# The first lines of a child script that is to stop on Ctrl-C whatever it inherited.
RESTORE_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


@contextlib.contextmanager
def child_process(argv, **popen_kwargs):
    """``subprocess.Popen(argv)``, killed and reaped when the block ends early
    (a failed assertion, a timeout) or leaves it running."""
    proc = subprocess.Popen(argv, **popen_kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
