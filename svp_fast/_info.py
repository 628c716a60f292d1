"""What this build of svp_fast was compiled with, and what it finds at run time."""

from __future__ import annotations

from . import _core


def build_info() -> dict:
    """CPU SIMD level in use and compiled, OpenMP threads, CUDA compiled or not,
    GPUs visible or not (and why not)."""
    info = dict(_core.build_info())
    info["gpu_count"] = 0
    info["gpu_error"] = None
    if info["cuda_compiled"]:
        try:
            info["gpu_count"] = int(_core.cuda_device_count())
        except RuntimeError as e:  # no driver, no device
            info["gpu_error"] = str(e)
    else:
        info["gpu_error"] = "built without CUDA (nvcc not found or SVP_FAST_CUDA=OFF)"
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda_available"] = bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        info["torch"] = None
        info["torch_cuda_available"] = False
    return info
