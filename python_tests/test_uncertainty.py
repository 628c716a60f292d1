"""svp_fast.uncertainty against the float64 numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SIMD_LEVELS
from reference import (softmax64, topk_ref, uncertainty_keys_ref, uncertainty_scores_ref,
                       uncertainty_topk_ref)

import svp_fast

METHODS = ["least_confidence", "entropy", "margin"]


def logits(rng, n, c, scale=3.0):
    return rng.standard_normal((n, c)) * scale


@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("inputs", ["logits", "probs"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("c", [1, 2, 7, 16, 100, 1000])
def test_scores_match_reference(rng, simd, method, inputs, dtype, c):
    z = logits(rng, 300, c)
    x = (softmax64(z) if inputs == "probs" else z).astype(dtype)
    got = svp_fast.uncertainty_scores(x, method=method, inputs=inputs, simd=simd)
    assert got.dtype == (np.float64 if dtype == np.float64 else np.float32)
    ref = uncertainty_scores_ref(x, method, inputs)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("method", METHODS)
def test_topk_matches_reference_exactly(rng, method):
    z = logits(rng, 3000, 10).astype(np.float32)
    # thin random rows to those whose reference scores are 1e-5 apart: the top-k
    # order is then decided well above float32 rounding
    ref_all = uncertainty_scores_ref(z, method)
    keep, last = [], -np.inf
    for i in np.argsort(ref_all):
        if ref_all[i] - last > 1e-5:
            keep.append(i)
            last = ref_all[i]
    z = z[rng.permutation(np.array(keep))]
    ref_scores = uncertainty_scores_ref(z, method)
    gaps = np.diff(np.sort(ref_scores))
    assert gaps.min() > 1e-5, "test data must have no near-ties (float32 scores)"
    idx, sc = svp_fast.uncertainty(z.astype(np.float32), 200, method=method, return_scores=True)
    np.testing.assert_array_equal(idx, topk_ref(ref_scores, 200))
    assert np.all(np.diff(sc) <= 0)


def test_ties_go_to_lowest_index():
    z = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
    x = np.concatenate([z, z, z])  # every score three times
    for method in METHODS:
        idx, sc = svp_fast.uncertainty(x, 120, method=method, return_scores=True)
        for v in np.unique(sc):
            group = idx[sc == v]
            assert np.all(np.diff(group) > 0)
        np.testing.assert_array_equal(np.sort(idx[:3]) % 40, [idx[0]] * 3)


def test_equal_logits_and_extremes():
    x = np.zeros((3, 4), np.float32)
    x[1] = [1000.0, -1000.0, 0.0, 5.0]
    x[2] = [-80.0, -80.0, -80.0, -80.0]
    s = svp_fast.uncertainty_scores(x, method="entropy")
    np.testing.assert_allclose(s, [np.log(4), 0.0, np.log(4)], atol=1e-6)
    m = svp_fast.uncertainty_scores(x, method="margin")
    np.testing.assert_allclose(m, [1.0, 0.0, 1.0], atol=1e-6)


def test_torch_inputs(rng):
    z = torch.from_numpy(logits(rng, 500, 30))
    for t in (z.float(), z.to(torch.bfloat16), z.half(), z.double()[:, ::2]):
        idx = svp_fast.uncertainty(t, 50, method="entropy")
        assert isinstance(idx, torch.Tensor) and idx.dtype == torch.int64
        ref = uncertainty_scores_ref(t, "entropy")
        np.testing.assert_allclose(svp_fast.uncertainty_scores(t, method="entropy").double().numpy(), ref,
                                   rtol=1e-5, atol=2e-6)


def test_probs_tolerance(rng):
    p = softmax64(logits(rng, 50, 10))
    p2 = p * 1.01  # sums to 1.01
    with pytest.raises(ValueError, match="row 0 is not a probability distribution"):
        svp_fast.uncertainty(p2, 5, inputs="probs")
    svp_fast.uncertainty(p2, 5, inputs="probs", probs_tolerance=0.02)
    svp_fast.uncertainty(p, 5, inputs="probs")


# ------------------------------------------------- the float64 top-k, exactly
# svp_fast.uncertainty returns the top-k of float64 arithmetic with the tie rule
# of csrc/include/svp/uncertainty_exact.h (reference.uncertainty_topk_ref).

DTYPES = [np.float32, np.float16, np.float64]


def near_ties(rng, n, c, scale=3.0):
    """Logits made to produce near-ties: exact duplicates (ties: the lowest index
    wins), permuted rows (equal up to the order of the sums), rows one float32
    ulp apart in one logit, rows shifted by a constant (the same softmax up to
    rounding) and rows whose float32 scores agree to all digits."""
    base = (rng.standard_normal((n // 6 + 1, c)) * scale).astype(np.float32)
    parts = [base]
    parts.append(base[rng.integers(0, len(base), n // 6)])
    perm = base[rng.integers(0, len(base), n // 6)].copy()
    for row in perm:
        rng.shuffle(row)
    parts.append(perm)
    bumped = base[rng.integers(0, len(base), n // 6)].copy()
    cols = rng.integers(0, c, len(bumped))
    steps = rng.integers(1, 4, len(bumped))
    for r, (j, s) in enumerate(zip(cols, steps)):
        for _ in range(s):
            bumped[r, j] = np.nextafter(bumped[r, j], np.float32(np.inf))
    parts.append(bumped)
    parts.append((base[rng.integers(0, len(base), n // 6)] + np.float32(rng.uniform(-4, 4))).astype(np.float32))
    # two leading logits a hair apart: margins near 1 (all equal in float32)
    flat = (rng.standard_normal((n - sum(len(p) for p in parts), c)) * scale).astype(np.float32)
    if c > 1:
        flat[:, 1] = flat[:, 0] - rng.uniform(0, 1e-5, len(flat)).astype(np.float32)
        flat[:, 2:] = np.minimum(flat[:, 2:], flat[:, :1] - 1)
    parts.append(flat)
    x = np.concatenate(parts)[:n]
    return x[rng.permutation(len(x))]


def as_dtype(x, dtype):
    x = x.astype(dtype)
    if dtype == np.float16:  # keep the leading logits apart after rounding
        x = np.clip(x, -60000, 60000)
    return x


def assert_topk_exact(x, k, method, inputs="logits", ref=None, **kw):
    # the greedy order is built one row at a time: a top-k is a prefix of any
    # larger one
    ref = uncertainty_topk_ref(x, k, method, inputs) if ref is None else ref[:k]
    got, sc = svp_fast.uncertainty(x, k, method=method, inputs=inputs, return_scores=True, **kw)
    got = got.numpy() if isinstance(got, torch.Tensor) else got
    sc = sc.double().numpy() if isinstance(sc, torch.Tensor) else sc
    first = np.flatnonzero(got != ref)
    assert first.size == 0, (f"{method}: {first.size} positions differ from the float64 top-{k}, first at "
                             f"{first[0]}: got row {got[first[0]]}, reference row {ref[first[0]]}")
    assert np.all(np.diff(sc) <= 0)
    return got


def test_issue_margin_top2000_of_20000x37():
    # the float32 ranking (before the fix) swapped 8 positions here
    z = (np.random.default_rng(0).standard_normal((20_000, 37)) * 3).astype(np.float32)
    assert_topk_exact(z, 2000, "margin")


def test_issue_margin_top5000_of_1000000x100():
    # the float32 ranking (before the fix) ordered 497 positions of this top-5000
    # by equal float32 scores, where float64 tells them apart
    z = np.random.default_rng(0).standard_normal((1_000_000, 100), dtype=np.float32) * 3
    idx, stats = svp_fast.uncertainty(z, 5000, method="margin", return_stats=True)
    ref = uncertainty_topk_ref(z, 5000, "margin")
    np.testing.assert_array_equal(idx, ref)
    assert 0 < stats["rows_refined"] < 2000, stats


@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("c", [1, 2, 5, 37, 300])
def test_topk_equals_float64_on_near_ties(rng, simd, method, dtype, c):
    x = as_dtype(near_ties(rng, 1200, c), dtype)
    n = x.shape[0]
    ref = uncertainty_topk_ref(x, n, method)
    for k in (0, 1, 7, 400, n):
        assert_topk_exact(x, k, method, ref=ref, simd=simd)


@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_topk_equals_float64_on_probabilities(rng, simd, method, dtype):
    z = near_ties(rng, 1000, 12).astype(np.float64)
    p = softmax64(z)
    # rows of dyadic entries (exact in every dtype), permuted: exact ties
    pattern = np.zeros(12)
    pattern[:4] = [0.5, 0.25, 0.125, 0.125]
    for r in range(0, len(p), 50):
        p[r] = rng.permutation(pattern)
    p[3::50, 0] += 5e-4  # rows above 1 in total (within the tolerance); some entries > 1 below
    p[5::97] = 0.0
    p[5::97, 0] = 1.0004
    x = p.astype(dtype)
    ref = uncertainty_topk_ref(x, x.shape[0], method, "probs")
    for k in (1, 300, x.shape[0]):
        assert_topk_exact(x, k, method, inputs="probs", ref=ref, simd=simd)


@pytest.mark.parametrize("method", METHODS)
def test_topk_equals_float64_on_random_logits(rng, method):
    z = (rng.standard_normal((50_000, 10)) * 4).astype(np.float32)
    ref = uncertainty_topk_ref(z, 50_000, method)
    for k in (1, 5000, 50_000):
        assert_topk_exact(z, k, method, ref=ref)


@pytest.mark.parametrize("method", METHODS)
def test_equal_float32_scores_are_ordered_by_float64(method):
    # two classes, logits (0, -delta) with tiny deltas: the float32 scores are
    # all equal, float64 orders them (the smaller delta is the more uncertain)
    deltas = np.array([8e-8, 5e-8, 2e-8, 6e-8, 1e-8, 7e-8, 4e-8], np.float32)
    if method == "entropy":  # log 2 - delta^2 / 8: float64 ties below delta = 1e-6
        deltas *= 1000
    z = np.stack([np.zeros_like(deltas), -deltas], axis=1)
    scores = svp_fast.uncertainty_scores(z, method=method)
    assert np.unique(scores).size < deltas.size  # float32 cannot tell them apart
    got = svp_fast.uncertainty(z, deltas.size, method=method)
    np.testing.assert_array_equal(got, np.argsort(deltas, kind="stable"))
    np.testing.assert_array_equal(got, uncertainty_topk_ref(z, deltas.size, method))


@pytest.mark.parametrize("method", METHODS)
def test_duplicates_tie_to_the_lowest_index(rng, method):
    row = (rng.standard_normal(50) * 3).astype(np.float32)
    x = np.tile(row, (3000, 1))
    np.testing.assert_array_equal(svp_fast.uncertainty(x, 3000, method=method), np.arange(3000))
    # permuted copies: equal up to the order of the sums, so ties too
    y = np.stack([rng.permutation(row) for _ in range(500)])
    np.testing.assert_array_equal(svp_fast.uncertainty(y, 100, method=method), np.arange(100))


@pytest.mark.parametrize("method", METHODS)
def test_threads_and_simd_do_not_change_the_top_k(rng, method):
    x = near_ties(rng, 5000, 24)
    ref = uncertainty_topk_ref(x, 2000, method)
    for threads in (1, 2, 3):
        for simd in SIMD_LEVELS:
            got = svp_fast.uncertainty(x, 2000, method=method, num_threads=threads, simd=simd)
            np.testing.assert_array_equal(got, ref)


def test_torch_dtypes_topk(rng):
    x = near_ties(rng, 1500, 20)
    t = torch.from_numpy(x)
    for dt in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        v = t.to(dt)
        for method in METHODS:
            got = svp_fast.uncertainty(v, 500, method=method)
            assert isinstance(got, torch.Tensor)
            np.testing.assert_array_equal(got.numpy(), uncertainty_topk_ref(v, 500, method))


@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("inputs", ["logits", "probs"])
def test_fast_keys_are_within_their_bounds(rng, simd, method, inputs):
    # the certification rests on |fast key - float64 key| <= err for every row
    from svp_fast import _core

    z = np.concatenate([near_ties(rng, 3000, 40), (rng.standard_normal((500, 40)) * 30),
                        (rng.standard_normal((500, 40)) * 1e-3)]).astype(np.float32)
    if inputs == "probs":
        z = softmax64(z).astype(np.float32)
    n, c = z.shape
    key = np.empty(n)
    err = np.empty(n, np.float32)
    score = np.empty(n)
    _core.uncertainty_keys_cpu(z.ctypes.data, n, c, c, 0, METHODS.index(method), ["logits", "probs"].index(inputs),
                               1e-3, False, key.ctypes.data, err.ctypes.data, score.ctypes.data, simd)
    ref, ref_score = uncertainty_keys_ref(z, method, inputs)
    gap = np.abs(key - ref)
    assert np.all(gap <= err.astype(np.float64)), float(np.max(gap - err))
    # and the bounds are tight enough to decide most rows (a few float32 ulps)
    rel = err / np.maximum(np.abs(ref), 1e-30)
    assert np.median(rel) < 2e-6
    np.testing.assert_allclose(score, ref_score, rtol=1e-6, atol=1e-7)


def test_refines_only_near_ties(rng):
    z = (rng.standard_normal((200_000, 50)) * 3).astype(np.float32)
    for method in METHODS:
        _, stats = svp_fast.uncertainty(z, 2000, method=method, return_stats=True)
        assert stats["rows_refined"] < 1000, (method, stats)
        assert stats["passes"] >= 1 and stats["candidates"] >= 2000


# ------------------------------------------ the fast functions' proven bounds

FUNCTIONS = [(0, -104.0, -0.0, "kCpuExpRelU"), (1, 1.1754943508222875e-38, 1.0, "kCpuLogRelU")]


def _check_function(simd, which, lo, hi, stride):
    from svp_fast import _core

    e = _core.uncertainty_function_error(simd, which, lo, hi, stride, 0)
    # kCpuExpRelU = 2.5, kCpuLogRelU = 2 (csrc/cpu/kernels.h)
    assert e["max_rel"] <= (2.5 if which == 0 else 2.0), e
    assert e["max_abs_tiny"] <= 2.0 ** -125, e  # kFastAbsTerm
    return e


@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("which,lo,hi", [(0, -104.0, -0.0), (1, 1.1754943508222875e-38, 1.0)],
                         ids=["exp32", "log32"])
def test_fast_functions_within_their_bounds_sampled(simd, which, lo, hi):
    _check_function(simd, which, lo, hi, 1009)


@pytest.mark.slow
@pytest.mark.parametrize("simd", SIMD_LEVELS)
@pytest.mark.parametrize("which,lo,hi", [(0, -104.0, -0.0), (1, 1.1754943508222875e-38, 1.0)],
                         ids=["exp32", "log32"])
def test_fast_functions_within_their_bounds_exhaustive(request, simd, which, lo, hi):
    # every float32 input the fast pass can give them (about 1.1e9 each, 5-15 s)
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("exhaustive: run with -m slow")
    e = _check_function(simd, which, lo, hi, 1)
    assert e["count"] > 1_000_000_000


@pytest.mark.parametrize("simd", SIMD_LEVELS)
def test_float64_exp_within_the_tie_model(simd):
    from svp_fast import _core

    e = _core.uncertainty_function_error(simd, 2, -746.0, 0.0, 1_000_003, 0)
    assert e["max_rel"] <= 4.0, e  # the tie model allows 16
    assert e["max_abs_tiny"] <= 2.0 ** -1018, e


@pytest.mark.parametrize("which,lo,hi", [(3, -0.75, 0.0), (3, -800.0, 0.0), (3, -1e-12, 0.0),
                                         (4, 0.0, 3.0), (4, 0.0, 1e6), (4, 0.0, 1e-10)],
                         ids=["1-exp near 0", "1-exp", "1-exp tiny", "log1p", "log1p large", "log1p tiny"])
def test_fast_epilogue_functions_within_their_allowance(which, lo, hi):
    # one_minus_exp and log1p_nonnegative (svp/uncertainty_exact.h) are allowed
    # kEpilogueRel = 2^-31 each; their truncations are below 2^-34
    from svp_fast import _core

    e = _core.uncertainty_function_error("generic", which, lo, hi, 200_003, 1)
    assert e["count"] > 100_000
    assert e["max_rel"] <= 2.0 ** -31, e


@pytest.mark.parametrize("method", METHODS)
def test_a_chain_of_near_ties_across_the_boundary(rng, method):
    # 4,000 rows whose keys step by far less than the float32 bounds: the group
    # holding the k-th row runs past the first band, so the band is widened and
    # rows gathered again (passes > 1); the answer is still the float64 top-k
    chain = 1e-3 + np.arange(4000) * 2e-10
    z = np.zeros((6000, 3), np.float32)
    z[:4000, 1] = -chain
    z[:4000, 2] = -5.0
    z[4000:] = rng.standard_normal((2000, 3)) * 3
    z = z[rng.permutation(len(z))]
    idx, stats = svp_fast.uncertainty(z, 700, method=method, return_stats=True)
    np.testing.assert_array_equal(idx, uncertainty_topk_ref(z, 700, method))
    assert stats["rows_refined"] > 700
    assert 1 < stats["passes"] <= 12, stats  # the step grows fourfold


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("inputs", ["logits", "probs"])
def test_unchecked_non_finite_rows_still_give_a_ranking(rng, dtype, inputs):
    # check_finite=False: such rows get unspecified scores, but the call neither
    # fails nor repeats or loses a row (a float64 row with NaN ranks last)
    z = rng.standard_normal((1500, 20))
    x = softmax64(z) if inputs == "probs" else z
    x[::7, 3] = np.nan
    if inputs == "logits":
        x[::11, 5] = np.inf
        x[::13, 2] = -np.inf
    x = x.astype(dtype)
    for method in METHODS:
        for simd in SIMD_LEVELS:
            idx = svp_fast.uncertainty(x, 1500, method=method, inputs=inputs, check_finite=False, simd=simd)
            np.testing.assert_array_equal(np.sort(idx), np.arange(1500))


def test_kth_key_when_the_sample_misleads(rng):
    # the k-th key comes from a sampled threshold (every 8th row here) unless
    # fewer than k rows pass it: rows 0, 8, 16, ... uncertain, the rest nearly
    # one-hot, k = n/8 (the sample puts the threshold among the uncertain rows)
    n = 1 << 17
    z = np.zeros((n, 6), np.float32)
    z[:, 0] = 12.0
    z[::8] = rng.standard_normal((n // 8, 6)) * 0.3
    for method in METHODS:
        np.testing.assert_array_equal(svp_fast.uncertainty(z, n // 8, method=method),
                                      uncertainty_topk_ref(z, n // 8, method))


def test_stats_are_a_dataclass_like_kcenters_and_still_read_as_a_dict(rng):
    """The issue: uncertainty statistics came back as a dict, k-center's as a
    dataclass. Both are dataclasses now; the dict access of old code still works."""
    import dataclasses

    z = (rng.standard_normal((3000, 10)) * 3).astype(np.float32)
    _, st = svp_fast.uncertainty(z, 100, method="margin", return_stats=True)
    _, kst = svp_fast.kcenter(z, 10, return_stats=True)
    assert isinstance(st, svp_fast.UncertaintyStats) and dataclasses.is_dataclass(st)
    assert dataclasses.is_dataclass(kst)
    assert st.candidates >= 100 and st.passes >= 1 and st.backend == kst.backend == "cpu"
    assert st.num_threads >= 1 and kst.num_threads >= 1
    # the dict it used to be
    assert st["rows_refined"] == st.rows_refined and st.get("passes") == st.passes
    assert st.get("nope", 7) == 7 and "candidates" in st and "backend" not in st
    assert dict(st) == {"candidates": st.candidates, "rows_refined": st.rows_refined,
                        "tie_groups": st.tie_groups, "passes": st.passes}
    row = {"seconds": 1.0}
    row.update(st)
    assert set(row) == {"seconds", "candidates", "rows_refined", "tie_groups", "passes"}
    with pytest.raises(KeyError):
        st["num_threads_of_nothing"]
    # grouped: the counts of every group summed
    lab = np.arange(3000) % 3
    _, gst = svp_fast.uncertainty(z, 90, method="margin", groups=lab, return_stats=True)
    parts = [svp_fast.uncertainty(z[lab == g], 30, method="margin", return_stats=True)[1]
             for g in range(3)]
    assert gst.candidates == sum(p.candidates for p in parts)
    assert gst.passes == sum(p.passes for p in parts)
