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
from .projection import MIN_ROW_BYTES, RESIDUAL_MAX
from .trial import TRIAL_MIN_WORK, engine_trial
from .checkpoint import as_checkpoint
from .grouped import is_batch, kcenter_grouped, kcenter_sets

__all__ = ["CELLS_MAX_INTRINSIC_DIMENSION", "KDTREE_MAX_DIM", "KCenterStats", "choose_engine",
           "kcenter"]

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
            or budget < max(256, n_cells)):
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


def _positive_or_none(value, name: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def kcenter(
    embeddings: Any,
    budget: Any,
    *,
    groups: Any = None,
    lengths: Any = None,
    already_selected: Any = None,
    start: Optional[int] = None,
    metric: str = "euclidean",
    method: str = "auto",
    return_radii: bool = False,
    return_offsets: bool = False,
    return_stats: bool = False,
    progress: Any = False,
    callback: Optional[Callable[[np.ndarray, Optional[np.ndarray]], None]] = None,
    n_cells: Optional[int] = None,
    projection_dims: Optional[int] = None,
    seed: int = 0,
    num_threads: Optional[int] = None,
    simd: Optional[str] = None,
    batch_candidates: Optional[int] = None,
    batch_max_picks: Optional[int] = None,
    checkpoint: Any = None,
    checkpoint_every: float = 10.0,
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

    Many sets in one call (each set's picks are exactly those of a call on
    that set alone, on every engine and backend):

    * ``groups=labels`` (one integer or string label per row) selects inside
      each group, e.g. a class-balanced core-set. Groups are the distinct
      labels in ascending order; the result is flat: group 0's picks (rows of
      ``embeddings``), then group 1's, ..., each group in pick order
      (``return_offsets=True`` adds where each group starts, G + 1 entries).
      ``budget`` is a total count or a fraction of the points available,
      split over the groups in proportion to the points each has available
      by the largest-remainder rule (``svp_fast.selection.groups``), or one
      count per group (a sequence in ascending label order, or a mapping
      {label: count}). ``already_selected`` rows count in their own group;
      ``start`` is None (each group's lowest row), ``"random"`` (seeded by
      ``seed``) or one row per group. A group's rows that are not
      consecutive are copied once into a buffer while the group runs.
    * A (B, P, D) batch (point clouds) selects in each of its B sets:
      ``budget`` is an int or one count per set, ``lengths`` (B,) how many of
      a set's P points are real (the rest is padding, never read). Returns
      (B, K) positions within each set, K the largest budget, with -1 where a
      set has fewer points than its budget (radii: NaN there). ``start`` is
      an int, one per set, or ``"random"`` (seeded by ``seed``).

    On the CPU the groups run in parallel, one thread each (groups larger
    than a thread's share of the work run one at a time on every thread).

    Args:
        embeddings: (N, D) array: numpy array or memmap (float16/32/64), torch
            tensor (CPU or CUDA; float16, bfloat16, float32, float64). Work
            runs where the data lives. Or a (B, P, D) batch of sets.
        budget: number of new picks, 0 <= budget <= N - len(already_selected);
            with groups or a batch, see above.
        groups: (N,) labels: select inside each group (see above).
        lengths: (B,) points per set of a (B, P, D) batch (default: all P).
        already_selected: indices of initial centers (labelled or kept points),
            distinct, in [0, N). Passing a prefix of an earlier result continues
            that run exactly.
        start: first pick when ``already_selected`` is empty (default 0).
        metric: "euclidean", or "cosine" (Euclidean on rows scaled to unit norm;
            radii are then cosine distances 1 - cos).
        method: "kdtree" (D <= 32; the CPU) splits the points by a k-d tree
            into buckets of a few dozen and skips every bucket whose box is
            farther from the new center than its points' min-distances, for
            point clouds; "scan" reads every point each step; "lazy" keeps only the
            points near the top up to date (a stale min-distance is an upper
            bound) and refreshes the rest in cache-blocked batches when needed;
            "pruned" groups points into k-means cells and skips those the
            triangle inequality proves cannot move; "auto" (default) uses
            cells when the budget is large enough to pay for them, the
            data's intrinsic dimension (a TwoNN estimate on 1,000 sampled
            rows) is at most 16 and, on the CPU, wide rows (2 KB or more)
            hold their variance in a few directions or, for narrower rows
            in long runs, a timed trial on a sample favours them (README:
            how auto chooses), handing over to "lazy" when they do not
            prune; otherwise "lazy"; points of at most 8 coordinates go to
            "kdtree" on the CPU. "batched" certifies many picks per pass
            over the data: each pass takes the ``batch_candidates`` points
            farthest from the centers, picks among them while each pick is
            provably the greedy one, then applies all its picks to every
            point at once (docs/batched.md; on CUDA tensors "auto" runs it).
            All give the same picks.
        return_radii: also return radius[t], the distance from pick t to its
            nearest earlier center (+inf for the start pick); non-increasing
            (within each group).
        return_offsets: with groups, also return the (G + 1,) offsets of each
            group's picks in the flat result (after the picks).
        return_stats: also return a :class:`KCenterStats`.
        progress: True for a tqdm progress bar (off by default), or a tqdm object.
        callback: called as ``callback(picks, radii)`` with the picks so far
            and their radii (read-only numpy arrays; radii is None unless
            ``return_radii``) about every 0.1 s during the run and once at the
            end, e.g. to checkpoint them (``svp-fast kcenter --checkpoint``).
            An exception raised there stops the run and propagates.
        n_cells: number of cells for the pruned method (default: about
            sqrt(N), a power of two in [16, 4096]).
        projection_dims: directions of the pruned method's projection bound
            (svp_fast.selection.projection): a member's distance is bounded
            from its k projected coordinates before its row is read. None
            (default): k from the data, or no projection where it would not
            pay (rows under 2 KB, i.e. 512 float32 or 1,024 16-bit columns,
            or spread over many directions); 0: none; k: k directions.
            Never affects picks.
        seed: seed of the k-means that builds the cells (does not affect picks).
        num_threads: CPU threads (default: OpenMP's default).
        simd: force a CPU kernel ISA ("avx512", "avx2", "generic"), for tests.
        batch_candidates: candidates per pass of the batched driver (T;
            default 256 for ``method="batched"``). With "scan", "lazy" or
            "pruned" it runs that engine under the batched driver.
        batch_max_picks: at most this many picks per pass (default: no cap).
        checkpoint: a file (or a ``KCenterCheckpoint``) to continue from and save
            to: when it exists and was written by this run (same data,
            arguments and budget) the run continues from it, with exactly the
            picks and radii of an uninterrupted run; during the run it is
            saved atomically about every ``checkpoint_every`` seconds; it is
            removed when the run completes (svp_fast.selection.checkpoint).
        checkpoint_every: seconds between saves (default 10).

    Returns:
        indices (int64, pick order) in the caller's array type (numpy, a torch
        tensor on the input's device, CuPy or JAX), followed by offsets if
        ``return_offsets`` (groups), radii (float64) if ``return_radii`` and
        stats if ``return_stats``.

    Raises:
        TypeError / ValueError naming the argument for bad input (NaN/Inf, wrong
        shape or dtype, budget out of range, bad indices, unknown metric/method).
        KeyboardInterrupt on Ctrl-C, within about 0.1 s.
    """
    check_progress(progress)
    batch_candidates = _positive_or_none(batch_candidates, "batch_candidates")
    batch_max_picks = _positive_or_none(batch_max_picks, "batch_max_picks")
    many = dict(start=start, metric=metric, method=method, return_radii=return_radii,
                return_stats=return_stats, progress=progress, callback=callback,
                already_selected=already_selected, n_cells=n_cells, seed=seed,
                num_threads=num_threads, simd=simd)
    ck = as_checkpoint(checkpoint)
    if ck is not None:
        if groups is not None or is_batch(embeddings):
            raise ValueError("checkpoint applies to one (N, D) set, not to groups or a batch")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, numbers.Real) \
                or not checkpoint_every > 0:
            raise ValueError(f"checkpoint_every must be a number of seconds > 0, got "
                             f"{checkpoint_every!r}")
    if batch_candidates is not None or batch_max_picks is not None:
        if groups is not None or is_batch(embeddings):
            raise ValueError("batch_candidates and batch_max_picks apply to one (N, D) set; with "
                             "groups or a (B, P, D) batch use method='batched' (its default passes)")
    if projection_dims is not None and (groups is not None or is_batch(embeddings)):
        raise ValueError("projection_dims applies to one (N, D) set, not to groups or a batch")
    if is_batch(embeddings):
        if groups is not None:
            raise ValueError("groups applies to an (N, D) array; a (B, P, D) batch already "
                             "has its sets")
        if return_offsets:
            raise ValueError("return_offsets applies with groups=; a batch returns (B, K) picks")
        return kcenter_sets(embeddings, budget, lengths=lengths, **many)
    if lengths is not None:
        raise ValueError("lengths applies to a (B, P, D) batch of sets, not to an (N, D) array")
    if groups is not None:
        return kcenter_grouped(embeddings, budget, groups, return_offsets=return_offsets, **many)
    if return_offsets:
        raise ValueError("return_offsets applies with groups=")
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
    if projection_dims is not None:
        if isinstance(projection_dims, bool) or not isinstance(projection_dims, numbers.Integral) \
                or not 0 <= projection_dims <= 4096:
            raise ValueError(f"projection_dims must be an integer in [0, 4096] or None, got "
                             f"{projection_dims!r}")
        projection_dims = int(projection_dims)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")

    # a checkpoint: continue from what it holds (its picks are centers now)
    done, done_radii, resume = np.zeros(0, dtype=np.int64), None, None
    if ck is not None:
        ck.bind(_checkpoint_facts(m, metric, budget, selected, start))
        saved = ck.load()
        if saved is not None and saved.picks.size:
            if return_radii and saved.radii is None:
                raise ValueError(f"checkpoint {str(ck.path)!r} has no radii; run without "
                                 "return_radii or delete it to start over")
            done, done_radii = saved.picks, saved.radii
            resume = saved.state if saved.state is not None else {}
            resume["prev_radius"] = saved.prev_radius
    total_budget = budget
    if done.size:
        selected = np.concatenate([selected, done])
        budget -= done.size

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

    spread = None
    if projection_dims is None and hasattr(backend, "probe_spread"):
        def spread() -> float:
            validate()
            return backend.probe_spread(m, metric, seed)

    trial = None
    if hasattr(backend, "probe_spread"):  # the CPU: time the engines on a sample
        def trial():
            validate()
            return engine_trial(m, budget, selected, metric, seed, backend)

    facts: dict = {}
    engine, dim = (choose_engine(method, m.rows, budget, cells_n, backend, probe, cols=m.cols,
                                 spread=spread, row_bytes=m.cols * m.itemsize, facts=facts,
                                 trial=trial)
                   if budget > 0 else ("scan", None))
    probe_seconds = time.perf_counter() - t0
    run_callback = callback
    if callback is not None and done.size:  # the user sees the whole run's picks
        def run_callback(p, r):
            callback(np.concatenate([done, p]),
                     None if r is None or done_radii is None else np.concatenate([done_radii, r]))
    on_checkpoint = None
    if ck is not None:
        def on_checkpoint(p, r, prev_radius, state):
            ck.save(np.concatenate([done, p]),
                    None if r is None else (np.concatenate([done_radii, r])
                                            if done_radii is not None else r),
                    prev_radius, state)
    plan = KCenterPlan(budget=budget, selected=selected, start=start, metric=metric,
                       requested=method, engine=engine, return_radii=return_radii, seed=seed,
                       num_threads=threads, simd=simd, progress=progress, callback=run_callback,
                       resume=resume, on_checkpoint=on_checkpoint,
                       checkpoint_every=float(checkpoint_every),
                       batch_candidates=batch_candidates or (DEFAULT_BATCH_CANDIDATES
                                                             if engine == "batched" else 0),
                       batch_max_picks=batch_max_picks or 0)
    if dim is not None:
        plan.extra.update(intrinsic_dimension=dim, probe_seconds=probe_seconds)
    plan.extra.update(facts)
    if engine == "pruned" and budget > 0:
        validate()
        plan.projection = backend.build_projection(m, metric, seed, projection_dims)
        plan.cell_of = backend.build_cells(m, cells_n, metric, seed, threads, plan.projection)
        plan.n_cells = cells_n
    # everything before the core call: input check, engine choice, k-means
    plan.cells_seconds = time.perf_counter() - t0 if validated else 0.0
    picks, radii, stats = backend.kcenter(m, plan)
    m = None  # keep the input (or its copy) alive until here
    if done.size:
        stats.extra["resumed_from"] = int(done.size)
        stats.picks = total_budget
        picks = _prepend(done, picks)
        if radii is not None:
            radii = _prepend(done_radii, radii)
    if ck is not None:
        ck.remove()  # the run is complete
    return package(embeddings, picks, radii, stats, return_radii, return_stats)


def _prepend(head: np.ndarray, tail):
    if isinstance(tail, np.ndarray):
        return np.concatenate([head, tail])
    import torch

    return torch.cat([torch.from_numpy(head).to(tail.device), tail])


def _checkpoint_facts(m, metric: str, budget: int, selected: np.ndarray, start: int) -> dict:
    """What must match for a checkpoint to continue this run (the method and
    thread count may change: every method gives the same picks)."""
    import hashlib

    from .checkpoint import data_digest

    sel = hashlib.sha256(np.ascontiguousarray(selected, dtype=np.int64).tobytes()).hexdigest()
    return {"rows": m.rows, "cols": m.cols, "dtype": m.dtype_code, "metric": metric,
            "budget": int(budget), "already_selected_sha256": sel,
            "start": None if selected.size else int(start), "data": data_digest(m)}
