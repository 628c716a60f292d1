"""Baselines the benchmarks run side by side with svp_fast (never used by the library).

* ``svp_original_kcenter``: the greedy k-center loop of the original SVP code
  (stanford-futuredata/selection-via-proxy, svp/common/selection/
  k_center_greedy.py), re-stated: scipy ``cdist`` for one new center per step
  over the remaining pool, distances kept in a float32 matrix of
  (|already selected| + budget) x |pool| rows (the memory it is known for),
  running minimum in float32, ``np.argmax`` (ties to the lowest pool position).
  Because it rounds distances to float32, it breaks near-ties at float32
  resolution; svp_fast decides them in float64. Their picks agree until the
  first such near-tie.
* ``lean_kcenter_f64``: the same loop with O(N) memory and float64 throughout:
  the same arithmetic as svp_fast's reference semantics.
* ``numpy_scan_kcenter``: the plain numpy scan (one pass per pick), float32.
"""

from __future__ import annotations

import numpy as np
import scipy.spatial.distance


def svp_original_kcenter(x: np.ndarray, selected, budget: int) -> np.ndarray:
    n = x.shape[0]
    pool = np.setdiff1d(np.arange(n), selected, assume_unique=True)
    picks = np.empty(budget, dtype=np.int64)
    ns = len(selected)
    dist = np.zeros((ns + budget, len(pool)), dtype=np.float32)
    dist[:ns] = scipy.spatial.distance.cdist(x[selected], x[pool], metric="euclidean")
    mins = np.min(dist[:ns], axis=0)
    cols = np.ones(len(pool), dtype=bool)
    for i in range(budget):
        j = int(np.argmax(mins))
        u = pool[j]
        picks[i] = u
        if i == budget - 1:
            break
        mins[j] = -1
        cols[j] = False
        r = ns + i + 1
        dist[r, cols] = scipy.spatial.distance.cdist(x[u:u + 1], x[pool[cols]])[0]
        mins = np.minimum(mins, dist[r])
    return picks


def lean_kcenter_f64(x: np.ndarray, selected, budget: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    mins = np.full(n, np.inf)
    for s in selected:
        np.minimum(mins, ((x - x[s]) ** 2).sum(1), out=mins)
    mins[np.asarray(selected, dtype=np.int64)] = -1
    picks = np.empty(budget, dtype=np.int64)
    for i in range(budget):
        j = int(np.argmax(mins))
        picks[i] = j
        mins[j] = -1
        if i + 1 < budget:
            d = ((x - x[j]) ** 2).sum(1)
            live = mins >= 0
            mins[live] = np.minimum(mins[live], d[live])
    return picks


def numpy_scan_kcenter(x: np.ndarray, budget: int, start: int = 0) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = (x * x).sum(1)
    mins = np.full(x.shape[0], np.inf, dtype=np.float32)
    picks = np.empty(budget, dtype=np.int64)
    j = start
    for i in range(budget):
        picks[i] = j
        d = norms - 2.0 * (x @ x[j]) + norms[j]
        np.minimum(mins, d, out=mins)
        mins[j] = -1
        j = int(np.argmax(mins))
    return picks


def first_difference(a, b) -> int:
    """Index of the first differing pick, or -1 when equal."""
    a, b = np.asarray(a), np.asarray(b)
    m = min(a.size, b.size)
    diff = np.flatnonzero(a[:m] != b[:m])
    if diff.size:
        return int(diff[0])
    return -1 if a.size == b.size else m
