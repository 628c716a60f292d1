"""svp_fast.kcenter against the float64 numpy reference, and its contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SIMD_LEVELS
from reference import kcenter_ref

import svp_fast
from svp_fast.selection import _planner  # the engine rule of every driver

METHODS = ["scan", "lazy", "pruned", "batched", "kdtree"]
DTYPES = [np.float32, np.float16, np.float64]


def close_radii(got, ref, rtol=1e-5):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == ref.shape
    assert np.array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=rtol, atol=1e-6 * max(1.0, np.abs(ref[fin]).max(initial=0)))


def clustered(rng, n, d, classes=20, sub=4, noise=0.05):
    centers = rng.standard_normal((classes, d)) * 4
    basis = rng.standard_normal((classes, sub, d))
    labels = rng.integers(0, classes, n)
    coef = rng.standard_normal((n, sub))
    x = centers[labels] + np.einsum("ns,nsd->nd", coef, basis[labels]) + noise * rng.standard_normal((n, d))
    return x


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(20261128)
    out = {}
    for name, x in [("gauss", rng.standard_normal((1500, 24))), ("clustered", clustered(rng, 1500, 24))]:
        sel = rng.choice(1500, 40, replace=False)
        for dt in DTYPES:
            xd = x.astype(dt)
            for metric in ["euclidean", "cosine"]:
                out[(name, dt, metric, False)] = (xd, None, *kcenter_ref(xd, 1000, metric=metric))
                out[(name, dt, metric, True)] = (xd, sel, *kcenter_ref(xd, 1000, already_selected=sel, metric=metric))
    return out


@pytest.mark.parametrize("name", ["gauss", "clustered"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("selected", [False, True], ids=["start", "already_selected"])
@pytest.mark.parametrize("method", METHODS)
def test_matches_float64_reference(data, name, dtype, metric, selected, method):
    x, sel, ref, ref_r = data[(name, dtype, metric, selected)]
    picks, radii, stats = svp_fast.kcenter(x, 1000, already_selected=sel, metric=metric, method=method,
                                           n_cells=32, return_radii=True, return_stats=True)
    assert picks.dtype == np.int64
    np.testing.assert_array_equal(picks, ref)
    close_radii(radii, ref_r)
    assert stats.method == method
    if method == "batched":  # the candidates' updates come on top of the passes
        assert 0 < stats.passes < 1000 and stats.picks == 1000
    else:
        assert 0 < stats.distance_evals <= stats.scan_evals


@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("d", [1, 3, 16, 33, 64])
def test_every_simd_level_matches_reference(rng, simd, dtype, d):
    x = rng.standard_normal((700, d)).astype(dtype)
    ref, ref_r = kcenter_ref(x, 300)
    for method in ("scan", "lazy"):
        picks, radii = svp_fast.kcenter(x, 300, method=method, simd=simd, return_radii=True)
        np.testing.assert_array_equal(picks, ref)
        close_radii(radii, ref_r)


@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pruned_every_simd_level_matches_reference(rng, simd, dtype, metric):
    # clustered data, so that the cells' annulus test (a vector kernel per ISA)
    # both rules members out and lets some through; lengths not multiples of 8
    x = clustered(rng, 3001, 13, classes=25, sub=2, noise=0.02).astype(dtype)
    x[100:140] = x[7]  # duplicates of one point
    sel = rng.choice(3001, 37, replace=False)
    for already in (None, sel):
        ref, ref_r = kcenter_ref(x, 900, already_selected=already, metric=metric)
        picks, radii, st = svp_fast.kcenter(x, 900, method="pruned", simd=simd, n_cells=29,
                                            already_selected=already, metric=metric,
                                            return_radii=True, return_stats=True)
        np.testing.assert_array_equal(picks, ref)
        close_radii(radii, ref_r)
        assert st.evaluated_fraction < 0.6  # the cells did prune


@pytest.mark.parametrize("simd", SIMD_LEVELS)
def test_max2_kernel_every_simd_level(rng, simd):
    # the pruned engine finds each cell's best two with this kernel: the two
    # largest values as a multiset, where both may sit in one vector lane
    from svp_fast import _core

    for n in [0, 1, 2, 3, 15, 16, 17, 33, 64, 100, 257]:
        for case in range(6):
            m = rng.integers(-1, 6 if case % 2 else 1000, n).astype(np.float32)
            if case == 2 and n >= 20:
                m[:] = -1.0
                m[[3, 3 + 16]] = [7.0, 6.0]  # the best two in the same lane
            if case == 3:
                m[:] = -1.0  # excluded members only
            if case == 4 and n:
                m[:] = np.inf  # before the first center
            top = sorted(m.tolist(), reverse=True)[:2] + [-1.0, -1.0]
            got = _core.max2_kernel(m.ctypes.data, n, simd)
            assert got == (top[0], top[1]), (n, case, m)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_torch_bfloat16_and_types(rng, metric):
    x = torch.from_numpy(rng.standard_normal((800, 30))).to(torch.bfloat16)  # kdtree: D <= 32
    ref, ref_r = kcenter_ref(x, 400, metric=metric)
    for method in METHODS:
        picks, radii = svp_fast.kcenter(x, 400, metric=metric, method=method, return_radii=True, n_cells=16)
        assert isinstance(picks, torch.Tensor) and picks.dtype == torch.int64
        assert isinstance(radii, torch.Tensor)
        np.testing.assert_array_equal(picks.numpy(), ref)
        close_radii(radii.numpy(), ref_r)


def test_torch_float_views(rng):
    base = torch.from_numpy(rng.standard_normal((600, 50)).astype(np.float32))
    for view in (base[::3], base[:, 5:45], base.t().contiguous().t(), base[100:400]):
        ref, _ = kcenter_ref(view, 100)
        np.testing.assert_array_equal(svp_fast.kcenter(view, 100).numpy(), ref)


def test_start_is_first_pick(rng):
    x = rng.standard_normal((300, 5))
    picks, radii = svp_fast.kcenter(x, 10, start=123, return_radii=True)
    assert picks[0] == 123 and np.isinf(radii[0])
    np.testing.assert_array_equal(picks, kcenter_ref(x, 10, start=123)[0])


def test_already_selected_never_returned_and_resume(rng):
    x = rng.standard_normal((2000, 12)).astype(np.float32)
    first = svp_fast.kcenter(x, 600)
    for method in METHODS:
        rest = svp_fast.kcenter(x, 300, already_selected=first[:300], method=method)
        np.testing.assert_array_equal(rest, first[300:])
        assert not set(rest.tolist()) & set(first[:300].tolist())


def test_radii_non_increasing_and_cover(rng):
    x = rng.standard_normal((1000, 8))
    picks, radii = svp_fast.kcenter(x, 200, return_radii=True)
    assert np.isinf(radii[0])
    assert np.all(np.diff(radii[1:]) <= 0)
    # the last radius is the covering radius of the first 199 picks over the others
    d = np.sqrt(((x[:, None, :] - x[picks[:199]][None]) ** 2).sum(-1)).min(1)
    d[picks[:199]] = -1
    assert radii[-1] == pytest.approx(d.max(), rel=1e-6)


def test_duplicate_points_ties_go_to_lowest_index():
    # every point duplicated: after the distinct ones are picked, all remaining
    # distances are exactly zero and picks must go in index order
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 6)).astype(np.float32)
    x = np.concatenate([base, base, base])
    for method in METHODS:
        picks, radii = svp_fast.kcenter(x, 150, method=method, return_radii=True, n_cells=8)
        ref, _ = kcenter_ref(x, 150)
        np.testing.assert_array_equal(picks, ref)
        zero = picks[radii == 0]
        assert np.all(np.diff(zero) > 0)  # ascending index order among exact ties
        assert np.all(radii[50:] == 0)


def test_integer_lattice_exact_ties():
    # small integers: every distance is exact in float32 and ties are common
    g = np.stack(np.meshgrid(np.arange(6), np.arange(6), np.arange(4), indexing="ij"), -1).reshape(-1, 3)
    x = g.astype(np.float32)
    for method in METHODS:
        np.testing.assert_array_equal(svp_fast.kcenter(x, 100, method=method, n_cells=8), kcenter_ref(x, 100)[0])


def test_kdtree_engine_refuses_wide_rows_and_auto_picks_it_for_points(rng):
    with pytest.raises(ValueError, match="method 'kdtree' is for low-dimensional points \\(D <= 32\\), got D = 33"):
        svp_fast.kcenter(rng.standard_normal((50, 33)), 5, method="kdtree")
    pts = rng.random((5000, 3)).astype(np.float32)
    p, st = svp_fast.kcenter(pts, 500, return_stats=True)
    assert st.method == "kdtree" and st.float64_accumulation  # float64 throughout
    assert st.evaluated_fraction < 0.1  # the boxes prune
    np.testing.assert_array_equal(p, kcenter_ref(pts, 500)[0])
    _, st = svp_fast.kcenter(pts, 20, return_stats=True)
    assert st.method == "lazy"  # a small budget does not pay for the tree
    _, st = svp_fast.kcenter(rng.random((5000, 9)), 500, return_stats=True)
    assert st.method != "kdtree"


def test_kdtree_many_equal_coordinates_and_clusters(rng):
    # a grid with repeated coordinates (medians land on ties), far clusters, and
    # picks that exhaust every point: the splits and bounds stay exact
    g = np.stack(np.meshgrid(np.arange(12), np.arange(12), np.arange(3), indexing="ij"), -1)
    x = np.concatenate([g.reshape(-1, 3), 1e4 + rng.random((300, 3)), np.zeros((40, 3))])
    x = x.astype(np.float32)
    for metric in ("euclidean", "cosine"):
        if metric == "cosine":
            x = x + 1  # no zero rows; many rows still point the same way
        ref, ref_r = kcenter_ref(x, x.shape[0], metric=metric)
        picks, radii = svp_fast.kcenter(x, x.shape[0], method="kdtree", metric=metric,
                                        return_radii=True)
        np.testing.assert_array_equal(picks, ref)
        close_radii(radii, ref_r)


def test_budget_zero_and_all(rng):
    x = rng.standard_normal((50, 3))
    empty = svp_fast.kcenter(x, 0)
    assert empty.shape == (0,) and empty.dtype == np.int64
    allp = svp_fast.kcenter(x, 50)
    assert sorted(allp.tolist()) == list(range(50))
    rest = svp_fast.kcenter(x, 45, already_selected=[1, 2, 3, 4, 5])
    assert sorted(rest.tolist() + [1, 2, 3, 4, 5]) == list(range(50))


def test_single_point_and_single_dim():
    x = np.array([[3.0]])
    picks, radii = svp_fast.kcenter(x, 1, return_radii=True)
    assert picks.tolist() == [0] and np.isinf(radii[0])
    x = np.array([[0.0], [10.0], [4.0], [7.0]], dtype=np.float32)
    assert svp_fast.kcenter(x, 4).tolist() == [0, 1, 2, 3] or True  # order checked below
    np.testing.assert_array_equal(svp_fast.kcenter(x, 4), kcenter_ref(x, 4)[0])


def test_deterministic_over_threads(rng):
    x = rng.standard_normal((3000, 20)).astype(np.float16)
    a = svp_fast.kcenter(x, 500, num_threads=1, method="lazy")
    b = svp_fast.kcenter(x, 500, num_threads=2, method="scan")
    c = svp_fast.kcenter(x, 500, num_threads=3, method="pruned", n_cells=40)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_input_not_modified_and_memmap(tmp_path, rng):
    x = rng.standard_normal((500, 16)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    before = mm.copy()
    picks = svp_fast.kcenter(mm, 100, metric="cosine", method="pruned", n_cells=16)
    np.testing.assert_array_equal(np.asarray(mm), before)
    np.testing.assert_array_equal(picks, kcenter_ref(x, 100, metric="cosine")[0])


@pytest.mark.parametrize("layout", ["rows_strided", "negative_stride", "fortran", "column_slice", "broadcast"])
def test_layouts(rng, layout):
    base = rng.standard_normal((400, 30)).astype(np.float32)
    view = {
        "rows_strided": base[::2],
        "negative_stride": base[::-1],
        "fortran": np.asfortranarray(base),
        "column_slice": base[:, 3:20:2],
        "broadcast": np.broadcast_to(base[:1], (10, 30)),
    }[layout]
    ref, _ = kcenter_ref(view, min(50, view.shape[0]))
    np.testing.assert_array_equal(svp_fast.kcenter(view, min(50, view.shape[0])), ref)


def test_stats_report_pruning(rng):
    x = clustered(rng, 4000, 16, classes=40, sub=2, noise=0.01)
    _, st = svp_fast.kcenter(x, 1000, method="pruned", return_stats=True, n_cells=64)
    assert st.method == "pruned" and st.n_cells == 64 and st.cells_seconds > 0
    assert st.evaluated_fraction < 0.5  # clustered data prunes
    _, st2 = svp_fast.kcenter(x, 1000, method="scan", return_stats=True)
    assert st2.evaluated_fraction == 1.0


def test_auto_skips_cells_on_noise(rng, monkeypatch):
    monkeypatch.setattr(_planner, "CELLS_MIN_PAIRS", 0)  # a small run, the rule's later branches
    # Gaussian noise has intrinsic dimension ~38 at D = 64: cells cannot prune
    x = rng.standard_normal((8192, 64)).astype(np.float32)
    p, st = svp_fast.kcenter(x, 600, method="auto", return_stats=True)
    np.testing.assert_array_equal(p, svp_fast.kcenter(x, 600, method="scan"))
    assert st.method == "lazy" and st.n_cells == 0
    assert st.extra["intrinsic_dimension"] > 16


def test_auto_uses_cells_on_low_dimensional_data(rng, monkeypatch):
    monkeypatch.setattr(_planner, "CELLS_MIN_PAIRS", 0)  # a small run, the rule's later branches
    x = clustered(rng, 8192, 32, classes=40, sub=2, noise=0.01).astype(np.float32)
    p, st = svp_fast.kcenter(x, 600, method="auto", return_stats=True)
    np.testing.assert_array_equal(p, svp_fast.kcenter(x, 600, method="scan"))
    assert st.method == "pruned" and st.n_cells > 0
    assert st.extra["intrinsic_dimension"] <= 16
    assert st.fallback_step == -1 and st.evaluated_fraction < 0.5


def test_auto_falls_back_when_cells_do_not_prune(rng, monkeypatch):
    # force the cells onto noise: the engine must notice and hand over to lazy
    monkeypatch.setattr(_planner, "CELLS_MAX_INTRINSIC_DIMENSION", float("inf"))
    monkeypatch.setattr(_planner, "CELLS_MIN_PAIRS", 0)
    x = rng.standard_normal((8192, 64)).astype(np.float32)
    p, st = svp_fast.kcenter(x, 600, method="auto", return_stats=True)
    np.testing.assert_array_equal(p, svp_fast.kcenter(x, 600, method="scan"))
    assert st.method == "pruned" and 0 < st.fallback_step < 600


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pruned_reads_rows_in_place_above_the_copy_limit(rng, monkeypatch, metric):
    # the pruned engine copies the rows in cell order up to a limit; above it
    # (large inputs) it reads them in the caller's order: the same picks
    from svp_fast.selection import cells

    x = clustered(rng, 3000, 24, classes=30, sub=3, noise=0.02).astype(np.float32)
    ref, _ = kcenter_ref(x, 700, metric=metric)
    for limit in (0, 1 << 30):
        monkeypatch.setattr(cells, "CELL_ORDER_COPY_MAX_BYTES", limit)
        for threads in (1, 2):
            got = svp_fast.kcenter(x, 700, method="pruned", metric=metric, n_cells=32,
                                   num_threads=threads)
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("threads", [0, 1, 2])
def test_build_cells_partitions_and_restores_faiss_threads(rng, dtype, threads):
    faiss = pytest.importorskip("faiss")
    from svp_fast._arrays import as_matrix
    from svp_fast.selection.cells import build_cells

    x = clustered(rng, 5000, 16, classes=20, sub=2, noise=0.01).astype(dtype)
    before = x.copy()
    faiss.omp_set_num_threads(2)
    cell_of, info = build_cells(as_matrix(x, "x"), 32, threads=threads)
    assert faiss.omp_get_max_threads() == 2  # FAISS's setting is the caller's again
    np.testing.assert_array_equal(x, before)  # float32 rows are read in place, not written
    assert cell_of.dtype == np.int64 and cell_of.shape == (5000,)
    assert cell_of.min() >= 0 and cell_of.max() < 32
    # a k-means partition spreads the 20 clusters over many cells
    assert np.bincount(cell_of, minlength=32).max() < 5000 and len(np.unique(cell_of)) > 10
    assert info["kmeans"] == "faiss"


def test_two_nearest_distances_match_brute_force(rng):
    from svp_fast import _core

    x = rng.standard_normal((300, 7))
    x[5] = x[9]  # a duplicate: r1 = 0 for both
    r1, r2 = np.empty(300), np.empty(300)
    _core.two_nearest_distances(x.ctypes.data, 300, 7, 0, r1.ctypes.data, r2.ctypes.data)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    d.sort(axis=1)
    np.testing.assert_allclose(r1, d[:, 0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(r2, d[:, 1], rtol=1e-12, atol=0)
    assert r1[5] == 0 and r1[9] == 0


@pytest.mark.parametrize("true_dim", [2, 5])
def test_intrinsic_dimension_estimate(rng, true_dim):
    from svp_fast.selection.cells import intrinsic_dimension

    low = rng.uniform(size=(2000, true_dim)) @ rng.standard_normal((true_dim, 64))
    est = intrinsic_dimension(low)
    assert 0.7 * true_dim < est < 1.4 * true_dim
    noise = rng.standard_normal((2000, 64))
    assert intrinsic_dimension(noise) > 25
    assert intrinsic_dimension(np.ones((50, 8))) == 0.0  # all duplicates
    assert np.isnan(intrinsic_dimension(np.full((5, 3), np.nan)))


def test_callback_and_progress(rng, capsys):
    x = rng.standard_normal((20000, 32)).astype(np.float32)
    seen = []

    def cb(p, r):
        assert not p.flags.writeable and not r.flags.writeable
        seen.append((p.copy(), r.copy()))

    picks, radii = svp_fast.kcenter(x, 300, method="scan", callback=cb, progress=True,
                                    return_radii=True)
    assert seen, "callback never called"
    np.testing.assert_array_equal(seen[-1][0], picks)
    for p, r in seen:
        np.testing.assert_array_equal(p, picks[: len(p)])
        np.testing.assert_array_equal(r, radii[: len(r)])


def test_callback_exception_propagates(rng):
    x = rng.standard_normal((20000, 32)).astype(np.float32)

    def boom(_picks, _radii):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        svp_fast.kcenter(x, 500, callback=boom)


# ------------------------------------------------------------ the batched driver


@pytest.mark.parametrize("engine", ["batched", "lazy", "pruned"])
@pytest.mark.parametrize("T,cap", [(1, None), (2, None), (3, 2), (5, None), (64, 1), (5000, None)])
def test_batched_driver_boundaries(rng, engine, T, cap):
    # tiny candidate counts and caps cross every boundary of a pass: a single
    # candidate, more candidates than points, one pick per pass
    x = clustered(rng, 600, 9, classes=12, sub=2, noise=0.05).astype(np.float32)
    sel = rng.choice(600, 7, replace=False)
    for already in (None, sel):
        ref, ref_r = kcenter_ref(x, 450, already_selected=already)
        picks, radii, st = svp_fast.kcenter(x, 450, method=engine, already_selected=already,
                                            batch_candidates=T, batch_max_picks=cap, n_cells=16,
                                            return_radii=True, return_stats=True)
        np.testing.assert_array_equal(picks, ref)
        close_radii(radii, ref_r)
        assert 1 <= st.passes <= 450
        if cap == 1:
            assert st.passes >= 449


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_batched_massive_ties(metric):
    # 40 distinct rows, each 30 times: from pick 40 on every value ties, so no
    # first pick of a pass can be certified against the rest: plain steps
    base = np.random.default_rng(1).standard_normal((40, 6))
    x = np.tile(base, (30, 1)).astype(np.float32)
    ref, _ = kcenter_ref(x, 700, metric=metric)
    for T in (1, 8, 256):
        picks, st = svp_fast.kcenter(x, 700, method="batched", metric=metric, batch_candidates=T,
                                     return_stats=True)
        np.testing.assert_array_equal(picks, ref)
        assert st.ambiguous_steps > 0


def test_batched_certifies_many_picks_per_pass(rng):
    x = rng.standard_normal((20000, 32)).astype(np.float32)
    picks, st = svp_fast.kcenter(x, 3000, method="batched", return_stats=True)
    np.testing.assert_array_equal(picks, svp_fast.kcenter(x, 3000, method="lazy"))
    assert st.passes < 3000 / 20  # measured: about 60 picks a pass at T = 256
    assert st.picks_per_pass == pytest.approx(3000 / st.passes)


def test_batched_resumes_exactly(rng):
    x = rng.standard_normal((3000, 12)).astype(np.float16)
    full = svp_fast.kcenter(x, 1200, method="batched", start=5)
    rest = svp_fast.kcenter(x, 600, method="batched", already_selected=full[:600])
    np.testing.assert_array_equal(rest, full[600:])


def test_batch_arguments_are_checked(rng):
    x = rng.standard_normal((50, 3)).astype(np.float32)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="batch_candidates must be a positive integer"):
            svp_fast.kcenter(x, 5, method="batched", batch_candidates=bad)
    with pytest.raises(ValueError, match="batch_max_picks must be a positive integer"):
        svp_fast.kcenter(x, 5, method="batched", batch_max_picks=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_engines_agree_on_radii_bit_for_bit(rng, dtype, metric):
    # every engine computes a row's distance with the same summation tree,
    # however it groups rows (reduce_one): the radii, fast values of the
    # winners, are the same bits on every engine (a resume may change engine)
    x = clustered(rng, 6000, 33, classes=30, sub=3, noise=0.05).astype(dtype)
    ref = svp_fast.kcenter(x, 1500, metric=metric, method="scan", return_radii=True)[1]
    for method in ("lazy", "pruned", "batched"):
        r = svp_fast.kcenter(x, 1500, metric=metric, method=method, n_cells=32, return_radii=True)[1]
        np.testing.assert_array_equal(r, ref, err_msg=method)


def test_random_start_on_one_set_draws_as_one_group_and_a_batch_of_one(rng):
    """One language for every kind of call: start="random" with a seed picks
    the same first row for a set, the one group it is, and a batch of one set."""
    x = rng.standard_normal((300, 6)).astype(np.float32)
    for seed in (0, 1, 12345):
        picks = svp_fast.kcenter(x, 20, start="random", seed=seed)
        ref, _ = kcenter_ref(x.astype(np.float64), 20, start=int(picks[0]))
        np.testing.assert_array_equal(picks, ref)
        np.testing.assert_array_equal(
            picks, svp_fast.kcenter(x, 20, groups=np.zeros(300, int), start="random", seed=seed))
        np.testing.assert_array_equal(picks, svp_fast.kcenter(x[None], 20, start="random",
                                                              seed=seed)[0])
    firsts = {int(svp_fast.kcenter(x, 1, start="random", seed=s)[0]) for s in range(20)}
    assert len(firsts) > 10  # the seed moves the draw
    with pytest.raises(ValueError, match="start applies only when already_selected is empty"):
        svp_fast.kcenter(x, 2, start="random", already_selected=[3])
    with pytest.raises(TypeError, match="seed must be an integer, got str"):
        svp_fast.kcenter(x, 2, start="random", seed="0")
