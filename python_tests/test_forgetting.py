"""Forgetting events against a hand-computed sequence; seeded random selection."""

import numpy as np
import pytest
import torch

from svp_fast.selection.forgetting import ForgettingTracker, forgetting
from svp_fast.selection.random import random_selection


def test_hand_computed_sequence():
    # five examples; example 4 is never presented
    t = ForgettingTracker(5)
    t.update([0, 1, 2, 3], [True, False, True, False])   # first looks: no event possible
    t.update([3, 2, 1, 0], [False, False, True, False])  # 2: T->F (1), 0: T->F (1)
    t.update([0, 2], [True, True])                       # re-learned: no event
    t.update([1, 0, 2], [False, False, True])            # 1: T->F (1), 0: T->F (2)
    t.update([0, 0, 1], [True, False, True])             # 0 twice in one batch: T then F (3)
    assert t.forgetting_events.tolist() == [3, 1, 1, 0, 0]
    assert t.presentations.tolist() == [6, 4, 4, 2, 0]
    assert t.ever_correct.tolist() == [True, True, True, False, False]
    # 3 (never correct) and 4 (never seen) are never learned: infinitely forgotten
    assert t.scores().tolist() == [3.0, 1.0, 1.0, np.inf, np.inf]
    # never learned first (lowest index first), then most forgotten, ties to lowest index
    assert t.select(5).tolist() == [3, 4, 0, 1, 2]
    assert forgetting(t, 3).tolist() == [3, 4, 0]
    assert forgetting(t, 0).tolist() == []


def test_a_transition_spans_minibatches_not_only_epochs():
    t = ForgettingTracker(2)
    for correct in [True, False, True, False, False, True]:
        t.update([1], [correct])
    assert t.forgetting_events.tolist() == [0, 2]


def test_accepts_torch_inputs_and_0_1():
    t = ForgettingTracker(3)
    t.update(torch.tensor([0, 1]), torch.tensor([True, True]))
    t.update(np.array([0, 1], dtype=np.uint32), np.array([0, 1]))
    assert t.forgetting_events.tolist() == [1, 0, 0]


def test_forgetting_from_scores_ties_to_lowest_index():
    scores = np.array([1.0, 5.0, np.inf, 5.0, 1.0, np.inf])
    assert forgetting(scores, 6).tolist() == [2, 5, 1, 3, 0, 4]


def test_tracker_errors():
    t = ForgettingTracker(3)
    with pytest.raises(ValueError, match=r"indices must be in \[0, 3\), got 3"):
        t.update([0, 3], [True, True])
    with pytest.raises(ValueError, match="correct must have the shape of indices"):
        t.update([0, 1], [True])
    with pytest.raises(TypeError, match="indices must be a 1-D integer array"):
        t.update([0.5], [True])
    with pytest.raises(ValueError, match="booleans"):
        t.update([0], [2])
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        ForgettingTracker(-1)
    with pytest.raises(ValueError, match=r"budget must be at most the number of examples \(3\)"):
        forgetting(t, 4)
    with pytest.raises(ValueError, match="NaN"):
        forgetting(np.array([np.nan]), 1)
    assert t.presentations.tolist() == [0, 0, 0]  # failed updates changed nothing


def test_random_selection():
    a = random_selection(100, 30, seed=1)
    assert a.dtype == np.int64 and len(set(a.tolist())) == 30 and a.min() >= 0 and a.max() < 100
    assert np.array_equal(a, random_selection(100, 30, seed=1))
    assert not np.array_equal(a, random_selection(100, 30, seed=2))
    pool = np.array([5, 9, 13, 77])
    b = random_selection(pool, 4, seed=0)
    assert sorted(b.tolist()) == [5, 9, 13, 77]
    assert random_selection(pool, 0).size == 0
    # roughly uniform: every element of a small pool gets drawn over many seeds
    counts = np.bincount(np.concatenate([random_selection(10, 3, seed=s) for s in range(200)]),
                         minlength=10)
    assert counts.min() > 30


def test_random_selection_errors():
    with pytest.raises(ValueError, match=r"budget must be at most the pool size \(4\)"):
        random_selection(4, 5)
    with pytest.raises(ValueError, match="must not repeat"):
        random_selection(np.array([1, 1, 2]), 1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        random_selection(10, 2, seed=0.5)
    with pytest.raises(ValueError, match="pool must be >= 0"):
        random_selection(-1, 0)
