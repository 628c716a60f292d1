"""Top-k uncertainty sampling: least confidence, entropy and margin."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import _core
from .._arrays import F64, as_matrix, check_budget, check_choice, check_threads, is_torch

METHODS = ("least_confidence", "entropy", "margin")
INPUTS = ("logits", "probs")


def _scores_cpu(m, method: str, inputs: str, check_finite: bool, tol: float, threads: int,
                simd: Optional[str]) -> np.ndarray:
    out = np.empty(m.rows, dtype=np.float64)
    _core.uncertainty_scores_cpu(m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code,
                                 METHODS.index(method), INPUTS.index(inputs), check_finite,
                                 tol, threads, out.ctypes.data, simd or "", "x")
    return out


def _args(x, method, inputs, num_threads):
    m = as_matrix(x, "x")
    method = check_choice(method, "method", METHODS)
    inputs = check_choice(inputs, "inputs", INPUTS)
    threads = check_threads(num_threads)
    return m, method, inputs, threads


def _out_dtype(m):
    return np.float64 if m.dtype_code == F64 else np.float32


def uncertainty_scores(
    x: Any,
    *,
    method: str = "least_confidence",
    inputs: str = "logits",
    check_finite: bool = True,
    probs_tolerance: float = 1e-3,
    num_threads: Optional[int] = None,
    simd: Optional[str] = None,
):
    """Uncertainty score of every row (higher = more uncertain).

    With p the row's class probabilities (``softmax(x)`` for logits, computed
    stably without storing p; or ``x`` itself for ``inputs="probs"``):

    * ``least_confidence``: 1 - max p
    * ``entropy``: -sum p log p (natural log)
    * ``margin``: 1 - (p_(1) - p_(2)), the two largest probabilities

    For logits the scores are computed without cancellation (1 - p_(1) as
    T / (1 + T) with T = sum over the other classes of exp(z_j - max z),
    p_(1) - p_(2) as -expm1(z_(2) - z_(1)) / (1 + T), entropy as
    log1p(T) + U / (1 + T) with U = sum exp(z_j - max z) (max z - z_j)), in
    float32 arithmetic (float64 for float64 input): each is within a few float32
    ulps of the float64 value.

    Args:
        x: (N, C) logits or probabilities, same array types as :func:`kcenter`.
        method: one of "least_confidence", "entropy", "margin".
        inputs: "logits" (default) or "probs" (rows must be distributions within
            ``probs_tolerance``; a clear error says which row is not).
        check_finite: reject NaN/Inf (default). Off saves a pass over L1-resident
            rows; non-finite rows then get unspecified scores.

    Returns:
        scores (float32; float64 for float64 input), numpy or torch like ``x``.
    """
    m, method, inputs, threads = _args(x, method, inputs, num_threads)
    if m.device == "cuda":
        from .. import _cuda_backend

        return _cuda_backend.uncertainty_scores(m, method, inputs, check_finite, probs_tolerance)
    scores = _scores_cpu(m, method, inputs, check_finite, probs_tolerance, threads, simd)
    scores = scores.astype(_out_dtype(m))
    if is_torch(x):
        import torch

        return torch.from_numpy(scores)
    return scores


def uncertainty(
    x: Any,
    budget: int,
    *,
    method: str = "least_confidence",
    inputs: str = "logits",
    return_scores: bool = False,
    return_stats: bool = False,
    check_finite: bool = True,
    probs_tolerance: float = 1e-3,
    num_threads: Optional[int] = None,
    simd: Optional[str] = None,
):
    """The ``budget`` most uncertain rows, most uncertain first: the float64 top-k.

    The ranking is that of the scores of :func:`uncertainty_scores` evaluated in
    float64, on every backend, dtype, thread count and SIMD level:

    * Rows are ranked by keys that keep their digits where the score would
      cancel: least confidence by T, margin by p_(1) - p_(2) (smaller first),
      entropy by itself (see :func:`uncertainty_scores` for T and the forms).
    * Float64 values within float64's own error bound of each other are ties:
      ``tie_tol(v) = 4 (C + 1024) 2^-53 |v| + (C + 1) 2^-1018`` (probability
      entropy adds a term for entries above 1). Repeatedly, among the rows
      left, with M the largest value, the lowest index among the rows within
      ``tie_tol(M)`` of M comes next.
    * One float32 pass computes every key with a proven error bound; only the
      rows that the bounds cannot place (near-ties inside the top-k and at its
      boundary) are recomputed in float64 (``return_stats`` counts them).

    Returns:
        indices (int64), plus their scores (non-increasing; float32, float64 for
        float64 input) if ``return_scores``, plus a dict of statistics
        (``rows_refined``, ``candidates``, ``tie_groups``, ``passes``) if
        ``return_stats``; numpy or torch (on ``x``'s device) like ``x``.
    """
    m, method, inputs, threads = _args(x, method, inputs, num_threads)
    budget = check_budget(budget, m.rows, "the number of rows")
    if m.device == "cuda":
        from .. import _cuda_backend

        if return_stats:
            order, top, stats = _cuda_backend.uncertainty_topk(
                m, budget, method, inputs, check_finite, probs_tolerance, True, return_stats=True)
            return (order, top, stats) if return_scores else (order, stats)
        return _cuda_backend.uncertainty_topk(m, budget, method, inputs, check_finite,
                                              probs_tolerance, return_scores)
    order = np.empty(budget, dtype=np.int64)
    top = np.empty(budget, dtype=np.float64)
    stats = _core.uncertainty_topk_cpu(m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code,
                                       METHODS.index(method), INPUTS.index(inputs), check_finite,
                                       probs_tolerance, threads, budget,
                                       order.ctypes.data if budget else 0,
                                       top.ctypes.data if budget else 0, simd or "", "x")
    top = top.astype(_out_dtype(m))
    if is_torch(x):
        import torch

        order, top = torch.from_numpy(order), torch.from_numpy(top)
    out = (order,)
    if return_scores:
        out += (top,)
    if return_stats:
        out += (dict(stats),)
    return out if len(out) > 1 else order
