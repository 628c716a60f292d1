"""Forgetting events (Toneva et al., ICLR 2019), as SVP uses them for core-sets.

A *forgetting event* is a transition of an example from correctly to
incorrectly classified between two consecutive presentations during training.
The tracker is fed, after every minibatch, with the minibatch's dataset indices
and whether each example was classified correctly (the training loop's
``tracker=`` hook does this). Examples that were never classified correctly
("never learned", including examples never presented) count as forgotten
infinitely often, so they rank first; the core-set keeps the most forgotten.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arrays import check_budget


class ForgettingTracker:
    """Counts forgetting events of ``n`` examples.

    Attributes (numpy arrays of length ``n``):
        forgetting_events: number of correct -> incorrect transitions.
        ever_correct: classified correctly at least once ("learned").
        presentations: how many times each example was seen.
    """

    def __init__(self, n: int):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        self.n = int(n)
        self.forgetting_events = np.zeros(self.n, dtype=np.int64)
        self.ever_correct = np.zeros(self.n, dtype=bool)
        self.presentations = np.zeros(self.n, dtype=np.int64)
        self._last_correct = np.zeros(self.n, dtype=bool)

    def update(self, indices: Any, correct: Any) -> None:
        """Record one minibatch: ``correct[j]`` says whether example ``indices[j]``
        was classified correctly. An index repeated within a minibatch is
        recorded in order, as consecutive presentations."""
        idx = np.asarray(indices.detach().cpu().numpy() if hasattr(indices, "detach") else indices)
        ok = np.asarray(correct.detach().cpu().numpy() if hasattr(correct, "detach") else correct)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise TypeError(f"indices must be a 1-D integer array, got shape {idx.shape} "
                            f"and dtype {idx.dtype}")
        if ok.shape != idx.shape:
            raise ValueError(f"correct must have the shape of indices {idx.shape}, got {ok.shape}")
        if ok.size and ok.dtype != bool:
            if not np.isin(ok, (0, 1)).all():
                raise ValueError("correct must hold booleans (or 0/1)")
            ok = ok.astype(bool)
        if idx.size == 0:
            return
        idx = idx.astype(np.int64, copy=False)
        if idx.min() < 0 or idx.max() >= self.n:
            bad = int(idx[(idx < 0) | (idx >= self.n)][0])
            raise ValueError(f"indices must be in [0, {self.n}), got {bad}")
        # Process repeats as rounds: round r holds each index's r-th occurrence,
        # so within a round the indices are distinct and the update vectorises.
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        starts = np.r_[True, sorted_idx[1:] != sorted_idx[:-1]]
        group_start = np.maximum.accumulate(np.where(starts, np.arange(idx.size), 0))
        occurrence = np.empty(idx.size, dtype=np.int64)
        occurrence[order] = np.arange(idx.size) - group_start
        for r in range(int(occurrence.max()) + 1):
            sel = occurrence == r
            i, c = idx[sel], ok[sel]
            seen_before = self.presentations[i] > 0
            forgot = seen_before & self._last_correct[i] & ~c
            self.forgetting_events[i] += forgot
            self.ever_correct[i] |= c
            self._last_correct[i] = c
            self.presentations[i] += 1

    def scores(self) -> np.ndarray:
        """Forgetting events per example as float64, +inf for never-learned examples."""
        s = self.forgetting_events.astype(np.float64)
        s[~self.ever_correct] = np.inf
        return s

    def select(self, budget: int) -> np.ndarray:
        """The ``budget`` most forgotten examples (see :func:`forgetting`)."""
        return forgetting(self, budget)


def forgetting(tracker_or_scores: Any, budget: Any, *, groups: Any = None) -> np.ndarray:
    """Core-set by forgetting events: the ``budget`` examples with the most
    forgetting events, never-learned ones first, ties to the lowest index.

    Args:
        tracker_or_scores: a :class:`ForgettingTracker`, or scores per example
            (higher = kept first; e.g. :meth:`ForgettingTracker.scores`).
        groups: one label per example: the most forgotten of each group, the
            budget split as in ``kcenter(groups=)``; group after group
            (ascending labels), each most forgotten first.
    Returns:
        int64 indices, most forgotten first.
    """
    if isinstance(tracker_or_scores, ForgettingTracker):
        scores = tracker_or_scores.scores()
    else:
        scores = np.asarray(tracker_or_scores, dtype=np.float64)
        if scores.ndim != 1:
            raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
        if np.isnan(scores).any():
            raise ValueError("scores contain NaN")
    if groups is not None:
        from .groups import as_groups, split_budget

        grp = as_groups(groups, scores.size)
        budgets = split_budget(budget, grp.sizes, grp.labels)
        parts = []
        for g in range(grp.n_groups):
            rows = grp.rows_of(g)  # ascending: the stable sort keeps ties in index order
            parts.append(rows[np.argsort(-scores[rows], kind="stable")[:budgets[g]]])
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    budget = check_budget(budget, scores.size, "the number of examples")
    # a stable sort of the negated scores keeps equal scores in index order
    return np.argsort(-scores, kind="stable")[:budget].astype(np.int64)
