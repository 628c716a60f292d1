"""Many sets in one call: kcenter(groups=), (B, P, D) batches, uncertainty(groups=).

Every group's picks must equal those of the same call on that group's rows
alone, and the float64 reference's (exact index equality), on every engine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import RESTORE_SIGINT, SIGINT_IGNORED, child_process
from reference import kcenter_ref, topk_ref, uncertainty_scores_ref

import svp_fast
from svp_fast.selection.groups import as_groups, largest_remainder, split_budget

METHODS = ["scan", "lazy", "pruned", "kdtree", "auto"]


def clustered(rng, n, d, classes=6, noise=0.1):
    centers = rng.standard_normal((classes, d)) * 3
    lab = rng.integers(0, classes, n)
    return centers[lab] + noise * rng.standard_normal((n, d)) * (1 + lab[:, None] % 3)


def labels_for(rng, n):
    """Unequal groups: a large one, interleaved ones, one of a single row."""
    lab = rng.choice([5, 9, 9, 9, 12, 40], size=n)
    lab[rng.integers(n)] = -3  # a group of one row
    return lab


def check_groups_alone(x, lab, picks, offsets, budgets, sel=None, metric="euclidean",
                       starts=None):
    for g, label in enumerate(np.unique(lab)):
        rows = np.flatnonzero(lab == label)
        k = int(offsets[g + 1] - offsets[g])
        assert k == budgets[g]
        local_sel = None
        if sel is not None:
            mine = [s for s in sel if lab[s] == label]
            local_sel = np.searchsorted(rows, mine) if mine else None
        start = 0 if starts is None else int(np.searchsorted(rows, starts[g]))
        ref, _ = kcenter_ref(x[rows], k, already_selected=local_sel, metric=metric, start=start)
        np.testing.assert_array_equal(picks[offsets[g]:offsets[g + 1]], rows[ref])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype,metric", [(np.float32, "euclidean"), (np.float32, "cosine"),
                                          (np.float16, "euclidean"), (np.float64, "cosine")],
                         ids=["f32", "f32-cosine", "f16", "f64-cosine"])
def test_each_group_equals_the_reference_alone(rng, method, dtype, metric):
    x = clustered(rng, 500, 5).astype(dtype)
    lab = labels_for(rng, 500)
    picks, offsets, st = svp_fast.kcenter(x, 0.4, groups=lab, metric=metric, method=method,
                                          n_cells=6, return_offsets=True, return_stats=True)
    budgets = split_budget(0.4, np.bincount(np.unique(lab, return_inverse=True)[1]), np.unique(lab))
    assert picks.dtype == np.int64 and picks.size == budgets.sum() == round(0.4 * 500)
    check_groups_alone(x.astype(np.float64), lab, picks, offsets, budgets, metric=metric)
    # and the same picks as calling kcenter on each group alone
    for g, label in enumerate(np.unique(lab)):
        rows = np.flatnonzero(lab == label)
        alone = svp_fast.kcenter(x[rows], int(budgets[g]), metric=metric, method=method, n_cells=6,
                                 num_threads=1)
        np.testing.assert_array_equal(picks[offsets[g]:offsets[g + 1]], rows[alone])
    if method != "auto":
        assert st.method == method
    assert len(st.extra["groups"]["method"]) == 5


@pytest.mark.parametrize("method", ["lazy", "pruned", "kdtree"])
def test_already_selected_count_in_their_own_group(rng, method):
    x = clustered(rng, 700, 4)
    lab = labels_for(rng, 700)
    sel = rng.choice(700, 60, replace=False)
    picks, offsets, radii = svp_fast.kcenter(x, 200, groups=lab, already_selected=sel,
                                             method=method, n_cells=4, return_offsets=True,
                                             return_radii=True)
    assert not set(picks.tolist()) & set(sel.tolist())
    codes = np.unique(lab, return_inverse=True)[1]
    avail = np.bincount(codes) - np.bincount(codes[sel], minlength=codes.max() + 1)
    budgets = largest_remainder(200, avail)
    check_groups_alone(x, lab, picks, offsets, budgets, sel=sel)
    # radii restart in every group: non-increasing within it, finite with selections
    for g in range(len(budgets)):
        r = radii[offsets[g]:offsets[g + 1]]
        assert np.all(np.diff(r) <= 0)


def test_budget_split_rule():
    # floors of the exact shares, then the largest remainders (ties: lower group)
    np.testing.assert_array_equal(largest_remainder(7, np.array([1, 2, 3, 4])), [1, 1, 2, 3])
    np.testing.assert_array_equal(largest_remainder(10, np.array([3, 3, 3])), [4, 3, 3])
    np.testing.assert_array_equal(largest_remainder(2, np.array([1, 1, 1, 1])), [1, 1, 0, 0])
    np.testing.assert_array_equal(largest_remainder(5, np.array([0, 5])), [0, 5])
    rng = np.random.default_rng(3)
    for _ in range(200):
        w = rng.integers(0, 50, rng.integers(1, 20))
        total = int(rng.integers(0, w.sum() + 1))
        parts = largest_remainder(total, w)
        assert parts.sum() == total and np.all(parts <= w) and np.all(parts >= 0)
        assert np.all(np.abs(parts - total * w / max(w.sum(), 1)) < 1)
    labels = np.array([1, 2, 3])
    sizes = np.array([10, 20, 30])
    np.testing.assert_array_equal(split_budget(0.1, sizes, labels), [1, 2, 3])
    np.testing.assert_array_equal(split_budget([0, 5, 30], sizes, labels), [0, 5, 30])
    np.testing.assert_array_equal(split_budget({3: 4, 1: 10}, sizes, labels), [10, 0, 4])
    with pytest.raises(ValueError, match="budget of group 1 must be in \\[0, 10\\].*got 11"):
        split_budget([11, 0, 0], sizes, labels)
    with pytest.raises(ValueError, match="one count per group \\(3\\), got 2"):
        split_budget([1, 2], sizes, labels)
    with pytest.raises(ValueError, match="names group 7"):
        split_budget({7: 1}, sizes, labels)
    with pytest.raises(ValueError, match="at most the number of points not already selected \\(60\\)"):
        split_budget(61, sizes, labels)
    with pytest.raises(ValueError, match="fraction must be in \\[0, 1\\]"):
        split_budget(1.5, sizes, labels)
    with pytest.raises(TypeError, match="budget per group must be a 1-D sequence of integers"):
        split_budget([0.5, 1.0, 2.0], sizes, labels)


def test_groups_order_labels_and_types(rng):
    x = rng.standard_normal((300, 6)).astype(np.float32)
    names = np.array(["cat", "dog", "ant"])[rng.integers(0, 3, 300)]
    picks, offsets, st = svp_fast.kcenter(x, [4, 5, 6], groups=names, return_offsets=True,
                                          return_stats=True)
    # groups in ascending label order: ant, cat, dog
    assert list(st.extra["groups"]["labels"]) == ["ant", "cat", "dog"]
    np.testing.assert_array_equal(offsets, [0, 4, 9, 15])
    for g, name in enumerate(["ant", "cat", "dog"]):
        assert np.all(names[picks[offsets[g]:offsets[g + 1]]] == name)
    # a single group is plain kcenter; torch labels and tensors work alike
    one = svp_fast.kcenter(x, 50, groups=np.zeros(300, int))
    np.testing.assert_array_equal(one, svp_fast.kcenter(x, 50))
    t = svp_fast.kcenter(torch.from_numpy(x), 30, groups=torch.from_numpy(rng.integers(0, 4, 300)))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64 and t.numel() == 30


def test_starts_per_group_and_random(rng):
    x = rng.standard_normal((400, 3))
    lab = rng.integers(0, 4, 400)
    first = np.array([np.flatnonzero(lab == g)[-1] for g in range(4)])  # each group's last row
    picks, offsets = svp_fast.kcenter(x, 40, groups=lab, start=first, return_offsets=True)
    np.testing.assert_array_equal(picks[offsets[:-1]], first)
    check_groups_alone(x, lab, picks, offsets, np.diff(offsets), starts=first)
    a = svp_fast.kcenter(x, 40, groups=lab, start="random", seed=5)
    b = svp_fast.kcenter(x, 40, groups=lab, start="random", seed=5)
    c = svp_fast.kcenter(x, 40, groups=lab, start="random", seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="start\\[1\\] = .* is not in group 1"):
        svp_fast.kcenter(x, 40, groups=lab, start=first[[0, 0, 2, 3]])
    with pytest.raises(ValueError, match="one row per group"):
        svp_fast.kcenter(x, 40, groups=lab, start=3)


def test_threads_and_a_group_larger_than_a_share(rng):
    # one group holds most of the work (it runs on every thread), the others
    # run side by side: the picks never depend on it
    # (4,000 rows x 1,100 picks x 8 columns: above the work the core keeps on one thread)
    x = clustered(rng, 4000, 8, classes=10).astype(np.float32)
    lab = np.where(rng.random(4000) < 0.8, 0, rng.integers(1, 30, 4000))
    budgets = largest_remainder(1100, np.bincount(lab))
    ref = [svp_fast.kcenter(x[lab == g], int(b), method="kdtree", num_threads=1)
           for g, b in enumerate(budgets)]
    for method, threads in (("lazy", 2), ("kdtree", 3), ("lazy", 1)):
        picks, offsets = svp_fast.kcenter(x, 1100, groups=lab, method=method, num_threads=threads,
                                          return_offsets=True)
        for g in range(30):
            rows = np.flatnonzero(lab == g)
            np.testing.assert_array_equal(picks[offsets[g]:offsets[g + 1]], rows[ref[g]])


def test_grouped_errors_name_the_callers_row(rng):
    x = rng.standard_normal((200, 4)).astype(np.float32)
    lab = np.arange(200) % 3
    x[151, 2] = np.nan
    with pytest.raises(ValueError, match="must be finite, got nan at row 151, column 2"):
        svp_fast.kcenter(x, 30, groups=lab)
    # a group that picks nothing is never read, as when it is alone
    budget = {0: 5, 1: 5, 2: 0}  # row 151 is in group 1
    with pytest.raises(ValueError, match="row 151"):
        svp_fast.kcenter(x, budget, groups=lab)
    ok = svp_fast.kcenter(x, {0: 5, 1: 0, 2: 5}, groups=lab)
    assert ok.size == 10
    z = rng.standard_normal((50, 3))
    z[44] = 0
    with pytest.raises(ValueError, match="row 44 is all zeros"):
        svp_fast.kcenter(z, 10, groups=np.arange(50) % 2, metric="cosine")
    with pytest.raises(ValueError, match="groups must be a 1-D array of one label per row \\(200,\\)"):
        svp_fast.kcenter(x, 3, groups=lab[:-1])
    with pytest.raises(TypeError, match="groups must hold one integer or string label per row"):
        svp_fast.kcenter(x, 3, groups=lab.astype(float))
    with pytest.raises(ValueError, match="callback is not available"):
        svp_fast.kcenter(x, 3, groups=lab, callback=lambda p, r: None)
    with pytest.raises(ValueError, match="return_offsets applies with groups"):
        svp_fast.kcenter(x, 3, return_offsets=True)
    with pytest.raises(ValueError, match="method 'kdtree' is for low-dimensional points"):
        svp_fast.kcenter(rng.standard_normal((40, 33)), 5, method="kdtree", groups=np.arange(40) % 2)


def test_grouped_progress_counts_every_pick(rng):
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    svp_fast.kcenter(x, 500, groups=np.arange(3000) % 7, progress=bar)
    assert bar.n == 500

    class Boom:
        def update(self, k):
            raise RuntimeError("stop the groups")

    with pytest.raises(RuntimeError, match="stop the groups"):
        svp_fast.kcenter(x, 500, groups=np.arange(3000) % 7, progress=Boom())


# ----------------------------------------------------------------- batches


def cloud_ref(points, k, start=0):
    return kcenter_ref(points, k, start=start)


@pytest.mark.parametrize("method", ["auto", "kdtree", "lazy", "scan"])
def test_batch_of_clouds_with_lengths(rng, method):
    pts = rng.random((5, 300, 3)).astype(np.float32)
    lengths = [300, 120, 5, 0, 299]
    K = [50, 200, 9, 7, 1]
    picks, radii, st = svp_fast.kcenter(pts, K, lengths=lengths, method=method,
                                        return_radii=True, return_stats=True)
    assert picks.shape == (5, 200) and radii.shape == (5, 200) and picks.dtype == np.int64
    for b in range(5):
        k = min(K[b], lengths[b])
        assert np.all(picks[b, k:] == -1) and np.all(np.isnan(radii[b, k:]))
        if k:
            ref, ref_r = cloud_ref(pts[b, :lengths[b]].astype(np.float64), k)
            np.testing.assert_array_equal(picks[b, :k], ref)
            np.testing.assert_allclose(radii[b, 1:k], ref_r[1:], rtol=1e-6)
            assert np.isinf(radii[b, 0])


def test_batch_starts_fixed_per_set_and_random(rng):
    pts = rng.standard_normal((4, 100, 2))
    p = svp_fast.kcenter(pts, 20, start=[3, 0, 99, 50])
    np.testing.assert_array_equal(p[:, 0], [3, 0, 99, 50])
    for b, s in enumerate([3, 0, 99, 50]):
        np.testing.assert_array_equal(p[b], cloud_ref(pts[b], 20, start=s)[0])
    r1 = svp_fast.kcenter(pts, 20, start="random", seed=1)
    r2 = svp_fast.kcenter(pts, 20, start="random", seed=1)
    np.testing.assert_array_equal(r1, r2)
    assert len(set(r1[:, 0].tolist())) > 1
    with pytest.raises(ValueError, match="start of set 1 must be in \\[0, 10\\), got 10"):
        svp_fast.kcenter(pts, 5, lengths=[100, 10, 100, 100], start=10)


def test_batch_views_and_torch(rng):
    base = rng.random((6, 500, 4)).astype(np.float32)
    for view in (base[:, :200], base[::2], base[:, ::3], np.asfortranarray(base),
                 base[:, :, :3]):
        got = svp_fast.kcenter(view, 30)
        for b in range(view.shape[0]):
            np.testing.assert_array_equal(got[b], cloud_ref(np.asarray(view[b], np.float64), 30)[0])
    t = torch.from_numpy(base).to(torch.bfloat16)[:, 100:400]
    got, st = svp_fast.kcenter(t, torch.tensor([5, 6, 7, 8, 9, 10]), return_stats=True)
    assert isinstance(got, torch.Tensor) and got.shape == (6, 10)
    for b in range(6):
        k = 5 + b
        np.testing.assert_array_equal(got[b, :k].numpy(), cloud_ref(t[b].double().numpy(), k)[0])
        assert torch.all(got[b, k:] == -1)
    # expanded: every set is the same memory
    e = torch.from_numpy(base[0]).expand(3, 500, 4)
    got = svp_fast.kcenter(e, 40)
    assert torch.equal(got[0], got[2])


def test_batch_edge_cases_and_errors(rng):
    pts = rng.random((3, 50, 3))
    assert svp_fast.kcenter(np.zeros((0, 5, 3)), 4).shape == (0, 4)
    assert np.all(svp_fast.kcenter(np.zeros((2, 0, 3)), 4) == -1)
    assert svp_fast.kcenter(pts, 0).shape == (3, 0)
    with pytest.raises(ValueError, match="lengths\\[1\\] = 51 exceeds the 50 points"):
        svp_fast.kcenter(pts, 5, lengths=[50, 51, 3])
    with pytest.raises(ValueError, match="budget must be >= 0"):
        svp_fast.kcenter(pts, -1)
    with pytest.raises(ValueError, match="budget must hold one value per set \\(3\\)"):
        svp_fast.kcenter(pts, [1, 2])
    with pytest.raises(ValueError, match="groups applies to an \\(N, D\\) array"):
        svp_fast.kcenter(pts, 5, groups=np.zeros(150))
    with pytest.raises(ValueError, match="already_selected is not available for a \\(B, P, D\\)"):
        svp_fast.kcenter(pts, 5, already_selected=[1])
    with pytest.raises(ValueError, match="lengths applies to a \\(B, P, D\\) batch"):
        svp_fast.kcenter(pts[0], 5, lengths=[3])
    with pytest.raises(TypeError, match="embeddings must have a floating dtype"):
        svp_fast.kcenter(np.zeros((2, 0, 3), np.int64), 1)
    bad = pts.copy()
    bad[2, 7, 1] = np.inf
    with pytest.raises(ValueError, match="got inf at set 2, point 7, column 1"):
        svp_fast.kcenter(bad, 5)
    # padding beyond a set's length is never read
    bad[2, 7, 1] = 0
    bad[1, 40:] = np.nan
    p = svp_fast.kcenter(bad, 10, lengths=[50, 40, 50])
    np.testing.assert_array_equal(p[1], cloud_ref(bad[1, :40], 10)[0])


# ----------------------------------------------------------------- uncertainty


@pytest.mark.parametrize("method", ["least_confidence", "entropy", "margin"])
def test_uncertainty_top_k_per_group(rng, method):
    logits = rng.standard_normal((900, 7)).astype(np.float32)
    logits[100:140] = logits[5]  # ties across and within groups: lowest index first
    lab = labels_for(rng, 900)
    idx, offsets, scores = svp_fast.uncertainty(logits, 0.2, method=method, groups=lab,
                                                return_offsets=True, return_scores=True)
    sizes = np.bincount(np.unique(lab, return_inverse=True)[1])
    budgets = largest_remainder(180, sizes)
    np.testing.assert_array_equal(np.diff(offsets), budgets)
    for g, label in enumerate(np.unique(lab)):
        rows = np.flatnonzero(lab == label)
        alone = svp_fast.uncertainty(logits[rows], int(budgets[g]), method=method)
        np.testing.assert_array_equal(idx[offsets[g]:offsets[g + 1]], rows[alone])
        ref = rows[topk_ref(uncertainty_scores_ref(logits[rows], method), int(budgets[g]))]
        np.testing.assert_array_equal(idx[offsets[g]:offsets[g + 1]], ref)
    assert scores.shape == idx.shape
    t = svp_fast.uncertainty(torch.from_numpy(logits), {9: 3}, groups=torch.from_numpy(lab))
    assert isinstance(t, torch.Tensor) and t.numel() == 3 and np.all(lab[t.numpy()] == 9)


def test_forgetting_and_random_per_group(rng):
    from svp_fast import ForgettingTracker, forgetting, random_selection

    lab = rng.integers(0, 4, 200)
    scores = rng.integers(0, 3, 200).astype(float)  # many ties: lowest index first
    scores[rng.integers(0, 200, 10)] = np.inf  # never learned: first
    picks = forgetting(scores, 0.25, groups=lab)
    want = largest_remainder(50, np.bincount(lab))
    np.testing.assert_array_equal(np.bincount(lab[picks], minlength=4), want)
    at = 0
    for g in range(4):
        rows = np.flatnonzero(lab == g)
        np.testing.assert_array_equal(picks[at:at + want[g]],
                                      rows[np.argsort(-scores[rows], kind="stable")[:want[g]]])
        at += want[g]
    tracker = ForgettingTracker(200)
    tracker.update(np.arange(200), np.ones(200, bool))
    assert forgetting(tracker, 20, groups=lab).size == 20
    pool = rng.choice(1000, 200, replace=False)
    drawn = random_selection(pool, 0.5, seed=3, groups=lab)
    assert set(drawn.tolist()) <= set(pool.tolist()) and len(set(drawn.tolist())) == 100
    where = {int(v): i for i, v in enumerate(pool)}  # lab labels the pool's candidates
    drawn_groups = lab[[where[int(d)] for d in drawn]]
    np.testing.assert_array_equal(np.bincount(drawn_groups, minlength=4),
                                  largest_remainder(100, np.bincount(lab)))
    np.testing.assert_array_equal(drawn, random_selection(pool, 0.5, seed=3, groups=lab))


def test_as_groups_positions():
    g = as_groups(np.array([3, 1, 3, 2, 1]), 5)
    np.testing.assert_array_equal(g.labels, [1, 2, 3])
    np.testing.assert_array_equal(g.members, [1, 4, 3, 0, 2])
    np.testing.assert_array_equal(g.offsets, [0, 2, 3, 5])
    np.testing.assert_array_equal(g.positions(), [0, 0, 1, 0, 1])


GROUPS_INTERRUPT = RESTORE_SIGINT + """
import sys, threading, time
import numpy as np, svp_fast
x = np.random.default_rng(0).standard_normal((200_000, 32), dtype=np.float32)
labels = np.arange(200_000) % 5  # five groups of 40,000 rows: side by side on the threads
before = threading.active_count()
print("ready", flush=True)
t0 = time.perf_counter()
try:
    svp_fast.kcenter(x, 150_000, groups=labels, method="scan")
    print("finished?!", flush=True)
except KeyboardInterrupt:
    print(f"interrupted after {time.perf_counter() - t0:.2f}s", flush=True)
assert threading.active_count() == before
print("again", svp_fast.kcenter(x[:100], 3, groups=labels[:100]).tolist(), flush=True)
"""


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_grouped_ctrl_c_stops_every_thread(tmp_path, inherited):
    """Also when the child inherits SIGINT ignored (see test_trust.py); the
    child is killed if the test fails."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "run.py"
    script.write_text(GROUPS_INTERRUPT)
    python = SIGINT_IGNORED if inherited == "ignored" else [sys.executable]
    with child_process([*python, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True) as proc:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.5)
        t = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "interrupted after" in out, out + err
        assert time.perf_counter() - t < 3.0
        assert "again [" in out
