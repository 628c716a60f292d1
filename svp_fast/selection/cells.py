"""Cells for the pruned k-center: a k-means partition of the embeddings.

Any partition gives the same picks (the core's bounds hold for every
partition); a good one prunes more. k-means is trained on a sample, and every
point is assigned to its nearest centroid in chunks, so memory stays
O(N + sample + cells x D) even for memmapped float16 inputs:

* host memory (``build_cells``): FAISS (``faiss-cpu``), or a small numpy
  Lloyd's loop when FAISS is missing;
* CUDA tensors (``build_cells_on_device``): FAISS on the GPU when the
  installed FAISS has GPU support, otherwise a Lloyd's loop in torch on the
  device.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from .. import _core
from .._arrays import BF16, Matrix, as_matrix

_CHUNK_BYTES = 64 << 20

# The pruned method copies the rows in cell order when the copy takes at most
# this many bytes (a step's candidates are then contiguous runs: 5-10% faster
# on Fashion-MNIST features); above it, it reads them in place. Set it lower
# to save memory.
CELL_ORDER_COPY_MAX_BYTES = 1 << 30

# k-means runs on the pruned engine's projection instead of the rows when the
# projection leaves at most this share of the variance out
PROJECTED_KMEANS_RESIDUAL = 0.05


def default_n_cells(n: int) -> int:
    """About sqrt(N) cells, a power of two in [16, 4096].

    More cells prune more distances but cost more k-means and per-step work;
    on 60,000 proxy features 256 cells beat 1,024 end to end (BENCHMARKS.md)."""
    target = math.sqrt(max(n, 1))
    return int(min(4096, max(16, 2 ** round(math.log2(target)))))


def _rows_f32(m: Matrix, lo: int, hi: int, normalize: bool, scale: float = 1.0) -> np.ndarray:
    """Rows [lo, hi) of a CPU matrix as a float32 C-contiguous array (times scale)."""
    return _as_f32(_take(m, slice(lo, hi)), normalize, scale)


def _as_f32(x, normalize: bool, scale: float) -> np.ndarray:
    """float32 C-contiguous rows for FAISS, with as few temporaries as possible:
    float32 rows at scale 1 are the caller's memory itself. (A fresh 30 MB
    float64 temporary for 60,000 x 64 rows cost 7-120 ms of page faults on a
    VM, more than the k-means.)"""
    if normalize or (x.dtype == np.float64 and scale != 1.0):
        return _finish(x, normalize, scale)  # scaled in float64 before the cast
    y = np.asarray(x, dtype=np.float32)
    if scale != 1.0:
        return np.multiply(y, np.float32(scale), dtype=np.float32)  # a power of two: exact
    return np.ascontiguousarray(y)


def _finish(x, normalize: bool, scale: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    elif scale != 1.0:
        x = x * scale
    return np.ascontiguousarray(x, dtype=np.float32)


def _kmeans_scale(peak: float) -> float:
    """1, or the power of two that brings ``peak`` to about 1 when float32
    squared distances could overflow or vanish (exact, so nearest centroids do
    not change)."""
    if not (peak > 0 and np.isfinite(peak)) or 2.0**-40 <= peak <= 2.0**40:
        return 1.0
    return float(2.0 ** -round(math.log2(peak)))


def _take(m: Matrix, rows) -> np.ndarray:
    """Rows of a CPU matrix (an index array or a slice) as a numpy array, a view
    where the input allows it (bfloat16 comes as float32)."""
    x = m.owner
    if m.kind == "torch":
        import torch

        t = x[rows if isinstance(rows, slice) else torch.from_numpy(rows)]
        return (t.float() if m.dtype_code == BF16 else t).numpy()
    return np.asarray(x[rows])


def _kmeans_numpy(sample: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    centroids = sample[rng.choice(sample.shape[0], size=k, replace=False)].copy()
    for _ in range(iters):
        labels = _assign_numpy(sample, centroids)
        sums = np.zeros_like(centroids, dtype=np.float64)
        np.add.at(sums, labels, sample)
        counts = np.bincount(labels, minlength=k)
        nonempty = counts > 0
        centroids[nonempty] = (sums[nonempty] / counts[nonempty, None]).astype(np.float32)
    return centroids


def _assign_numpy(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    c2 = (centroids.astype(np.float64) ** 2).sum(1)
    d = c2[None, :] - 2.0 * (x @ centroids.T)
    return np.argmin(d, axis=1).astype(np.int64)


def build_cells(m: Matrix, n_cells: int, *, metric: str = "euclidean", seed: int = 0,
                iters: int = 6, sample_per_cell: int = 32, use_faiss: bool | None = None,
                threads: int = 0, projection=None):
    """Partition the rows of a CPU matrix into ``n_cells`` k-means cells.

    A rough k-means is enough (32 sampled rows per cell, 6 iterations): on
    Fashion-MNIST proxy features it prunes as well as 64 rows and 10
    iterations (1.24% against 1.20% of the distances) at 60% of the cost.

    The rows must be finite (the caller validates them first). Where the
    largest sampled magnitude is beyond 2^+-40 they are scaled by a power of
    two (exact) before k-means runs in float32: embeddings of 1e20 or of
    subnormals would otherwise overflow or vanish there. Otherwise float32
    rows are read in place.

    FAISS runs on ``threads`` threads (0: its default), or on one when the
    whole k-means is under about 2^31 flops: 60,000 x 64 proxy features with
    256 cells took 0.040 s on one thread against 0.046 s on two right after
    a selection, whose OpenMP threads were still spinning.

    With a ``projection`` (projection.py) that holds nearly all of the
    variance (residual at most ``PROJECTED_KMEANS_RESIDUAL``), k-means runs on
    its k coordinates instead of the D columns: about D / k times cheaper
    (1,281,167 x 2048 float16 into 1,024 cells: 44 s on the rows), with cells
    as good where the rows barely leave those directions.

    Returns ``(cell_of, info)``: an int64 array [N] and a dict of timings.
    """
    if projection is not None and projection.residual_fraction <= PROJECTED_KMEANS_RESIDUAL:
        coords = as_matrix(projection.coords, "projection")
        cell_of, info = build_cells(coords, n_cells, seed=seed, iters=iters,
                                    sample_per_cell=sample_per_cell, use_faiss=use_faiss,
                                    threads=threads)
        info["space"] = f"projection ({projection.dims} dims)"
        return cell_of, info
    t0 = time.perf_counter()
    n, d = m.rows, m.cols
    n_cells = int(max(1, min(n_cells, n)))
    normalize = metric == "cosine"
    rng = np.random.default_rng(seed)
    sample_n = int(min(n, max(n_cells * sample_per_cell, 1)))
    idx = np.sort(rng.choice(n, size=sample_n, replace=False)) if sample_n < n else np.arange(n)
    raw = _take(m, idx)
    peak = float(np.max(np.abs(raw))) if raw.size else 0.0
    scale = 1.0 if normalize else _kmeans_scale(peak)
    sample = _as_f32(raw, normalize, scale)
    del raw
    faiss = None
    if use_faiss is not False:
        try:
            import faiss  # type: ignore
        except ImportError:
            if use_faiss:
                raise
    flops = 2 * (sample_n * iters + n) * n_cells * d
    with _faiss_threads(faiss, 1 if flops < 2**31 else threads):
        assign = _train(faiss, sample, n_cells, iters, sample_per_cell, seed, rng)
        t_train = time.perf_counter() - t0
        cell_of = np.empty(n, dtype=np.int64)
        rows_per_chunk = max(1, _CHUNK_BYTES // max(1, d * 4))
        for lo in range(0, n, rows_per_chunk):
            hi = min(n, lo + rows_per_chunk)
            cell_of[lo:hi] = assign(_rows_f32(m, lo, hi, normalize, scale))
    # a row far beyond the sampled magnitudes can overflow float32 distances,
    # and FAISS then names no centroid (-1): any cell will do, the bounds hold
    # for every partition
    np.maximum(cell_of, 0, out=cell_of)
    info = {"n_cells": n_cells, "train_seconds": t_train,
            "assign_seconds": time.perf_counter() - t0 - t_train,
            "kmeans": "faiss" if faiss is not None else "numpy", "space": "rows"}
    return cell_of, info


def _train(faiss, sample: np.ndarray, n_cells: int, iters: int, sample_per_cell: int, seed: int,
           rng: np.random.Generator):
    """k-means on the sample; returns the function that assigns float32 rows."""
    d = sample.shape[1]
    if faiss is not None and n_cells > 1:
        km = faiss.Kmeans(d, n_cells, niter=iters, seed=int(seed) & 0x7FFFFFFF, verbose=False,
                          max_points_per_centroid=sample_per_cell, min_points_per_centroid=1)
        km.train(sample)
        index = faiss.IndexFlatL2(d)
        index.add(np.ascontiguousarray(km.centroids, dtype=np.float32))
        return lambda x: index.search(x, 1)[1][:, 0].astype(np.int64)
    if n_cells > 1:
        centroids = _kmeans_numpy(sample, n_cells, iters, rng)
        return lambda x: _assign_numpy(x, centroids)
    return lambda x: np.zeros(x.shape[0], dtype=np.int64)


@contextlib.contextmanager
def _faiss_threads(faiss, threads: int):
    """FAISS's OpenMP thread count for the block (its own pool, not the core's)."""
    if faiss is None or threads <= 0:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def faiss_gpu():
    """The installed FAISS module when it can run on a GPU here, else None."""
    try:
        import faiss  # type: ignore
    except ImportError:
        return None
    try:
        has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:  # a CPU build without the GPU symbols
        return None
    return faiss if has_gpu else None


def build_cells_on_device(x, n_cells: int, *, metric: str = "euclidean", seed: int = 0,
                          iters: int = 10, sample_per_cell: int = 64, chunk: int = 65536):
    """k-means cells for a CUDA tensor ``x`` (N, D); an int64 tensor [N] on its device.

    The centroids are trained on a sample (``sample_per_cell`` rows a cell):
    with FAISS on the GPU when the installed FAISS has GPU support
    (``faiss.Kmeans(..., gpu=True)``, the sample brought to the host: at most
    4,096 x 64 rows), otherwise with a Lloyd's loop in torch on the device.
    Every row is then assigned on the device in float32 matrix products,
    ``chunk`` rows at a time, so memory stays O(N + chunk x cells). Any
    partition gives the same picks; this one only decides how much is pruned.
    Rows must be finite (the backend validates them first)."""
    import torch

    n, d = x.shape
    n_cells = int(max(1, min(n_cells, n)))
    g = torch.Generator(device=x.device).manual_seed(int(seed))

    def rows(v):
        v = v.float()
        return torch.nn.functional.normalize(v, dim=1) if metric == "cosine" else v

    s = min(n, n_cells * sample_per_cell)
    sample = rows(x[torch.randperm(n, device=x.device, generator=g)[:s]])
    faiss = faiss_gpu() if n_cells > 1 else None
    if faiss is not None:
        km = faiss.Kmeans(d, n_cells, niter=iters, seed=int(seed) & 0x7FFFFFFF, gpu=True,
                          verbose=False, max_points_per_centroid=sample_per_cell,
                          min_points_per_centroid=1)
        km.train(np.ascontiguousarray(sample.cpu().numpy(), dtype=np.float32))
        cent = torch.from_numpy(np.asarray(km.centroids, dtype=np.float32)).to(x.device)
    else:
        cent = sample[torch.randperm(s, device=x.device, generator=g)[:n_cells]].clone()
        for _ in range(iters):
            lab = ((cent * cent).sum(1)[None, :] - 2.0 * sample @ cent.T).argmin(1)
            sums = torch.zeros_like(cent).index_add_(0, lab, sample)
            cnt = torch.bincount(lab, minlength=n_cells).to(sums.dtype)
            keep = cnt > 0
            cent[keep] = sums[keep] / cnt[keep, None]
    cn = (cent * cent).sum(1)
    out = torch.empty(n, dtype=torch.int64, device=x.device)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        out[lo:hi] = (cn[None, :] - 2.0 * rows(x[lo:hi]) @ cent.T).argmin(1)
    return out


def intrinsic_dimension(sample: np.ndarray) -> float:
    """TwoNN estimate (Facco et al., 2017) of the intrinsic dimension of the
    rows of ``sample``: n / sum(log(r2 / r1)), r1 and r2 the distances of each
    row to its two nearest other rows. Rows with a duplicate (r1 = 0, up to
    rounding) are left out. Returns 0.0 when nothing is left, nan for
    non-finite input.

    Only a guide for choosing an engine: it never changes the picks."""
    x = np.asarray(sample, dtype=np.float64)
    n = x.shape[0]
    if n < 3:
        return 0.0
    if not np.isfinite(x).all():
        return float("nan")
    peak = float(np.abs(x).max())
    x = np.ascontiguousarray(x / peak if peak > 0 else x)  # squares of 1e200 stay finite
    r1 = np.empty(n, dtype=np.float64)
    r2 = np.empty(n, dtype=np.float64)
    # the core's kernels and threads: direct differences, no cancellation, and
    # no BLAS thread pool left spinning against the k-means or selection next
    _core.two_nearest_distances(x.ctypes.data, n, x.shape[1], 0, r1.ctypes.data, r2.ctypes.data)
    # below 1e-7 of the largest magnitude: a duplicate for the purpose of an
    # estimate (float32 inputs cannot resolve it), left out like an exact one
    ok = (r1 > 1e-7) & np.isfinite(r2)
    if not ok.any():
        return 0.0
    logs = np.log(r2[ok] / r1[ok]).sum()
    return float(ok.sum() / logs) if logs > 0 else float("inf")


def probe_intrinsic_dimension(m: Matrix, *, metric: str = "euclidean", seed: int = 0,
                              size: int | None = None) -> float:
    """``intrinsic_dimension`` of ``size`` random rows of a CPU or CUDA matrix
    (default: 1,000 rows, fewer for wide rows so the O(size^2 D) cost stays
    near 2^27 flops, a few ms)."""
    n = m.rows
    if size is None:
        size = int(max(64, min(1000, math.sqrt(2**27 / max(m.cols, 1)))))
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(n, size), replace=False))
    if m.kind == "torch":
        import torch

        t = m.owner[torch.from_numpy(idx).to(m.owner.device)]
        x = t.double().cpu().numpy()
    else:
        x = np.asarray(m.owner[idx], dtype=np.float64)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    return intrinsic_dimension(x)


__all__ = ["build_cells", "build_cells_on_device", "default_n_cells", "faiss_gpu",
           "intrinsic_dimension", "probe_intrinsic_dimension"]
