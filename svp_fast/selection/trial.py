"""A short trial of the CPU engines on a sample of the rows, for ``method="auto"``.

TwoNN reads the intrinsic dimension at the scale of its 1,000 sampled rows,
and small-scale structure fools it: 1,000 class blobs in a 32-dimensional
subspace of 256 columns read 2.5, where the cells computed 5% of a scan's
distances over 10,000 picks and still took 2.4x the lazy engine's time (its
refresh runs at the rate of a matrix product; issue 23). What decides is
the cost of each engine on these rows at this budget, so for long runs on
narrow rows auto measures it: the pruned engine (with cells built on the
sample) and the lazy engine each select the same share of a random sample
as the run will of all rows, on one thread, timed by the thread's CPU time
(a busy machine barely moves it), and the costs are scaled to the full run.

The trial never changes the picks; it only chooses the engine. Its cost is
a few percent of the runs it is used for (``TRIAL_MIN_WORK``).
"""

from __future__ import annotations

import time

import numpy as np

from .._arrays import Matrix, as_matrix
from ._plan import KCenterPlan
from .cells import default_n_cells

# Only runs of at least this many multiply-adds (N x budget x D) are tried:
# a trial takes about 0.1-0.3 s of one thread, a few percent of such a run.
TRIAL_MIN_WORK = 2.0**38
# rows of the sample (at most an eighth of them)
TRIAL_ROWS = 8192


def _sample(m: Matrix, rows: np.ndarray) -> Matrix:
    if m.kind == "torch":
        import torch

        sub = m.owner[torch.from_numpy(rows).to(m.owner.device)]
    else:
        sub = np.ascontiguousarray(m.owner[rows])
    return as_matrix(sub, "embeddings")


def engine_trial(m: Matrix, budget: int, selected: np.ndarray, metric: str, seed: int,
                 backend, engines=("lazy", "pruned")) -> tuple[str, dict]:
    """The engine of ``engines`` whose trial, scaled to the full run, costs
    least, and the facts measured: predicted thread-seconds per engine and the
    trial's own wall time."""
    t0 = time.perf_counter()
    n = m.rows
    ns = int(max(2, min(TRIAL_ROWS, n // 8)))
    rng = np.random.default_rng(seed + 23)
    rows = np.sort(rng.choice(n, size=ns, replace=False))
    sub = _sample(m, rows)
    sel = np.flatnonzero(np.isin(rows, selected)).astype(np.int64)
    ks = int(min(max(1, round(budget * ns / n)), ns - sel.size))
    scale = (n * budget) / (ns * ks) if ks > 0 else 0.0
    predicted = {}
    for engine in engines:
        plan = KCenterPlan(budget=ks, selected=sel, start=0, metric=metric, requested=engine,
                           engine=engine, return_radii=False, seed=seed, num_threads=1)
        setup = 0.0
        if engine == "pruned":
            cells_s = default_n_cells(ns)
            c = time.thread_time()
            plan.cell_of = backend.build_cells(sub, cells_s, metric, seed, 1)
            plan.n_cells = cells_s
            # the k-means assigns every row to one of about sqrt(N) cells
            setup = (time.thread_time() - c) * (n / ns) * (default_n_cells(n) / cells_s)
        c = time.thread_time()
        backend.kcenter(sub, plan)
        predicted[engine] = setup + (time.thread_time() - c) * scale
    best = min(predicted, key=predicted.get)
    facts = {f"trial_{e}_s": round(v, 3) for e, v in predicted.items()}
    facts["trial_seconds"] = time.perf_counter() - t0
    return best, facts
