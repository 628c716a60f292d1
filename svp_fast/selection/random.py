"""Seeded random selection: the baseline every method is compared with."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._arrays import as_index_array, check_budget


def random_selection(pool: Any, budget: Any, *, seed: int = 0, groups: Any = None) -> np.ndarray:
    """``budget`` distinct indices drawn uniformly without replacement.

    Args:
        pool: the number of examples N (draws from ``range(N)``) or a 1-D array of
            distinct candidate indices (e.g. the unlabelled pool).
        budget: how many to draw, 0 <= budget <= pool size.
        seed: the same seed and pool give the same draw.
        groups: one label per candidate (stratified draw): ``budget`` is split
            over the groups as in ``kcenter(groups=)`` (a count or fraction by
            the largest-remainder rule, or one count per group) and each group
            draws its share; the result is group after group (ascending labels).
    Returns:
        int64 indices in draw order (a prefix of a larger draw with the same seed
        is *not* guaranteed; draw once with the largest budget if you need that).
    """
    if isinstance(pool, numbers.Integral) and not isinstance(pool, bool):
        if pool < 0:
            raise ValueError(f"pool must be >= 0 examples, got {pool}")
        candidates = None
        size = int(pool)
    else:
        candidates = as_index_array(pool, "pool", np.iinfo(np.int64).max)
        size = candidates.size
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    if groups is not None:
        from .groups import as_groups, split_budget

        grp = as_groups(groups, size)
        budgets = split_budget(budget, grp.sizes, grp.labels)
        rng = np.random.default_rng(seed)
        parts = [grp.rows_of(g)[rng.choice(int(grp.sizes[g]), size=int(budgets[g]), replace=False)]
                 for g in range(grp.n_groups)]
        picks = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return picks if candidates is None else candidates[picks]
    budget = check_budget(budget, size, "the pool size")
    picks = np.random.default_rng(seed).choice(size, size=budget, replace=False).astype(np.int64)
    return picks if candidates is None else candidates[picks]
