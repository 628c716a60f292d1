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


def _uncertainty_groups(x, m, budget, groups, method, inputs, return_scores, return_offsets,
                        check_finite, tol, threads, simd):
    """The top-k of every group, by the backend where the data lives."""
    from ._backends import backend_for
    from ._plan import to_caller
    from .groups import as_groups, split_budget

    grp = as_groups(groups, m.rows)
    budgets = split_budget(budget, grp.sizes, grp.labels)
    order, top = backend_for(m).uncertainty_topk_groups(
        m, grp.members, grp.offsets, budgets, METHODS.index(method), INPUTS.index(inputs),
        check_finite, tol, threads=threads, simd=simd)
    offsets = np.zeros(budgets.size + 1, dtype=np.int64)
    np.cumsum(budgets, out=offsets[1:])
    out = [to_caller(x, order)]
    if return_offsets:
        out.append(to_caller(x, offsets))
    if return_scores:
        out.append(to_caller(x, top))
    return out[0] if len(out) == 1 else tuple(out)


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
    budget: Any,
    *,
    method: str = "least_confidence",
    inputs: str = "logits",
    groups: Any = None,
    return_scores: bool = False,
    return_offsets: bool = False,
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

    With ``groups=labels`` (one integer or string label per row) the top-k is
    taken inside each group, with the conventions of ``kcenter(groups=)``
    (``svp_fast.selection.groups``): groups in ascending label order, a flat
    result with each group's rows most uncertain first, ``budget`` a total
    count or fraction split by the largest-remainder rule or one count per
    group, and ``return_offsets=True`` for where each group starts. Each
    group's rows are those of ``uncertainty`` on that group alone.

    Returns:
        indices (int64), plus the offsets if ``return_offsets`` (groups) and
        their scores if ``return_scores``; numpy or torch (on ``x``'s device)
        like ``x``.
    """
    m, method, inputs, threads = _args(x, method, inputs, num_threads)
    if groups is not None:
        return _uncertainty_groups(x, m, budget, groups, method, inputs, return_scores,
                                   return_offsets, check_finite, probs_tolerance, threads, simd)
    if return_offsets:
        raise ValueError("return_offsets applies with groups=")
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
