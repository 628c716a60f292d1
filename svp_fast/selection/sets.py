"""k-center in each set of a (B, P, D) batch (point clouds): the driver of
``kcenter`` on a 3-D array.

The batch is read as rows in place where set b's rows are a fixed stride
apart, and runs as groups of rows: the planner (``_planner.py``) chooses each
set's engine, and one backend call (``kcenter_groups``) runs every set. Each
set's picks are those of ``kcenter`` on that set alone.
"""

from __future__ import annotations

import numbers
import time
from typing import Any, Optional

import numpy as np

from .. import _emulation
from .._arrays import as_matrix, is_torch
from ._backends import backend_for
from ._plan import KCenterGroupPlan
from ._planner import check_common, plan_group_engines, random_starts, step_threads, sub_matrix
from .grouped import reject_callback

__all__ = ["is_batch", "kcenter_sets"]


def _batch_shape(points: Any):
    if is_torch(points):
        return tuple(points.shape)
    return tuple(np.shape(points))


def is_batch(points: Any) -> bool:
    """A (B, P, D) array or tensor: k-center on each of its B sets."""
    if is_torch(points):
        return points.dim() == 3
    return isinstance(points, np.ndarray) and points.ndim == 3


def _rows_view(points):
    """The (B, P, D) batch as a matrix of rows of stride s_P without a copy,
    when set b's rows start at row b * (s_B / s_P); returns (view, rows per set).
    Otherwise a C-contiguous copy of the batch (documented)."""
    if is_torch(points):
        x = points.detach()
        if x.is_neg() or x.is_conj():
            x = x.resolve_neg().resolve_conj()
        B, P, D = x.shape
        sb, sp, sd = x.stride()
        if sp > 0 and sb >= 0 and sb % sp == 0 and (sd == 1 or D == 1):
            k = sb // sp if B > 1 else P
            return x.as_strided(((B - 1) * k + P, D), (sp, 1)), k
        return x.contiguous().view(B * P, D), P
    x = points
    B, P, D = x.shape
    item = x.dtype.itemsize
    sb, sp, sd = x.strides
    ok = (sp > 0 and sb >= 0 and sb % sp == 0 and sp % item == 0 and (sd == item or D == 1))
    if ok:
        k = sb // sp if B > 1 else P
        rows = (B - 1) * k + P
        view = np.lib.stride_tricks.as_strided(x, shape=(rows, D), strides=(sp, item),
                                               writeable=False)
        return view, k
    c = np.ascontiguousarray(x)
    return c.reshape(B * P, D), P


def _check_batch_dtype(points) -> None:
    """The dtype (and device) check of ``as_matrix``, also for batches with no point."""
    one = points.new_zeros((1, 1)) if is_torch(points) else np.zeros((1, 1), dtype=points.dtype)
    as_matrix(one, "embeddings")


def _per_set(value: Any, B: int, name: str, what: str) -> np.ndarray:
    """An int (the same for every set) or one non-negative integer per set."""
    v = value.detach().cpu().numpy() if is_torch(value) else value
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer or one integer per set, got {v!r}")
    if isinstance(v, numbers.Integral):
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {int(v)}")
        return np.full(B, int(v), dtype=np.int64)
    arr = np.asarray(v)
    if arr.dtype == bool or arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise TypeError(f"{name} must be an integer or a 1-D array of integers ({what}), got "
                        f"dtype {arr.dtype} and shape {arr.shape}")
    if arr.size != B:
        raise ValueError(f"{name} must hold one value per set ({B}), got {arr.size}")
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise ValueError(f"{name}[{int(bad[0])}] must be >= 0, got {int(arr[bad[0]])}")
    return arr.astype(np.int64)


def kcenter_sets(points: Any, budget: Any, *, lengths: Any = None, start: Any = None,
                    metric: str = "euclidean", method: str = "auto", return_radii: bool = False,
                    return_stats: bool = False, progress: Any = False, callback=None,
                    already_selected: Any = None, n_cells: Optional[int] = None, seed: int = 0,
                    num_threads: Optional[int] = None, simd: Optional[str] = None):
    """``svp_fast.kcenter`` on a (B, P, D) batch; see there."""
    metric, method, threads, n_cells = check_common(method, metric, num_threads, n_cells)
    reject_callback(callback)
    if already_selected is not None:
        raise ValueError("already_selected is not available for a (B, P, D) batch; select "
                         "from the sets one by one, or pass groups= on an (N, D) array")
    B, P, D = _batch_shape(points)
    _check_batch_dtype(points)
    if D < 1:
        raise ValueError(f"embeddings must have at least one coordinate, got shape "
                         f"{(B, P, D)}")
    lens = np.full(B, P, dtype=np.int64) if lengths is None else _per_set(
        lengths, B, "lengths", "points per set")
    if (lens > P).any():
        b = int(np.flatnonzero(lens > P)[0])
        raise ValueError(f"lengths[{b}] = {int(lens[b])} exceeds the {P} points of a set")
    want = _per_set(budget, B, "budget", "picks per set")
    K = int(want.max(initial=0)) if B else int(_per_set(budget, 1, "budget", "")[0]) if \
        isinstance(budget, numbers.Integral) else 0
    budgets = np.minimum(want, lens)
    starts = _batch_starts(start, lens, budgets, seed)

    if B == 0 or P == 0:
        view = None
    else:
        view, set_rows = _rows_view(points)
    if view is None or lens.sum() == 0:
        return _package_batch(points, B, K, None, None, budgets, return_radii, return_stats,
                              None)
    m = as_matrix(view, "embeddings")
    members = np.concatenate([b * set_rows + np.arange(n, dtype=np.int64)
                              for b, n in enumerate(lens)]).astype(np.int64)
    offsets = np.zeros(B + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    backend = backend_for(m)
    # the groups run side by side, one thread each (a large one on every
    # thread): one region of work, all of their rows (_threads.py)
    choice = step_threads(threads, m, backend, rows=members.size)
    threads = choice.threads
    validated = {}

    def validate() -> None:
        # the core validates every set's rows before it picks; the probe and
        # k-means read rows before that, so they get the same check first
        if not validated:
            backend.validate(sub_matrix(m, members), metric, threads, simd)
            validated["done"] = True

    t0 = time.perf_counter()
    engines, cells, n_cells_arr, _, dims = plan_group_engines(
        m, offsets, members, budgets, method, metric, n_cells, seed, threads, backend, validate)
    plan = KCenterGroupPlan(
        members=members, offsets=offsets, budgets=budgets, starts=starts,
        selected=np.zeros(0, dtype=np.int64), selected_offsets=np.zeros(B + 1, dtype=np.int64),
        engines=engines, metric=metric, requested=method, return_radii=return_radii,
        set_rows=set_rows, cells=cells, n_cells=n_cells_arr,
        cells_seconds=time.perf_counter() - t0 if (cells is not None or dims) else 0.0,
        num_threads=threads, simd=simd, progress=progress)
    plan.extra["threads_reason"] = choice.reason
    positions, radii, stats = backend.kcenter_groups(m, plan)
    return _package_batch(points, B, K, positions, radii, budgets, return_radii, return_stats,
                          stats)


def _batch_starts(start: Any, lens: np.ndarray, budgets: np.ndarray, seed: Any) -> np.ndarray:
    B = lens.size
    if start is None:
        return np.zeros(B, dtype=np.int64)
    if isinstance(start, str):
        if start != "random":
            raise ValueError(f"start must be an integer, one integer per set or 'random', "
                             f"got {start!r}")
        return random_starts(lens, seed)
    starts = _per_set(start, B, "start", "the first pick of each set")
    bad = np.flatnonzero((budgets > 0) & (starts >= lens))
    if bad.size:
        b = int(bad[0])
        raise ValueError(f"start of set {b} must be in [0, {int(lens[b])}), got {int(starts[b])}")
    return starts


def _package_batch(points, B: int, K: int, positions, radii, budgets, return_radii: bool,
                   return_stats: bool, stats):
    """(B, K) picks with -1 where a set has fewer than K points (radii: NaN)."""
    offsets = np.zeros(B + 1, dtype=np.int64)
    np.cumsum(budgets, out=offsets[1:])
    slot = np.arange(K, dtype=np.int64)[None, :]
    valid = slot < budgets[:, None]
    flat = (offsets[:-1, None] + slot)[valid]
    if is_torch(points):
        import torch

        dev = points.device
        out = torch.full((B, K), -1, dtype=torch.int64, device=dev)
        rad = torch.full((B, K), float("nan"), dtype=torch.float64, device=dev)
        v = torch.from_numpy(valid).to(dev)
        if positions is not None and flat.size:
            f = torch.from_numpy(flat).to(dev)
            p = positions if is_torch(positions) else torch.from_numpy(positions)
            out[v] = p.to(dev)[f]
            if radii is not None:
                r = radii if is_torch(radii) else torch.from_numpy(radii)
                rad[v] = r.to(dev)[f]
    else:
        out = np.full((B, K), -1, dtype=np.int64)
        rad = np.full((B, K), np.nan, dtype=np.float64)
        if positions is not None and flat.size:
            p = positions if isinstance(positions, np.ndarray) else positions.cpu().numpy()
            out[valid] = p[flat]
            if radii is not None:
                r = radii if isinstance(radii, np.ndarray) else radii.cpu().numpy()
                rad[valid] = r[flat]
    res = [_emulation.like(points, out)]
    if return_radii:
        res.append(_emulation.like(points, rad))
    if return_stats:
        res.append(stats)
    return res[0] if len(res) == 1 else tuple(res)
