"""Bad input: a ValueError/TypeError that names the argument, what was expected and
what came; never a crash, and the caller's data untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import svp_fast

X = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)


def kc(*args, **kw):
    return svp_fast.kcenter(*args, **kw)


@pytest.mark.parametrize("bad,value", [("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_nonfinite_embeddings(bad, value, dtype):
    x = X.astype(dtype)
    x[7, 2] = value
    before = x.copy()
    with pytest.raises(ValueError, match=r"embeddings must be finite, got .* at row 7, column 2"):
        kc(x, 3)
    np.testing.assert_array_equal(x, before)


def test_nonfinite_torch_bfloat16():
    x = torch.from_numpy(X).to(torch.bfloat16)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="row 3, column 1"):
        kc(x, 2)


# (B, P, D) is a batch of sets (test_grouped.py); four dimensions are not
@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5), (0, 4), (4, 0), ()])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"embeddings must be a 2-D array .* got shape"):
        kc(np.zeros(shape, np.float32), 0)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64, object])
def test_bad_dtypes(dtype):
    with pytest.raises(TypeError, match="embeddings must have a floating dtype"):
        kc(np.zeros((3, 2), dtype=dtype), 1)


def test_bad_torch_dtype_and_strings():
    with pytest.raises(TypeError, match="embeddings must have a floating dtype .* got torch.int64"):
        kc(torch.zeros((3, 2), dtype=torch.int64), 1)
    with pytest.raises(TypeError, match="embeddings must be an array"):
        kc("not an array", 1)
    with pytest.raises(TypeError, match="embeddings must be an array"):
        kc(None, 1)


@pytest.mark.parametrize("budget,exc,msg", [
    (-1, ValueError, "budget must be >= 0, got -1"),
    (2.5, ValueError, r"budget as a float is a fraction of the N rows and must be below 1, got 2.5"),
    (1.0, ValueError, r"below 1, got 1.0; pass an integer for a count \(e.g. 1 for one row, 20 for all\)"),
    (-0.1, ValueError, r"budget as a fraction must be in \[0, 1\), got -0.1"),
    (0.01, ValueError, "budget 0.01 of 20 rows rounds to no pick"),
    (float("nan"), ValueError, "budget must be a count .* got nan"),
    (True, TypeError, "budget must be a count .* got bool"),
    ("3", TypeError, "budget must be a count .* got str"),
    (21, ValueError, r"budget must be at most the number of points not already selected \(20\), got 21"),
])
def test_bad_budget(budget, exc, msg):
    with pytest.raises(exc, match=msg):
        kc(X, budget)


def test_budget_too_large_with_selected():
    with pytest.raises(ValueError, match=r"\(17\), got 18"):
        kc(X, 18, already_selected=[0, 1, 2])


@pytest.mark.parametrize("sel,exc,msg", [
    ([0, 20], ValueError, r"already_selected\[1\] = 20 is out of range \[0, 20\)"),
    ([-1], ValueError, r"already_selected\[0\] = -1 is out of range"),
    ([3, 3], ValueError, "already_selected must not repeat an index, got 3"),
    ([1.0, 2.0], TypeError, "already_selected must hold integers, got dtype float64"),
    ([True, False], TypeError, "already_selected must hold integers, got dtype bool"),
    ([[1, 2]], ValueError, r"already_selected must be 1-D, got shape \(1, 2\)"),
])
def test_bad_already_selected(sel, exc, msg):
    with pytest.raises(exc, match=msg):
        kc(X, 2, already_selected=sel)


def test_bad_already_selected_tensor():
    with pytest.raises(TypeError, match="already_selected must hold integers, got a tensor of torch.float32"):
        kc(X, 2, already_selected=torch.tensor([1.0]))


def test_already_selected_accepts_int_types():
    for sel in (np.array([1, 2], np.int32), np.array([1, 2], np.uint16), torch.tensor([1, 2]), (1, 2), []):
        assert kc(X, 2, already_selected=sel).shape == (2,)


@pytest.mark.parametrize("start,exc,msg", [
    (20, ValueError, r"start must be in \[0, 20\), got 20"),
    (-1, ValueError, r"start must be in \[0, 20\), got -1"),
    (1.0, TypeError, r"start must be None, a row index or 'random', got float 1.0"),
    ("first", ValueError, r"start must be None, a row index or 'random', got 'first'"),
])
def test_bad_start(start, exc, msg):
    with pytest.raises(exc, match=msg):
        kc(X, 2, start=start)


def test_start_with_already_selected():
    with pytest.raises(ValueError, match="start applies only when already_selected is empty"):
        kc(X, 2, start=3, already_selected=[1])


def test_unknown_metric_method():
    with pytest.raises(ValueError, match="metric must be one of 'euclidean', 'cosine', got 'manhattan'"):
        kc(X, 2, metric="manhattan")
    with pytest.raises(ValueError, match="method must be one of .* got 'fast'"):
        kc(X, 2, method="fast")
    with pytest.raises(ValueError, match="num_threads must be a positive integer"):
        kc(X, 2, num_threads=0)
    with pytest.raises(ValueError, match="simd must be one of"):
        kc(X, 2, simd="neon")


def test_cosine_zero_row():
    x = X.copy()
    x[5] = 0
    with pytest.raises(ValueError, match="embeddings row 5 is all zeros; the cosine metric needs rows of nonzero norm"):
        kc(x, 2, metric="cosine")
    kc(x, 2)  # fine for euclidean


def test_float64_overflow():
    x = X.astype(np.float64)
    x[0, 0] = 1e200
    with pytest.raises(ValueError, match="overflow float64"):
        kc(x, 2)


# ----------------------------------------------------------- uncertainty --

def uc(*a, **k):
    return svp_fast.uncertainty(*a, **k)


def test_uncertainty_bad_inputs():
    z = np.random.default_rng(1).standard_normal((10, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="method must be one of 'least_confidence', 'entropy', 'margin', got 'lc'"):
        uc(z, 2, method="lc")
    with pytest.raises(ValueError, match="inputs must be one of 'logits', 'probs'"):
        uc(z, 2, inputs="log")
    with pytest.raises(ValueError, match=r"budget must be at most the number of rows \(10\), got 11"):
        uc(z, 11)
    with pytest.raises(TypeError, match="budget must be a count"):
        uc(z, None)
    with pytest.raises(ValueError, match=r"x must be a 2-D array"):
        uc(z[0], 1)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        uc(z.astype(np.int64), 1)
    bad = z.copy()
    bad[4, 3] = np.nan
    with pytest.raises(ValueError, match="x must be finite, got nan at row 4, column 3"):
        uc(bad, 2)
    with pytest.raises(ValueError, match="x row 0 is not a probability distribution"):
        uc(z, 2, inputs="probs")
    np.testing.assert_array_equal(uc(z, 0), np.zeros(0, np.int64))
