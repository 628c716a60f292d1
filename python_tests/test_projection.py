"""The pruned engine's projection bound (svp_fast/selection/projection.py and
pruned_engine.h): its stored bounds hold, it rules rows out where the data lie
near a few directions, it pauses where it does not pay, and picks stay the
scan's in every case."""

from __future__ import annotations

import numpy as np
import pytest

import svp_fast
from svp_fast._arrays import as_matrix
from svp_fast.selection import _backend_cpu, _planner, projection
from svp_fast.selection.projection import build_projection, choose_dims

from reference import kcenter_ref


def low_rank(rng, n, d, rank=8, noise=0.01, offset=0.0, dtype=np.float32):
    """Clusters in a rank-dim subspace of R^d plus a little isotropic noise."""
    centers = rng.standard_normal((16, rank)) * 4.0
    z = centers[rng.integers(0, 16, n)] + rng.standard_normal((n, rank))
    x = z @ rng.standard_normal((rank, d)) / np.sqrt(rank)
    x += noise * rng.standard_normal((n, d)) + offset
    return x.astype(dtype)


def exact_lower_bound(p: projection.Projection, i, j):
    a = np.linalg.norm(p.coords[i].astype(np.float64) - p.coords[j].astype(np.float64))
    a *= p.coord_scale
    a = max(0.0, a - p.err[i] - p.err[j])
    b = max(0.0, p.resid_lo[i] - p.resid_hi[j], p.resid_lo[j] - p.resid_hi[i])
    return a * a + b * b


@pytest.mark.parametrize("case", ["low_rank", "offset", "isotropic", "tiny", "huge", "cosine"])
def test_stored_bounds_hold_for_every_pair(rng, case):
    """coords, err and the residual interval are what the engine trusts: the
    bound they give never exceeds the float64 squared distance, and the
    residual interval holds the residual computed directly."""
    n, d = 300, 256
    metric = "cosine" if case == "cosine" else "euclidean"
    if case == "isotropic":
        x = rng.standard_normal((n, d))
    else:
        x = low_rank(rng, n, d, offset=1e4 if case == "offset" else 0.0, dtype=np.float64)
        x *= {"tiny": 1e-150, "huge": 1e150}.get(case, 1.0)
    p = build_projection(as_matrix(x, "x"), metric=metric, dims=16)
    assert p is not None and p.dims == 16
    w = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    # residual of x - mu outside the directions' span (orthonormal basis by QR)
    q, _ = np.linalg.qr(p.directions.T)
    y = w - p.shift
    resid = np.linalg.norm(y - (y @ q) @ q.T, axis=1)
    scale = np.abs(y).max()
    assert np.all(p.resid_lo <= resid + 1e-12 * scale)
    assert np.all(resid <= p.resid_hi + 1e-12 * scale)
    # the intervals and errors are tight where the data allow it
    assert np.all(p.err <= 1e-6 * (np.linalg.norm(y, axis=1) + np.linalg.norm(p.shift)))
    i, j = rng.integers(0, n, 2000), rng.integers(0, n, 2000)
    for a, b in zip(i, j):
        d2 = float(((w[a] - w[b]) ** 2).sum())
        assert exact_lower_bound(p, a, b) <= d2 * (1 + 1e-12), (a, b)
    if case in ("low_rank", "offset", "tiny", "huge", "cosine"):  # and it is close
        ratios = [exact_lower_bound(p, a, b) / float(((w[a] - w[b]) ** 2).sum())
                  for a, b in zip(i, j) if a != b]
        assert np.median(ratios) > 0.9


def test_choose_dims_follows_the_spectrum():
    flat = np.ones(64)
    assert choose_dims(flat, 64.0, 256) == (0, 1.0)  # 1 KB rows: under MIN_ROW_BYTES
    assert choose_dims(flat, 64.0, 512, itemsize=2) == (0, 1.0)
    k, r = choose_dims(np.r_[np.full(16, 10.0), np.full(48, 1e-4)], 160.01, 512)
    assert k == 16 and r < 1e-4
    k, r = choose_dims(np.r_[np.full(40, 10.0), np.full(24, 1e-4)], 400.0, 512)
    assert k == 64 and r < 0.01
    k, r = choose_dims(np.ones(64), 512.0, 512)  # isotropic: 64 of 512 directions
    assert k == 0 and r > 0.8
    assert choose_dims(np.ones(64), 0.0, 512)[0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, "bfloat16"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pruned_with_projection_picks_the_reference(rng, dtype, metric):
    x = low_rank(rng, 1500, 256, dtype=np.float32)
    if dtype == "bfloat16":
        import torch

        x = torch.from_numpy(x).to(torch.bfloat16)
        ref_x = x.float().numpy()
    else:
        x = x.astype(dtype)
        ref_x = x
    want, want_r = kcenter_ref(ref_x, 200, metric=metric)
    got, radii, st = svp_fast.kcenter(x, 200, method="pruned", metric=metric, n_cells=16,
                                      projection_dims=16, return_radii=True, return_stats=True)
    got = np.asarray(got)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(np.asarray(radii)[1:], want_r[1:], rtol=1e-5)
    scan, scan_r = svp_fast.kcenter(x, 200, method="scan", metric=metric, return_radii=True)
    np.testing.assert_array_equal(np.asarray(scan), want)
    # with the projection the engine accumulates in float64: its radii are
    # float64 values, the scan's float32 ones (float64 input: both float64)
    assert st.float64_accumulation
    np.testing.assert_allclose(np.asarray(radii)[1:], np.asarray(scan_r)[1:], rtol=1e-5)
    assert st.extra["projection_dims"] == 16
    assert st.extra["projection_skips"] > 0.5 * st.extra["projection_tests"] > 0


def test_projection_rules_out_most_rows_and_keeps_the_picks(rng):
    x = low_rank(rng, 6000, 512, rank=12, dtype=np.float16)
    base, bst = svp_fast.kcenter(x, 600, method="pruned", projection_dims=0, return_stats=True)
    got, st = svp_fast.kcenter(x, 600, method="pruned", projection_dims=16, return_stats=True)
    np.testing.assert_array_equal(got, base)
    np.testing.assert_array_equal(got, svp_fast.kcenter(x, 600, method="scan"))
    assert "projection_dims" not in bst.extra
    assert st.extra["projection_dims"] == 16
    # rows read: a small share of what the engine read without the bound
    assert st.distance_evals < 0.3 * bst.distance_evals


@pytest.mark.parametrize("already", [False, True])
def test_projection_with_ties_duplicates_and_already_selected(rng, already):
    x = low_rank(rng, 1200, 256, dtype=np.float32)
    x[600:900] = x[:300]  # exact duplicates: zero distances, many equal values
    x[900:950] = x[5]
    sel = rng.choice(1200, 30, replace=False) if already else None
    want, _ = kcenter_ref(x, 250, already_selected=sel)
    got, st = svp_fast.kcenter(x, 250, method="pruned", already_selected=sel, n_cells=32,
                               projection_dims=16, return_stats=True)
    np.testing.assert_array_equal(got, want)
    assert st.extra["projection_tests"] > 0


def test_projection_pauses_where_it_does_not_pay(rng):
    """Isotropic noise: the bound rules out almost nothing, so after a window
    the engine stops testing it (members are then read without a test)."""
    x = rng.standard_normal((4000, 256)).astype(np.float32)
    got, st = svp_fast.kcenter(x, 600, method="pruned", projection_dims=16, return_stats=True)
    np.testing.assert_array_equal(got, svp_fast.kcenter(x, 600, method="scan"))
    tests, skips = st.extra["projection_tests"], st.extra["projection_skips"]
    assert tests > 0
    # without pauses every member read would have been tested first
    assert tests < 0.5 * (st.distance_evals + skips)


def test_auto_uses_the_projection_on_wide_low_rank_rows(rng, monkeypatch):
    monkeypatch.setattr(_planner, "CELLS_MIN_PAIRS", 0)  # a small run, the rule's later branches
    x = low_rank(rng, 12000, 1024, dtype=np.float16)  # 2 KB rows
    got, st = svp_fast.kcenter(x, 1200, return_stats=True)
    assert st.method == "pruned"
    assert st.extra["projection_dims"] == 16
    # 1 KB rows: the bound would not pay for its reads
    _, st1 = svp_fast.kcenter(x[:, :512], 300, method="pruned", return_stats=True)
    assert "projection_dims" not in st1.extra
    np.testing.assert_array_equal(got, svp_fast.kcenter(x, 1200, method="scan"))


def test_no_projection_for_narrow_rows(rng):
    x = rng.standard_normal((3000, 64)).astype(np.float32)
    _, st = svp_fast.kcenter(x, 300, method="pruned", return_stats=True)
    assert "projection_dims" not in st.extra


def test_cells_come_from_the_projection_when_it_holds_the_variance(rng):
    from svp_fast.selection.cells import build_cells

    x = low_rank(rng, 5000, 256, noise=0.001)
    m = as_matrix(x, "x")
    p = build_projection(m, dims=16)
    assert p is not None and p.residual_fraction < 0.05
    cell_of, info = build_cells(m, 32, projection=p)
    assert info["space"] == "projection (16 dims)"
    assert cell_of.shape == (5000,) and 0 <= cell_of.min() and cell_of.max() < 32
    assert len(np.unique(cell_of)) > 16
    _, info_rows = build_cells(m, 32)
    assert info_rows["space"] == "rows"


@pytest.mark.parametrize("bad", [-1, 4097, 2.5, True, "8"])
def test_bad_projection_dims_are_rejected(rng, bad):
    x = rng.standard_normal((100, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="projection_dims"):
        svp_fast.kcenter(x, 5, projection_dims=bad)


def test_projection_dims_do_not_apply_to_groups(rng):
    x = rng.standard_normal((100, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="projection_dims applies to one"):
        svp_fast.kcenter(x, 5, groups=np.zeros(100, dtype=np.int64), projection_dims=4)


@pytest.mark.parametrize("field", ["err", "resid_lo", "resid_hi"])
def test_core_rejects_an_invalid_projection(rng, monkeypatch, field):
    """A projection whose bounds are not an interval (or NaN) is refused by the
    core with a clear error, never trusted."""
    x = low_rank(rng, 800, 256)
    real = _backend_cpu.CpuBackend.build_projection

    def broken(self, m, metric, seed, dims=None):
        p = real(self, m, metric, seed, dims)
        arr = getattr(p, field)
        arr[17] = -1.0 if field != "resid_hi" else np.nan
        return p

    monkeypatch.setattr(_backend_cpu.CpuBackend, "build_projection", broken)
    with pytest.raises(ValueError, match="projection bounds of row 17"):
        svp_fast.kcenter(x, 50, method="pruned", projection_dims=16)


def test_projection_never_modifies_the_input(rng):
    x = low_rank(rng, 1000, 256)
    before = x.copy()
    _, st = svp_fast.kcenter(x, 100, method="pruned", metric="cosine", projection_dims=16,
                             return_stats=True)
    assert st.extra["projection_dims"] == 16
    np.testing.assert_array_equal(x, before)


def test_checkpoint_resume_with_projection(tmp_path, rng):
    """The bound only lowers m2 (a lower bound the state carries): a resumed
    run gives the uninterrupted picks and radii."""
    x = low_rank(rng, 3000, 256, dtype=np.float32)
    kw = dict(method="pruned", n_cells=32, projection_dims=16, return_radii=True)
    want, want_r = svp_fast.kcenter(x, 600, **kw)
    ck = tmp_path / "run.ckpt.npz"

    class Stop(Exception):
        pass

    def stop(p, r):
        if len(p) > 200:
            raise Stop()

    with pytest.raises(Stop):
        svp_fast.kcenter(x, 600, checkpoint=ck, checkpoint_every=1e-3, callback=stop, **kw)
    assert ck.exists()
    got, got_r, st = svp_fast.kcenter(x, 600, checkpoint=ck, return_stats=True, **kw)
    assert st.extra["resumed_from"] > 200
    assert st.extra["projection_dims"] == 16
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_r, want_r)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_projection_cell_bound_with_many_small_cells(rng, metric):
    """Cells of a few members each, so that the projected centroid bound (a
    cell skipped before its centroid's distance) decides most cells: a bound
    only slightly too strong changes picks here."""
    x = low_rank(rng, 4000, 256, rank=6, dtype=np.float32)
    want, _ = kcenter_ref(x, 1500, metric=metric)
    got, st = svp_fast.kcenter(x, 1500, method="pruned", metric=metric, n_cells=1024,
                               projection_dims=16, return_stats=True)
    np.testing.assert_array_equal(got, want)
    assert st.extra["projection_dims"] == 16


def test_narrow_rows_never_import_torch():
    """The projection's torch import costs about a second; a pruned run on
    rows it would never use must not pay it (it did: 2.4 s against 0.8 s for
    the first 30,000-pick call on 60,000 x 64 proxy features)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, svp_fast\n"
            "x = np.random.default_rng(0).standard_normal((3000, 64)).astype(np.float32)\n"
            "svp_fast.kcenter(x, 300, method='pruned')\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
