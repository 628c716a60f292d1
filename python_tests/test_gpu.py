"""CUDA backend against the CPU backend (skipped, with the reason, without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import cuda_available, cuda_skip_reason
from reference import kcenter_ref, softmax64, uncertainty_scores_ref, uncertainty_topk_ref

import svp_fast

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cuda_available(), reason=cuda_skip_reason())]

TORCH_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def close_radii(got, ref, rtol=1e-5):
    got = np.asarray(got, dtype=np.float64)
    assert np.array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("selected", [False, True])
@pytest.mark.parametrize("n,d", [(1207, 64), (100, 3), (3001, 1), (1500, 2048), (257, 33)])
def test_gpu_matches_cpu(dtype, metric, selected, n, d):
    g = torch.Generator().manual_seed(n * 31 + d)
    x = torch.randn(n, d, generator=g).to(dtype)
    sel = torch.randperm(n, generator=g)[: n // 20] if selected else None
    budget = min(1000, n - (0 if sel is None else sel.numel()))
    cpu, cpu_r = svp_fast.kcenter(x, budget, already_selected=sel, metric=metric, method="scan",
                                  return_radii=True)
    for method in ("scan", "pruned"):
        gpu, gpu_r, st = svp_fast.kcenter(x.cuda(), budget, already_selected=sel, metric=metric,
                                          method=method, return_radii=True, return_stats=True,
                                          n_cells=16)
        assert gpu.is_cuda and gpu.dtype == torch.int64
        np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())
        close_radii(gpu_r.cpu().numpy(), cpu_r.numpy())
        assert st.backend == "cuda"


def test_gpu_matches_reference_clustered():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((30, 48)) * 5
    x = centers[rng.integers(0, 30, 6000)] + 0.2 * rng.standard_normal((6000, 48))
    ref, ref_r = kcenter_ref(x.astype(np.float32), 1500)
    for method in ("scan", "pruned"):
        p, r = svp_fast.kcenter(torch.from_numpy(x.astype(np.float32)).cuda(), 1500, method=method,
                                return_radii=True, n_cells=64)
        np.testing.assert_array_equal(p.cpu().numpy(), ref)
        close_radii(r.cpu().numpy(), ref_r)


def test_gpu_auto_chooses_by_intrinsic_dimension():
    # noise (intrinsic dimension ~30 at D = 32): the scan; points on 2-d sheets: the cells
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((70000, 32)).astype(np.float32)
    p, st = svp_fast.kcenter(torch.from_numpy(noise).cuda(), 300, return_stats=True)
    assert st.n_cells == 0 and st.extra["intrinsic_dimension"] > 16
    np.testing.assert_array_equal(p.cpu().numpy(), svp_fast.kcenter(noise, 300, method="scan"))
    centers = rng.standard_normal((40, 32)) * 5
    basis = rng.standard_normal((40, 2, 32))
    lab = rng.integers(0, 40, 70000)
    low = (centers[lab] + np.einsum("ns,nsd->nd", rng.standard_normal((70000, 2)), basis[lab])
           + 0.01 * rng.standard_normal((70000, 32))).astype(np.float32)
    p, st = svp_fast.kcenter(torch.from_numpy(low).cuda(), 400, return_stats=True)
    assert st.n_cells > 0 and st.extra["intrinsic_dimension"] <= 16
    np.testing.assert_array_equal(p.cpu().numpy(), svp_fast.kcenter(low, 400, method="scan"))


def test_gpu_duplicates_and_ties():
    base = torch.randn(64, 16)
    x = torch.cat([base, base, base]).cuda()
    for method in ("scan", "pruned"):
        p = svp_fast.kcenter(x, 192, method=method, n_cells=8)
        np.testing.assert_array_equal(p.cpu().numpy(), kcenter_ref(x, 192)[0])


def test_gpu_resume_and_start():
    x = torch.randn(5000, 32, device="cuda")
    full = svp_fast.kcenter(x, 800, start=17)
    assert int(full[0]) == 17
    rest = svp_fast.kcenter(x, 400, already_selected=full[:400])
    torch.testing.assert_close(rest, full[400:])


def test_gpu_runs_on_callers_stream_and_device_memory_returns():
    x = torch.randn(20000, 128, device="cuda")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        p = svp_fast.kcenter(x, 300)
        u = svp_fast.uncertainty(x, 100, method="entropy")
    s.synchronize()
    np.testing.assert_array_equal(p.cpu().numpy(), svp_fast.kcenter(x.cpu(), 300).numpy())
    del p, u
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == base


def test_gpu_bad_input():
    x = torch.randn(100, 8, device="cuda")
    x[40, 3] = float("nan")
    with pytest.raises(ValueError, match="row 40, column 3"):
        svp_fast.kcenter(x, 5)
    with pytest.raises(ValueError, match="row 40, column 3"):
        svp_fast.uncertainty(x, 5)
    z = torch.zeros(10, 4, device="cuda")
    with pytest.raises(ValueError, match="all zeros"):
        svp_fast.kcenter(z, 2, metric="cosine")


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("method", ["least_confidence", "entropy", "margin"])
@pytest.mark.parametrize("inputs", ["logits", "probs"])
@pytest.mark.parametrize("c", [1, 7, 100, 1000])
def test_gpu_uncertainty_scores(dtype, method, inputs, c):
    z = torch.randn(777, c, dtype=torch.float64) * 3
    x = (torch.softmax(z, 1) if inputs == "probs" else z).to(dtype)
    cpu = svp_fast.uncertainty_scores(x, method=method, inputs=inputs)
    gpu = svp_fast.uncertainty_scores(x.cuda(), method=method, inputs=inputs)
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu().double(), cpu.double(), rtol=1e-5, atol=2e-6)
    ref = uncertainty_scores_ref(x, method, inputs)
    np.testing.assert_allclose(gpu.cpu().double().numpy(), ref, rtol=1e-5, atol=2e-6)


UNC_METHODS = ["least_confidence", "entropy", "margin"]


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("inputs", ["logits", "probs"])
@pytest.mark.parametrize("c", [1, 7, 37, 1000])
def test_gpu_uncertainty_topk_equals_cpu(dtype, inputs, c):
    # near-ties of every kind (duplicates, permuted rows, one-ulp bumps, shifted
    # rows, equal float32 scores): the GPU's top-k is the CPU's, index for index
    from test_uncertainty import near_ties

    z = near_ties(np.random.default_rng(c), 1500 if c < 1000 else 400, c).astype(np.float64)
    x = torch.from_numpy(softmax64(z) if inputs == "probs" else z).to(dtype)
    xg = x.cuda()
    n = x.shape[0]
    for method in UNC_METHODS:
        cpu_idx, cpu_sc = svp_fast.uncertainty(x, n, method=method, inputs=inputs, return_scores=True)
        for k in (1, 300, n):
            gpu_idx, gpu_sc = svp_fast.uncertainty(xg, k, method=method, inputs=inputs, return_scores=True)
            assert gpu_idx.is_cuda
            np.testing.assert_array_equal(gpu_idx.cpu().numpy(), cpu_idx[:k].numpy(),
                                          err_msg=f"{method} top-{k}")
            assert torch.all(gpu_sc[1:] <= gpu_sc[:-1])
            torch.testing.assert_close(gpu_sc.cpu().double(), cpu_sc[:k].double(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", UNC_METHODS)
def test_gpu_uncertainty_topk_equals_float64_reference(method):
    # the case (the float32 ranking swapped positions here) and k = 0
    z = (np.random.default_rng(0).standard_normal((20_000, 37)) * 3).astype(np.float32)
    got, stats = svp_fast.uncertainty(torch.from_numpy(z).cuda(), 2000, method=method, return_stats=True)
    np.testing.assert_array_equal(got.cpu().numpy(), uncertainty_topk_ref(z, 2000, method))
    assert stats["candidates"] >= 2000 and stats["rows_refined"] >= 0
    assert svp_fast.uncertainty(torch.from_numpy(z).cuda(), 0, method=method).numel() == 0


def test_gpu_uncertainty_ties_lowest_index():
    z = torch.randn(40, 5)
    x = torch.cat([z, z, z]).cuda()
    for method in UNC_METHODS:
        idx = svp_fast.uncertainty(x, 120, method=method)
        np.testing.assert_array_equal(idx.cpu().numpy(), svp_fast.uncertainty(x.cpu(), 120, method=method).numpy())
    same = torch.randn(1, 64).repeat(5000, 1).cuda()  # one group of 5,000 equal rows
    np.testing.assert_array_equal(svp_fast.uncertainty(same, 5000, method="margin").cpu().numpy(),
                                  np.arange(5000))


# -------------------------------------------------- distributed (CUDA shards) --

def _dist_worker(rank, world, store, backend, path, budget, out):
    import datetime

    import torch.distributed as dist

    import svp_fast.distributed as sd

    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    full = np.load(path)
    bounds = np.linspace(0, full.shape[0], world + 1).astype(int)
    local = torch.from_numpy(full[bounds[rank]:bounds[rank + 1]]).cuda()
    picks = sd.kcenter(local, budget, method="scan")
    if rank == 0:
        np.save(out, picks.cpu().numpy())
    dist.destroy_process_group()


@pytest.mark.parametrize("backend,world", [("gloo", 2), ("nccl", 1)])
def test_distributed_cuda_shards_match_single_process(tmp_path, backend, world):
    import torch.multiprocessing as mp

    x = np.random.default_rng(7).standard_normal((4001, 40)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    out = tmp_path / "picks.npy"
    mp.spawn(_dist_worker, args=(world, str(tmp_path / "store"), backend, str(path), 500, str(out)),
             nprocs=world, join=True)
    np.testing.assert_array_equal(np.load(out), svp_fast.kcenter(x, 500).astype(np.int64))
