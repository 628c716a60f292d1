"""The local shard of a distributed k-center run, on the CPU or a CUDA device.

The driver (``kcenter.py``) talks to one :class:`LocalShard`; the class is
chosen by where the local rows live. Both wrap the core's stepwise shard
(``svp_fast._core.KCenterShard``, or ``KCenterShardCuda`` for CUDA tensors) and
hide raw pointers: rows travel between ranks as their raw bytes (uint8
tensors), so every dtype (float16, bfloat16, float32, float64) is carried
bit for bit by every backend.
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional

import numpy as np
import torch

from .. import _core, _emulation
from .._arrays import BF16, F16, F32, F64, Matrix, as_matrix, is_torch
from ..selection import cells as cells_module
from ..selection._backend_cuda import tensor_facts

DTYPE_NAMES = {F32: "float32", F16: "float16", BF16: "bfloat16", F64: "float64"}
ITEMSIZE = {F32: 4, F16: 2, BF16: 2, F64: 8}
_NUMPY_FLOATS = {np.dtype(np.float32): F32, np.dtype(np.float16): F16, np.dtype(np.float64): F64}
_EXPECTED = "a floating dtype (float16, bfloat16, float32 or float64)"

EMPTY_FACTS = dict(bad_row=-1, bad_col=-1, bad_value=0.0, zero_row=-1, max_abs=0.0,
                   min_norm=float("inf"), max_norm=0.0)


def local_matrix(x: Any, name: str) -> Matrix:
    """``as_matrix`` that also accepts an empty shard of shape (0, D)."""
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) == 2 and shape[0] == 0 and shape[1] >= 1:
        if is_torch(x):
            codes = {torch.float32: F32, torch.float16: F16, torch.bfloat16: BF16, torch.float64: F64}
            if x.dtype not in codes:
                raise TypeError(f"{name} must have {_EXPECTED}, got {x.dtype}")
            if x.device.type not in ("cpu", "cuda"):
                raise TypeError(f"{name} must live on the CPU or a CUDA device, got device {x.device}")
            code, kind = codes[x.dtype], "torch"
            device, index = x.device.type, (x.device.index if x.device.type == "cuda" else None)
            if _emulation.is_device_tensor(x):
                device, index = "cuda", 0
        else:
            dt = np.dtype(getattr(x, "dtype", np.float64))
            if dt.newbyteorder("=") not in _NUMPY_FLOATS:
                raise TypeError(f"{name} must have {_EXPECTED}, got {dt}")
            code, kind, device, index = _NUMPY_FLOATS[dt.newbyteorder("=")], "numpy", "cpu", None
        # The core never reads an empty shard; it still wants a valid address.
        dummy = np.zeros(1, dtype=np.float64)
        return Matrix(ptr=dummy.ctypes.data, rows=0, cols=int(shape[1]), row_stride=int(shape[1]),
                      dtype_code=code, kind=kind, device=device, device_index=index,
                      owner=dummy, copied=False)
    return as_matrix(x, name)


class LocalShard:
    """This rank's rows and the core's k-center state over them.

    Construction only inspects the array (cheap, may raise TypeError /
    ValueError naming ``name``); :meth:`build` creates the core state once all
    ranks agree on the arithmetic.
    """

    def __init__(self, m: Matrix, name: str):
        self.m = m
        self.name = name
        self.rows, self.cols, self.dtype_code = m.rows, m.cols, m.dtype_code
        self.row_bytes = m.cols * ITEMSIZE[m.dtype_code]
        self.core = None
        self._cells = None  # keeps the pruned method's cell ids alive

    device_type = "cpu"

    def facts(self, num_threads: int, simd: str) -> dict:
        raise NotImplementedError

    def build(self, metric_code: int, method_code: int, float64: bool, cells: Optional[np.ndarray],
              n_cells: int, num_threads: int, simd: str) -> None:
        raise NotImplementedError

    # -- the stepwise protocol (local indices) ------------------------------

    def exclude(self, local_row: int) -> None:
        self.core.exclude(local_row)

    def top2(self):
        return self.core.top2()

    def error_bound(self, value: float) -> float:
        return self.core.error_bound(value)

    def exact_tolerance(self, value: float) -> float:
        """float64 values within this of the largest are ties (lowest index wins)."""
        return self.core.exact_tolerance(value)

    def band(self, thr: float):
        return self.core.band(thr)

    @property
    def distance_evals(self) -> int:
        return int(self.core.distance_evals) if self.core is not None else 0

    def copy_row(self, local_row: int, dst: torch.Tensor) -> None:
        """Raw bytes of local row ``local_row`` into ``dst`` (uint8, ``row_bytes``)."""
        raise NotImplementedError

    def add_center(self, row: torch.Tensor, local_row: int) -> None:
        """Apply a center given by its raw bytes ``row`` (-1: another rank owns it)."""
        raise NotImplementedError

    def exact_min(self, row: torch.Tensor, local_rows: np.ndarray) -> float:
        """float64 squared distance from the raw row ``row`` to the nearest of ``local_rows``."""
        raise NotImplementedError

    # -- the batched protocol -------------------------------------------------

    def offer(self, T: int, global_offset: int, dst: torch.Tensor) -> None:
        """This shard's offer of its ``T`` best candidates into ``dst`` (uint8, the
        layout of ``_core.offer_layout``; svp/shard.h, OfferLayout)."""
        raise NotImplementedError

    def add_centers(self, rows: torch.Tensor, local_rows: np.ndarray) -> None:
        """Apply ``len(local_rows)`` centers at once: ``rows`` (uint8, q x
        ``row_bytes``, contiguous) their raw rows, ``local_rows`` (int64) their
        local rows here (excluded first) or -1."""
        raise NotImplementedError


class CpuShard(LocalShard):
    """Rows in host memory (numpy array or memmap, CPU tensor): ``_core.KCenterShard``."""

    device_type = "cpu"

    def facts(self, num_threads: int, simd: str) -> dict:
        if self.rows == 0:
            return dict(EMPTY_FACTS)
        m = self.m
        return dict(_core.shard_facts(m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code,
                                      num_threads, simd))

    def build(self, metric_code, method_code, float64, cells, n_cells, num_threads, simd):
        m = self.m
        self._cells = cells
        self.core = _core.KCenterShard(
            m.owner, m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code, metric_code, method_code,
            cells.ctypes.data if cells is not None else 0, n_cells if cells is not None else 0,
            cells_module.CELL_ORDER_COPY_MAX_BYTES, float64, num_threads, simd, self.name)

    def copy_row(self, local_row, dst):
        m = self.m
        src = m.ptr + local_row * m.row_stride * ITEMSIZE[m.dtype_code]
        ctypes.memmove(dst.data_ptr(), src, self.row_bytes)

    def add_center(self, row, local_row):
        self.core.add_center(row.data_ptr(), local_row)

    def exact_min(self, row, local_rows):
        return self.core.exact_min(row.data_ptr(), local_rows.ctypes.data, local_rows.size)

    def offer(self, T, global_offset, dst):
        self.core.offer(T, global_offset, dst.data_ptr())

    def add_centers(self, rows, local_rows):
        local_rows = np.ascontiguousarray(local_rows, dtype=np.int64)
        self.core.add_centers(rows.data_ptr(), local_rows.ctypes.data, local_rows.size)


class CudaShard(LocalShard):
    """Rows on a CUDA device: ``_core.KCenterShardCuda``.

    Contract assumed of ``KCenterShardCuda`` (same constructor and methods as
    ``KCenterShard``): the row pointers it is given (``ptr``, ``add_center``'s
    and ``exact_min``'s ``raw``) are device addresses on the shard's device;
    ``cells_ptr`` and ``exact_min``'s ``local_rows_ptr`` are host addresses;
    ``top2``, ``band`` and ``exact_min`` return host values. The rows it is
    given stay valid until the call returns (the driver synchronises the
    device before reusing a message buffer). The batched protocol's ``offer``
    writes into device memory on the shard's device (work queued on the
    legacy default stream, which torch's collectives wait for);
    ``add_centers`` reads device rows and a host array of local rows.
    """

    device_type = "cuda"

    def __init__(self, m: Matrix, name: str, lib=None, torch_device=None):
        """``lib``: the module holding ``KCenterShardCuda`` (default svp_fast._core);
        ``torch_device``: where the rows live (default: the tensor's CUDA device).
        Tests pass a stand-in of both to run this class on CPU tensors."""
        super().__init__(m, name)
        self.lib = lib if lib is not None else _core
        self.core_class(self.lib)  # fail now, on this rank, with the reason
        if torch_device is None:  # (the emulated build's device memory is host memory)
            torch_device = (torch.device("cpu") if _emulation.EMULATED
                            else torch.device("cuda", m.device_index))
        self.torch_device = torch_device
        self.tensor = m.owner if m.rows else None
        self._stage = None  # device copy of a row received over a CPU (gloo) group
        self._offer_stage = None  # the offer, written on the device, for a CPU group

    @staticmethod
    def core_class(lib=None):
        lib = lib if lib is not None else _core
        cls = getattr(lib, "KCenterShardCuda", None)
        if cls is None:
            built = lib.build_info().get("cuda_compiled", False)
            raise RuntimeError(
                "svp_fast.distributed.kcenter cannot select on CUDA tensors yet: this build of "
                "svp_fast has no CUDA shard (svp_fast._core.KCenterShardCuda"
                + (" is not in this CUDA build" if built else "; svp_fast was built without CUDA")
                + "). Pass the local embeddings as a CPU array or tensor with a gloo group.")
        return cls

    def facts(self, num_threads, simd):
        if self.rows == 0:
            return dict(EMPTY_FACTS)
        return tensor_facts(self.tensor)

    def build(self, metric_code, method_code, float64, cells, n_cells, num_threads, simd):
        m = self.m
        self._cells = cells
        self.core = self.core_class(self.lib)(
            m.owner, m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code, metric_code, method_code,
            cells.ctypes.data if cells is not None else 0, n_cells if cells is not None else 0,
            float64, num_threads, simd, self.name)

    def _row_bytes_view(self, local_row: int) -> torch.Tensor:
        return self.tensor[local_row].contiguous().view(torch.uint8)

    def copy_row(self, local_row, dst):
        dst.copy_(self._row_bytes_view(local_row))

    def _on_device(self, row: torch.Tensor) -> torch.Tensor:
        if row.device == self.torch_device:
            return row
        if self._stage is None or self._stage.numel() != row.numel():
            self._stage = torch.empty(row.numel(), dtype=torch.uint8, device=self.torch_device)
        self._stage.copy_(row)
        return self._stage

    def add_center(self, row, local_row):
        self.core.add_center(self._on_device(row).data_ptr(), local_row)

    def exact_min(self, row, local_rows):
        return self.core.exact_min(self._on_device(row).data_ptr(), local_rows.ctypes.data,
                                   local_rows.size)

    def offer(self, T, global_offset, dst):
        if dst.device == self.torch_device:
            self.core.offer(T, global_offset, dst.data_ptr())
            return
        # the message travels in host memory (a gloo group): written on the device, copied
        if self._offer_stage is None or self._offer_stage.numel() != dst.numel():
            self._offer_stage = torch.empty(dst.numel(), dtype=torch.uint8, device=self.torch_device)
        self.core.offer(T, global_offset, self._offer_stage.data_ptr())
        dst.copy_(self._offer_stage)

    def add_centers(self, rows, local_rows):
        local_rows = np.ascontiguousarray(local_rows, dtype=np.int64)
        rows = rows if rows.device == self.torch_device else rows.to(self.torch_device)
        self.core.add_centers(rows.data_ptr(), local_rows.ctypes.data, local_rows.size)


# The shard class for each kind of memory (tests swap in a stand-in).
SHARDS = {"cpu": CpuShard, "cuda": CudaShard}


def make_shard(x: Any, name: str) -> LocalShard:
    m = local_matrix(x, name)
    return SHARDS[m.device](m, name)
