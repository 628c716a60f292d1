"""Exact greedy k-center (farthest-first traversal) over embeddings."""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .. import _core
from .._arrays import (as_index_array, as_matrix, check_budget, check_choice, check_index,
                       check_threads, to_callers_library)
from .._progress import check_progress, make_hook
from . import cells
from .cells import build_cells, default_n_cells, probe_intrinsic_dimension

METRICS = ("euclidean", "cosine")
METHODS = ("auto", "scan", "pruned", "lazy")


@dataclass
class KCenterStats:
    """What a k-center run did. ``evaluated_fraction`` is the share of the
    point-center distances of a plain scan that were actually computed."""

    method: str
    backend: str
    distance_evals: int
    scan_evals: int
    ambiguous_steps: int
    exact_distance_evals: int
    fallback_step: int
    float64_accumulation: bool
    setup_seconds: float
    select_seconds: float
    cells_seconds: float = 0.0
    n_cells: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def evaluated_fraction(self) -> float:
        return self.distance_evals / self.scan_evals if self.scan_evals else 0.0

    @classmethod
    def from_core(cls, raw: dict, backend: str, **fields) -> "KCenterStats":
        """The stats of a core call (its result dict), plus the Python side's fields."""
        core = ("method", "distance_evals", "scan_evals", "ambiguous_steps",
                "exact_distance_evals", "fallback_step", "float64_accumulation",
                "setup_seconds", "select_seconds")
        return cls(backend=backend, **{k: raw[k] for k in core}, **fields)


# Cells prune when the data is low-dimensional where it lives: measured, the
# cells computed 1% of a scan's distances on proxy features of intrinsic
# dimension ~6 and 100% on Gaussian noise of intrinsic dimension ~38, where
# distances concentrate and every cell's bound straddles the radius.
CELLS_MAX_INTRINSIC_DIMENSION = 16.0


def _choose_method(method: str, n: int, budget: int, n_cells: int, probe=None):
    """The engine to run and the intrinsic dimension measured to decide (or None).

    ``probe()`` estimates the intrinsic dimension from a small sample; it is
    called only when the cells are otherwise worth considering."""
    if method != "auto":
        return method, None
    # Cells cost a k-means (about N x cells x D flops, as matrix products)
    # before the first pick: worth it only over many picks. The lazy engine
    # needs no setup and never reads more than the scan.
    if n < 4096 or budget < max(256, n_cells):
        return "lazy", None
    dim = probe() if probe is not None else None
    if dim is not None and dim > CELLS_MAX_INTRINSIC_DIMENSION:
        return "lazy", dim
    return "pruned", dim  # falls back to lazy when the cells do not prune


def kcenter(
    embeddings: Any,
    budget: int,
    *,
    already_selected: Any = None,
    start: Optional[int] = None,
    metric: str = "euclidean",
    method: str = "auto",
    return_radii: bool = False,
    return_stats: bool = False,
    progress: Any = False,
    callback: Optional[Callable[[np.ndarray, Optional[np.ndarray]], None]] = None,
    n_cells: Optional[int] = None,
    seed: int = 0,
    num_threads: Optional[int] = None,
    simd: Optional[str] = None,
):
    """Pick ``budget`` points by exact greedy k-center (farthest-first traversal).

    Each pick is the point farthest from its nearest center; centers start as
    ``already_selected`` (never returned) or, when that is empty, as ``start``,
    which is then the first pick. Ties go to the lowest index.

    Picks are exact: distances are computed in float32 (float64 for float64
    input, or when squares would overflow float32) with a rigorous error bound,
    and near-ties are decided in float64. The same input gives the same picks on
    every run, thread count, CPU, backend and ``method``, equal to those of a
    float64 reference. Extra memory is O(N + D), plus O(N) for the cells of the
    pruned method and, when it takes at most
    ``svp_fast.selection.cells.CELL_ORDER_COPY_MAX_BYTES`` (1 GiB), that
    method's copy of the rows in cell order.
    Otherwise the embeddings are never copied unless their layout needs it (see
    ``svp_fast._arrays``), and they are never modified.

    Args:
        embeddings: (N, D) array: numpy array or memmap (float16/32/64), torch
            tensor (CPU or CUDA; float16, bfloat16, float32, float64), or any
            array that speaks DLPack (CuPy, JAX, ...; read without a copy, see
            ``svp_fast._arrays``). Work runs where the data lives.
        budget: number of new picks: a count, 0 <= budget <= N - len(already_selected),
            or a fraction of N as a float in [0, 1) (``svp_fast._arrays.BUDGET_RULE``).
        already_selected: indices of initial centers (labelled or kept points),
            distinct, in [0, N). Passing a prefix of an earlier result continues
            that run exactly.
        start: first pick when ``already_selected`` is empty (default 0).
        metric: "euclidean", or "cosine" (Euclidean on rows scaled to unit norm;
            radii are then cosine distances 1 - cos).
        method: "scan" reads every point each step; "lazy" keeps only the
            points near the top up to date (a stale min-distance is an upper
            bound) and refreshes the rest in cache-blocked batches when needed;
            "pruned" groups points into k-means cells and skips those the
            triangle inequality proves cannot move; "auto" (default) uses
            cells when the budget is large enough to pay for them and the
            data's intrinsic dimension (a TwoNN estimate on 1,000 sampled
            rows) is at most 16, handing over to "lazy" when they do not
            prune; otherwise "lazy". All give the same picks.
        return_radii: also return radius[t], the distance from pick t to its
            nearest earlier center (+inf for the start pick); non-increasing.
        return_stats: also return a :class:`KCenterStats`.
        progress: True for a tqdm progress bar (off by default), or a tqdm object.
        callback: called as ``callback(picks, radii)`` with the picks so far
            and their radii (read-only numpy arrays; radii is None unless
            ``return_radii``) about every 0.1 s during the run and once at the
            end, e.g. to checkpoint them (``svp-fast kcenter --checkpoint``).
            An exception raised there stops the run and propagates.
        n_cells: number of cells for the pruned method (default: about
            sqrt(N), a power of two in [16, 4096]).
        seed: seed of the k-means that builds the cells (does not affect picks).
        num_threads: CPU threads (default: OpenMP's default).
        simd: force a CPU kernel ISA ("avx512", "avx2", "generic"), for tests.

    Returns:
        indices (int64, pick order) in the caller's array type (numpy, a torch
        tensor on the input's device, CuPy or JAX), followed by radii (float64) if
        ``return_radii`` and stats if ``return_stats``.

    Raises:
        TypeError / ValueError naming the argument for bad input (NaN/Inf, wrong
        shape or dtype, budget out of range, bad indices, unknown metric/method).
        KeyboardInterrupt on Ctrl-C, within about 0.1 s.
    """
    m = as_matrix(embeddings, "embeddings")
    metric = check_choice(metric, "metric", METRICS)
    method = check_choice(method, "method", METHODS)
    threads = check_threads(num_threads)
    check_progress(progress)
    if already_selected is None:
        selected = np.zeros(0, dtype=np.int64)
    else:
        selected = as_index_array(already_selected, "already_selected", m.rows)
    budget = check_budget(budget, m.rows - selected.size,
                          "the number of points not already selected", total=m.rows)
    if start is not None:
        if selected.size:
            raise ValueError("start applies only when already_selected is empty; "
                             f"got start={start!r} and {selected.size} already selected")
        start = check_index(start, "start", m.rows)
    start = 0 if start is None else int(start)
    if n_cells is not None:
        if isinstance(n_cells, bool) or not isinstance(n_cells, numbers.Integral) or n_cells < 1:
            raise ValueError(f"n_cells must be a positive integer or None, got {n_cells!r}")
        n_cells = int(min(n_cells, m.rows))  # more cells than points: one point per cell

    if m.device == "cuda":
        from .. import _cuda_backend

        return to_callers_library(embeddings, _cuda_backend.kcenter(
            m, budget, selected, start, metric, method, return_radii, return_stats, progress,
            callback, n_cells, seed))

    picks = np.empty(budget, dtype=np.int64)
    radii = np.empty(budget, dtype=np.float64) if return_radii else None
    cells_n = n_cells or default_n_cells(m.rows)
    t0 = time.perf_counter()
    validated = False

    def probe() -> float:
        nonlocal validated
        _validate_before_cells(m, metric, threads, simd)
        validated = True
        return probe_intrinsic_dimension(m, metric=metric, seed=seed)

    chosen, dim = (_choose_method(method, m.rows, budget, cells_n, probe) if budget > 0
                   else ("scan", None))
    probe_seconds = time.perf_counter() - t0
    cell_of = None
    if chosen == "pruned" and budget > 0:
        if not validated:
            _validate_before_cells(m, metric, threads, simd)
            validated = True
        cell_of, _info = build_cells(m, cells_n, metric=metric, seed=seed, threads=threads)
    # everything before the core call: input check, engine choice, k-means
    cells_seconds = time.perf_counter() - t0 if validated else 0.0
    # auto: hand over to the lazy engine when the cells keep evaluating more
    # than half of what a scan would (BENCHMARKS.md: pruning trajectories)
    fallback = 0.5 if method == "auto" else 2.0

    def on_poll(done: int) -> None:
        if callback is not None:
            view = picks[:done]
            view.flags.writeable = False
            rview = None
            if radii is not None:
                rview = radii[:done]
                rview.flags.writeable = False
            callback(view, rview)

    hook, close = make_hook(budget, progress, "k-center", "pick", on_poll if callback else None)
    try:
        raw = _core.kcenter_cpu(
            m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code, METRICS.index(metric), budget,
            selected.ctypes.data if selected.size else 0, selected.size, start,
            {"scan": 0, "pruned": 1, "lazy": 2}[chosen],
            cell_of.ctypes.data if cell_of is not None else 0,
            cells_n if cell_of is not None else 0, cells.CELL_ORDER_COPY_MAX_BYTES,
            fallback, threads,
            picks.ctypes.data, radii.ctypes.data if radii is not None else 0,
            hook, 0.1, simd or "", "embeddings")
    finally:
        close()
    del m  # keep the input (or its copy) alive until here
    stats = KCenterStats.from_core(
        raw, "cpu", cells_seconds=cells_seconds, n_cells=cells_n if cell_of is not None else 0,
        extra={} if dim is None else {"intrinsic_dimension": dim,
                                      "probe_seconds": probe_seconds})
    return _package(embeddings, picks, radii, stats, return_radii, return_stats)


def _validate_before_cells(m, metric: str, threads: int, simd) -> None:
    """The core validates its input, but cells are built before it runs: check
    first (one fast pass) so that k-means never sees NaN or Inf."""
    f = _core.shard_facts(m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code, threads, simd or "")
    if f["bad_row"] >= 0:
        raise ValueError(f"embeddings must be finite, got {f['bad_value']:g} at row "
                         f"{f['bad_row']}, column {f['bad_col']}")
    if metric == "cosine" and f["zero_row"] >= 0:
        raise ValueError(f"embeddings row {f['zero_row']} is all zeros; the cosine metric needs "
                         "rows of nonzero norm")


def _package(embeddings, picks, radii, stats, return_radii, return_stats):
    from .._arrays import is_torch

    if is_torch(embeddings):
        import torch

        picks = torch.from_numpy(picks).to(embeddings.device)
        if radii is not None:
            radii = torch.from_numpy(radii).to(embeddings.device)
    out = [picks]
    if return_radii:
        out.append(radii)
    if return_stats:
        out.append(stats)
    return to_callers_library(embeddings, out[0] if len(out) == 1 else tuple(out))
