"""CUDA backend against the CPU backend (skipped, with the reason, without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import EMULATED, cuda_available, cuda_skip_reason, device_only, on_gpu, sized, to_gpu
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
    budget = min(sized(1000, 40), n - (0 if sel is None else sel.numel()))
    cpu, cpu_r = svp_fast.kcenter(x, budget, already_selected=sel, metric=metric, method="scan",
                                  return_radii=True)
    for method in ("scan", "pruned", "batched"):
        gpu, gpu_r, st = svp_fast.kcenter(to_gpu(x), budget, already_selected=sel, metric=metric,
                                          method=method, return_radii=True, return_stats=True,
                                          n_cells=16)
        assert on_gpu(gpu) and gpu.dtype == torch.int64
        np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())
        close_radii(gpu_r.cpu().numpy(), cpu_r.numpy())
        assert st.backend == "cuda"


@pytest.mark.parametrize("d", [384, 512, 768, 1024, 1536, 2048, 4096])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
def test_gpu_common_widths_match_cpu(dtype, d):
    # the vector-load layouts of the common embedding widths (lanes per row,
    # chunks per lane), and with initial centers the initial-centers kernel
    # past 48 KB of shared memory (up to 16 centers a launch)
    g = torch.Generator().manual_seed(d)
    x = torch.randn(sized(4000, 300), d, generator=g).to(dtype)
    budget = sized(300, 24)
    for sel in (None, torch.arange(0, x.shape[0], 9)[:20]):
        cpu = svp_fast.kcenter(x, budget, already_selected=sel, method="scan")
        for method in ("scan", "batched"):
            gpu = svp_fast.kcenter(to_gpu(x), budget, already_selected=sel, method=method)
            np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy(), err_msg=method)


@pytest.mark.emulated_sms(132)
def test_gpu_grids_of_a_whole_h200():
    # the emulation models all 132 multiprocessors here: cooperative grids as
    # large as the occupancy query allows on the device
    g = torch.Generator().manual_seed(132)
    x = torch.randn(3000, 40, generator=g)
    budget = sized(200, 6)
    for method in ("scan", "batched"):
        gpu, st = svp_fast.kcenter(to_gpu(x), budget, method=method, return_stats=True)
        np.testing.assert_array_equal(gpu.cpu().numpy(), svp_fast.kcenter(x, budget, method="scan").numpy())
    lab = torch.randint(0, 5, (3000,), generator=g)
    np.testing.assert_array_equal(svp_fast.kcenter(to_gpu(x), 0.002, groups=lab).cpu().numpy(),
                                  svp_fast.kcenter(x, 0.002, groups=lab).numpy())


def test_gpu_matches_reference_clustered():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((30, 48)) * 5
    n, budget = sized(6000, 1500), sized(1500, 150)
    x = centers[rng.integers(0, 30, n)] + 0.2 * rng.standard_normal((n, 48))
    ref, ref_r = kcenter_ref(x.astype(np.float32), budget)
    for method in ("scan", "pruned", "batched"):
        p, r = svp_fast.kcenter(to_gpu(torch.from_numpy(x.astype(np.float32))), budget, method=method,
                                return_radii=True, n_cells=64)
        np.testing.assert_array_equal(p.cpu().numpy(), ref)
        close_radii(r.cpu().numpy(), ref_r)


def test_gpu_auto_runs_batched():
    rng = np.random.default_rng(5)
    n, budget = sized(70000, 8000), sized(3000, 400)
    noise = rng.standard_normal((n, 32)).astype(np.float32)
    p, st = svp_fast.kcenter(to_gpu(torch.from_numpy(noise)), budget, return_stats=True)
    assert st.method == "batched" and st.n_cells == 0 and st.passes < budget / 20
    np.testing.assert_array_equal(p.cpu().numpy(), svp_fast.kcenter(noise, budget, method="batched"))


@pytest.mark.parametrize("T,cap", [(1, None), (2, 1), (5, None), (4096, None)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_gpu_batched_boundaries_match_cpu(T, cap, dtype):
    # tiny candidate counts and caps: every boundary of a pass, and the plain
    # step a pass takes when it can certify nothing (ties below)
    g = torch.Generator().manual_seed(T)
    x = torch.randn(900, 7, generator=g).to(dtype)
    x[500:700] = x[:200]  # duplicates: exact ties among candidates and outside them
    for sel in (None, torch.arange(0, 900, 37)):
        budget = sized(600, 80) if sel is None else sized(560, 70)
        ref = svp_fast.kcenter(x, budget, already_selected=sel, method="scan")
        got, st = svp_fast.kcenter(to_gpu(x), budget, already_selected=sel, method="batched",
                                   batch_candidates=T, batch_max_picks=cap, return_stats=True)
        np.testing.assert_array_equal(got.cpu().numpy(), ref.numpy())
        assert st.method == "batched" and 1 <= st.passes <= budget


def test_gpu_batched_cosine_clustered_with_radii():
    rng = np.random.default_rng(11)
    centers = rng.standard_normal((50, 64)) * 3
    n, budget = sized(20000, 3000), sized(4000, 400)
    x = (centers[rng.integers(0, 50, n)] + 0.3 * rng.standard_normal((n, 64))).astype(np.float32)
    for metric in ("euclidean", "cosine"):
        ref, ref_r = svp_fast.kcenter(x, budget, metric=metric, method="lazy", return_radii=True)
        got, got_r = svp_fast.kcenter(to_gpu(torch.from_numpy(x)), budget, metric=metric,
                                      method="batched", return_radii=True)
        np.testing.assert_array_equal(got.cpu().numpy(), ref)
        close_radii(got_r.cpu().numpy(), ref_r)


def test_gpu_duplicates_and_ties():
    base = torch.randn(64, 16)
    x = to_gpu(torch.cat([base, base, base]))
    for method in ("scan", "pruned", "batched"):
        p = svp_fast.kcenter(x, 192, method=method, n_cells=8)
        np.testing.assert_array_equal(p.cpu().numpy(), kcenter_ref(x, 192)[0])


def test_gpu_resume_and_start():
    x = to_gpu(torch.randn(sized(5000, 1500), 32))
    half = sized(400, 60)
    full = svp_fast.kcenter(x, 2 * half, start=17)
    assert int(full[0]) == 17
    rest = svp_fast.kcenter(x, half, already_selected=full[:half])
    np.testing.assert_array_equal(rest.cpu().numpy(), full[half:].cpu().numpy())


@device_only("torch's CUDA streams and its caching allocator's counters")
def test_gpu_runs_on_callers_stream_and_device_memory_returns():
    x = to_gpu(torch.randn(20000, 128))
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
    x = to_gpu(torch.randn(100, 8))
    x[40, 3] = float("nan")
    with pytest.raises(ValueError, match="row 40, column 3"):
        svp_fast.kcenter(x, 5)
    with pytest.raises(ValueError, match="row 40, column 3"):
        svp_fast.uncertainty(x, 5)
    z = to_gpu(torch.zeros(10, 4))
    with pytest.raises(ValueError, match="all zeros"):
        svp_fast.kcenter(z, 2, metric="cosine")


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("method", ["least_confidence", "entropy", "margin"])
@pytest.mark.parametrize("inputs", ["logits", "probs"])
@pytest.mark.parametrize("c", [1, 7, 100, 1000])
def test_gpu_uncertainty_scores(dtype, method, inputs, c):
    z = torch.randn(777, c, dtype=torch.float64) * 3
    x = (torch.softmax(z, 1) if inputs == "probs" else z).to(dtype)
    tol = probs_tolerance(dtype)
    cpu = svp_fast.uncertainty_scores(x, method=method, inputs=inputs, probs_tolerance=tol)
    gpu = svp_fast.uncertainty_scores(to_gpu(x), method=method, inputs=inputs, probs_tolerance=tol)
    assert on_gpu(gpu)
    torch.testing.assert_close(gpu.cpu().double(), cpu.double(), rtol=1e-5, atol=2e-6)
    ref = uncertainty_scores_ref(x, method, inputs)
    np.testing.assert_allclose(gpu.cpu().double().numpy(), ref, rtol=1e-5, atol=2e-6)


UNC_METHODS = ["least_confidence", "entropy", "margin"]


def probs_tolerance(dtype) -> float:
    """How far from 1 rows of probabilities may sum: bfloat16's 8 bits round a
    softmax's rows by up to a few tenths of a percent."""
    return 1e-2 if dtype == torch.bfloat16 else 1e-3


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("inputs", ["logits", "probs"])
@pytest.mark.parametrize("c", [1, 7, 37, 1000])
def test_gpu_uncertainty_topk_equals_cpu(dtype, inputs, c):
    # near-ties of every kind (duplicates, permuted rows, one-ulp bumps, shifted
    # rows, equal float32 scores): the GPU's top-k is the CPU's, index for index
    from test_uncertainty import near_ties

    z = near_ties(np.random.default_rng(c), 1500 if c < 1000 else 400, c).astype(np.float64)
    x = torch.from_numpy(softmax64(z) if inputs == "probs" else z).to(dtype)
    xg = to_gpu(x)
    n = x.shape[0]
    tol = probs_tolerance(dtype)
    for method in UNC_METHODS:
        cpu_idx, cpu_sc = svp_fast.uncertainty(x, n, method=method, inputs=inputs, return_scores=True,
                                               probs_tolerance=tol)
        for k in (1, 300, n):
            gpu_idx, gpu_sc = svp_fast.uncertainty(xg, k, method=method, inputs=inputs, return_scores=True,
                                                   probs_tolerance=tol)
            assert on_gpu(gpu_idx)
            np.testing.assert_array_equal(gpu_idx.cpu().numpy(), cpu_idx[:k].numpy(),
                                          err_msg=f"{method} top-{k}")
            assert torch.all(gpu_sc[1:] <= gpu_sc[:-1])
            torch.testing.assert_close(gpu_sc.cpu().double(), cpu_sc[:k].double(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", UNC_METHODS)
def test_gpu_uncertainty_topk_equals_float64_reference(method):
    # the case (the float32 ranking swapped positions here) and k = 0
    z = (np.random.default_rng(0).standard_normal((20_000, 37)) * 3).astype(np.float32)
    got, stats = svp_fast.uncertainty(to_gpu(torch.from_numpy(z)), 2000, method=method, return_stats=True)
    np.testing.assert_array_equal(got.cpu().numpy(), uncertainty_topk_ref(z, 2000, method))
    assert stats["candidates"] >= 2000 and stats["rows_refined"] >= 0
    assert svp_fast.uncertainty(to_gpu(torch.from_numpy(z)), 0, method=method).numel() == 0


def test_gpu_uncertainty_ties_lowest_index():
    z = torch.randn(40, 5)
    x = to_gpu(torch.cat([z, z, z]))
    for method in UNC_METHODS:
        idx = svp_fast.uncertainty(x, 120, method=method)
        np.testing.assert_array_equal(idx.cpu().numpy(), svp_fast.uncertainty(x.cpu(), 120, method=method).numpy())
    same = to_gpu(torch.randn(1, 64).repeat(5000, 1))  # one group of 5,000 equal rows
    np.testing.assert_array_equal(svp_fast.uncertainty(same, 5000, method="margin").cpu().numpy(),
                                  np.arange(5000))


# -------------------------------------------------- distributed (CUDA shards) --

def _dist_worker(rank, world, store, backend, path, budget, out, options):
    import datetime

    import torch.distributed as dist

    import svp_fast.distributed as sd

    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    full = np.load(path)
    bounds = np.linspace(0, full.shape[0], world + 1).astype(int)
    local = to_gpu(torch.from_numpy(full[bounds[rank]:bounds[rank + 1]]))
    if options.get("half"):
        local = local.half()
    picks, radii, st = sd.kcenter(local, budget, method="scan", return_radii=True,
                                  return_stats=True, metric=options.get("metric", "euclidean"),
                                  already_selected=options.get("selected"),
                                  protocol=options["protocol"],
                                  batch_candidates=options.get("T"),
                                  batch_max_picks=options.get("cap"))
    if rank == 0:
        np.savez(out, picks=picks.cpu().numpy(), radii=radii.cpu().numpy(), passes=st.passes,
                 device=st.device)
    dist.destroy_process_group()


_DIST_CASES = {
    "f32": dict(),
    "f16_cosine_T3_cap2_selected": dict(half=True, metric="cosine", T=3, cap=2,
                                        selected=[5, sized(2100, 420), sized(3999, 799)]),
    "f64_T5": dict(f64=True, T=5),
}


@pytest.mark.parametrize("protocol,case", [("stepwise", "f32")]
                         + [("batched", c) for c in sorted(_DIST_CASES)])
@pytest.mark.parametrize("backend,world", [("gloo", 2), ("nccl", 1)])
def test_distributed_cuda_shards_match_single_process(tmp_path, backend, world, protocol, case):
    """Batched: CUDA shards' offers (sorted on the device) and batched adds; with
    gloo the messages travel in host memory (the shards stage them)."""
    import torch.multiprocessing as mp

    if EMULATED and backend == "nccl":
        pytest.skip("NCCL needs a real GPU (the emulated shards run over gloo)")
    options = dict(_DIST_CASES[case], protocol=protocol)
    x = np.random.default_rng(7).standard_normal((sized(4001, 801), 40))
    x = x.astype(np.float64 if options.pop("f64", False) else np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    out = tmp_path / "picks.npz"
    budget = sized(500, 60)
    mp.spawn(_dist_worker, args=(world, str(tmp_path / "store"), backend, str(path), budget, str(out),
                                 options), nprocs=world, join=True)
    got = np.load(out)
    ref_x = torch.from_numpy(x).half() if options.get("half") else x
    ref, ref_r = svp_fast.kcenter(ref_x, budget, metric=options.get("metric", "euclidean"),
                                  already_selected=options.get("selected"), return_radii=True)
    np.testing.assert_array_equal(got["picks"], np.asarray(ref).astype(np.int64))
    close_radii(got["radii"], np.asarray(ref_r))
    assert str(got["device"]) == "cuda"
    if protocol == "batched" and "T" not in options:
        assert int(got["passes"]) < budget / 5  # many picks a pass


# ------------------------------------------- the pruned -> scan hand-off (first light)

@pytest.fixture
def forced_hand_off(monkeypatch):
    """Every pruned run hands over to the scan once past its first picks."""
    from svp_fast.selection import _plan

    monkeypatch.setitem(_plan.FALLBACK_FRACTION, "pruned", 0.0)


@pytest.mark.parametrize("dtype,d", [(torch.float32, 132), (torch.float32, 259),
                                     (torch.float16, 256), (torch.float16, 384),
                                     (torch.bfloat16, 512), (torch.float64, 64),
                                     (torch.float32, 5000)])
def test_gpu_pruned_hand_off_to_scan(forced_hand_off, dtype, d):
    # grids sized for the pruned kernel alone did not fit the scan kernel (D of
    # 132-259 float32, 264-519 half, float64); above 4,096 float32 columns the
    # scan was launched with the pruned kernel's shared memory size
    # (the hand-off is decided from pick 256 on)
    g = torch.Generator().manual_seed(d)
    x = torch.randn(sized(3000, 600), d, generator=g).to(dtype)
    budget = sized(400, 270)
    ref = svp_fast.kcenter(x, budget, method="scan")
    got, st = svp_fast.kcenter(to_gpu(x), budget, method="pruned", n_cells=16, return_stats=True)
    assert 0 < st.fallback_step < budget
    np.testing.assert_array_equal(got.cpu().numpy(), ref.numpy())


def test_gpu_pruned_hand_off_unaligned_rows(forced_hand_off):
    # rows not 16-byte aligned: scalar loads, another register count
    base = torch.randn(sized(2000, 600), 67)
    x = to_gpu(base)[:, 1:]  # row stride 67, start offset 4 bytes
    ref = svp_fast.kcenter(base[:, 1:].contiguous(), 270, method="scan")
    got = svp_fast.kcenter(x, 270, method="pruned", n_cells=16)
    np.testing.assert_array_equal(got.cpu().numpy(), ref.numpy())


def test_gpu_huge_d_is_a_clear_error():
    x = to_gpu(torch.zeros(4, 70000))
    x[1, 0] = 1
    with pytest.raises(RuntimeError, match="does not fit on this GPU"):
        svp_fast.kcenter(x, 2, method="scan")


def test_gpu_massive_ties_finish():
    # 64 distinct rows, each 4,000 times: from pick 64 on every step is a tie
    # among all remaining points (the float64 phase must stay cheap)
    base = torch.randn(64, 24, generator=torch.Generator().manual_seed(3))
    x = to_gpu(base.repeat(sized(4000, 40), 1))
    budget = sized(300, 100)
    got = svp_fast.kcenter(x, budget, method="scan")
    np.testing.assert_array_equal(got.cpu().numpy(), svp_fast.kcenter(x.cpu(), budget).numpy())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_gpu_batched_products_agree_bit_for_bit(monkeypatch, dtype, metric):
    # the cuBLAS-screened pass product must leave the fused kernel's state:
    # the same picks and the same radii, bit for bit
    from svp_fast.selection import _backend_cuda

    if EMULATED:  # cuBLAS is the emulation's stand-in (it honours cublasGemmEx's contract)
        import os

        path = os.path.join(os.path.dirname(svp_fast.__file__), "libcublas_svp_emu.so")
        assert svp_fast._core.cuda_set_cublas_library(path=path)[0], path
    g = torch.Generator().manual_seed(7)
    n = sized(12000, 3000)
    x = (torch.randn(30, 48, generator=g) * 4)[torch.randint(0, 30, (n,), generator=g)]
    x = to_gpu((x + 0.2 * torch.randn(n, 48, generator=g)).to(dtype))
    out = {}
    for product in ("fused", "cublas"):
        monkeypatch.setattr(_backend_cuda, "BATCH_PRODUCT", product)
        p, r, st = svp_fast.kcenter(x, sized(2500, 300), metric=metric, method="batched", return_radii=True,
                                    return_stats=True)
        assert st.extra["product"] == product
        out[product] = (p.cpu().numpy(), r.cpu().numpy(), st)
    np.testing.assert_array_equal(out["fused"][0], out["cublas"][0])
    np.testing.assert_array_equal(out["fused"][1], out["cublas"][1])
    assert out["cublas"][2].distance_evals < out["fused"][2].distance_evals


def _lattice(n, d, seed):
    # small integers: distances tie exactly, so a pick's distance often equals a
    # row's second minimum (the screen's boundary)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-3, 4, (n, d), generator=g).float()


@pytest.mark.parametrize("case", ["lattice", "large", "tiny", "near_duplicates", "wide"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_gpu_batched_screen_at_its_boundary(monkeypatch, case, dtype):
    # the screened product against the fused kernel where the screen's margin
    # matters: exact ties with m2 (lattice points), magnitudes far from 1
    # (float32: the 3xBF16 split's relative bound), near-duplicates (distances
    # below the product's error)
    from svp_fast.selection import _backend_cuda

    g = torch.Generator().manual_seed(11)
    n = sized(8000, 2000)
    if case == "lattice":
        x = _lattice(n, 16, 3)
    elif case == "near_duplicates":
        x = torch.randn(200, 24, generator=g)[torch.randint(0, 200, (n,), generator=g)]
        x = x + 1e-3 * torch.randn(n, 24, generator=g)
    elif case == "wide":  # D = 2048: the fused kernel loads 8 chunks a lane, the screen 1
        n = sized(8000, 600)
        x = torch.randn(40, 2048, generator=g)[torch.randint(0, 40, (n,), generator=g)]
        x = x + 0.3 * torch.randn(n, 2048, generator=g)
    else:
        x = torch.randn(n, 24, generator=g) * (3e3 if case == "large" else 3e-3)
    if dtype == torch.float16 and case == "large":
        x = x / 8  # (within float16's range)
    x = to_gpu(x.to(dtype))
    budget = sized(1200, 240) if case != "wide" else sized(1200, 100)
    out = {}
    for product in ("fused", "cublas"):
        monkeypatch.setattr(_backend_cuda, "BATCH_PRODUCT", product)
        p, r, st = svp_fast.kcenter(x, budget, method="batched", return_radii=True,
                                    return_stats=True, batch_candidates=64)
        assert st.extra["product"] == product
        out[product] = (p.cpu().numpy(), r.cpu().numpy())
    np.testing.assert_array_equal(out["fused"][0], out["cublas"][0])
    np.testing.assert_array_equal(out["fused"][1], out["cublas"][1])
    np.testing.assert_array_equal(out["cublas"][0], svp_fast.kcenter(x.cpu(), budget, method="scan").numpy())



# ------------------------------------------------------------ many sets, one launch --
# The grouped kernel (csrc/cuda/grouped.cu) runs small sets on one warp each,
# medium sets (or rows of more than 64 values) on one block, and a set with
# more than about two blocks' share of the work on several blocks with a
# barrier of their own: the data below gives it all three in one launch.


def _mixed_groups(n_big=30000, seed=0):
    # emulated: a tenth of the rows, the same mix of team sizes
    g = torch.Generator().manual_seed(seed)
    scale = sized(1, 10)
    sizes = [n_big // scale, 5000 // scale, 3000 // scale] + [int(s) for s in torch.randint(1, 400, (60,), generator=g)]
    lab = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])
    return lab[torch.randperm(lab.numel(), generator=g)], g


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_gpu_groups_match_cpu(dtype, metric):
    lab, g = _mixed_groups()
    x = torch.randn(lab.numel(), 6, generator=g).to(dtype)
    sel = torch.randperm(lab.numel(), generator=g)[:200]
    cpu, cpu_off, cpu_r = svp_fast.kcenter(x, 0.05, groups=lab, already_selected=sel,
                                           metric=metric, return_offsets=True, return_radii=True)
    gpu, gpu_off, gpu_r, st = svp_fast.kcenter(to_gpu(x), 0.05, groups=to_gpu(lab),
                                               already_selected=sel, metric=metric,
                                               return_offsets=True, return_radii=True,
                                               return_stats=True)
    assert on_gpu(gpu) and st.backend == "cuda"
    np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())
    np.testing.assert_array_equal(gpu_off.cpu().numpy(), cpu_off.numpy())
    close_radii(gpu_r.cpu().numpy(), cpu_r.numpy())


@pytest.mark.parametrize("d", [3, 64, 300])
def test_gpu_groups_wide_rows_and_starts(d):
    # rows of more than 64 values run on blocks, not warps
    lab, g = _mixed_groups(n_big=8000, seed=d)
    x = torch.randn(lab.numel(), d, generator=g)
    x[100:140] = x[7]  # duplicates: exact ties, lowest index first
    cpu = svp_fast.kcenter(x, 0.1, groups=lab, start="random", seed=3)
    gpu = svp_fast.kcenter(to_gpu(x), 0.1, groups=lab, start="random", seed=3)
    np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())


def test_gpu_batch_of_clouds_matches_cpu():
    g = torch.Generator().manual_seed(11)
    B, P = sized(48, 8), sized(4096, 600)
    pts = torch.rand(B, P, 3, generator=g)
    lengths = torch.randint(1, P + 1, (B,), generator=g)
    lengths[0] = P
    K = torch.randint(0, sized(1024, 60), (B,), generator=g)
    cpu, cpu_r = svp_fast.kcenter(pts, K, lengths=lengths, return_radii=True)
    gpu, gpu_r = svp_fast.kcenter(to_gpu(pts), K, lengths=lengths, return_radii=True)
    assert on_gpu(gpu) and gpu.shape == cpu.shape
    np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())
    ok = cpu >= 0
    close_radii(gpu_r.cpu()[ok].numpy(), cpu_r[ok].numpy())


def test_gpu_one_large_set_uses_many_blocks_and_matches_cpu():
    # 300,000 points in one set: several blocks meet at a barrier every step
    n, budget = sized(300000, 20000), sized(1500, 100)
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(2))
    lab = torch.zeros(n, dtype=torch.int64)
    lab[:1000] = 1
    cpu = svp_fast.kcenter(x, budget, groups=lab, method="kdtree")
    gpu = svp_fast.kcenter(to_gpu(x), budget, groups=lab)
    np.testing.assert_array_equal(gpu.cpu().numpy(), cpu.numpy())


def test_gpu_groups_errors_and_uncertainty():
    lab, g = _mixed_groups(n_big=2000, seed=5)
    x = torch.randn(lab.numel(), 5, generator=g)
    bad = x.clone()
    bad[777, 2] = float("nan")
    with pytest.raises(ValueError, match="row 777, column 2"):
        svp_fast.kcenter(to_gpu(bad), 0.1, groups=lab)
    # each group's top-k is that of the GPU's uncertainty on the group alone
    logits = to_gpu(torch.randn(lab.numel(), 9, generator=g))
    got, offsets = svp_fast.uncertainty(logits, 0.1, method="margin", groups=lab,
                                        return_offsets=True)
    offsets = offsets.cpu().numpy()
    for i, label in enumerate(torch.unique(lab).tolist()):
        rows = to_gpu(torch.nonzero(lab == label).flatten())
        k = int(offsets[i + 1] - offsets[i])
        alone = rows[svp_fast.uncertainty(logits[rows], k, method="margin")]
        np.testing.assert_array_equal(got[offsets[i]:offsets[i + 1]].cpu().numpy(),
                                      alone.cpu().numpy())
