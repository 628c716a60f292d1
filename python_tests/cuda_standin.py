"""A stand-in for the CUDA entry points of ``svp_fast._core``, for machines without a GPU.

It takes exactly the arguments of the real bindings (checked against them in a
CUDA build: ``test_cuda_glue.py::test_standin_signatures_match_the_core``) and
computes with the CPU core on host buffers, writing into the buffers it was
given. With ``CudaBackend(core=StandInCudaCore(), device_type="cpu")`` the whole
Python half of the CUDA path (argument passing, workspace, outputs, stats,
callbacks, progress, the return types) runs in CI on CPU tensors standing in
for CUDA ones.
"""

from __future__ import annotations

import ctypes

import numpy as np

from svp_fast import _core

# int64 per row for m, m2, assign and the band, plus a little: the real
# workspace is of this order, and the stand-in insists on getting what it asked
_WS_FIXED = 4096


class StandInCudaCore:
    """The CUDA functions of ``_core``, run by the CPU core (host pointers)."""

    def __init__(self):
        self.calls = []  # (name, kwargs) of every call, for the tests

    def build_info(self):
        info = dict(_core.build_info())
        info["cuda_compiled"] = True
        return info

    def cuda_device_count(self):
        return 1

    def shard_facts(self, *args):
        return _core.shard_facts(*args)

    def cuda_set_cublas_library(self, *, path):
        self.calls.append(("cuda_set_cublas_library", dict(path=path)))
        return (False, "the stand-in has no cuBLAS")

    # -- k-center -------------------------------------------------------------

    def kcenter_cuda_workspace(self, *, ptr, rows, cols, row_stride, dtype, device, metric, budget,
                               n_selected, method, n_cells, batch_candidates, batch_product):
        self.calls.append(("kcenter_cuda_workspace", dict(locals())))
        assert method in (0, 1, 3), f"the CUDA core runs scan (0), pruned (1), batched (3), got {method}"
        assert method == 3 or batch_candidates == 0
        assert batch_product in (0, 1, 2) and (method == 3 or batch_product == 0)
        return _WS_FIXED + 32 * rows + 16 * n_cells + (8 * batch_candidates ** 2 if method == 3 else 0)

    def kcenter_cuda(self, *, ptr, rows, cols, row_stride, dtype, device, stream, metric, budget,
                     selected_ptr, n_selected, start, method, cells_ptr, n_cells, workspace_ptr,
                     workspace_bytes, picks_ptr, radii_ptr, progress, poll_interval, arg_name,
                     fallback_fraction, batch_candidates, batch_max_picks, batch_product,
                     prev_radius):
        kw = dict(locals())
        kw.pop("self")
        self.calls.append(("kcenter_cuda", kw))
        need = self.kcenter_cuda_workspace(ptr=ptr, rows=rows, cols=cols, row_stride=row_stride,
                                           dtype=dtype, device=device, metric=metric,
                                           budget=budget, n_selected=n_selected, method=method,
                                           n_cells=n_cells, batch_candidates=batch_candidates,
                                           batch_product=batch_product)
        assert workspace_ptr != 0 and workspace_bytes >= need, (workspace_bytes, need)
        assert picks_ptr != 0 or budget == 0
        assert isinstance(stream, int)
        assert method in (0, 1, 3)
        if method == 1:
            assert cells_ptr != 0 and n_cells >= 1
        # touch the whole workspace, as kernels would: a too-small buffer crashes here
        ctypes.memset(workspace_ptr, 0, workspace_bytes)
        raw = _core.kcenter_cpu(
            ptr=ptr, rows=rows, cols=cols, row_stride=row_stride, dtype=dtype, metric=metric,
            budget=budget, selected_ptr=selected_ptr, n_selected=n_selected, start=start,
            method=method, cells_ptr=cells_ptr, n_cells=n_cells, cell_copy_max_bytes=0,
            fallback_fraction=fallback_fraction, batch_candidates=batch_candidates,
            batch_max_picks=batch_max_picks, num_threads=0, picks_ptr=picks_ptr,
            radii_ptr=radii_ptr, progress=progress, poll_interval=poll_interval, simd="",
            arg_name=arg_name, prev_radius=prev_radius)
        if method == 3:  # the GPU reports which pass product ran
            raw["product"] = "fused"
        return raw

    # -- grouped k-center ------------------------------------------------------

    def kcenter_groups_cuda_workspace(self, *, ptr, rows, cols, row_stride, dtype, device, metric,
                                      n_groups, members_ptr, offsets_ptr, budgets_ptr, starts_ptr,
                                      selected_ptr, selected_offsets_ptr, set_rows):
        kw = dict(locals())
        kw.pop("self")
        self.calls.append(("kcenter_groups_cuda_workspace", kw))
        offsets = _read(offsets_ptr, n_groups + 1)
        # per member: m, m2, assign and the band (as the real layout), per group a little
        return _WS_FIXED + 48 * int(offsets[-1]) + 64 * n_groups

    def kcenter_groups_cuda(self, *, ptr, rows, cols, row_stride, dtype, device, stream, metric,
                            n_groups, members_ptr, offsets_ptr, budgets_ptr, starts_ptr,
                            selected_ptr, selected_offsets_ptr, set_rows, workspace_ptr,
                            workspace_bytes, picks_ptr, radii_ptr, progress, poll_interval,
                            arg_name):
        kw = dict(locals())
        kw.pop("self")
        self.calls.append(("kcenter_groups_cuda", kw))
        need = self.kcenter_groups_cuda_workspace(
            ptr=ptr, rows=rows, cols=cols, row_stride=row_stride, dtype=dtype, device=device,
            metric=metric, n_groups=n_groups, members_ptr=members_ptr, offsets_ptr=offsets_ptr,
            budgets_ptr=budgets_ptr, starts_ptr=starts_ptr, selected_ptr=selected_ptr,
            selected_offsets_ptr=selected_offsets_ptr, set_rows=set_rows)
        assert workspace_ptr != 0 and workspace_bytes >= need, (workspace_bytes, need)
        assert isinstance(stream, int)
        budgets = _read(budgets_ptr, n_groups)
        assert picks_ptr != 0 or budgets.sum() == 0
        ctypes.memset(workspace_ptr, 0, workspace_bytes)
        methods = np.zeros(n_groups, dtype=np.int32)  # the GPU kernel scans every group
        raw = _core.kcenter_groups_cpu(
            ptr=ptr, rows=rows, cols=cols, row_stride=row_stride, dtype=dtype, metric=metric,
            n_groups=n_groups, members_ptr=members_ptr, offsets_ptr=offsets_ptr,
            budgets_ptr=budgets_ptr, starts_ptr=starts_ptr, selected_ptr=selected_ptr,
            selected_offsets_ptr=selected_offsets_ptr, methods_ptr=methods.ctypes.data,
            cells_ptr=0, n_cells_ptr=0, set_rows=set_rows, cell_copy_max_bytes=0,
            fallback_fraction=2.0, num_threads=0, picks_ptr=picks_ptr, radii_ptr=radii_ptr,
            progress=progress, poll_interval=poll_interval, simd="", arg_name=arg_name)
        return raw

    # -- uncertainty ------------------------------------------------------------

    def uncertainty_cuda_workspace(self, ptr, rows, cols, row_stride, dtype, device, k):
        self.calls.append(("uncertainty_cuda_workspace", dict(rows=rows, k=k)))
        return _WS_FIXED + 16 * rows

    def uncertainty_cuda(self, ptr, rows, cols, row_stride, dtype, device, stream, method, input,
                         check_finite, tol, ws_ptr, ws_bytes, scores_ptr, k, order_ptr, top_ptr,
                         arg_name, want_stats=False):
        self.calls.append(("uncertainty_cuda", dict(rows=rows, k=k, method=method,
                                                    want_stats=want_stats)))
        assert ws_ptr != 0 and ws_bytes >= _WS_FIXED + 16 * rows
        ctypes.memset(ws_ptr, 0, ws_bytes)
        scores64 = np.empty(rows, dtype=np.float64)
        _core.uncertainty_scores_cpu(ptr, rows, cols, row_stride, dtype, method, input,
                                     check_finite, tol, 0, scores64.ctypes.data, "", arg_name)
        out_t = np.float64 if dtype == 3 else np.float32
        _write(scores_ptr, scores64.astype(out_t))
        stats = {"candidates": 0, "rows_refined": 0, "tie_groups": 0, "passes": 0}
        if k > 0:  # the certified top-k, as the device computes it
            order = np.empty(k, dtype=np.int64)
            top = np.empty(k, dtype=np.float64)
            stats = _core.uncertainty_topk_cpu(ptr, rows, cols, row_stride, dtype, method, input,
                                               check_finite, tol, 0, k, order.ctypes.data,
                                               top.ctypes.data, "", arg_name)
            _write(order_ptr, order)
            _write(top_ptr, top.astype(out_t))
        return dict(stats) if want_stats else None


class StandInKCenterShardCuda:
    """``_core.KCenterShardCuda`` (14 arguments) run by ``_core.KCenterShard`` on host rows."""

    def __init__(self, owner, ptr, rows, cols, row_stride, dtype, metric, method, cells_ptr,
                 n_cells, float64, num_threads, simd, arg_name):
        if method == 1:
            raise ValueError("the pruned method is not available for CUDA shards yet; "
                             "use method='scan' or 'lazy' (both run the fused scan)")
        self._s = _core.KCenterShard(owner, ptr, rows, cols, row_stride, dtype, metric, method,
                                     cells_ptr, n_cells, 0, float64, num_threads, simd, arg_name)
        self._row_bytes = cols * {0: 4, 1: 2, 2: 2, 3: 8}[dtype]
        self.calls = []  # names of the batched protocol's calls, for the tests

    # The batched protocol: the real entry points' names, checked against the
    # bindings in CUDA builds (test_cuda_glue.py). The real offer writes device
    # memory and returns nothing (the count is in the message).
    def offer(self, T, global_offset, message_ptr):
        self.calls.append("offer")
        assert message_ptr != 0 and T >= 1
        _, nbytes = _core.offer_layout(T, self._row_bytes)
        ctypes.memset(message_ptr, 0xA5, nbytes)  # a kernel writes all of it: so must the core
        self._s.offer(T, global_offset, message_ptr)

    def add_centers(self, rows_ptr, local_rows_ptr, q):
        self.calls.append("add_centers")
        assert q >= 1 and rows_ptr != 0 and local_rows_ptr != 0
        self._s.add_centers(rows_ptr, local_rows_ptr, q)

    def __getattr__(self, name):
        return getattr(self._s, name)


class StandInShardLib:
    """What ``CudaShard`` looks up in ``_core``: ``KCenterShardCuda`` and ``build_info``."""

    KCenterShardCuda = StandInKCenterShardCuda

    @staticmethod
    def build_info():
        info = dict(_core.build_info())
        info["cuda_compiled"] = True
        return info


def _read(src_ptr: int, count: int) -> np.ndarray:
    """``count`` int64 values at a host address (a copy)."""
    if count == 0 or src_ptr == 0:
        return np.zeros(count, dtype=np.int64)
    return np.ctypeslib.as_array(ctypes.cast(src_ptr, ctypes.POINTER(ctypes.c_int64)),
                                 shape=(count,)).copy()


def _write(dst_ptr: int, src: np.ndarray) -> None:
    src = np.ascontiguousarray(src)
    ctypes.memmove(dst_ptr, src.ctypes.data, src.nbytes)
