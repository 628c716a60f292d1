"""Top-k uncertainty sampling: least confidence, entropy and margin."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import _core
from .._arrays import (F64, as_matrix, check_budget, check_choice, check_threads, is_torch,
                       to_callers_library)

METHODS = ("least_confidence", "entropy", "margin")
INPUTS = ("logits", "probs")


def _cuda():
    from ._backends import BACKENDS  # the one routing table (tests swap in a stand-in)

    return BACKENDS["cuda"]


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
        return to_callers_library(x, _cuda().uncertainty_scores(
            m, METHODS.index(method), INPUTS.index(inputs), check_finite, probs_tolerance))
    scores = _scores_cpu(m, method, inputs, check_finite, probs_tolerance, threads, simd)
    scores = scores.astype(_out_dtype(m))
    if is_torch(x):
        import torch

        return torch.from_numpy(scores)
    return to_callers_library(x, scores)


def uncertainty(
    x: Any,
    budget: int,
    *,
    method: str = "least_confidence",
    inputs: str = "logits",
    return_scores: bool = False,
    check_finite: bool = True,
    probs_tolerance: float = 1e-3,
    num_threads: Optional[int] = None,
    simd: Optional[str] = None,
):
    """The ``budget`` most uncertain rows, most uncertain first, ties to the lowest index.

    One pass over ``x`` computes the scores (see :func:`uncertainty_scores`),
    then a k-selection orders the ``budget`` best. Scores are computed in
    float32 (float64 for float64 input); rows whose scores are equal in that
    precision are ordered by index.

    ``budget`` is a count in [0, N], or a fraction of N as a float in [0, 1),
    rounded to the nearest count (``svp_fast._arrays.BUDGET_RULE``).

    Returns:
        indices (int64), plus their scores if ``return_scores``; numpy or torch
        (on ``x``'s device) like ``x``.
    """
    m, method, inputs, threads = _args(x, method, inputs, num_threads)
    budget = check_budget(budget, m.rows, "the number of rows")
    if m.device == "cuda":
        order, top = _cuda().uncertainty_topk(m, budget, METHODS.index(method),
                                              INPUTS.index(inputs), check_finite, probs_tolerance)
        return to_callers_library(x, (order, top) if return_scores else order)
    scores = _scores_cpu(m, method, inputs, check_finite, probs_tolerance, threads, simd)
    order = np.empty(budget, dtype=np.int64)
    top = np.empty(budget, dtype=np.float64)
    if budget:
        _core.topk_desc(scores.ctypes.data, m.rows, budget, order.ctypes.data, top.ctypes.data,
                        threads)
    top = top.astype(_out_dtype(m))
    if is_torch(x):
        import torch

        order, top = torch.from_numpy(order), torch.from_numpy(top)
    return to_callers_library(x, (order, top) if return_scores else order)
