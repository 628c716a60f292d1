import numpy as np, svp_fast
from svp_fast import _core
from svp_fast._arrays import as_matrix

def simulate(x, budget, parts, already_selected=(), start=0, metric="euclidean", method=0):
    """Single-process simulation of the distributed protocol over shards."""
    bounds = np.cumsum([0] + parts)
    shards, mats = [], []
    facts = []
    for r in range(len(parts)):
        xs = x[bounds[r]:bounds[r+1]]
        m = as_matrix(xs, "embeddings") if xs.shape[0] else None
        mats.append(xs)
        facts.append(_core.shard_facts(m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code, 0, "") if m else None)
    fs = [f for f in facts if f]
    max_abs = max(f["max_abs"] for f in fs); mn = min(f["min_norm"] for f in fs); mx = max(f["max_norm"] for f in fs)
    dtype_code = as_matrix(x, "x").dtype_code
    f64 = _core.shard_needs_float64(max_abs, mn, mx, dtype_code, ["euclidean","cosine"].index(metric), x.shape[1])
    for r in range(len(parts)):
        xs = np.ascontiguousarray(mats[r]) if mats[r].shape[0] else np.zeros((0, x.shape[1]), x.dtype)
        shards.append(_core.KCenterShard(xs, xs.ctypes.data, xs.shape[0], xs.shape[1], xs.shape[1], dtype_code,
                      ["euclidean","cosine"].index(metric), method, 0, 0, f64, 0, "", "embeddings"))
    owner = lambda g: int(np.searchsorted(bounds, g, side="right") - 1)
    centers = []  # global ids
    def add(g):
        r = owner(g); l = g - bounds[r]
        raw = np.ascontiguousarray(x[g])
        shards[r].exclude(l)
        for q, s in enumerate(shards):
            s.add_center(raw.ctypes.data, l if q == r else -1)
        centers.append(g)
    picks = []
    if len(already_selected):
        for g in already_selected: add(int(g))
    else:
        picks.append(start); add(start)
    amb = 0
    while len(picks) < budget:
        tops = []
        for r, s in enumerate(shards):
            v1, i1, v2, i2 = s.top2()
            if i1 >= 0: tops.append((v1, bounds[r] + i1))
            if i2 >= 0: tops.append((v2, bounds[r] + i2))
        tops.sort(key=lambda t: (-t[0], t[1]))
        M, w = tops[0]
        E = shards[0].error_bound(M)
        thr = M - 2 * E
        if len(tops) > 1 and tops[1][0] >= thr:
            amb += 1
            members = []
            for r, s in enumerate(shards):
                idx, val = s.band(thr)
                members += [bounds[r] + i for i in idx]
            best = None
            for g in sorted(members):
                raw = np.ascontiguousarray(x[g])
                ex = np.inf
                for r, s in enumerate(shards):
                    loc = np.array([c - bounds[r] for c in centers if owner(c) == r], dtype=np.int64)
                    ex = min(ex, s.exact_min(raw.ctypes.data, loc.ctypes.data, loc.size))
                if best is None or ex > best[0]: best = (ex, g)
            w = best[1]
        picks.append(w); add(w)
    return np.array(picks), amb

rng = np.random.default_rng(3)
for dt in [np.float32, np.float16, np.float64]:
  for metric in ["euclidean", "cosine"]:
    for method in [0, 2]:
        x = rng.standard_normal((2000, 24)).astype(dt)
        ref = svp_fast.kcenter(x, 600, metric=metric)
        p, amb = simulate(x, 600, [700, 0, 500, 800], metric=metric, method=method)
        sel = rng.choice(2000, 50, replace=False)
        ref2 = svp_fast.kcenter(x, 300, already_selected=sel, metric=metric)
        p2, _ = simulate(x, 300, [1000, 1000], already_selected=sel, metric=metric, method=method)
        print(dt.__name__, metric, method, np.array_equal(p, ref), np.array_equal(p2, ref2), amb)
