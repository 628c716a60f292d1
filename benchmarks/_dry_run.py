"""Dry runs of the GPU scripts on a machine without a GPU (CI).

``install_cuda_standin()`` routes CPU tensors through svp_fast's CUDA backend,
whose core calls go to the stand-in of python_tests/cuda_standin.py (the CPU
core computing into the buffers it is given), or, on an emulated build, to the
emulated CUDA device (the real kernels). A script's dry run then executes
its own code and svp_fast's CUDA glue, with the same calls it makes on a GPU,
up to the first CUDA call.
"""

from __future__ import annotations

import os
import sys

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python_tests")


def install_cuda_standin():
    """Route CPU arrays through the CUDA backend on the stand-in core; returns the stand-in.

    On a build with the emulated CUDA device (SVP_FAST_CUDA=EMU, what
    ``gpu_check.sh --emulate`` runs) the route leads to that device instead:
    the dry run then runs the real CUDA kernels, emulated on the CPU (returns None)."""
    from svp_fast import _emulation
    from svp_fast.selection import _backend_cuda, _backend_emulated, _backends

    if _emulation.EMULATED:
        _backends.BACKENDS["cpu"] = _backend_emulated.cuda_backend()
        return None
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    from cuda_standin import StandInCudaCore

    core = StandInCudaCore()
    _backends.BACKENDS["cpu"] = _backend_cuda.CudaBackend(core=core, device_type="cpu")
    return core
