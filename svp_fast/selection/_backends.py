"""Which backend selects from which memory: the one routing table of the fronts.

Tests swap in a stand-in here (``BACKENDS["cpu"] = CudaBackend(stand_in,
"cpu")`` runs the CUDA glue on CPU tensors; python_tests/test_cuda_glue.py).
"""

from __future__ import annotations

from .. import _emulation
from . import _backend_cpu, _backend_cuda, _backend_emulated

BACKENDS = {"cpu": _backend_cpu.BACKEND,
            # a build with SVP_FAST_CUDA=EMU: the same glue on the emulated device (host memory)
            "cuda": (_backend_emulated.cuda_backend() if _emulation.EMULATED
                     else _backend_cuda.BACKEND)}


def backend_for(m):
    """The backend for a normalised matrix (``svp_fast._arrays.Matrix``)."""
    return BACKENDS[m.device]
