"""The CPU engines' product screen (csrc/cpu/product_screen.h, issue 23).

Many centers are applied to many rows as a matrix product whose rigorous bound
rules out the pairs that cannot change a row's state; the rest get the fast
kernel's distance. The picks must stay the float64 reference's, and the state
(hence the radii) bit for bit the one the engines reach without the product.
The thresholds are lowered here so that small inputs take the path and cross
every edge of its blocks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SIMD_LEVELS
from reference import kcenter_ref

import svp_fast
from svp_fast import _core
from svp_fast._arrays import as_matrix
from svp_fast.selection.kcenter import choose_engine
from svp_fast.selection import _planner, projection

DTYPE_CODES = {np.float32: 0, np.float16: 1, np.float64: 3}
OFF = (10**9, 0, 0)  # min_cols beyond any row: the product never runs


@pytest.fixture
def product():
    """Set the product tuning for a test: product(min_cols, min_centers, block);
    the previous tuning comes back afterwards."""
    old = _core.product_tuning()

    def set_(min_cols=1, min_centers=1, center_block=0):
        _core.set_product_tuning(min_cols, min_centers, center_block)

    yield set_
    _core.set_product_tuning(*old)


def run_both(product, x, budget, tuning, **kw):
    """(picks, radii, stats) with the product forced by ``tuning``, and without it."""
    product(*tuning)
    on = svp_fast.kcenter(x, budget, return_radii=True, return_stats=True, **kw)
    product(*OFF)
    off = svp_fast.kcenter(x, budget, return_radii=True, return_stats=True, **kw)
    return on, off


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("d", [1, 5, 16, 33, 130])
def test_dot_kernel_within_its_bound(rng, dtype, d):
    nr, nc = 13, 11  # crosses the 6 x 4 (AVX-512), 3 x 3 (AVX2) and 2 x 2 blocks
    x = (rng.standard_normal((nr, d)) * 10.0 ** rng.integers(-3, 3, (nr, 1))).astype(dtype)
    cdt = np.float64 if dtype == np.float64 else np.float32
    c = rng.standard_normal((nc, d)).astype(cdt)
    ref = x.astype(np.float64) @ c.astype(np.float64).T
    u = 2.0**-53 if dtype == np.float64 else 2.0**-24
    lanes = 4 if dtype == np.float64 else 8
    gamma = 1.01 * (-(-d // lanes) + 10) * u
    bound = gamma * np.linalg.norm(x.astype(np.float64), axis=1)[:, None] \
        * np.linalg.norm(c.astype(np.float64), axis=1)[None, :]
    for simd in SIMD_LEVELS:
        out = np.full((nr, nc), np.nan)
        _core.dot_block_kernel(x.ctypes.data, nr, d, d, DTYPE_CODES[dtype], c.ctypes.data, nc,
                               simd, out.ctypes.data)
        assert np.all(np.abs(out - ref) <= bound + 1e-300), simd


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, "bfloat16"])
@pytest.mark.parametrize("method", ["batched", "lazy", "scan"])
def test_picks_and_radii_with_the_product(product, rng, metric, dtype, method):
    n, d = 700, 37
    x = rng.standard_normal((n, d))
    sel = rng.choice(n, 23, replace=False)
    xin = torch.from_numpy(x).to(torch.bfloat16) if dtype == "bfloat16" else x.astype(dtype)
    ref_p, ref_r = kcenter_ref(xin, 250, already_selected=sel, metric=metric)
    # "scan" with passes: the scan engine's multi-center update under the batched driver
    kw = {"batch_candidates": 40} if method == "scan" else {}
    for tuning in [(1, 1, 1), (1, 2, 5), (1, 1, 64)]:
        (p, r, st), (p0, r0, st0) = run_both(product, xin, 250, tuning, method=method,
                                             metric=metric, already_selected=sel, **kw)
        p, r, p0, r0 = (np.asarray(v) for v in (p, r, p0, r0))
        assert p.tolist() == ref_p.tolist()
        assert p0.tolist() == ref_p.tolist()
        np.testing.assert_array_equal(r, r0)  # the same state, bit for bit
        np.testing.assert_allclose(r, ref_r, rtol=2e-3 if dtype in (np.float16, "bfloat16") else 1e-5)
        assert st.extra["product_pairs"] > 0 and "product_pairs" not in st0.extra
        assert 0 <= st.extra["product_recomputes"] <= st.extra["product_pairs"]


@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_every_isa_and_thread_count(product, rng, simd, metric):
    x = rng.standard_normal((500, 140)).astype(np.float32)
    ref_p, _ = kcenter_ref(x, 120, metric=metric)
    for threads in (1, 2):
        for method in ("batched", "lazy"):
            (p, r, _), (p0, r0, _) = run_both(product, x, 120, (1, 1, 7), method=method,
                                              metric=metric, simd=simd, num_threads=threads)
            assert p.tolist() == ref_p.tolist() == p0.tolist()
            np.testing.assert_array_equal(r, r0)


def adversarial(kind: str, rng, n: int, d: int) -> np.ndarray:
    """Inputs that stress the screen's bound or the tie rule."""
    if kind == "lattice":  # exact ties everywhere
        return rng.integers(-2, 3, (n, d)).astype(np.float64)
    if kind == "duplicates":
        base = rng.standard_normal((n // 4, d))
        return base[rng.integers(0, base.shape[0], n)]
    if kind == "offset":  # norms far above the distances: the dot products cancel
        return 1000.0 + rng.standard_normal((n, d)) * 1e-2
    if kind == "near_ties":  # a ring of points equidistant from a center, perturbed by ulps
        t = rng.uniform(0, 2 * np.pi, n)
        x = np.zeros((n, d))
        x[:, 0], x[:, 1] = np.cos(t), np.sin(t)
        x[0] = 0.0
        return x * (1 + rng.integers(-2, 3, (n, 1)) * 2.0**-50)
    if kind == "scaled":
        return rng.standard_normal((n, d)) * 10.0 ** rng.integers(-8, 8)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["lattice", "duplicates", "offset", "near_ties", "scaled"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_adversarial_inputs(product, rng, kind, dtype, metric):
    if dtype == np.float16 and kind in ("offset", "scaled"):
        pytest.skip("float16 cannot hold these magnitudes and distances together")
    x = adversarial(kind, rng, 400, 24).astype(dtype)
    if metric == "cosine":
        x[np.all(x == 0, axis=1), 0] = 1
    ref_p, ref_r = kcenter_ref(x, 150, metric=metric)
    for method in ("batched", "lazy"):
        (p, r, st), (p0, r0, _) = run_both(product, x, 150, (1, 1, 3), method=method, metric=metric)
        assert p.tolist() == ref_p.tolist() == p0.tolist(), method
        np.testing.assert_array_equal(r, r0)


def test_offset_rows_are_recomputed(product, rng):
    """Rows far from the origin: the product cannot resolve their distances and
    the screen hands most pairs to the fast kernel; the picks stay exact."""
    x = (1e4 + rng.standard_normal((300, 40)) * 1e-3).astype(np.float32)
    ref_p, _ = kcenter_ref(x, 80)
    product(1, 1, 0)
    p, st = svp_fast.kcenter(x, 80, method="batched", return_stats=True)
    assert p.tolist() == ref_p.tolist()
    assert st.extra["product_recomputes"] > 0.5 * st.extra["product_pairs"]


def test_checkpoint_state_is_the_same(product, rng, tmp_path):
    """A run resumed from a checkpoint with the product on ends with the picks
    and radii of an uninterrupted run with it off (the states agree)."""
    x = rng.standard_normal((600, 50)).astype(np.float32)
    product(*OFF)
    p_full, r_full = svp_fast.kcenter(x, 200, method="lazy", return_radii=True)
    product(1, 1, 4)
    p_half, r_half = svp_fast.kcenter(x, 90, method="lazy", return_radii=True)
    p_rest, r_rest = svp_fast.kcenter(x, 110, method="batched", already_selected=p_half,
                                      return_radii=True)
    assert np.concatenate([p_half, p_rest]).tolist() == p_full.tolist()
    np.testing.assert_array_equal(r_half, r_full[:90])


def test_tuning_round_trip():
    old = _core.set_product_tuning(0, 0, 0)  # values < 1 keep the current ones
    assert _core.product_tuning() == old
    assert all(v >= 1 for v in old)


def test_product_rate_is_positive():
    assert _core.measure_product_rate(256, True, 1, 0.01) > 0
    assert _core.measure_product_rate(256, False, 1, 0.01) > 0


# -- the auto rule ---------------------------------------------------------------------


class _Backend:
    lazy_engine = auto_engine = "lazy"
    auto_min_budget = 0
    auto_considers_cells = True
    cells_min_rows = 4096
    kdtree_engine = "kdtree"


@pytest.mark.parametrize("residual, row_bytes, expected", [
    (0.9, 4096, "lazy"),     # wide rows spread over many directions: no cells
    (0.05, 4096, "pruned"),  # wide rows in a few directions: cells and the projection
    (0.9, 1024, "pruned"),   # narrow rows: the spread test does not apply
])
def test_auto_spread_rule(residual, row_bytes, expected):
    facts = {}
    calls = []

    def spread():
        calls.append(1)
        return residual

    engine, dim = choose_engine("auto", 100_000, 10_000, 256, _Backend(),
                                               probe=lambda: 6.0, cols=2048, spread=spread,
                                               row_bytes=row_bytes, facts=facts)
    assert engine == expected and dim == 6.0
    assert bool(calls) == (row_bytes >= projection.MIN_ROW_BYTES)
    if calls:
        assert facts["spread_residual"] == residual


def test_auto_skips_the_spread_test_above_the_dimension_limit():
    engine, _ = choose_engine("auto", 100_000, 10_000, 256, _Backend(),
                                             probe=lambda: 40.0, cols=2048,
                                             spread=lambda: pytest.fail("not needed"),
                                             row_bytes=4096)
    assert engine == "lazy"


def test_spread_residual_reads_the_spectrum(rng):
    noise = as_matrix(rng.standard_normal((2000, 512)).astype(np.float32), "x")
    low = as_matrix((rng.standard_normal((2000, 8)) @ rng.standard_normal((8, 512))
                     + 1e-3 * rng.standard_normal((2000, 512))).astype(np.float32), "x")
    assert projection.spread_residual(noise) > 0.8
    assert projection.spread_residual(low) < 0.01
    assert projection.spread_residual(low, metric="cosine") < 0.05


def test_auto_runs_lazy_on_spread_wide_rows(rng, monkeypatch):
    """End to end: wide float16 rows of 1,000 tight blobs spread over every
    direction read a low TwoNN dimension, and auto still keeps the cells away."""
    monkeypatch.setattr(_planner, "CELLS_MIN_PAIRS", 0)  # a small run, the rule's later branches
    n, d = 6000, 1024
    centers = rng.standard_normal((1000, d))
    x = (centers[rng.integers(0, 1000, n)] + 0.05 * rng.standard_normal((n, d))).astype(np.float16)
    p, st = svp_fast.kcenter(x, 300, return_stats=True)
    assert st.extra["spread_residual"] > projection.RESIDUAL_MAX
    assert st.method == "lazy"
    assert p.tolist() == svp_fast.kcenter(x, 300, method="scan").tolist()


def test_auto_trial_rule():
    """Narrow rows in a long run: the trial decides between the cells and lazy."""
    for measured in ("lazy", "pruned"):
        facts = {}
        engine, _ = choose_engine("auto", 200_000, 10_000, 512, _Backend(), probe=lambda: 2.5,
                                  cols=256, spread=lambda: pytest.fail("narrow rows"),
                                  row_bytes=1024, facts=facts,
                                  trial=lambda: (measured, {"trial_seconds": 0.1}))
        assert engine == measured and facts["trial_seconds"] == 0.1
    # a shorter run (N x budget x D below trial.TRIAL_MIN_WORK): no trial, the cells as before
    engine, _ = choose_engine("auto", 100_000, 1_000, 316, _Backend(), probe=lambda: 2.5, cols=64,
                              row_bytes=256, trial=lambda: pytest.fail("too short to try"))
    assert engine == "pruned"


def test_auto_short_runs_skip_the_probe_and_the_cells(rng):
    """Below _planner.CELLS_MIN_PAIRS (row, pick) pairs the probe and the cells'
    k-means would be a large part of the run: lazy, without probing."""
    n, b = 50_000, 300
    assert n * b < _planner.CELLS_MIN_PAIRS <= 100_000 * 1_000
    engine, dim = choose_engine("auto", n, b, 223, _Backend(), cols=256,
                                probe=lambda: pytest.fail("a short run needs no probe"))
    assert (engine, dim) == ("lazy", None)
    x = rng.standard_normal((n, 64)).astype(np.float32)
    p, st = svp_fast.kcenter(x, b, return_stats=True)
    assert st.method == "lazy" and "intrinsic_dimension" not in st.extra
    assert p.tolist() == svp_fast.kcenter(x, b, method="scan").tolist()


def test_engine_trial_end_to_end(rng, monkeypatch):
    """The trial on a real (small) run: it measures both engines and the picks
    are the scan's whichever it chooses."""
    import sys

    kc = sys.modules["svp_fast.selection._planner"]
    monkeypatch.setattr(kc, "TRIAL_MIN_WORK", 0)
    monkeypatch.setattr(kc, "CELLS_MIN_PAIRS", 0)
    centers = rng.standard_normal((50, 3)) * 10
    x = (centers[rng.integers(0, 50, 9000)] + rng.standard_normal((9000, 3))) \
        @ rng.standard_normal((3, 48))
    x = x.astype(np.float32)
    sel = rng.choice(9000, 40, replace=False)
    p, st = svp_fast.kcenter(x, 600, already_selected=sel, return_stats=True)
    assert {"trial_lazy_s", "trial_pruned_s", "trial_seconds"} <= set(st.extra)
    assert st.method in ("lazy", "pruned")
    assert p.tolist() == svp_fast.kcenter(x, 600, already_selected=sel, method="scan").tolist()
