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
