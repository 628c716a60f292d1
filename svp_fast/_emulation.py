"""The emulated CUDA device of a build made with ``SVP_FAST_CUDA=EMU``.

Such a build compiles the CUDA backend (csrc/cuda) for the CPU against an
emulation of the CUDA execution model (csrc/cuda_emu), so that the GPU code
runs, and is tested, on machines without a GPU. Its "device memory" is host
memory: a CUDA tensor is a CPU tensor marked as living on the emulated device,
an :class:`EmulatedCudaTensor`. svp_fast routes such tensors to its CUDA
backend (``_backend_cuda.CudaBackend``, the same glue as on a GPU), whose
core is the emulated one, and returns its results marked the same way.

Nothing here is used by a regular build: ``EMULATED`` is False there, and
``torch.Tensor.cuda`` means a real GPU.
"""

from __future__ import annotations

from typing import Any

from . import _core

EMULATED = bool(_core.build_info().get("cuda_emulated", False))

_TENSOR_CLASS = None


def tensor_class():
    """:class:`EmulatedCudaTensor` (defined on first use: it needs torch)."""
    global _TENSOR_CLASS
    if _TENSOR_CLASS is None:
        import torch

        class EmulatedCudaTensor(torch.Tensor):
            """A CPU tensor that stands for a tensor on CUDA device 0 of the emulated
            build: svp_fast selects on it with the CUDA backend. Operations on it
            run on the CPU and return tensors marked the same way (torch's
            subclass rules); ``.cpu()`` returns a plain tensor, ``.cuda()`` itself."""

            def cuda(self, device=None, non_blocking=False, **kwargs):  # noqa: ARG002
                return self

            def cpu(self, **kwargs):  # noqa: ARG002
                return self.as_subclass(torch.Tensor)

            @property
            def is_emulated_cuda(self) -> bool:
                return True

            def __dlpack_device__(self):
                return (2, 0)  # kDLCUDA, device 0: what the tensor stands for

        _TENSOR_CLASS = EmulatedCudaTensor
    return _TENSOR_CLASS


def is_device_tensor(x: Any) -> bool:
    """Whether ``x`` is a tensor on the emulated CUDA device."""
    return _TENSOR_CLASS is not None and isinstance(x, _TENSOR_CLASS)


def to_device(x):
    """``x`` (a torch tensor or numpy array) on the emulated CUDA device (a copy
    of CPU data, as ``.cuda()`` copies; a tensor already there is returned)."""
    import numpy as np
    import torch

    if is_device_tensor(x):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    return t.detach().clone().as_subclass(tensor_class())


def like(source: Any, value: Any):
    """``value`` (a tensor, or a tuple holding tensors) marked as living where
    ``source`` lives: on the emulated device when ``source`` does."""
    if not is_device_tensor(source):
        return value
    import torch

    def mark(v):
        return v.as_subclass(tensor_class()) if isinstance(v, torch.Tensor) and not is_device_tensor(v) else v

    return tuple(mark(v) for v in value) if isinstance(value, tuple) else mark(value)


def from_dlpack(x):
    """``torch.from_dlpack`` for an array that says it lives on CUDA device 0 of
    the emulated build (its memory is host memory): the same memory, in place,
    as a tensor on the emulated device."""
    import torch

    return torch.from_dlpack(x.__dlpack__()).as_subclass(tensor_class())


def mark(value):
    """A backend's results (a tensor or a tuple) marked as living on the emulated device."""
    import torch

    def one(v):
        return v.as_subclass(tensor_class()) if isinstance(v, torch.Tensor) and not is_device_tensor(v) else v

    return tuple(one(v) for v in value) if isinstance(value, tuple) else one(value)


def check_device(device: str, flag: str) -> str:
    """``--device cuda[:N]`` in an emulated build: the one emulated device."""
    index = int(device.split(":")[1]) if ":" in device else 0
    if index != 0:
        raise ValueError(f"{flag} {device}: the emulated build has one CUDA device (cuda:0)")
    return "cuda:0"


__all__ = ["EMULATED", "check_device", "from_dlpack", "is_device_tensor", "like", "mark",
           "tensor_class", "to_device"]
