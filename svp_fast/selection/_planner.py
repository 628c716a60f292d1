"""The planner under every k-center driver: the argument checks they share, the
engine rule (``choose_engine``) and the cells of the groups that run the pruned
engine.

The front (``kcenter.py``) dispatches to three drivers: one set
(``single.py``), ``groups=`` (``grouped.py``) and a (B, P, D) batch of sets
(``sets.py``). Each of them plans here and runs one backend call. This module
imports none of them, so the selection package has no import circle.
"""

from __future__ import annotations

import numbers
import time
from typing import Any, Optional

import numpy as np

from .._arrays import as_matrix, check_choice, check_threads
from .._threads import KCENTER_BATCHED_PASS, KCENTER_STEP, ThreadChoice, choose_threads
from ._plan import METHODS, METRICS
from .cells import default_n_cells
from .projection import MIN_ROW_BYTES, RESIDUAL_MAX
from .trial import TRIAL_MIN_WORK

__all__ = ["CELLS_MAX_INTRINSIC_DIMENSION", "CELLS_MIN_PAIRS", "KDTREE_MAX_DIM", "KDTREE_MIN_BUDGET",
           "STEP_SHARING_ENGINES", "check_common", "choose_engine", "plan_group_engines",
           "positive_or_none", "random_starts", "step_threads", "sub_matrix"]

# Cells prune when the data is low-dimensional where it lives: measured, the
# cells computed 1% of a scan's distances on proxy features of intrinsic
# dimension ~6 and 100% on Gaussian noise of intrinsic dimension ~38, where
# distances concentrate and every cell's bound straddles the radius.
CELLS_MAX_INTRINSIC_DIMENSION = 16.0

# Points of at most this many coordinates go to the k-d tree engine (on the
# CPU): its boxes prune well there (fpsample's bucket method stops at 8 too),
# and its tree costs about as much as a few dozen scans of the points.
KDTREE_MAX_DIM = 8
KDTREE_MIN_BUDGET = 64

# Runs of fewer (row, pick) pairs than this never build cells, nor pay for the
# probe that decides for them: the TwoNN probe (about 1,000^2 x D
# multiply-adds) and the cells' k-means are then a large part of the run
# (measured on 2 cores: 50,000 x 256 noise, 300 picks: the probe 12 ms of a
# 41 ms lazy run; Fashion-MNIST features 60,000 x 64, 600 picks: the k-means
# 40 ms, pruned 89 ms against lazy 74 ms; at 6,000 picks pruned took half
# lazy's time).
CELLS_MIN_PAIRS = 2**26


def choose_engine(method: str, n: int, budget: int, n_cells: int, backend, probe=None,
                  cols: Optional[int] = None, spread=None, row_bytes: Optional[int] = None,
                  facts: Optional[dict] = None, trial=None):
    """The engine to run and the intrinsic dimension measured to decide (or None).

    ``probe()`` estimates the intrinsic dimension from a small sample; it is
    called only when the cells are otherwise worth considering. ``spread()``
    (optional) measures the share of the variance outside the few principal
    directions the pruned engine's projection bound would use; it is called
    for rows of ``row_bytes`` >= projection.MIN_ROW_BYTES that pass the
    intrinsic-dimension test: spread out (over projection.RESIDUAL_MAX), no
    projection would be built, and the cells' per-member work on such wide
    rows costs far more than the lazy engine's refresh, which runs at the
    rate of a matrix product (issue 23: 100,000 x 2048 float16 blobs spread
    over all directions, TwoNN 5.5-8.7: cells 7x the lazy engine's time per
    distance at about the same share of distances). What was measured goes
    into ``facts`` (when given). ``trial()`` (optional; selection/trial.py)
    times the pruned and lazy engines on a sample and returns (engine,
    facts): it decides for narrower rows when the run is long enough
    (N x budget x cols >= trial.TRIAL_MIN_WORK) that its cost is a few
    percent. The same rule
    on every backend; the backend says what "lazy" runs (``lazy_engine``),
    what "auto" runs without cells (``auto_engine``), whether "auto" ever
    builds cells there (``auto_considers_cells``), below how many rows cells
    never pay (``cells_min_rows``), below how many picks "auto" runs the
    lazy engine (``auto_min_budget``) and what runs for low-dimensional points
    (``kdtree_engine``)."""
    if method == "lazy":
        return backend.lazy_engine, None  # the GPU runs lazy as the scan
    if method == "kdtree":
        return backend.kdtree_engine, None  # the GPU runs it as the scan
    if method != "auto":
        return method, None
    if budget < backend.auto_min_budget:
        return backend.lazy_engine, None  # a few picks: no pass structure pays
    if (cols is not None and cols <= KDTREE_MAX_DIM and budget >= KDTREE_MIN_BUDGET
            and backend.kdtree_engine == "kdtree"):
        return "kdtree", None
    # Cells cost a k-means (about N x cells x D flops, as matrix products)
    # before the first pick: worth it only over many picks.
    if (not backend.auto_considers_cells or n < backend.cells_min_rows
            or budget < max(256, n_cells) or n * budget < CELLS_MIN_PAIRS):
        return backend.auto_engine, None
    dim = probe() if probe is not None else None
    if dim is not None and dim > CELLS_MAX_INTRINSIC_DIMENSION:
        return backend.auto_engine, dim
    if spread is not None and row_bytes is not None and row_bytes >= MIN_ROW_BYTES:
        residual = spread()
        if facts is not None:
            facts["spread_residual"] = residual
        if residual > RESIDUAL_MAX:
            return backend.auto_engine, dim
    elif trial is not None and cols is not None and n * budget * cols >= TRIAL_MIN_WORK:
        engine, measured = trial()
        if facts is not None:
            facts.update(measured)
        return (backend.auto_engine if engine == "lazy" else engine), dim
    return "pruned", dim  # hands over to lazy_engine when the cells do not prune


# Engines whose every step is one pass over the live rows: a large step is a
# large region of work (_threads.py, rule 2). The lazy, pruned and k-d tree
# engines read a few rows a step, in many small regions.
STEP_SHARING_ENGINES = ("scan", "batched")


def step_threads(requested: int, m, backend, engine: Optional[str] = None,
                 rows: Optional[int] = None) -> ThreadChoice:
    """The thread count of a k-center call on the CPU (``requested``: the
    caller's, 0 for the default; see ``svp_fast._threads``). Before the
    engine is chosen (``engine=None``) it is that of one pass over the rows.
    ``rows``: the rows one step reads (default all of ``m``'s)."""
    if backend.name != "cpu":
        return ThreadChoice(requested, "requested" if requested else "device")
    size = (m.rows if rows is None else rows) * m.cols * m.itemsize
    kind = KCENTER_BATCHED_PASS if engine == "batched" else KCENTER_STEP
    return choose_threads(requested, kind, size,
                          share=engine is None or engine in STEP_SHARING_ENGINES)


# --------------------------------------------------------------- argument checks


def positive_or_none(value, name: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def check_n_cells(n_cells) -> Optional[int]:
    if n_cells is None:
        return None
    if isinstance(n_cells, bool) or not isinstance(n_cells, numbers.Integral) or n_cells < 1:
        raise ValueError(f"n_cells must be a positive integer or None, got {n_cells!r}")
    return int(n_cells)


def check_common(method, metric, num_threads, n_cells):
    """The arguments every driver checks alike: (metric, method, threads, n_cells)."""
    metric = check_choice(metric, "metric", METRICS)
    method = check_choice(method, "method", METHODS)
    threads = check_threads(num_threads)
    return metric, method, threads, check_n_cells(n_cells)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    return int(seed)


def random_starts(sizes: np.ndarray, seed: Any) -> np.ndarray:
    """``start="random"``: one seeded row of each set of ``sizes`` rows. The
    same rule for one set, groups and batches, so that a single set picks as
    the one group or the batch of one set it equals."""
    rng = np.random.default_rng(check_seed(seed))
    return np.floor(rng.random(sizes.size) * sizes).astype(np.int64)


# --------------------------------------------------------------- many sets


def sub_matrix(m, rows: np.ndarray):
    """The rows of one group as a matrix of their own (a copy), for the probe and k-means."""
    if m.kind == "torch":
        import torch

        sub = m.owner[torch.from_numpy(rows).to(m.owner.device)]
    else:
        sub = np.ascontiguousarray(m.owner[rows])
    return as_matrix(sub, "embeddings")


def plan_group_engines(m, grp_offsets: np.ndarray, members: np.ndarray, budgets: np.ndarray,
                       method: str, metric: str, n_cells: Optional[int], seed: int, threads: int,
                       backend, validate) -> tuple:
    """Each group's engine by the rule of ``choose_engine``, and the cells of
    the groups that run the pruned engine. The intrinsic dimension is probed
    at most once, on the largest group that needs it: the engine choice never
    changes the picks, and one probe per group would cost more than it saves.

    Returns (engines, cells or None, n_cells per group or None, seconds spent
    on the cells, {group: intrinsic dimension})."""
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
                probed["dim"] = backend.probe_intrinsic_dimension(sub_matrix(m, rows), metric,
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
            parts.append((g, backend.build_cells(sub_matrix(m, rows), k, metric, seed, threads)))
            n_cells_arr[g] = k
        cells = _scatter_cells(parts, grp_offsets, members.size)
    return engines, cells, n_cells_arr, time.perf_counter() - t0, dims


def _scatter_cells(parts, offsets: np.ndarray, total: int):
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
