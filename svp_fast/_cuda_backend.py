"""The CUDA path of the public API: torch CUDA tensors in, torch CUDA tensors out.

The extension is not linked against torch: this module passes device pointers,
shapes, strides, the device index and the caller's current stream. Workspace
comes from torch's caching allocator (so memory is accounted for and returns to
its cache), outputs are allocated on the input's device. Work is enqueued on
the current stream; the call returns after the selection has finished.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from . import _core
from ._arrays import F64, Matrix
from ._progress import make_hook

_NO_CUDA = ("svp_fast was built without CUDA, so it cannot select on CUDA tensors: rebuild "
            "with nvcc on PATH (SVP_FAST_CUDA=ON pip install .), or pass a CPU array")


def _require_cuda():
    if not _core.build_info()["cuda_compiled"]:
        raise RuntimeError(_NO_CUDA)
    _core.cuda_device_count()  # raises "no CUDA device: ..." when there is none


def _stream(m: Matrix):
    import torch

    dev = torch.device("cuda", m.device_index)
    return dev, torch.cuda.current_stream(dev).cuda_stream


def _workspace(nbytes: int, dev, what: str):
    import torch

    try:
        return torch.empty(max(int(nbytes), 1), dtype=torch.uint8, device=dev)
    except torch.OutOfMemoryError as e:
        raise torch.OutOfMemoryError(
            f"svp_fast {what}: the GPU workspace needs {nbytes / 2**30:.2f} GiB "
            f"({nbytes} bytes) on {dev}: {e}") from None


def kmeans_cells_torch(x, n_cells: int, *, metric: str = "euclidean", seed: int = 0,
                       iters: int = 10, sample_per_cell: int = 64, chunk: int = 65536):
    """k-means cells on the GPU in torch (used when faiss-gpu is not installed).

    Trained on a sample, every row assigned in chunks; float32 matrix products.
    Any partition gives the same picks; this one only decides how much is pruned."""
    import torch

    n = x.shape[0]
    n_cells = int(max(1, min(n_cells, n)))
    g = torch.Generator(device=x.device).manual_seed(int(seed))

    def rows(lo, hi):
        v = x[lo:hi].float()
        return torch.nn.functional.normalize(v, dim=1) if metric == "cosine" else v

    s = min(n, n_cells * sample_per_cell)
    idx = torch.randperm(n, device=x.device, generator=g)[:s]
    sample = x[idx].float()
    if metric == "cosine":
        sample = torch.nn.functional.normalize(sample, dim=1)
    cent = sample[torch.randperm(s, device=x.device, generator=g)[:n_cells]].clone()
    for _ in range(iters):
        d = (cent * cent).sum(1)[None, :] - 2.0 * sample @ cent.T
        lab = d.argmin(1)
        sums = torch.zeros_like(cent).index_add_(0, lab, sample)
        cnt = torch.bincount(lab, minlength=n_cells).to(sums.dtype)
        keep = cnt > 0
        cent[keep] = sums[keep] / cnt[keep, None]
    cn = (cent * cent).sum(1)
    out = torch.empty(n, dtype=torch.int64, device=x.device)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        out[lo:hi] = (cn[None, :] - 2.0 * rows(lo, hi) @ cent.T).argmin(1)
    return out


def kcenter(m: Matrix, budget: int, selected: np.ndarray, start: int, metric: str, method: str,
            return_radii: bool, return_stats: bool, progress: Any, callback, n_cells, seed):
    import torch

    from .selection.cells import default_n_cells
    from .selection.kcenter import KCenterStats, _package

    _require_cuda()
    dev, stream = _stream(m)
    picks = torch.empty(budget, dtype=torch.int64, device=dev)
    radii = torch.empty(budget, dtype=torch.float64, device=dev) if return_radii else None
    cells_n = n_cells or default_n_cells(m.rows)
    # the GPU runs "lazy" as the scan: its per-step cost is the fused pass itself
    chosen = {"auto": "scan", "lazy": "scan"}.get(method, method)
    dim = None
    t0 = time.perf_counter()
    if method == "auto" and budget >= max(256, cells_n) and m.rows >= 65536:
        # same rule as the CPU: no cells on data of high intrinsic dimension
        from .selection.cells import probe_intrinsic_dimension
        from .selection.kcenter import CELLS_MAX_INTRINSIC_DIMENSION

        dim = probe_intrinsic_dimension(m, metric=metric, seed=seed)
        if not dim > CELLS_MAX_INTRINSIC_DIMENSION:  # nan (non-finite rows): the core reports them
            chosen = "pruned"
    cell_of, cells_seconds = None, (time.perf_counter() - t0 if dim is not None else 0.0)
    if chosen == "pruned" and budget > 0:
        cell_of = kmeans_cells_torch(m.owner, cells_n, metric=metric, seed=seed)
        torch.cuda.current_stream(dev).synchronize()
        cells_seconds = time.perf_counter() - t0
    metric_code = ("euclidean", "cosine").index(metric)
    method_code = 1 if chosen == "pruned" else 0
    ws_bytes = _core.kcenter_cuda_workspace(m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code,
                                            m.device_index, metric_code, budget, selected.size,
                                            method_code, cells_n if cell_of is not None else 0)
    ws = _workspace(ws_bytes, dev, "k-center")

    def on_poll(done: int) -> None:
        if callback is not None and done > 0:
            view = picks[:done].cpu().numpy()
            view.flags.writeable = False
            rview = None
            if radii is not None:
                rview = radii[:done].cpu().numpy()
                rview.flags.writeable = False
            callback(view, rview)

    hook, close = make_hook(budget, progress, "k-center (cuda)", "pick",
                            on_poll if callback else None)
    try:
        raw = _core.kcenter_cuda(
            m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code, m.device_index, stream,
            metric_code, budget, selected.ctypes.data if selected.size else 0, selected.size,
            start, method_code, cell_of.data_ptr() if cell_of is not None else 0,
            cells_n if cell_of is not None else 0, ws.data_ptr(), ws.numel(), picks.data_ptr(),
            radii.data_ptr() if radii is not None else 0, hook, 0.1, "embeddings",
            0.5 if method == "auto" else 2.0)
    finally:
        close()
    del ws
    stats = KCenterStats.from_core(
        raw, "cuda", cells_seconds=cells_seconds, n_cells=cells_n if cell_of is not None else 0,
        extra={} if dim is None else {"intrinsic_dimension": dim})
    return _package(m.owner, picks, radii, stats, return_radii, return_stats)


def _unc(m: Matrix, budget: int, method: str, inputs: str, check_finite: bool, tol: float,
         want_scores: bool, want_stats: bool = False):
    import torch

    from .selection.uncertainty import INPUTS, METHODS

    _require_cuda()
    dev, stream = _stream(m)
    sdtype = torch.float64 if m.dtype_code == F64 else torch.float32
    scores = torch.empty(m.rows, dtype=sdtype, device=dev)
    k = budget if budget is not None else -1
    order = torch.empty(max(k, 0), dtype=torch.int64, device=dev)
    top = torch.empty(max(k, 0), dtype=sdtype, device=dev)
    ws_bytes = _core.uncertainty_cuda_workspace(m.ptr, m.rows, m.cols, m.row_stride,
                                                m.dtype_code, m.device_index, k)
    ws = _workspace(ws_bytes, dev, "uncertainty")
    args = (m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code, m.device_index, stream,
            METHODS.index(method), INPUTS.index(inputs), check_finite, tol, ws.data_ptr(), ws.numel(),
            scores.data_ptr(), k, order.data_ptr() if k > 0 else 0, top.data_ptr() if k > 0 else 0, "x")
    # the certified top-k (csrc/cuda/uncertainty.cu): the float64 reference's, as on the CPU;
    # statistics cost one more synchronisation, so only on request
    if want_stats:
        stats = _core.uncertainty_cuda(*args, True)
        del ws
        return scores, order, top, dict(stats)
    _core.uncertainty_cuda(*args)
    del ws
    return scores, order, top


def uncertainty_scores(m: Matrix, method: str, inputs: str, check_finite: bool, tol: float):
    scores, _, _ = _unc(m, None, method, inputs, check_finite, tol, True)
    return scores


def uncertainty_topk(m: Matrix, budget: int, method: str, inputs: str, check_finite: bool,
                     tol: float, return_scores: bool, return_stats: bool = False):
    if return_stats:
        _, order, top, stats = _unc(m, budget, method, inputs, check_finite, tol, True, True)
        return order, top, stats
    _, order, top = _unc(m, budget, method, inputs, check_finite, tol, return_scores)
    return (order, top) if return_scores else order
