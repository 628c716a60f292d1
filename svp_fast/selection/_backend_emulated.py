"""The CUDA backend of an emulated build (SVP_FAST_CUDA=EMU): the regular glue
(``_backend_cuda``), with the workspace and outputs in host memory (on the
legacy default stream), its results marked as living on the emulated device
(``svp_fast._emulation``). Here, below the routing table (``_backends``), and
not in ``_emulation``, which ``_arrays`` imports: the backend imports
``_arrays`` in turn, and the two would form an import circle.
"""

from __future__ import annotations

from .. import _emulation
from ._backend_cuda import CudaBackend

__all__ = ["EmulatedCudaBackend", "cuda_backend"]


class EmulatedCudaBackend(CudaBackend):
    def kcenter(self, m, plan):
        return _emulation.mark(super().kcenter(m, plan))

    def kcenter_groups(self, m, plan):
        return _emulation.mark(super().kcenter_groups(m, plan))

    def uncertainty_scores(self, *args, **kwargs):
        return _emulation.mark(super().uncertainty_scores(*args, **kwargs))

    def uncertainty_topk(self, *args, **kwargs):
        return _emulation.mark(super().uncertainty_topk(*args, **kwargs))


def cuda_backend() -> EmulatedCudaBackend:
    return EmulatedCudaBackend(device_type="cpu")
