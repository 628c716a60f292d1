"""Exact greedy k-center (farthest-first traversal) over embeddings: the front.

``kcenter`` checks what applies to every kind of call and dispatches to one
of three drivers: one (N, D) set (``single.py``), ``groups=`` (``grouped.py``)
or a (B, P, D) batch of sets (``sets.py``). The drivers share one planner
below them (``_planner.py``: argument checks, the engine rule, the cells of
pruned groups), and the backend where the data lives runs the core.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Optional, Union

import numpy as np

from .._progress import check_progress
from ._plan import KCenterStats
from ._planner import (CELLS_MAX_INTRINSIC_DIMENSION, KDTREE_MAX_DIM, KDTREE_MIN_BUDGET,
                       choose_engine, positive_or_none)
from .checkpoint import DEFAULT_CHECKPOINT_EVERY, as_checkpoint
from .grouped import kcenter_grouped
from .sets import is_batch, kcenter_sets
from .single import kcenter_single

# choose_engine and the constants of its rule live in the planner; they are
# named here too, where they were before the drivers had a planner of their own
__all__ = ["CELLS_MAX_INTRINSIC_DIMENSION", "KDTREE_MAX_DIM", "KDTREE_MIN_BUDGET", "KCenterStats",
           "choose_engine", "kcenter"]


def kcenter(
    embeddings: Any,
    budget: Any,
    *,
    groups: Any = None,
    lengths: Any = None,
    already_selected: Any = None,
    start: Union[None, int, str, Any] = None,
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
    checkpoint_every: float = DEFAULT_CHECKPOINT_EVERY,
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
        start: first pick when ``already_selected`` is empty: a row (default
            0) or ``"random"``, a row drawn with ``seed`` (for groups and
            batches, see above; a single set draws as the one group it is).
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
        seed: seed of ``start="random"``, and of the k-means that builds the
            cells (which does not affect picks).
        num_threads: CPU threads. Default: chosen per call from the size of
            a step and the cores other processes leave free (one thread for
            small steps or on a busy machine, every thread on an idle one;
            ``svp_fast._threads``, README "Threads"); ``stats.num_threads``
            says what ran. Never affects picks.
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
    batch_candidates = positive_or_none(batch_candidates, "batch_candidates")
    batch_max_picks = positive_or_none(batch_max_picks, "batch_max_picks")
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
    return kcenter_single(embeddings, budget, projection_dims=projection_dims,
                          batch_candidates=batch_candidates, batch_max_picks=batch_max_picks,
                          checkpoint=ck, checkpoint_every=checkpoint_every, **many)
