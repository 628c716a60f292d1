"""The CUDA path of the public API (filled by the CUDA backend)."""

from __future__ import annotations

from . import _core


def _require_cuda():
    if not _core.build_info()["cuda_compiled"]:
        raise RuntimeError(
            "svp_fast was built without CUDA, so it cannot select on CUDA tensors: "
            "rebuild with nvcc on PATH (SVP_FAST_CUDA=ON pip install .), or pass a CPU array")
