"""k-center inside many sets at once: the front of ``kcenter(..., groups=)`` and
of ``kcenter`` on a (B, P, D) batch of point clouds.

Like ``kcenter.py`` for one set, this validates, chooses an engine per group,
builds the cells of the groups that run the pruned engine, and packages the
result; one backend call (``kcenter_groups``, twins in ``_backend_cpu`` and
``_backend_cuda``) runs every group. Each group's picks are those of
``kcenter`` called on that group's rows alone (see ``groups.py`` for the
conventions: ascending labels, flat results with offsets, the budget split).
"""

from __future__ import annotations

import numbers
import time
from typing import Any, Optional

import numpy as np

from .. import _emulation
from .._arrays import as_index_array, as_matrix, check_choice, check_threads, is_torch
from ._backends import backend_for
from ._plan import METHODS, METRICS, KCenterGroupPlan, to_caller
from .cells import default_n_cells
from .groups import Groups, as_groups, label_repr, split_budget

__all__ = ["kcenter_grouped", "kcenter_sets"]


def _reject_callback(callback) -> None:
    if callback is not None:
        raise ValueError("callback is not available for grouped or batched k-center (the picks "
                         "of many groups are not one growing list); use progress=True")


def _sub_matrix(m, rows: np.ndarray):
    """The rows of one group as a matrix of their own (a copy), for the probe and k-means."""
    if m.kind == "torch":
        import torch

        sub = m.owner[torch.from_numpy(rows).to(m.owner.device)]
    else:
        sub = np.ascontiguousarray(m.owner[rows])
    return as_matrix(sub, "embeddings")


def _plan_engines(m, grp_offsets: np.ndarray, members: np.ndarray, budgets: np.ndarray,
                  method: str, metric: str, n_cells: Optional[int], seed: int, threads: int,
                  backend, validate) -> tuple:
    """Each group's engine by the rule of ``choose_engine``, and the cells of
    the groups that run the pruned engine. The intrinsic dimension is probed
    at most once, on the largest group that needs it: the engine choice never
    changes the picks, and one probe per group would cost more than it saves."""
    from .kcenter import choose_engine  # the one rule, shared with single-set kcenter

    G = budgets.size
    if backend.groups_engine is not None:  # one engine for every group (the GPU's kernel)
        return [backend.groups_engine] * G, None, None, 0.0, {}
    sizes = np.diff(grp_offsets)
    cells_n = [n_cells or default_n_cells(int(s)) for s in sizes]
    probed: dict = {}
    order = np.argsort(-sizes, kind="stable")

    def probe_for(g: int):
        def probe() -> float:
            if "dim" not in probed:
                validate()
                rows = members[grp_offsets[g]:grp_offsets[g + 1]]
                probed["dim"] = backend.probe_intrinsic_dimension(_sub_matrix(m, rows), metric,
                                                                  seed)
            return probed["dim"]
        return probe

    engines = ["scan"] * G
    dims = {}
    for g in order:
        g = int(g)
        if budgets[g] == 0:
            continue
        engines[g], dim = choose_engine(method, int(sizes[g]), int(budgets[g]), cells_n[g],
                                        backend, probe_for(g), cols=m.cols)
        if dim is not None:
            dims[g] = dim
    cells = None
    n_cells_arr = None
    t0 = time.perf_counter()
    pruned = [g for g in range(G) if engines[g] == "pruned"]
    if pruned:
        validate()
        n_cells_arr = np.zeros(G, dtype=np.int64)
        parts = []
        for g in pruned:
            rows = members[grp_offsets[g]:grp_offsets[g + 1]]
            k = int(min(cells_n[g], rows.size))
            parts.append((g, backend.build_cells(_sub_matrix(m, rows), k, metric, seed, threads)))
            n_cells_arr[g] = k
        cells = _scatter_cells(parts, grp_offsets, members.size, backend)
    return engines, cells, n_cells_arr, time.perf_counter() - t0, dims


def _scatter_cells(parts, offsets: np.ndarray, total: int, backend):
    """One (N',) array of cells in member order from each pruned group's own
    partition, in the backend's memory (numpy, or a tensor on the device)."""
    first = parts[0][1]
    if isinstance(first, np.ndarray):
        out = np.zeros(total, dtype=np.int64)
        for g, c in parts:
            out[offsets[g]:offsets[g + 1]] = c
        return out
    import torch

    out = torch.zeros(total, dtype=torch.int64, device=first.device)
    for g, c in parts:
        out[int(offsets[g]):int(offsets[g + 1])] = c
    return out


def _check_common(method, metric, num_threads, n_cells):
    metric = check_choice(metric, "metric", METRICS)
    method = check_choice(method, "method", METHODS)
    threads = check_threads(num_threads)
    if n_cells is not None:
        if isinstance(n_cells, bool) or not isinstance(n_cells, numbers.Integral) or n_cells < 1:
            raise ValueError(f"n_cells must be a positive integer or None, got {n_cells!r}")
        n_cells = int(n_cells)
    return metric, method, threads, n_cells


def _random_starts(sizes: np.ndarray, seed: Any) -> np.ndarray:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    rng = np.random.default_rng(int(seed))
    return np.floor(rng.random(sizes.size) * sizes).astype(np.int64)


# --------------------------------------------------------------- groups=


def kcenter_grouped(embeddings: Any, budget: Any, groups: Any, *, already_selected: Any = None,
                    start: Any = None, metric: str = "euclidean", method: str = "auto",
                    return_radii: bool = False, return_offsets: bool = False,
                    return_stats: bool = False, progress: Any = False, callback=None,
                    n_cells: Optional[int] = None, seed: int = 0,
                    num_threads: Optional[int] = None, simd: Optional[str] = None):
    """``svp_fast.kcenter(embeddings, budget, groups=labels, ...)``; see there."""
    m = as_matrix(embeddings, "embeddings")
    metric, method, threads, n_cells = _check_common(method, metric, num_threads, n_cells)
    _reject_callback(callback)
    grp = as_groups(groups, m.rows)
    G = grp.n_groups
    pos = grp.positions()
    if already_selected is None:
        sel = np.zeros(0, dtype=np.int64)
    else:
        sel = as_index_array(already_selected, "already_selected", m.rows)
    sel_codes = grp.codes[sel]
    sel_order = np.argsort(sel_codes, kind="stable")  # the caller's order within a group
    sel_pos = np.ascontiguousarray(pos[sel[sel_order]], dtype=np.int64)
    n_sel = np.bincount(sel_codes, minlength=G).astype(np.int64)
    sel_offsets = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(n_sel, out=sel_offsets[1:])
    budgets = split_budget(budget, grp.sizes - n_sel, grp.labels)
    starts = _group_starts(start, grp, pos, n_sel, seed)

    backend = backend_for(m)
    validated = {}

    def validate() -> None:
        if not validated:
            backend.validate(m, metric, threads, simd)
            validated["done"] = True

    t0 = time.perf_counter()
    engines, cells, n_cells_arr, cells_seconds, dims = _plan_engines(
        m, grp.offsets, grp.members, budgets, method, metric, n_cells, seed, threads, backend,
        validate)
    plan = KCenterGroupPlan(
        members=grp.members, offsets=grp.offsets, budgets=budgets, starts=starts,
        selected=sel_pos, selected_offsets=sel_offsets, engines=engines, metric=metric,
        requested=method, return_radii=return_radii, cells=cells, n_cells=n_cells_arr,
        cells_seconds=time.perf_counter() - t0 if (cells is not None or dims) else 0.0,
        num_threads=threads, simd=simd, progress=progress)
    if dims:
        plan.extra["intrinsic_dimension"] = next(iter(dims.values()))
    positions, radii, stats = backend.kcenter_groups(m, plan)
    pick_offsets = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(budgets, out=pick_offsets[1:])
    rows = _rows_of_positions(positions, grp.members, grp.offsets, budgets)
    stats.extra["groups"].update(labels=grp.labels, offsets=pick_offsets, budgets=budgets)
    m = None  # (not del: the validate closure refers to m)
    out = [to_caller(embeddings, rows)]
    if return_offsets:
        out.append(to_caller(embeddings, pick_offsets))
    if return_radii:
        out.append(to_caller(embeddings, radii))
    if return_stats:
        out.append(stats)
    return out[0] if len(out) == 1 else tuple(out)


def _group_starts(start: Any, grp: Groups, pos: np.ndarray, n_sel: np.ndarray,
                  seed: Any) -> np.ndarray:
    """The first pick (a position) of every group: its lowest row (start=None),
    one row per group (a sequence of G rows, ascending label order), or a
    seeded random row (start="random")."""
    G = grp.n_groups
    if start is None:
        return np.zeros(G, dtype=np.int64)
    if isinstance(start, str):
        if start != "random":
            raise ValueError(f"start with groups must be None, 'random' or one row per group, "
                             f"got {start!r}")
        return _random_starts(grp.sizes, seed)
    if (n_sel > 0).any():
        raise ValueError("start applies only to groups with nothing already selected; got a "
                         f"start and {int(n_sel.sum())} already selected")
    if isinstance(start, numbers.Integral):
        raise ValueError("start with groups must be None, 'random' or one row per group "
                         f"(ascending label order), got the single row {start!r}")
    rows = np.asarray(start.detach().cpu().numpy() if is_torch(start) else start)
    if rows.dtype == bool or rows.dtype.kind not in "iu" or rows.ndim != 1:
        raise TypeError(f"start with groups must be a 1-D array of integer rows, got dtype "
                        f"{rows.dtype} and shape {rows.shape}")
    if rows.size != G:
        raise ValueError(f"start must hold one row per group ({G}), got {rows.size}")
    out = np.flatnonzero((rows < 0) | (rows >= grp.codes.size))
    if out.size:
        j = int(out[0])
        raise ValueError(f"start[{j}] = {int(rows[j])} is out of range [0, {grp.codes.size})")
    rows = rows.astype(np.int64)
    wrong = np.flatnonzero(grp.codes[rows] != np.arange(G))
    if wrong.size:
        g = int(wrong[0])
        raise ValueError(f"start[{g}] = {int(rows[g])} is not in group {label_repr(grp.labels[g])}")
    return np.ascontiguousarray(pos[rows], dtype=np.int64)


def _rows_of_positions(positions, members: np.ndarray, offsets: np.ndarray, budgets: np.ndarray):
    """Rows of X from positions within each group (numpy, or a tensor where they live)."""
    base = np.repeat(offsets[:-1], budgets)
    if isinstance(positions, np.ndarray):
        return members[base + positions]
    import torch

    dev = positions.device
    return torch.from_numpy(members).to(dev)[torch.from_numpy(base).to(dev) + positions]


# --------------------------------------------------------------- (B, P, D)


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
    metric, method, threads, n_cells = _check_common(method, metric, num_threads, n_cells)
    _reject_callback(callback)
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
    validated = {}

    def validate() -> None:
        # the core validates every set's rows before it picks; the probe and
        # k-means read rows before that, so they get the same check first
        if not validated:
            backend.validate(_sub_matrix(m, members), metric, threads, simd)
            validated["done"] = True

    t0 = time.perf_counter()
    engines, cells, n_cells_arr, _, dims = _plan_engines(
        m, offsets, members, budgets, method, metric, n_cells, seed, threads, backend, validate)
    plan = KCenterGroupPlan(
        members=members, offsets=offsets, budgets=budgets, starts=starts,
        selected=np.zeros(0, dtype=np.int64), selected_offsets=np.zeros(B + 1, dtype=np.int64),
        engines=engines, metric=metric, requested=method, return_radii=return_radii,
        set_rows=set_rows, cells=cells, n_cells=n_cells_arr,
        cells_seconds=time.perf_counter() - t0 if (cells is not None or dims) else 0.0,
        num_threads=threads, simd=simd, progress=progress)
    positions, radii, stats = backend.kcenter_groups(m, plan)
    m = None  # (not del: the validate closure refers to m)
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
        return _random_starts(lens, seed)
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
