"""Small pure-numpy float64 references that the fast paths are compared against."""

from __future__ import annotations

import numpy as np


def _as64(x) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().to(torch.float64).numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x, dtype=np.float64)


def tie_tolerance(v, d, metric):
    """Distances (squared, working space) within this of the largest are ties.

    The same bound svp_fast uses (csrc/include/svp/exactness.h, exact_tie_model): float64
    rounding of a D-term sum, plus, for cosine, of the division by the norm."""
    u = 2.0 ** -53
    tol = 4.0 * (d + 2.0) * u * v + 4.0 * (d + 2.0) * 2.0 ** -1070
    if metric == "cosine":
        tol += 4.0 * (2.0 * d + 8.0) * u * np.sqrt(max(v, 0.0))
    return tol


def kcenter_ref(x, budget, already_selected=None, start=0, metric="euclidean"):
    """Greedy farthest-first traversal in float64; ties to the lowest index,
    where distances equal within float64 rounding (tie_tolerance) are ties.

    Returns (picks, radii) with radii[t] the distance of pick t to its nearest
    earlier center (Euclidean, or 1 - cos for the cosine metric).
    """
    x = _as64(x)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = x.shape[0]
    min_d2 = np.full(n, np.inf)
    live = np.ones(n, dtype=bool)
    picks, radii = [], []

    def add(c):
        d2 = ((x - x[c]) ** 2).sum(1)
        np.minimum(min_d2, d2, out=min_d2)

    sel = [] if already_selected is None else [int(i) for i in already_selected]
    if sel:
        for s in sel:
            live[s] = False
            add(s)
    elif budget > 0:
        picks.append(int(start))
        radii.append(np.inf)
        live[start] = False
        add(start)
    while len(picks) < budget:
        v = np.where(live, min_d2, -1.0)
        mx = v.max()
        i = int(np.argmax(v >= mx - tie_tolerance(mx, x.shape[1], metric)))  # lowest index
        picks.append(i)
        radii.append(mx)
        live[i] = False
        add(i)
    radii = np.asarray(radii, dtype=np.float64)
    radii = 0.5 * radii if metric == "cosine" else np.sqrt(radii)
    return np.asarray(picks, dtype=np.int64), radii


def softmax64(z):
    z = _as64(z)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def uncertainty_scores_ref(x, method="least_confidence", inputs="logits"):
    p = softmax64(x) if inputs == "logits" else _as64(x)
    if method == "least_confidence":
        return 1.0 - p.max(1)
    if method == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(p > 0, p * np.log(p), 0.0)
        return -t.sum(1)
    if method == "margin":
        if p.shape[1] == 1:
            return 1.0 - p[:, 0]
        s = np.sort(p, axis=1)
        return 1.0 - (s[:, -1] - s[:, -2])
    raise ValueError(method)


def topk_ref(scores, k):
    """Highest first, ties to the lowest index."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(scores.size), -scores))
    return order[:k]


# ------------------------------------------------------------ uncertainty top-k
# The contract of csrc/include/svp/uncertainty_exact.h, written independently.

def uncertainty_keys_ref(x, method="least_confidence", inputs="logits"):
    """(key, score) of every row in float64; higher key = more uncertain.

    Logits: with m = max z, T = sum over the other classes of exp(z_j - m) (a
    repeated maximum adds 1 per extra copy), U = sum exp(z_j - m) (m - z_j):
    least confidence ranks by T (score T / (1 + T)), margin by
    -d, d = -expm1(z_(2) - m) / (1 + T) (score 1 - d), entropy by
    log1p(T) + U / (1 + T). Probabilities: 1 - p_(1), -(p_(1) - p_(2)),
    -sum p log p over p > 0."""
    if x.shape[0] > 1 << 16:  # in blocks of rows: the temporaries stay small
        parts = [uncertainty_keys_ref(x[i:i + (1 << 16)], method, inputs)
                 for i in range(0, x.shape[0], 1 << 16)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    z = _as64(x)
    n, c = z.shape
    if inputs == "probs":
        s = np.partition(z, c - 2, axis=1) if c > 1 else z
        p1 = s[:, -1]
        p2 = s[:, -2] if c > 1 else np.zeros(n)
        if method == "least_confidence":
            key = 1.0 - p1
            return key, key
        if method == "margin":
            d = p1 - p2
            return -d, 1.0 - d
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(z > 0, z * np.log(np.where(z > 0, z, 1.0)), 0.0).sum(1)
        return h, h
    m = z.max(1, keepdims=True)
    gap = z - m
    e = np.exp(gap)
    below = gap < 0
    t = np.where(below, e, 0.0).sum(1) + ((gap == 0).sum(1) - 1)
    s = 1.0 + t
    if method == "least_confidence":
        return t, t / s
    if method == "margin":
        gap2 = (np.partition(z, c - 2, axis=1)[:, -2] - m[:, 0]) if c > 1 else np.full(n, -np.inf)
        d = -np.expm1(gap2) / s
        return -d, 1.0 - d
    with np.errstate(invalid="ignore"):
        u = np.where(below, e * np.where(below, -gap, 0.0), 0.0).sum(1)
    h = np.log1p(t) + u / s
    return h, h


def uncertainty_tie_tolerance(c, method, inputs="logits", probs_tolerance=1e-3):
    """(eps, beta): float64 keys within eps |v| + beta of each other are ties."""
    eps = 4.0 * (c + 1024.0) * 2.0 ** -53
    beta = (c + 1.0) * 2.0 ** -1018
    if inputs == "probs" and method == "entropy":
        beta += eps * 2.0 * (c + 1.0) * probs_tolerance * (1.0 + (c + 1.0) * probs_tolerance)
    return eps, beta


def uncertainty_topk_ref(x, k, method="least_confidence", inputs="logits", probs_tolerance=1e-3):
    """The float64 top-k with ties: repeatedly, among the rows left, with M the
    largest key, the lowest index among the rows with key >= M - tie(M)."""
    import heapq

    key, _ = uncertainty_keys_ref(x, method, inputs)
    key = np.where(np.isfinite(key), key, -np.inf)
    n, c = _as64(x).shape if not hasattr(x, "shape") else (x.shape[0], x.shape[1])
    eps, beta = uncertainty_tie_tolerance(c, method, inputs, probs_tolerance)
    order = np.lexsort((np.arange(n), -key))
    g = key[order]
    taken = np.zeros(n, dtype=bool)
    heap, out, first, nxt = [], [], 0, 0
    for _ in range(k):
        while taken[first]:
            first += 1
        top = g[first]
        thr = top - (eps * abs(top) + beta)
        while nxt < n and g[nxt] >= thr:
            heapq.heappush(heap, (int(order[nxt]), nxt))
            nxt += 1
        i, pos = heapq.heappop(heap)
        taken[pos] = True
        out.append(i)
    return np.asarray(out, dtype=np.int64)
