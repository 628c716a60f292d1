"""k-center inside groups of rows: the driver of ``kcenter(..., groups=labels)``.

Like the single-set driver (``single.py``), this validates, chooses an engine
per group and builds the cells of the groups that run the pruned engine (both
through the planner, ``_planner.py``), and packages the result; one backend
call (``kcenter_groups``, twins in ``_backend_cpu`` and ``_backend_cuda``) runs
every group. Each group's picks are those of ``kcenter`` called on that
group's rows alone (see ``groups.py`` for the conventions: ascending labels,
flat results with offsets, the budget split).
"""

from __future__ import annotations

import numbers
import time
from typing import Any, Optional

import numpy as np

from .._arrays import as_index_array, as_matrix, is_torch
from ._backends import backend_for
from ._plan import KCenterGroupPlan, to_caller
from ._planner import check_common, plan_group_engines, random_starts, step_threads
from .groups import Groups, as_groups, label_repr, split_budget

__all__ = ["kcenter_grouped", "reject_callback"]


def reject_callback(callback) -> None:
    if callback is not None:
        raise ValueError("callback is not available for grouped or batched k-center (the picks "
                         "of many groups are not one growing list); use progress=True")


# --------------------------------------------------------------- groups=


def kcenter_grouped(embeddings: Any, budget: Any, groups: Any, *, already_selected: Any = None,
                    start: Any = None, metric: str = "euclidean", method: str = "auto",
                    return_radii: bool = False, return_offsets: bool = False,
                    return_stats: bool = False, progress: Any = False, callback=None,
                    n_cells: Optional[int] = None, seed: int = 0,
                    num_threads: Optional[int] = None, simd: Optional[str] = None):
    """``svp_fast.kcenter(embeddings, budget, groups=labels, ...)``; see there."""
    m = as_matrix(embeddings, "embeddings")
    metric, method, threads, n_cells = check_common(method, metric, num_threads, n_cells)
    reject_callback(callback)
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
    # the groups run side by side, one thread each (a large one on every
    # thread): one region of work, all of their rows (_threads.py)
    choice = step_threads(threads, m, backend, rows=grp.members.size)
    threads = choice.threads
    validated = {}

    def validate() -> None:
        if not validated:
            backend.validate(m, metric, threads, simd)
            validated["done"] = True

    t0 = time.perf_counter()
    engines, cells, n_cells_arr, cells_seconds, dims = plan_group_engines(
        m, grp.offsets, grp.members, budgets, method, metric, n_cells, seed, threads, backend,
        validate)
    plan = KCenterGroupPlan(
        members=grp.members, offsets=grp.offsets, budgets=budgets, starts=starts,
        selected=sel_pos, selected_offsets=sel_offsets, engines=engines, metric=metric,
        requested=method, return_radii=return_radii, cells=cells, n_cells=n_cells_arr,
        cells_seconds=time.perf_counter() - t0 if (cells is not None or dims) else 0.0,
        num_threads=threads, simd=simd, progress=progress)
    plan.extra["threads_reason"] = choice.reason
    if dims:
        plan.extra["intrinsic_dimension"] = next(iter(dims.values()))
    positions, radii, stats = backend.kcenter_groups(m, plan)
    pick_offsets = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(budgets, out=pick_offsets[1:])
    rows = _rows_of_positions(positions, grp.members, grp.offsets, budgets)
    stats.extra["groups"].update(labels=grp.labels, offsets=pick_offsets, budgets=budgets)
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
        return random_starts(grp.sizes, seed)
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
