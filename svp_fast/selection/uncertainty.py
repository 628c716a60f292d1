"""Top-k uncertainty sampling: least confidence, entropy and margin: the front.

The front validates the arguments and packages the result in the caller's
array type; the backend where the data lives (``_backend_cpu`` or
``_backend_cuda``, twins with the same methods) runs the core's certified
top-k (its order is the float64 reference's: README, "Exactness").
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .._arrays import as_matrix, check_budget, check_choice, check_threads, to_callers_library
from .._threads import UNCERTAINTY_PASS, ThreadChoice, choose_threads
from ._backends import backend_for
from ._plan import UncertaintyStats, to_caller

METHODS = ("least_confidence", "entropy", "margin")
INPUTS = ("logits", "probs")


def _args(x, method, inputs, num_threads):
    m = as_matrix(x, "x")
    method = check_choice(method, "method", METHODS)
    inputs = check_choice(inputs, "inputs", INPUTS)
    threads = check_threads(num_threads)
    return m, method, inputs, threads


def _pass_threads(requested: int, m, backend) -> ThreadChoice:
    """The thread count of one pass over ``m`` (svp_fast._threads; CPU only)."""
    if backend.name != "cpu":
        return ThreadChoice(requested, "requested" if requested else "device")
    return choose_threads(requested, UNCERTAINTY_PASS, m.rows * m.cols)


def _stats(raw, backend, choice: ThreadChoice) -> UncertaintyStats:
    return UncertaintyStats.from_core(raw, backend.name, num_threads=choice.threads,
                                      extra={"threads_reason": choice.reason})


def _rows_of(m, rows: np.ndarray):
    """Rows ``rows`` of the matrix's array, as an array of the same kind (a copy)."""
    if m.kind == "torch":
        import torch

        return m.owner.index_select(0, torch.from_numpy(rows).to(m.owner.device))
    return np.ascontiguousarray(np.asarray(m.owner)[rows])


def _uncertainty_groups(x, m, budget, groups, method, inputs, return_scores, return_offsets,
                        return_stats, check_finite, tol, threads, simd):
    """The top-k of every group: the certified top-k of each group's rows alone."""
    from .groups import as_groups, split_budget

    grp = as_groups(groups, m.rows)
    budgets = split_budget(budget, grp.sizes, grp.labels)
    backend = backend_for(m)
    orders, tops = [], []
    stats = UncertaintyStats(backend=backend.name)
    for g in range(budgets.size):
        k = int(budgets[g])
        if k == 0:
            continue
        rows = grp.members[grp.offsets[g]:grp.offsets[g + 1]]
        sub = as_matrix(_rows_of(m, rows), "x")
        choice = _pass_threads(threads, sub, backend)
        order, top, st = backend.uncertainty_topk(sub, k, METHODS.index(method),
                                                  INPUTS.index(inputs), check_finite, tol,
                                                  threads=choice.threads, simd=simd,
                                                  want_stats=return_stats)
        stats.add(_stats(st, backend, choice))
        stats.num_threads = max(stats.num_threads, choice.threads)  # the most any group used
        orders.append(_global_rows(order, rows))
        tops.append(top)
    order, top = _concat(m, orders), _concat(m, tops, scores=True)
    offsets = np.zeros(budgets.size + 1, dtype=np.int64)
    np.cumsum(budgets, out=offsets[1:])
    out = [to_caller(x, order)]
    if return_offsets:
        out.append(to_caller(x, offsets))
    if return_scores:
        out.append(to_caller(x, top))
    if return_stats:
        out.append(stats)
    return to_callers_library(x, out[0] if len(out) == 1 else tuple(out))


def _global_rows(local, rows: np.ndarray):
    if isinstance(local, np.ndarray):
        return rows[local]
    import torch

    return torch.from_numpy(rows).to(local.device)[local]


def _concat(m, parts, scores: bool = False):
    if parts and not isinstance(parts[0], np.ndarray):
        import torch

        return torch.cat(parts)
    if parts:
        return np.concatenate(parts)
    if m.device == "cuda":
        import torch

        return torch.zeros(0, dtype=torch.float32 if scores else torch.int64, device=m.owner.device)
    return np.zeros(0, dtype=np.float32 if scores else np.int64)


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
        num_threads: CPU threads (default: chosen per call as for
            :func:`kcenter`, from the size of the pass and the free cores).

    Returns:
        scores (float32; float64 for float64 input), numpy or torch like ``x``.
    """
    m, method, inputs, threads = _args(x, method, inputs, num_threads)
    backend = backend_for(m)
    scores = backend.uncertainty_scores(m, METHODS.index(method), INPUTS.index(inputs),
                                        check_finite, probs_tolerance,
                                        threads=_pass_threads(threads, m, backend).threads,
                                        simd=simd)
    return to_callers_library(x, to_caller(x, scores))


def uncertainty(
    x: Any,
    budget: Any,
    *,
    method: str = "least_confidence",
    inputs: str = "logits",
    groups: Any = None,
    return_scores: bool = False,
    return_offsets: bool = False,
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

    With ``groups=labels`` (one integer or string label per row) the top-k is
    taken inside each group, with the conventions of ``kcenter(groups=)``
    (``svp_fast.selection.groups``): groups in ascending label order, a flat
    result with each group's rows most uncertain first, ``budget`` a total
    count or fraction split by the largest-remainder rule or one count per
    group, and ``return_offsets=True`` for where each group starts. Each
    group's rows are those of ``uncertainty`` on that group alone (the same
    certified order).

    Returns:
        indices (int64), plus the offsets if ``return_offsets`` (groups),
        their scores (non-increasing; float32, float64 for
        float64 input) if ``return_scores``, plus an :class:`UncertaintyStats`
        (``rows_refined``, ``candidates``, ``tie_groups``, ``passes``,
        ``num_threads``; a dataclass like :class:`KCenterStats`, which still
        reads as the dict of the four counts it used to be) if
        ``return_stats``; numpy or torch (on ``x``'s device) like ``x``.
    """
    m, method, inputs, threads = _args(x, method, inputs, num_threads)
    if groups is not None:
        return _uncertainty_groups(x, m, budget, groups, method, inputs, return_scores,
                                   return_offsets, return_stats, check_finite, probs_tolerance,
                                   threads, simd)
    if return_offsets:
        raise ValueError("return_offsets applies with groups=")
    budget = check_budget(budget, m.rows, "the number of rows")
    backend = backend_for(m)
    choice = _pass_threads(threads, m, backend)
    order, top, stats = backend.uncertainty_topk(
        m, budget, METHODS.index(method), INPUTS.index(inputs), check_finite, probs_tolerance,
        threads=choice.threads, simd=simd, want_stats=return_stats)
    out = [to_caller(x, order)]
    if return_scores:
        out.append(to_caller(x, top))
    if return_stats:
        out.append(_stats(stats, backend, choice))
    return to_callers_library(x, out[0] if len(out) == 1 else tuple(out))
