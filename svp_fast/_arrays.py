"""Turn user arrays into what the core reads: an address, shape, row stride and dtype.

Accepted: numpy arrays and memmaps (float16, float32, float64), torch tensors on the
CPU or a CUDA device (float16, bfloat16, float32, float64), and array-likes that
``numpy.asarray`` understands.

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

import numbers
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    return Matrix(
        ptr=x.data_ptr(),
        rows=x.shape[0],
        cols=x.shape[1],
        row_stride=x.stride(0),
        dtype_code=codes[x.dtype],
        kind="torch",
        device=x.device.type,
        device_index=x.device.index if x.device.type == "cuda" else None,
        owner=x,
        copied=copied,
    )


def check_budget(budget: Any, upper: int, what: str = "the number of points") -> int:
    """A non-negative integer no larger than ``upper``."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        if is_torch(budget) and budget.dim() == 0 and not budget.dtype.is_floating_point and budget.dtype != _torch().bool:
            budget = int(budget)
        else:
            raise TypeError(f"budget must be an integer, got {type(budget).__name__} {budget!r}")
    budget = int(budget)
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if budget > upper:
        raise ValueError(f"budget must be at most {what} ({upper}), got {budget}")
    return budget


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
