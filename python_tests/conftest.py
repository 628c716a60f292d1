import contextlib
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import svp_fast  # noqa: E402
from ml_helpers import digits  # noqa: E402,F401  (a session fixture for every test module)

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


# ------------------------------------------------------------ GPU or emulated
# A build with SVP_FAST_CUDA=EMU runs the CUDA backend on the CPU under the
# emulation of the CUDA execution model (csrc/cuda_emu): the GPU tests run
# there too, with CUDA tensors that are CPU tensors marked as living on the
# emulated device (svp_fast._emulation). The tests say to_gpu(x) where they
# mean x.cuda() and on_gpu(t) where they mean t.is_cuda.

EMULATED = bool(svp_fast.build_info().get("cuda_emulated", False))


def cuda_available() -> bool:
    if not svp_fast.build_info()["cuda_compiled"]:
        return False
    if EMULATED:
        return True
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


def to_gpu(x):
    """``x.cuda()``: on a GPU, or on the emulated device of an emulated build."""
    if EMULATED:
        from svp_fast import _emulation

        return _emulation.to_device(x)
    return x.cuda()


def on_gpu(t) -> bool:
    """``t.is_cuda``, or (emulated build) a tensor on the emulated device."""
    if EMULATED:
        from svp_fast import _emulation

        return _emulation.is_device_tensor(t)
    return bool(t.is_cuda)


def sized(device: int, emulated: int) -> int:
    """A size for a device run, and a smaller one under the emulation (each
    emulated thread is a fiber: a step costs milliseconds, not microseconds)."""
    return emulated if EMULATED else device


def device_only(reason: str):
    """Skips a test in the emulated build: it measures what only a device has."""
    return pytest.mark.skipif(EMULATED, reason=f"needs a real GPU ({reason}); the emulation cannot judge it")


@pytest.fixture(autouse=True, scope="session")
def _emulated_cublas():
    """Emulated build: cuBLAS is the emulation's stand-in, loaded once for the
    session, as torch's libcublas is on a GPU machine (so the batched engine's
    default product is the cuBLAS-screened one, as there)."""
    if EMULATED:
        path = os.path.join(os.path.dirname(svp_fast.__file__), "libcublas_svp_emu.so")
        ok, why = svp_fast._core.cuda_set_cublas_library(path=path)
        assert ok, why
    yield


@pytest.fixture(autouse=True)
def _emulated_device_state(request):
    """Emulated build: each test starts on a device without a sticky error (a
    kernel that failed in an earlier test does not fail this one) and with the
    modelled multiprocessors a marker asks for (``@pytest.mark.emulated_sms(132)``;
    otherwise SVP_EMU_SMS or 2)."""
    if not EMULATED:
        yield
        return
    from svp_fast import _emu_selftest as emu

    marker = request.node.get_closest_marker("emulated_sms")
    before = emu.sm_count()
    if marker is not None:
        emu.set_sm_count(int(marker.args[0]))
    try:
        yield
    finally:
        emu.set_sm_count(before)
        emu.reset()


# ---------------------------------------------------------------- device runs
# benchmarks/gpu_check.sh sets these for the one GPU call:
#   SVP_REQUIRE_GPU=1     the GPU tests must run: a missing GPU is an error, not a skip
#   SVP_TEST_TIMEOUT=S    a test running longer than S seconds fails (SIGALRM; the
#                         core checks for signals between steps, so a long selection
#                         stops too) instead of eating the device budget


def _emulated_share():
    """(share, seed) of the GPU tests an emulated run keeps: SVP_EMU_TEST_SHARE
    (default 1, all) and SVP_EMU_TEST_SEED (default 0)."""
    share = float(os.environ.get("SVP_EMU_TEST_SHARE", "1") or 1)
    seed = os.environ.get("SVP_EMU_TEST_SEED", "0") or "0"
    return min(max(share, 0.0), 1.0), seed


def pytest_report_header(config):
    if EMULATED:
        share, seed = _emulated_share()
        return [f"svp_fast: emulated CUDA build (csrc/cuda_emu); GPU tests kept: {share:.0%} "
                f"(SVP_EMU_TEST_SHARE={share}, SVP_EMU_TEST_SEED={seed})"]
    return []


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SVP_REQUIRE_GPU") == "1" and not cuda_available():
        raise pytest.UsageError(f"SVP_REQUIRE_GPU=1 but the GPU tests cannot run: {cuda_skip_reason()}")
    share, seed = _emulated_share()
    if EMULATED and share < 1.0:
        # a seeded share of the GPU tests (CI: the whole suite runs in
        # `gpu_check.sh --emulate`); each test in or out by its id and the seed
        keep, drop = [], []
        for item in items:
            gpu_test = item.get_closest_marker("gpu") is not None
            h = zlib.crc32(f"{seed}:{item.nodeid}".encode()) / 2**32
            (drop if gpu_test and h >= share else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


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
