"""Property tests over shapes, budgets, dtypes and selections (hypothesis)."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import kcenter_ref, topk_ref, uncertainty_scores_ref

import svp_fast

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
    method = draw(st.sampled_from(["scan", "lazy", "pruned", "auto"]))
    return x, sel, budget, metric, method


@given(kcenter_cases())
def test_kcenter_properties(case):
    x, sel, budget, metric, method = case
    picks, radii = svp_fast.kcenter(x, budget, already_selected=sel, metric=metric, method=method,
                                    return_radii=True, n_cells=max(1, x.shape[0] // 8))
    assert picks.shape == (budget,) and picks.dtype == np.int64
    assert len(set(picks.tolist())) == budget
    if sel is not None:
        assert not set(picks.tolist()) & set(sel.tolist())
    assert np.all((picks >= 0) & (picks < x.shape[0]))
    fin = radii[np.isfinite(radii)]
    assert np.all(np.diff(fin) <= 0)
    ref, ref_r = kcenter_ref(x, budget, already_selected=sel, metric=metric)
    np.testing.assert_array_equal(picks, ref)


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
    # the order is by the computed scores, ties to the lowest index
    np.testing.assert_array_equal(idx, topk_ref(got, budget))
