"""Turn user arrays into what the core reads: an address, shape, row stride and dtype.

Accepted: numpy arrays and memmaps (float16, float32, float64), torch tensors on the
CPU or a CUDA device (float16, bfloat16, float32, float64), any other array that
speaks DLPack (``__dlpack__`` and ``__dlpack_device__``: CuPy, JAX, ...), and
array-likes that ``numpy.asarray`` understands.

DLPack, in and out (:func:`from_dlpack`, :func:`to_callers_library`): an array in
CPU memory is read through ``numpy.from_dlpack`` (bfloat16, which numpy lacks,
through ``torch.from_dlpack``), one in CUDA memory through ``torch.from_dlpack``;
both share the caller's memory, no copy. Outputs go back into the caller's
library where it can take them: CuPy arrays for CuPy input (``cupy.from_dlpack``),
JAX arrays for JAX input (``jax.dlpack.from_dlpack``; with JAX's default
``jax_enable_x64=False`` JAX stores the int64 indices as int32 and float64 radii as
float32, as it does every array). Any other library gets numpy arrays for CPU
input and torch tensors for CUDA input, and so does CuPy or JAX input when that
library cannot take the result (a CPU-only JAX given CUDA results; indices above
2**31 - 1 with JAX's x64 off, which int32 cannot hold).

No hidden copies. The core reads rows that are contiguous (column stride 1) at any
row distance, including negative and zero (expanded tensors), in place. Only these
layouts are copied, once, into a C-contiguous array:

* a column stride other than one element (Fortran order, transposed views, ``x[:, ::2]``);
* a row stride that is not a whole number of elements, or a misaligned address;
* non-native byte order (``'>f4'``), array-likes that are not arrays;
* torch tensors with the negative or conjugate bit set.

The caller's data is never written to.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from . import _emulation

# dtype codes shared with csrc/include/svp/common.h (DType)
F32, F16, BF16, F64 = 0, 1, 2, 3

_NUMPY_CODES = {np.dtype(np.float32): F32, np.dtype(np.float16): F16, np.dtype(np.float64): F64}
_EXPECTED = "a floating dtype (float16, bfloat16, float32 or float64)"


def _torch():
    # A tensor can only exist once torch is imported: never import it here
    # (that alone costs the first call half a second).
    return sys.modules.get("torch")


def is_torch(x: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


@dataclass
class Matrix:
    """A 2-D float array as the core sees it."""

    ptr: int
    rows: int
    cols: int
    row_stride: int  # elements
    dtype_code: int
    kind: str  # "numpy" or "torch"
    device: str  # "cpu" or "cuda"
    device_index: int | None
    owner: Any  # the array that owns the memory (kept alive during the call)
    copied: bool

    @property
    def itemsize(self) -> int:
        return {F32: 4, F16: 2, BF16: 2, F64: 8}[self.dtype_code]


def _shape_error(name: str, shape) -> ValueError:
    return ValueError(f"{name} must be a 2-D array of shape (N, D) with N, D >= 1, got shape {tuple(shape)}")


def as_matrix(x: Any, name: str) -> Matrix:
    """Normalise ``x`` for the core; raises TypeError/ValueError naming ``name``."""
    if not isinstance(x, np.ndarray) and not is_torch(x) and speaks_dlpack(x):
        x = from_dlpack(x, name)
    if is_torch(x):
        return _torch_matrix(x, name)
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of {_EXPECTED}, got {type(x).__name__}")
    copied = False
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as e:  # ragged lists and the like
            raise TypeError(f"{name} must be an array of {_EXPECTED}, got {type(x).__name__}: {e}") from None
        copied = True
    if x.dtype.kind not in "f" or x.dtype.itemsize not in (2, 4, 8):
        raise TypeError(f"{name} must have {_EXPECTED}, got {x.dtype}")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise _shape_error(name, x.shape)
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
        copied = True
    item = x.dtype.itemsize
    ok = (
        (x.strides[1] == item or x.shape[1] == 1)
        and x.strides[0] % item == 0
        and x.__array_interface__["data"][0] % item == 0
    )
    if not ok:
        x = np.ascontiguousarray(x)
        copied = True
    return Matrix(
        ptr=x.__array_interface__["data"][0],
        rows=x.shape[0],
        cols=x.shape[1],
        row_stride=x.strides[0] // item,
        dtype_code=_NUMPY_CODES[np.dtype(x.dtype)],
        kind="numpy",
        device="cpu",
        device_index=None,
        owner=x,
        copied=copied,
    )


def _torch_matrix(x, name: str) -> Matrix:
    torch = _torch()
    codes = {torch.float32: F32, torch.float16: F16, torch.bfloat16: BF16, torch.float64: F64}
    if x.dtype not in codes:
        raise TypeError(f"{name} must have {_EXPECTED}, got {x.dtype}")
    if x.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {x.layout}")
    if x.device.type not in ("cpu", "cuda"):
        raise TypeError(f"{name} must live on the CPU or a CUDA device, got device {x.device}")
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise _shape_error(name, x.shape)
    x = x.detach()
    copied = False
    if x.is_neg() or x.is_conj():
        x = x.resolve_neg().resolve_conj()
        copied = True
    if not (x.stride(1) == 1 or x.shape[1] == 1):
        x = x.contiguous()
        copied = True
    if x.data_ptr() % x.element_size() != 0:  # pragma: no cover - torch aligns storage
        x = x.clone()
        copied = True
    device, index = x.device.type, (x.device.index if x.device.type == "cuda" else None)
    if _emulation.is_device_tensor(x):  # the emulated build's CUDA device (host memory)
        device, index = "cuda", 0
    return Matrix(
        ptr=x.data_ptr(),
        rows=x.shape[0],
        cols=x.shape[1],
        row_stride=x.stride(0),
        dtype_code=codes[x.dtype],
        kind="torch",
        device=device,
        device_index=index,
        owner=x,
        copied=copied,
    )


# ----------------------------------------------------------------------------- DLPack

# DLDeviceType codes of the DLPack standard
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13
_DL_NAMES = {4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI", 10: "ROCm", 11: "ROCm host",
             14: "oneAPI", 15: "WebGPU", 16: "Hexagon", 17: "MAIA"}


def speaks_dlpack(x: Any) -> bool:
    """Whether ``x`` offers the DLPack protocol (numpy arrays and torch tensors do
    too; :func:`as_matrix` reads those directly)."""
    return hasattr(type(x), "__dlpack__") and hasattr(type(x), "__dlpack_device__")


def _library(x: Any) -> str:
    """The top-level package of ``x``'s type ("cupy", "jax", ...)."""
    top = (type(x).__module__ or "").split(".")[0]
    return "jax" if top == "jaxlib" else top


def from_dlpack(x: Any, name: str):
    """``x`` as a numpy array (CPU memory) or a torch tensor (CUDA memory, or
    bfloat16 on the CPU), sharing ``x``'s memory."""
    kind = f"{_library(x)}.{type(x).__name__}"
    try:
        device_type, device_id = x.__dlpack_device__()
        device_type = int(device_type)
    except Exception as e:
        raise TypeError(f"{name} ({kind}) offers DLPack, but __dlpack_device__() failed: {e}") from None
    if device_type in (_DL_CPU, _DL_CUDA_HOST):
        try:
            return np.from_dlpack(x)
        except (TypeError, RuntimeError, BufferError, ValueError) as e:
            numpy_error = e  # e.g. bfloat16, which numpy has no dtype for
        torch = _import_torch()
        if torch is None:
            raise TypeError(f"{name} ({kind}) could not be read through numpy's DLPack: "
                            f"{numpy_error}") from None
        try:
            return torch.from_dlpack(x)
        except Exception as e:
            raise TypeError(f"{name} ({kind}) could not be read through DLPack: numpy said "
                            f"{numpy_error!s}; torch said {e!s}") from None
    if device_type in (_DL_CUDA, _DL_CUDA_MANAGED):
        torch = _import_torch()
        if torch is None:
            raise TypeError(f"{name} ({kind}) lives on CUDA device {device_id}; svp_fast reads "
                            "CUDA memory through torch, which is not installed")
        try:
            if _emulation.EMULATED:  # the emulated device's memory is host memory
                return _emulation.from_dlpack(x)
            return torch.from_dlpack(x)
        except Exception as e:
            raise TypeError(f"{name} ({kind}) on CUDA device {device_id} could not be read "
                            f"through torch.from_dlpack: {e}") from None
    where = _DL_NAMES.get(device_type, f"DLPack device type {device_type}")
    raise TypeError(f"{name} ({kind}) lives on a {where} device; svp_fast computes on the CPU "
                    "and CUDA devices only")


def _import_torch():
    torch = _torch()
    if torch is not None:
        return torch
    try:
        import torch  # noqa: F811  (only reached for DLPack input that needs it)
    except ImportError:
        return None
    return torch


def _to_cupy(value):
    import cupy

    return cupy.from_dlpack(value)


def _to_jax(value):
    import jax
    import jax.dlpack

    if (not jax.config.jax_enable_x64 and str(value.dtype) in ("int64", "torch.int64")
            and value.shape[0] and int(value.max()) > np.iinfo(np.int32).max):
        return value  # JAX would store these indices as int32: keep them exact
    return jax.dlpack.from_dlpack(value)


# caller's library -> how it takes an array back (from a numpy array or torch tensor)
_IMPORTERS = {"cupy": _to_cupy, "jax": _to_jax}


def to_callers_library(source: Any, value: Any):
    """``value`` (the numpy array or torch tensor a selection returned, or a tuple
    holding them and other results) in the array library of ``source``, the
    caller's input, when that library can take it back (see the module
    docstring). numpy, torch and array-like input: ``value`` as it is."""
    if is_torch(source):
        return _emulation.like(source, value)  # (a regular build: value as it is)
    if isinstance(source, np.ndarray) or not speaks_dlpack(source):
        return value
    importer = _IMPORTERS.get(_library(source))
    if importer is None:
        return value  # the documented fallback: numpy on the CPU, torch on CUDA

    def back(v):
        if not _is_output_array(v):
            return v
        try:
            return importer(v)
        except (ImportError, RuntimeError, TypeError, ValueError, BufferError):
            return v  # e.g. a CPU-only JAX given CUDA results: the fallback, not a lost run

    return tuple(back(v) for v in value) if isinstance(value, tuple) else back(value)


def _is_output_array(v: Any) -> bool:
    return isinstance(v, np.ndarray) or is_torch(v)


# What a budget means, for svp_fast.kcenter, uncertainty, random_selection,
# forgetting, the pipelines' sizes and the command line's --budget/--size alike:
#
# * an integer (int, numpy integer, 0-d integer tensor) is a count;
# * a float (float, numpy floating, 0-d floating tensor) is a fraction of all
#   N rows (already selected ones included), 0 <= f < 1, rounded to the nearest
#   count, halves up, from the decimal the float prints as (0.7 of 5 is 3.5 ->
#   4, although 0.7 * 5 is 3.4999... in binary);
# * 1.0 and larger floats are refused: 1.0 could mean one point or all of
#   them, and 2.0 is a count written as a float. Pass the integer instead.
# * a positive fraction that rounds to no pick is refused (0.001 of 100 rows),
#   so that a small pool never silently yields an empty selection.
BUDGET_RULE = ("a count (an integer) or a fraction of the N rows (a float in [0, 1), rounded to "
               "the nearest count)")


def _scalar(value: Any, name: str):
    """``value`` as an int (a count) or a Fraction (a float's decimal value)."""
    if is_torch(value) and value.dim() == 0 and value.dtype != _torch().bool:
        value = value.item()
    if isinstance(value, bool) or isinstance(value, np.bool_):
        raise TypeError(f"{name} must be {BUDGET_RULE}, got bool {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"{name} must be {BUDGET_RULE}, got {f}")
        return Fraction(repr(f))
    raise TypeError(f"{name} must be {BUDGET_RULE}, got {type(value).__name__} {value!r}")


def check_budget(budget: Any, upper: int, what: str = "the number of points", *,
                 total: int | None = None, name: str = "budget") -> int:
    """The number of picks, from a count or a fraction (see BUDGET_RULE above).

    ``upper`` is the most that can be picked (``what`` says what it is, for the
    error); ``total`` is the N a fraction refers to (default ``upper``).
    """
    value = _scalar(budget, name)
    if isinstance(value, Fraction):
        n = upper if total is None else int(total)
        shown = float(value)
        if value >= 1:
            raise ValueError(
                f"{name} as a float is a fraction of the N rows and must be below 1, got "
                f"{shown!r}; pass an integer for a count (e.g. 1 for one row, {n} for all)")
        if value < 0:
            raise ValueError(f"{name} as a fraction must be in [0, 1), got {shown!r}")
        count = math.floor(value * n + Fraction(1, 2))
        if value > 0 and count == 0:
            raise ValueError(f"{name} {shown!r} of {n} rows rounds to no pick; pass a larger "
                             "fraction, or 0 for none")
        if count > upper:
            raise ValueError(f"{name} {shown!r} of {n} rows is {count}, more than {what} "
                             f"({upper})")
        return int(count)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    if value > upper:
        raise ValueError(f"{name} must be at most {what} ({upper}), got {value}")
    return value


def check_budget_type(budget: Any, name: str = "budget"):
    """The type checks of :func:`check_budget`, for callers that learn N later:
    the budget as a plain int (a count) or float (a fraction)."""
    value = _scalar(budget, name)
    return float(value) if isinstance(value, Fraction) else value


def as_index_array(idx: Any, name: str, n: int) -> np.ndarray:
    """A 1-D int64 array of distinct indices in [0, n), from numpy/torch/sequences."""
    if is_torch(idx):
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == _torch().bool:
            raise TypeError(f"{name} must hold integers, got a tensor of {idx.dtype}")
        idx = idx.detach().cpu().numpy()
    arr = np.asarray(idx)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds {int(arr.max())}, out of range [0, {n})")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    bad = np.flatnonzero((arr < 0) | (arr >= n))
    if bad.size:
        j = int(bad[0])
        raise ValueError(f"{name}[{j}] = {int(arr[j])} is out of range [0, {n})")
    uniq, counts = np.unique(arr, return_counts=True)
    if uniq.size != arr.size:
        dup = int(uniq[np.argmax(counts > 1)])
        raise ValueError(f"{name} must not repeat an index, got {dup} more than once")
    return arr


def check_index(value: Any, name: str, n: int) -> int:
    """An integer in [0, n)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if not 0 <= int(value) < n:
        raise ValueError(f"{name} must be in [0, {n}), got {int(value)}")
    return int(value)


def check_choice(value: Any, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {opts}, got {value!r}")
    return value


def check_threads(num_threads: Any) -> int:
    if num_threads is None:
        return 0
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
    return int(num_threads)
