"""svp_fast.uncertainty against the float64 numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SIMD_LEVELS
from reference import softmax64, topk_ref, uncertainty_scores_ref

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
