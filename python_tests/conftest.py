import os
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
