"""Trust at scale: numeric traps, memory layouts, interruption, concurrency, leaks,
64-bit indexing. Each case either gives the float64 reference's picks or a clear
error; the decision per case is documented in README.md ("Hostile inputs")."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch
from conftest import RESTORE_SIGINT, SIGINT_IGNORED, child_process
from reference import kcenter_ref, uncertainty_scores_ref

import svp_fast


def same_as_reference(x, budget, **kw):
    got, radii = svp_fast.kcenter(x, budget, return_radii=True, **kw)
    ref, ref_r = kcenter_ref(x, budget, **{k: v for k, v in kw.items() if k in ("already_selected", "metric", "start")})
    np.testing.assert_array_equal(got, ref)
    return got, radii, ref_r


# ------------------------------------------------------------ numeric traps --

@pytest.mark.parametrize("method", ["scan", "lazy", "pruned"])
def test_squares_overflow_float32(method):
    # |x| ~ 1e20: squares overflow float32, so float64 arithmetic is used
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((400, 8)) * 1e20).astype(np.float32)
    _, radii, ref_r = same_as_reference(x, 150, method=method, n_cells=8)
    np.testing.assert_allclose(radii[1:], ref_r[1:], rtol=1e-6)
    _, st = svp_fast.kcenter(x, 5, return_stats=True)
    assert st.float64_accumulation


@pytest.mark.parametrize("method", ["pruned", "auto"])
def test_outlier_outside_the_kmeans_sample(method):
    # k-means trains on a sample; a row 1e30 away from the rest, outside it,
    # overflows float32 distances during the assignment, where FAISS names no
    # centroid. It must still land in some cell (any partition is exact).
    # (64 cells sample 2,048 of the 20,000 rows: most outliers stay outside.)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20000, 8))
    x[rng.choice(20000, 4, replace=False)] = 1e30
    same_as_reference(x, 300, method=method, n_cells=64)


@pytest.mark.parametrize("method", ["scan", "lazy"])
def test_float32_max_values(method):
    x = np.zeros((50, 4), np.float32)
    x[::2] = np.finfo(np.float32).max
    x[1::2] = -np.finfo(np.float32).max
    x[3, 1] = 0
    same_as_reference(x, 50, method=method)


def test_subnormals():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((300, 6)) * 1e-41).astype(np.float32)  # float32 subnormals
    assert np.all(np.abs(x[x != 0]) < np.finfo(np.float32).tiny)
    same_as_reference(x, 120)
    _, st = svp_fast.kcenter(x, 5, return_stats=True)
    assert st.float64_accumulation


def test_float16_near_max():
    rng = np.random.default_rng(2)
    x = (rng.uniform(-65504, 65504, (500, 32))).astype(np.float16)
    same_as_reference(x, 200)
    same_as_reference(x, 200, metric="cosine")


@pytest.mark.parametrize("method", ["scan", "lazy", "pruned"])
def test_all_identical_points(method):
    x = np.full((300, 5), 3.25, np.float32)
    p, r = svp_fast.kcenter(x, 300, method=method, return_radii=True, n_cells=4)
    np.testing.assert_array_equal(p, np.arange(300))  # all ties: index order
    assert np.isinf(r[0]) and np.all(r[1:] == 0)


def test_n1_d1_budget_n():
    assert svp_fast.kcenter(np.ones((1, 1)), 1).tolist() == [0]
    x = np.array([[5.0], [1.0], [3.0], [9.0], [1.0]])
    same_as_reference(x, 5)


def test_uncertainty_extreme_logits():
    z = np.array([[1e30, 0, -1e30], [-3e38, 3e38, 0], [88.7, 88.7, -1000]], np.float32)
    for m in ("least_confidence", "entropy", "margin"):
        got = svp_fast.uncertainty_scores(z, method=m)
        np.testing.assert_allclose(got, uncertainty_scores_ref(z, m), atol=1e-6)


# ----------------------------------------------------------- memory layouts --

def test_read_only_and_misaligned_numpy():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((200, 12)).astype(np.float32)
    ro = base.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(svp_fast.kcenter(ro, 50), kcenter_ref(base, 50)[0])
    raw = bytearray(base.nbytes + 1)
    mis = np.frombuffer(raw, dtype=np.float32, count=base.size, offset=1).reshape(base.shape)
    mis[...] = base
    assert mis.ctypes.data % 4 != 0
    np.testing.assert_array_equal(svp_fast.kcenter(mis, 50), kcenter_ref(base, 50)[0])
    be = base.astype(">f4")  # non-native byte order
    np.testing.assert_array_equal(svp_fast.kcenter(be, 50), kcenter_ref(base, 50)[0])


def test_torch_views_expanded_and_untouched():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(300, 20, generator=g)
    before = base.clone()
    cases = [base[::2], base[:, ::3], base.t(), base[10:250, 2:18], base[:1].expand(40, 20),
             base.neg()._neg_view() if hasattr(base, "_neg_view") else -base]
    for v in cases:
        ref = kcenter_ref(v, min(30, v.shape[0]))[0]
        np.testing.assert_array_equal(svp_fast.kcenter(v, min(30, v.shape[0])).numpy(), ref)
        ref_u = uncertainty_scores_ref(v, "entropy")
        np.testing.assert_allclose(svp_fast.uncertainty_scores(v, method="entropy").double().numpy(),
                                   ref_u, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(base, before, rtol=0, atol=0)


def test_requires_grad_tensor():
    x = torch.randn(100, 8, requires_grad=True)
    np.testing.assert_array_equal(svp_fast.kcenter(x, 10).numpy(), kcenter_ref(x.detach(), 10)[0])


# ------------------------------------------------------------- interruption --

INTERRUPT_SCRIPT = RESTORE_SIGINT + textwrap.dedent("""
    import os, sys, threading, time, signal
    import numpy as np, svp_fast
    x = np.random.default_rng(0).standard_normal((300_000, 64), dtype=np.float32)
    threads_before = threading.active_count()
    print("ready", flush=True)
    t0 = time.perf_counter()
    try:
        svp_fast.kcenter(x, 200_000, method=sys.argv[1])
        print("finished?!", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted after {time.perf_counter() - t0:.2f}s", flush=True)
    # the library works again right away, and left no Python threads behind
    assert threading.active_count() == threads_before
    print("again", svp_fast.kcenter(x[:1000], 3).tolist(), flush=True)
""")


@pytest.mark.parametrize("inherited", ["default", "ignored"])
@pytest.mark.parametrize("method", ["scan", "lazy", "pruned"])
def test_ctrl_c_stops_within_a_second(tmp_path, method, inherited):
    """Also when the child inherits SIGINT ignored (pytest run as a background
    job): the child restores the default handler. The child is killed if the
    test fails (child_process)."""
    script = tmp_path / "run.py"
    script.write_text(INTERRUPT_SCRIPT)
    python = SIGINT_IGNORED if inherited == "ignored" else [sys.executable]
    with child_process([*python, str(script), method], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.5)  # inside the selection (the run takes minutes)
        t = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "interrupted after" in out, out + err
        assert time.perf_counter() - t < 3.0  # includes process teardown
        assert "again [0," in out


# -------------------------------------------------------------- concurrency --

def test_threads_calling_at_once():
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((3000, 16)).astype(dt) for dt in (np.float32, np.float16, np.float64, np.float32)]
    expected = [svp_fast.kcenter(x, 400, method=m) for x, m in zip(xs, ("scan", "lazy", "pruned", "auto"))]
    results = [None] * len(xs)
    errors = []

    def work(i):
        try:
            for _ in range(3):
                results[i] = svp_fast.kcenter(xs[i], 400, method=("scan", "lazy", "pruned", "auto")[i])
                svp_fast.uncertainty(xs[i], 100, method="margin")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    for r, e in zip(results, expected):
        np.testing.assert_array_equal(r, e)


# -------------------------------------------------------------------- leaks --

def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0  # pragma: no cover


def test_many_small_calls_keep_memory_flat():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    z = rng.standard_normal((64, 10)).astype(np.float32)
    # warm caches and allocator pools with every call the loop makes: the
    # first scan and pruned runs grow memory once (the issue: 15.7 MB when the
    # test ran alone, after a warm-up of lazy only), then it stays flat
    for i in range(600):
        svp_fast.kcenter(x, 10, method=("scan", "lazy", "pruned")[i % 3], n_cells=4)
        svp_fast.uncertainty(z, 5, method="entropy")
        svp_fast.uncertainty(z, 5)
        if i % 200 == 0:
            try:
                svp_fast.kcenter(x, 100)
            except ValueError:
                pass
    gc.collect()
    before = _rss_mb()
    for i in range(10_000):
        svp_fast.kcenter(x, 10, method=("scan", "lazy", "pruned")[i % 3], n_cells=4)
        svp_fast.uncertainty(z, 5, method="entropy")
        if i % 1000 == 0:
            try:
                svp_fast.kcenter(x, 100)  # an error path too
            except ValueError:
                pass
    gc.collect()
    assert _rss_mb() - before < 8.0


# --------------------------------------------------------- 64-bit indexing --

@pytest.mark.slow
def test_more_than_2_pow_31_elements():
    """N x D = 1,100,000 x 2,048 float16 (4.5 GB, > 2^31 elements). Rows beyond
    2^31 / D are made the farthest points, so 32-bit offsets would read the
    wrong rows; the picks must match the reference on the rows that matter."""
    n, d = 1_100_000, 2048
    x = np.zeros((n, d), dtype=np.float16)
    x[:, 0] = (np.arange(n) % 7).astype(np.float16)  # a cheap background
    far = np.array([1_099_999, 1_050_000, 1_048_577, 1_090_001])
    for j, r in enumerate(far):
        x[r, 1 + j] = 1000.0 + 100 * j
    picks = svp_fast.kcenter(x, 5, start=0, method="scan")
    sub = np.concatenate([[0], far, np.arange(1, 7)])
    ref_sub, _ = kcenter_ref(x[sub], 5, start=0)
    np.testing.assert_array_equal(picks, sub[ref_sub])
    assert set(picks[1:].tolist()) == set(far.tolist())


def test_environment_has_no_stray_openmp_settings():
    # the tests assume the default thread count is used
    assert svp_fast.build_info()["omp_max_threads"] >= 1
    assert os.environ.get("SVP_FAST_SIMD") in (None, "", "avx512", "avx2", "generic")
