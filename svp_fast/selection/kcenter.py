"""Exact greedy k-center (farthest-first traversal) over embeddings: the front.

The front validates the caller's arguments, chooses the engine, builds the
cells when the pruned engine runs, and packages the result in the caller's
array type. The backend where the data lives (``_backend_cpu`` or
``_backend_cuda``, twins with the same methods) runs the core.
"""

from __future__ import annotations

import numbers
import time
from typing import Any, Callable, Optional

import numpy as np

from .._arrays import as_index_array, as_matrix, check_budget, check_choice, check_index, check_threads
from .._progress import check_progress
from ._backends import backend_for
from ._plan import DEFAULT_BATCH_CANDIDATES, METHODS, METRICS, KCenterPlan, KCenterStats, package
from .cells import default_n_cells

__all__ = ["CELLS_MAX_INTRINSIC_DIMENSION", "KCenterStats", "choose_engine", "kcenter"]

# Cells prune when the data is low-dimensional where it lives: measured, the
# cells computed 1% of a scan's distances on proxy features of intrinsic
# dimension ~6 and 100% on Gaussian noise of intrinsic dimension ~38, where
# distances concentrate and every cell's bound straddles the radius.
CELLS_MAX_INTRINSIC_DIMENSION = 16.0

def choose_engine(method: str, n: int, budget: int, n_cells: int, backend, probe=None):
    """The engine to run and the intrinsic dimension measured to decide (or None).

    ``probe()`` estimates the intrinsic dimension from a small sample; it is
    called only when the cells are otherwise worth considering. The same rule
    on every backend; the backend says what "lazy" runs (``lazy_engine``),
    what "auto" runs without cells (``auto_engine``), whether "auto" ever
    builds cells there (``auto_considers_cells``), below how many rows cells
    never pay (``cells_min_rows``) and below how many picks "auto" runs the
    lazy engine (``auto_min_budget``)."""
    if method == "lazy":
        return backend.lazy_engine, None  # the GPU runs lazy as the scan
    if method != "auto":
        return method, None
    if budget < backend.auto_min_budget:
        return backend.lazy_engine, None  # a few picks: no pass structure pays
    # Cells cost a k-means (about N x cells x D flops, as matrix products)
    # before the first pick: worth it only over many picks.
    if (not backend.auto_considers_cells or n < backend.cells_min_rows
            or budget < max(256, n_cells)):
        return backend.auto_engine, None
    dim = probe() if probe is not None else None
    if dim is not None and dim > CELLS_MAX_INTRINSIC_DIMENSION:
        return backend.auto_engine, dim
    return "pruned", dim  # hands over to lazy_engine when the cells do not prune


def _positive_or_none(value, name: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


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
    batch_candidates: Optional[int] = None,
    batch_max_picks: Optional[int] = None,
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
            tensor (CPU or CUDA; float16, bfloat16, float32, float64). Work
            runs where the data lives.
        budget: number of new picks, 0 <= budget <= N - len(already_selected).
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
            prune; otherwise "lazy". "batched" certifies many picks per pass
            over the data: each pass takes the ``batch_candidates`` points
            farthest from the centers, picks among them while each pick is
            provably the greedy one, then applies all its picks to every
            point at once (the CPU twin of the GPU's batched engine). All
            give the same picks.
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
        batch_candidates: candidates per pass of the batched driver (T;
            default 256 for ``method="batched"``). With "scan", "lazy" or
            "pruned" it runs that engine under the batched driver.
        batch_max_picks: at most this many picks per pass (default: no cap).

    Returns:
        indices (int64, pick order) in the caller's array type (numpy, a torch
        tensor on the input's device, CuPy or JAX), followed by radii (float64) if
        ``return_radii`` and stats if ``return_stats``.

    Raises:
        TypeError / ValueError naming the argument for bad input (NaN/Inf, wrong
        shape or dtype, budget out of range, bad indices, unknown metric/method).
        KeyboardInterrupt on Ctrl-C, within about 0.1 s.
    """
    check_progress(progress)
    m = as_matrix(embeddings, "embeddings")
    metric = check_choice(metric, "metric", METRICS)
    method = check_choice(method, "method", METHODS)
    threads = check_threads(num_threads)
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
    batch_candidates = _positive_or_none(batch_candidates, "batch_candidates")
    batch_max_picks = _positive_or_none(batch_max_picks, "batch_max_picks")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")

    backend = backend_for(m)
    cells_n = n_cells or default_n_cells(m.rows)
    t0 = time.perf_counter()
    validated = False

    def validate() -> None:
        nonlocal validated
        if not validated:
            backend.validate(m, metric, threads, simd)
            validated = True

    def probe() -> float:
        validate()
        return backend.probe_intrinsic_dimension(m, metric, seed)

    engine, dim = (choose_engine(method, m.rows, budget, cells_n, backend, probe) if budget > 0
                   else ("scan", None))
    probe_seconds = time.perf_counter() - t0
    plan = KCenterPlan(budget=budget, selected=selected, start=start, metric=metric,
                       requested=method, engine=engine, return_radii=return_radii, seed=seed,
                       num_threads=threads, simd=simd, progress=progress, callback=callback,
                       batch_candidates=batch_candidates or (DEFAULT_BATCH_CANDIDATES
                                                             if engine == "batched" else 0),
                       batch_max_picks=batch_max_picks or 0)
    if dim is not None:
        plan.extra.update(intrinsic_dimension=dim, probe_seconds=probe_seconds)
    if engine == "pruned" and budget > 0:
        validate()
        plan.cell_of = backend.build_cells(m, cells_n, metric, seed, threads)
        plan.n_cells = cells_n
    # everything before the core call: input check, engine choice, k-means
    plan.cells_seconds = time.perf_counter() - t0 if validated else 0.0
    picks, radii, stats = backend.kcenter(m, plan)
    del m  # keep the input (or its copy) alive until here
    return package(embeddings, picks, radii, stats, return_radii, return_stats)
