"""Selection inside groups: which rows form each group, and how a budget is shared.

Used by :func:`svp_fast.kcenter` and :func:`svp_fast.uncertainty` with ``groups=``
(class-balanced selection) and by the pipelines' ``balanced`` option. Torch-free.

Conventions every grouped selection follows:

* Groups are the distinct labels in ascending order (``numpy.unique``); group
  ``g`` is the ``g``-th smallest label. Within a group, rows keep their order,
  so a group behaves exactly like the array ``x[rows_of_group]``.
* Results are flat: group 0's picks, then group 1's, ..., each group in its
  own pick order; ``offsets`` (G + 1) says where each group's picks start.
* A total budget (an integer, or a fraction of the points available) is split
  over the groups in proportion to the points available in each (its size
  minus its already-selected rows) by the largest-remainder rule: every group
  gets the floor of its exact share, and the points still unassigned go one
  each to the groups with the largest remainders (ties: the smaller label).
  The parts sum to the total and never exceed what a group has.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .._arrays import is_torch

__all__ = ["Groups", "as_groups", "label_repr", "largest_remainder", "split_budget"]


@dataclass
class Groups:
    """A partition of N rows into G groups (see the module docstring)."""

    labels: np.ndarray   # (G,) the distinct labels, ascending
    codes: np.ndarray    # (N,) int64 group of each row, in [0, G)
    members: np.ndarray  # (N,) int64 rows, group after group, ascending within each
    offsets: np.ndarray  # (G + 1,) int64: group g is members[offsets[g]:offsets[g + 1]]

    @property
    def n_groups(self) -> int:
        return int(self.labels.size)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def positions(self) -> np.ndarray:
        """(N,) int64: each row's position within its own group."""
        pos = np.empty(self.members.size, dtype=np.int64)
        pos[self.members] = np.arange(self.members.size, dtype=np.int64) - \
            np.repeat(self.offsets[:-1], self.sizes)
        return pos

    def rows_of(self, g: int) -> np.ndarray:
        return self.members[self.offsets[g]:self.offsets[g + 1]]


def _host(x: Any) -> Any:
    if is_torch(x):
        return x.detach().cpu().numpy()
    return x


def as_groups(groups: Any, n: int, name: str = "groups") -> Groups:
    """Validate a label per row (integers, booleans or strings) and partition the rows."""
    arr = np.asarray(_host(groups))
    if arr.dtype.kind not in "iubUS":
        raise TypeError(f"{name} must hold one integer or string label per row, got dtype "
                        f"{arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D array of one label per row ({n},), got shape "
                         f"{arr.shape}")
    labels, codes = np.unique(arr, return_inverse=True)
    codes = codes.astype(np.int64, copy=False).reshape(-1)
    counts = np.bincount(codes, minlength=labels.size).astype(np.int64)
    offsets = np.zeros(labels.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    members = np.argsort(codes, kind="stable").astype(np.int64, copy=False)
    return Groups(labels=labels, codes=codes, members=members, offsets=offsets)


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to the non-negative integer ``weights``:
    floors of the exact shares, then one more for the largest remainders
    (ties: the lower index). Sums to ``total``; no part exceeds its weight
    when ``total <= weights.sum()``."""
    w = np.asarray(weights, dtype=np.int64)
    out = np.zeros(w.size, dtype=np.int64)
    whole = int(w.sum())
    if total == 0 or whole == 0:
        return out
    if total * int(w.max(initial=0)) < 2 ** 62:  # exact in int64
        prod = w * np.int64(total)
        out[:] = prod // whole
        rem = prod % whole
    else:  # pragma: no cover - beyond 2^31 rows: exact Python integers
        prod = [int(v) * total for v in w]
        out[:] = [p // whole for p in prod]
        rem = np.array([float(p % whole) / whole for p in prod])
    left = total - int(out.sum())
    if left:
        out[np.lexsort((np.arange(w.size), -rem))[:left]] += 1
    return out


def label_repr(label: Any) -> str:
    """A label as the caller wrote it (1, 'cat'), not as numpy prints it."""
    return repr(label.item() if hasattr(label, "item") else label)


def _count(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def split_budget(budget: Any, available: np.ndarray, labels: np.ndarray,
                 name: str = "budget") -> np.ndarray:
    """Per-group budgets (int64, G) from a total count, a fraction of the points
    available, a sequence of one count per group (ascending label order) or a
    mapping {label: count} (labels not named get 0)."""
    available = np.asarray(available, dtype=np.int64)
    G = available.size
    whole = int(available.sum())
    budget = _host(budget)
    if isinstance(budget, np.ndarray) and budget.ndim == 0:
        budget = budget.item()
    if isinstance(budget, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, a fraction or one count per group, got "
                        f"{budget!r}")
    if isinstance(budget, numbers.Integral):
        total = int(budget)
        if total < 0:
            raise ValueError(f"{name} must be >= 0, got {total}")
        if total > whole:
            raise ValueError(f"{name} must be at most the number of points not already "
                             f"selected ({whole}), got {total}")
        return largest_remainder(total, available)
    if isinstance(budget, numbers.Real):
        frac = float(budget)
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"{name} as a fraction must be in [0, 1], got {frac}")
        return largest_remainder(int(round(frac * whole)), available)
    if isinstance(budget, Mapping):
        index = {lab.item() if hasattr(lab, "item") else lab: g for g, lab in enumerate(labels)}
        out = np.zeros(G, dtype=np.int64)
        for key, value in budget.items():
            k = key.item() if hasattr(key, "item") else key
            if k not in index:
                raise ValueError(f"{name} names group {key!r}, which is not among the labels")
            out[index[k]] = _count(value, f"{name}[{key!r}]")
    else:
        try:
            arr = np.asarray(budget)
        except Exception:
            raise TypeError(f"{name} must be an integer, a fraction or one count per group, "
                            f"got {type(budget).__name__}") from None
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise TypeError(f"{name} per group must be a 1-D sequence of integers (one per "
                            f"group, ascending label order), got dtype {arr.dtype} and shape "
                            f"{arr.shape}")
        if arr.size != G:
            raise ValueError(f"{name} per group must have one count per group ({G}), got "
                             f"{arr.size}")
        out = arr.astype(np.int64)
    bad = np.flatnonzero((out < 0) | (out > available))
    if bad.size:
        g = int(bad[0])
        raise ValueError(f"{name} of group {label_repr(labels[g])} must be in [0, {int(available[g])}] "
                         f"(its points not already selected), got {int(out[g])}")
    return out
