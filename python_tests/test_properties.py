"""Property tests over shapes, budgets, dtypes and selections (hypothesis)."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from conftest import SIMD_LEVELS
from reference import kcenter_ref, uncertainty_scores_ref, uncertainty_topk_ref

import svp_fast
from svp_fast import _core

# CI runs a small profile; SVP_FAST_HYPOTHESIS=fuzz runs 10,000 examples per test.
settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=10_000, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("SVP_FAST_HYPOTHESIS", "ci"))


@st.composite
def kcenter_cases(draw):
    n = draw(st.integers(1, 120))
    d = draw(st.integers(1, 40))
    dtype = draw(st.sampled_from([np.float32, np.float16, np.float64]))
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(["gauss", "integers", "duplicates", "scaled"]))
    rng = np.random.default_rng(seed)
    if kind == "gauss":
        x = rng.standard_normal((n, d))
    elif kind == "integers":
        x = rng.integers(-3, 4, (n, d)).astype(np.float64)
    elif kind == "duplicates":
        base = rng.standard_normal((max(1, n // 3), d))
        x = base[rng.integers(0, base.shape[0], n)]
    else:
        top = 3 if dtype == np.float16 else 12  # float16 stops at 65504
        x = rng.standard_normal((n, d)) * 10.0 ** rng.integers(-6, top)
    x = x.astype(dtype)
    n_sel = draw(st.integers(0, n - 1))
    sel = rng.choice(n, n_sel, replace=False) if n_sel else None
    budget = draw(st.integers(0, n - n_sel))
    metric = draw(st.sampled_from(["euclidean", "cosine"]))
    if metric == "cosine":
        x[np.all(x == 0, axis=1), 0] = 1  # cosine needs nonzero rows
    method = draw(st.sampled_from(["scan", "lazy", "pruned", "kdtree", "auto", "batched"]))
    if method == "kdtree" and d > 32:
        method = "auto"  # the k-d tree engine refuses wide rows (a test of its own)
    # engine settings that must not change the picks
    engine = {"n_cells": draw(st.sampled_from([1, 2, max(1, n // 8), n])),
              # the batched driver over any engine, with tiny passes
              "batch_candidates": draw(st.sampled_from([None, None, 1, 2, 5])),
              "batch_max_picks": draw(st.sampled_from([None, 1, 3])),
              "num_threads": draw(st.sampled_from([1, 2])),
              "simd": draw(st.sampled_from(SIMD_LEVELS)),
              "copy_rows": draw(st.booleans()),  # the pruned engine's cell-order copy
              # the product screen's thresholds and block (svp/kcenter.h, ProductTuning):
              # the default, or forced with blocks of 1, 3 or 64 centers
              "product": draw(st.sampled_from([None, (1, 1, 1), (1, 1, 3), (1, 2, 64)]))}
    return x, sel, budget, metric, method, engine


@given(kcenter_cases())
def test_kcenter_properties(case):
    from svp_fast.selection import cells

    x, sel, budget, metric, method, engine = case
    limit = cells.CELL_ORDER_COPY_MAX_BYTES
    cells.CELL_ORDER_COPY_MAX_BYTES = limit if engine.pop("copy_rows") else 0
    product = engine.pop("product")
    tuning = _core.set_product_tuning(*product) if product else None
    try:
        picks, radii = svp_fast.kcenter(x, budget, already_selected=sel, metric=metric,
                                        method=method, return_radii=True, **engine)
    finally:
        cells.CELL_ORDER_COPY_MAX_BYTES = limit
        if tuning:
            _core.set_product_tuning(*tuning)
    assert picks.shape == (budget,) and picks.dtype == np.int64
    assert len(set(picks.tolist())) == budget
    if sel is not None:
        assert not set(picks.tolist()) & set(sel.tolist())
    assert np.all((picks >= 0) & (picks < x.shape[0]))
    fin = radii[np.isfinite(radii)]
    assert np.all(np.diff(fin) <= 0)
    ref, ref_r = kcenter_ref(x, budget, already_selected=sel, metric=metric)
    np.testing.assert_array_equal(picks, ref)


@given(kcenter_cases(), st.integers(1, 6), st.sampled_from(["total", "fraction", "per_group"]),
       st.sampled_from([1, 2]))
def test_grouped_kcenter_properties(case, n_groups, budget_kind, threads):
    """Every group's picks are the float64 reference's on that group alone."""
    from svp_fast.selection.groups import as_groups, split_budget

    x, sel, _, metric, method, engine = case
    n = x.shape[0]
    rng = np.random.default_rng(n * 7 + n_groups)
    lab = rng.integers(0, n_groups, n)
    grp = as_groups(lab, n)
    n_sel = np.bincount(grp.codes[sel], minlength=grp.n_groups) if sel is not None else 0
    avail = grp.sizes - n_sel
    budget = {"total": int(rng.integers(0, avail.sum() + 1)), "fraction": float(rng.random()),
              "per_group": [int(rng.integers(0, a + 1)) for a in avail]}[budget_kind]
    picks, offsets = svp_fast.kcenter(x, budget, groups=lab, already_selected=sel, metric=metric,
                                      method=method, return_offsets=True, num_threads=threads,
                                      n_cells=engine["n_cells"], simd=engine["simd"])
    np.testing.assert_array_equal(np.diff(offsets), split_budget(budget, avail, grp.labels))
    for g in range(grp.n_groups):
        rows = grp.rows_of(g)
        local_sel = None
        if sel is not None:
            mine = sel[grp.codes[sel] == g]
            local_sel = np.searchsorted(rows, mine) if mine.size else None
        k = int(offsets[g + 1] - offsets[g])
        ref, _ = kcenter_ref(x[rows], k, already_selected=local_sel, metric=metric)
        np.testing.assert_array_equal(picks[offsets[g]:offsets[g + 1]], rows[ref])


@given(st.integers(1, 80), st.integers(1, 30), st.integers(0, 2**31 - 1),
       st.sampled_from(["least_confidence", "entropy", "margin"]),
       st.sampled_from([np.float32, np.float64]))
def test_uncertainty_properties(n, c, seed, method, dtype):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, c)) * 4).astype(dtype)
    budget = int(rng.integers(0, n + 1))
    idx, sc = svp_fast.uncertainty(z, budget, method=method, return_scores=True)
    assert len(set(idx.tolist())) == budget
    assert np.all(np.diff(sc) <= 0)
    got = svp_fast.uncertainty_scores(z, method=method)
    ref = uncertainty_scores_ref(z, method)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-6)
    # the order is the float64 top-k (ties within float64's error to the lowest index)
    np.testing.assert_array_equal(idx, uncertainty_topk_ref(z, budget, method))


# ------------------------------------------------------- layouts, specials --

@st.composite
def hostile_cases(draw):
    """Shapes, dtypes, layouts and special values: the answer equals the float64
    reference, or the error is of the documented kind (ValueError naming the
    argument)."""
    n = draw(st.integers(1, 60))
    d = draw(st.integers(1, 24))
    dtype = draw(st.sampled_from([np.float32, np.float16, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    base = rng.standard_normal((2 * n + 1, 2 * d + 1))
    special = draw(st.sampled_from(["none", "nan", "inf", "-inf", "huge", "tiny", "zero_row"]))
    if special == "huge":
        base *= 1e30 if dtype != np.float16 else 1e3
    elif special == "tiny":
        base *= 1e-35 if dtype != np.float16 else 1e-6
    base = base.astype(dtype)
    layout = draw(st.sampled_from(["c", "fortran", "rows_step", "cols_step", "reversed", "torch_t"]))
    if layout == "c":
        x = np.ascontiguousarray(base[:n, :d])
    elif layout == "fortran":
        x = np.asfortranarray(base[:n, :d])
    elif layout == "rows_step":
        x = base[: 2 * n : 2, :d]
    elif layout == "cols_step":
        x = base[:n, : 2 * d : 2]
    elif layout == "reversed":
        x = base[n - 1 :: -1, :d] if n > 0 else base[:0, :d]
    else:
        import torch

        t = np.ascontiguousarray(np.resize(base, (d, n)))
        x = torch.from_numpy(t).t()  # a transposed view
    bad_at = None
    if special in ("nan", "inf", "-inf"):
        r, c = int(rng.integers(0, n)), int(rng.integers(0, d))
        val = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[special]
        x[r, c] = val
        bad_at = (r, c)
    elif special == "zero_row":
        x[int(rng.integers(0, n))] = 0
    budget = draw(st.integers(0, n))
    metric = draw(st.sampled_from(["euclidean", "cosine"]))
    method = draw(st.sampled_from(["scan", "lazy", "pruned", "kdtree", "auto", "batched"]))
    return x, budget, metric, method, special, bad_at


@given(hostile_cases())
def test_kcenter_hostile(case):
    x, budget, metric, method, special, bad_at = case
    x64 = np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float64)
    before = x64.copy()
    zero_rows = np.flatnonzero(~np.any(x64 != 0, axis=1)) if np.all(np.isfinite(x64)) else []
    try:
        picks = svp_fast.kcenter(x, budget, metric=metric, method=method, n_cells=4)
    except ValueError as e:
        msg = str(e)
        if bad_at is not None:
            assert "embeddings must be finite" in msg and f"row {bad_at[0]}, column {bad_at[1]}" in msg
        else:
            assert metric == "cosine" and len(zero_rows) and "all zeros" in msg, msg
        return
    assert bad_at is None or budget == 0, "non-finite input must be refused"
    assert not (metric == "cosine" and len(zero_rows) and budget > 0)
    if budget:
        ref, _ = kcenter_ref(x64, budget, metric=metric)
        np.testing.assert_array_equal(np.asarray(picks), ref)
    after = np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(after), np.isnan(before))
    np.testing.assert_array_equal(np.nan_to_num(after), np.nan_to_num(before))


@given(hostile_cases(), st.sampled_from(["least_confidence", "entropy", "margin"]))
def test_uncertainty_hostile(case, method):
    x, budget, _, _, special, bad_at = case
    try:
        idx = svp_fast.uncertainty(x, budget, method=method)
    except ValueError as e:
        assert bad_at is not None and f"row {bad_at[0]}, column {bad_at[1]}" in str(e)
        return
    assert bad_at is None
    got = svp_fast.uncertainty_scores(x, method=method)
    got = np.asarray(got.double() if hasattr(got, "double") else got, dtype=np.float64)
    ref = uncertainty_scores_ref(x, method)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-6)
    np.testing.assert_array_equal(np.asarray(idx), uncertainty_topk_ref(x, budget, method))
