"""k-center on one (N, D) set: the single-set driver under ``kcenter``.

It validates the set's own arguments, chooses the engine (the planner,
``_planner.py``), builds the cells when the pruned engine runs, continues from
a checkpoint, and packages the result in the caller's array type. The backend
where the data lives (``_backend_cpu`` or ``_backend_cuda``, twins with the
same methods) runs the core.
"""

from __future__ import annotations

import numbers
import time
from typing import Any, Callable, Optional

import numpy as np

from .._arrays import as_index_array, as_matrix, check_budget, check_index
from ._backends import backend_for
from ._plan import DEFAULT_BATCH_CANDIDATES, KCenterPlan, package
from ._planner import check_common, choose_engine, random_starts, step_threads
from .trial import engine_trial
from .cells import default_n_cells

__all__ = ["kcenter_single"]


def kcenter_single(embeddings: Any, budget: Any, *, already_selected: Any = None,
                   start: Any = None, metric: str = "euclidean", method: str = "auto",
                   return_radii: bool = False, return_stats: bool = False, progress: Any = False,
                   callback: Optional[Callable] = None, n_cells: Optional[int] = None,
                   projection_dims: Optional[int] = None, seed: int = 0,
                   num_threads: Optional[int] = None, simd: Optional[str] = None,
                   batch_candidates: Optional[int] = None, batch_max_picks: Optional[int] = None,
                   checkpoint=None, checkpoint_every: float = 0.0):
    """``svp_fast.kcenter`` on one (N, D) set; see there. ``checkpoint`` is a
    ``KCenterCheckpoint`` or None (the front opened it)."""
    ck = checkpoint
    m = as_matrix(embeddings, "embeddings")
    metric, method, threads, n_cells = check_common(method, metric, num_threads, n_cells)
    if already_selected is None:
        selected = np.zeros(0, dtype=np.int64)
    else:
        selected = as_index_array(already_selected, "already_selected", m.rows)
    budget = check_budget(budget, m.rows - selected.size,
                          "the number of points not already selected", total=m.rows)
    start = _first_pick(start, seed, m.rows, selected.size)
    if n_cells is not None:
        n_cells = min(n_cells, m.rows)  # more cells than points: one point per cell
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
    # the default thread count (_threads.py): a pass over the rows (the input
    # check, the probe) first; the engine's steps once it is chosen
    requested = threads
    threads = step_threads(requested, m, backend).threads
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
    if backend.times_engines:  # time the engines on a sample
        def trial():
            validate()
            return engine_trial(m, budget, selected, metric, seed, backend)

    facts: dict = {}
    engine, dim = (choose_engine(method, m.rows, budget, cells_n, backend, probe, cols=m.cols,
                                 spread=spread, row_bytes=m.cols * m.itemsize, facts=facts,
                                 trial=trial)
                   if budget > 0 else ("scan", None))
    probe_seconds = time.perf_counter() - t0
    choice = step_threads(requested, m, backend, engine)
    threads = choice.threads
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
    plan.extra["threads_reason"] = choice.reason
    if engine == "pruned" and budget > 0:
        validate()
        plan.projection = backend.build_projection(m, metric, seed, projection_dims)
        plan.cell_of = backend.build_cells(m, cells_n, metric, seed, threads, plan.projection)
        plan.n_cells = cells_n
    # everything before the core call: input check, engine choice, k-means
    plan.cells_seconds = time.perf_counter() - t0 if validated else 0.0
    picks, radii, stats = backend.kcenter(m, plan)
    if done.size:
        stats.extra["resumed_from"] = int(done.size)
        stats.picks = total_budget
        picks = _prepend(done, picks)
        if radii is not None:
            radii = _prepend(done_radii, radii)
    if ck is not None:
        ck.remove()  # the run is complete
    return package(embeddings, picks, radii, stats, return_radii, return_stats)



def _first_pick(start: Any, seed: Any, rows: int, n_selected: int) -> int:
    """``start``: None (row 0), a row, or "random" (a row drawn with ``seed``,
    by the rule groups and batches use: ``random_starts``)."""
    if start is None:
        return 0
    if n_selected:
        raise ValueError("start applies only when already_selected is empty; "
                         f"got start={start!r} and {n_selected} already selected")
    if isinstance(start, str):
        if start != "random":
            raise ValueError(f"start must be None, a row index or 'random', got {start!r}")
        return int(random_starts(np.array([rows]), seed)[0])
    if isinstance(start, bool) or not isinstance(start, numbers.Integral):
        raise TypeError(f"start must be None, a row index or 'random', got "
                        f"{type(start).__name__} {start!r}")
    return check_index(start, "start", rows)


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
