"""Seeded random selection: the baseline every method is compared with."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._arrays import as_index_array, check_budget


def random_selection(pool: Any, budget: int, *, seed: int = 0) -> np.ndarray:
    """``budget`` distinct indices drawn uniformly without replacement.

    Args:
        pool: the number of examples N (draws from ``range(N)``) or a 1-D array of
            distinct candidate indices (e.g. the unlabelled pool).
        budget: how many to draw, 0 <= budget <= pool size.
        seed: the same seed and pool give the same draw.
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
    budget = check_budget(budget, size, "the pool size")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    picks = np.random.default_rng(seed).choice(size, size=budget, replace=False).astype(np.int64)
    return picks if candidates is None else candidates[picks]
