"""The Python half of the CUDA path, on machines without a GPU.

``svp_fast.selection._backend_cuda.CudaBackend`` runs here on CPU tensors
standing in for CUDA ones, against ``cuda_standin.StandInCudaCore``: the CUDA
entry points of ``_core`` computed by the CPU core. The public front
(``svp_fast.kcenter``) is routed to it, so argument checks, engine choice,
workspace, outputs, stats, callbacks, progress and the return types are all
exercised as they will be on a GPU; only the kernels are not.
"""

from __future__ import annotations

import inspect
import re
import sys
import types

import numpy as np
import pytest
import torch
from cuda_standin import StandInCudaCore
from reference import kcenter_ref

import svp_fast
from svp_fast import _core
from svp_fast._arrays import as_matrix
from svp_fast.selection import _backend_cuda, cells
from svp_fast.selection import _backends

TORCH_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.fixture
def standin(monkeypatch):
    """CPU tensors go through the CUDA backend, on the stand-in core."""
    core = StandInCudaCore()
    backend = _backend_cuda.CudaBackend(core=core, device_type="cpu")
    monkeypatch.setitem(_backends.BACKENDS, "cpu", backend)
    return core


def _last(core, name):
    return [kw for n, kw in core.calls if n == name][-1]


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("selected", [False, True])
def test_cuda_glue_returns_tensors_equal_to_the_cpu(standin, rng, dtype, metric, selected):
    # defect 2 of the GPU first light issue: the glue handed a device tensor of
    # picks to torch.from_numpy, so every GPU kcenter ended in TypeError
    x = torch.from_numpy(rng.standard_normal((333, 7))).to(dtype)
    sel = torch.from_numpy(rng.choice(333, 9, replace=False)) if selected else None
    ref, ref_r = kcenter_ref(x.double().numpy(), 120, already_selected=None if sel is None else sel.numpy(),
                             metric=metric)
    picks, radii, st = svp_fast.kcenter(x, 120, already_selected=sel, metric=metric,
                                        method="scan", return_radii=True, return_stats=True)
    assert isinstance(picks, torch.Tensor) and picks.dtype == torch.int64
    assert isinstance(radii, torch.Tensor) and radii.dtype == torch.float64
    assert picks.device == x.device and radii.device == x.device
    np.testing.assert_array_equal(picks.numpy(), ref)
    np.testing.assert_allclose(radii.numpy()[np.isfinite(ref_r)], ref_r[np.isfinite(ref_r)],
                               rtol=1e-5)
    assert st.backend == "cuda" and st.method == "scan"
    call = _last(standin, "kcenter_cuda")
    assert call["n_selected"] == (0 if sel is None else 9)
    assert call["metric"] == ("euclidean", "cosine").index(metric)
    assert call["stream"] == 0  # the stand-in device has no stream


def test_cuda_glue_plain_outputs(standin, rng):
    x = torch.from_numpy(rng.standard_normal((100, 4)).astype(np.float32))
    picks = svp_fast.kcenter(x, 10, start=7)
    assert isinstance(picks, torch.Tensor) and int(picks[0]) == 7
    np.testing.assert_array_equal(picks.numpy(), svp_fast.kcenter(x.numpy(), 10, start=7))
    assert svp_fast.kcenter(x, 0).shape == (0,)


@pytest.mark.parametrize("method,budget,engine,code", [
    ("scan", 200, "scan", 0), ("lazy", 200, "scan", 0), ("auto", 200, "batched", 3),
    ("auto", 15, "scan", 0), ("batched", 200, "batched", 3), ("pruned", 200, "pruned", 1)])
def test_cuda_engine_choice(standin, rng, method, budget, engine, code):
    # the GPU runs lazy as the scan, auto as the batched engine (the scan for
    # a handful of picks), cells only when asked for
    x = torch.from_numpy(rng.standard_normal((500, 8)).astype(np.float32))
    picks, st = svp_fast.kcenter(x, budget, method=method, n_cells=16, return_stats=True)
    call = _last(standin, "kcenter_cuda")
    assert call["method"] == code and st.method == engine
    if engine == "pruned":
        assert call["cells_ptr"] != 0 and call["n_cells"] == 16 and st.n_cells == 16
        assert call["fallback_fraction"] > 1  # an explicit pruned never hands over
    else:
        assert call["cells_ptr"] == 0 and call["n_cells"] == 0 and st.n_cells == 0
    assert call["batch_candidates"] == (256 if engine == "batched" else 0)
    np.testing.assert_array_equal(picks.numpy(), svp_fast.kcenter(x.numpy(), budget, method="scan"))


def test_cuda_auto_runs_batched_even_where_cells_would_prune(standin, rng):
    # 2-d sheets in 16 dimensions, above the 65,536 rows where the CPU's auto
    # builds cells: on the GPU auto runs the batched engine, no k-means
    n = 70000
    centers = rng.standard_normal((20, 16)) * 5
    basis = rng.standard_normal((20, 2, 16))
    lab = rng.integers(0, 20, n)
    x = (centers[lab] + np.einsum("ns,nsd->nd", rng.standard_normal((n, 2)), basis[lab])
         + 0.01 * rng.standard_normal((n, 16))).astype(np.float32)
    picks, st = svp_fast.kcenter(torch.from_numpy(x), 300, return_stats=True)
    call = _last(standin, "kcenter_cuda")
    assert call["method"] == 3 and st.method == "batched" and st.n_cells == 0
    assert st.passes < 300
    np.testing.assert_array_equal(picks.numpy(), svp_fast.kcenter(x, 300, method="scan"))


@pytest.mark.parametrize("T,cap", [(None, None), (1, None), (3, 2), (4096, 1)])
def test_cuda_batched_arguments_reach_the_core(standin, rng, T, cap):
    x = torch.from_numpy(rng.standard_normal((400, 5)).astype(np.float32))
    picks, st = svp_fast.kcenter(x, 150, method="batched", batch_candidates=T, batch_max_picks=cap,
                                 return_stats=True)
    call = _last(standin, "kcenter_cuda")
    assert call["batch_candidates"] == (T or 256) and call["batch_max_picks"] == (cap or 0)
    ws = _last(standin, "kcenter_cuda_workspace")
    assert ws["batch_candidates"] == (T or 256) and ws["method"] == 3
    np.testing.assert_array_equal(picks.numpy(), svp_fast.kcenter(x.numpy(), 150, method="scan"))
    with pytest.raises(ValueError, match="batch_candidates applies to method='batched'"):
        svp_fast.kcenter(x, 10, method="scan", batch_candidates=8)


def test_cuda_workspace_is_what_the_core_asked_for(standin, rng):
    x = torch.from_numpy(rng.standard_normal((256, 5)).astype(np.float32))
    svp_fast.kcenter(x, 50, method="pruned", n_cells=8)
    ws = _last(standin, "kcenter_cuda_workspace")
    call = _last(standin, "kcenter_cuda")
    assert ws["n_cells"] == 8 and ws["method"] == 1 and ws["budget"] == 50
    assert call["workspace_bytes"] >= 4096 + 32 * 256 + 16 * 8


def test_cuda_callback_gets_read_only_host_copies(standin, rng):
    x = torch.from_numpy(rng.standard_normal((400, 6)).astype(np.float32))
    seen = []

    def cb(p, r):
        assert isinstance(p, np.ndarray) and not p.flags.writeable
        assert isinstance(r, np.ndarray) and not r.flags.writeable and r.shape == p.shape
        seen.append(p.copy())

    picks = svp_fast.kcenter(x, 300, return_radii=True, callback=cb)[0]
    assert seen and np.array_equal(seen[-1], picks.numpy())  # once at the end at least


def test_cuda_progress_bar(standin, rng):
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    x = torch.from_numpy(rng.standard_normal((300, 6)).astype(np.float32))
    svp_fast.kcenter(x, 200, progress=bar)
    assert bar.n == 200


def test_cuda_errors_come_through(standin, rng):
    x = torch.from_numpy(rng.standard_normal((50, 3)).astype(np.float32))
    x[7, 1] = float("nan")
    with pytest.raises(ValueError, match="must be finite, got nan at row 7, column 1"):
        svp_fast.kcenter(x, 5)
    with pytest.raises(ValueError, match="must be finite, got nan at row 7, column 1"):
        svp_fast.kcenter(x, 5, method="pruned", n_cells=4)  # before any k-means


def test_cuda_glue_without_cuda_is_a_clear_error(monkeypatch, rng):
    core = StandInCudaCore()
    core.build_info = lambda: dict(_core.build_info(), cuda_compiled=False)
    monkeypatch.setitem(_backends.BACKENDS, "cpu",
                        _backend_cuda.CudaBackend(core=core, device_type="cpu"))
    x = torch.from_numpy(rng.standard_normal((50, 3)).astype(np.float32))
    with pytest.raises(RuntimeError, match="built without CUDA"):
        svp_fast.kcenter(x, 5)


@pytest.mark.parametrize("method", ["least_confidence", "entropy", "margin"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_uncertainty_glue(rng, method, dtype):
    backend = _backend_cuda.CudaBackend(core=StandInCudaCore(), device_type="cpu")
    x = torch.from_numpy(rng.standard_normal((500, 10))).to(dtype)
    m = as_matrix(x, "x")
    code = ("least_confidence", "entropy", "margin").index(method)
    order, top, st = backend.uncertainty_topk(m, 40, code, 0, True, 1e-3, want_stats=True)
    assert set(st) == {"candidates", "rows_refined", "tie_groups", "passes"}
    scores = backend.uncertainty_scores(m, code, 0, True, 1e-3)
    want_t = torch.float64 if dtype == torch.float64 else torch.float32
    assert order.dtype == torch.int64 and top.dtype == want_t and scores.dtype == want_t
    np.testing.assert_array_equal(order.numpy(), svp_fast.uncertainty(x.numpy(), 40, method=method))
    np.testing.assert_allclose(scores.numpy(), svp_fast.uncertainty_scores(x.numpy(), method=method))


# -------------------------------------------------------------- many sets


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_cuda_glue_groups_equal_the_cpu(standin, rng, dtype, metric):
    x = torch.from_numpy(rng.standard_normal((600, 5))).to(dtype)
    lab = torch.from_numpy(rng.integers(0, 7, 600))
    sel = torch.from_numpy(rng.choice(600, 20, replace=False))
    picks, offsets, radii, st = svp_fast.kcenter(x, 0.3, groups=lab, already_selected=sel,
                                                 metric=metric, return_offsets=True,
                                                 return_radii=True, return_stats=True)
    assert isinstance(picks, torch.Tensor) and picks.dtype == torch.int64
    assert picks.device == x.device and radii.device == x.device
    assert st.backend == "cuda" and st.method == "scan"  # one kernel scans every group
    call = _last(standin, "kcenter_groups_cuda")
    assert call["n_groups"] == 7 and call["set_rows"] == 0 and call["stream"] == 0
    ws = _last(standin, "kcenter_groups_cuda_workspace")
    assert call["workspace_bytes"] >= 4096 + 48 * 600
    assert ws["members_ptr"] == call["members_ptr"]
    # the same picks as the CPU backend (every engine there gives the float64 picks)
    _backends.BACKENDS["cpu"] = _backend_cpu_default()
    cpu, cpu_off, cpu_r = svp_fast.kcenter(x, 0.3, groups=lab, already_selected=sel, metric=metric,
                                           return_offsets=True, return_radii=True)
    np.testing.assert_array_equal(picks.numpy(), cpu.numpy())
    np.testing.assert_array_equal(offsets.numpy(), cpu_off.numpy())
    np.testing.assert_allclose(radii.numpy(), cpu_r.numpy(), rtol=1e-5)


def _backend_cpu_default():
    from svp_fast.selection import _backend_cpu

    return _backend_cpu.BACKEND


def test_cuda_glue_batch_of_clouds(standin, rng):
    pts = torch.from_numpy(rng.random((4, 300, 3)).astype(np.float32))[:, :250]
    got, radii = svp_fast.kcenter(pts, [10, 300, 0, 40], lengths=[250, 120, 9, 250],
                                  return_radii=True)
    call = _last(standin, "kcenter_groups_cuda")
    assert call["set_rows"] == 300 and call["n_groups"] == 4  # read in place: rows of 300 apart
    assert got.shape == (4, 300) and isinstance(got, torch.Tensor)  # K: the largest asked
    for b, (k, n) in enumerate([(10, 250), (120, 120), (0, 9), (40, 250)]):
        ref = kcenter_ref(pts[b, :n].double().numpy(), k)[0] if k else np.zeros(0, np.int64)
        np.testing.assert_array_equal(got[b, :k].numpy(), ref)
        assert torch.all(got[b, k:] == -1) and torch.all(torch.isnan(radii[b, k:]))


def test_cuda_glue_groups_progress(standin, rng):
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    x = torch.from_numpy(rng.standard_normal((500, 4)).astype(np.float32))
    svp_fast.kcenter(x, 120, groups=torch.arange(500) % 3, progress=bar)
    assert bar.n == 120


def test_cuda_uncertainty_groups_glue(rng, monkeypatch):
    # the grouped top-k through the CUDA backend (CPU tensors, stand-in core)
    core = StandInCudaCore()
    monkeypatch.setitem(_backends.BACKENDS, "cpu",
                        _backend_cuda.CudaBackend(core=core, device_type="cpu"))
    logits = rng.standard_normal((400, 6)).astype(np.float32)
    logits[50:80] = logits[3]  # equal scores: the lower row first, as on the CPU
    lab = rng.integers(0, 5, 400)
    order, offsets, top, st = svp_fast.uncertainty(torch.from_numpy(logits), 60, method="margin",
                                                   groups=lab, return_offsets=True,
                                                   return_scores=True, return_stats=True)
    assert isinstance(order, torch.Tensor) and order.dtype == torch.int64
    assert [n for n, _ in core.calls].count("uncertainty_cuda") == len(np.unique(lab))
    monkeypatch.undo()
    ref = svp_fast.uncertainty(logits, 60, method="margin", groups=lab)
    np.testing.assert_array_equal(order.numpy(), ref)
    assert int(offsets[-1]) == 60 and top.shape == (60,) and st["candidates"] > 0


# -------------------------------------------------------------- cells on the device


class _FakeFaissGpu(types.ModuleType):
    """A FAISS with GPU support, as far as the choice of k-means can tell."""

    def __init__(self):
        super().__init__("faiss")
        self.trained = []
        fake = self

        class Kmeans:
            def __init__(self, d, k, **kw):
                self.d, self.k, self.kw = d, k, kw

            def train(self, x):
                assert isinstance(x, np.ndarray) and x.dtype == np.float32
                fake.trained.append((self.kw.get("gpu"), x.shape))
                self.centroids = x[: self.k].copy()

        self.Kmeans = Kmeans
        self.StandardGpuResources = object

    @staticmethod
    def get_num_gpus():
        return 1


def test_device_cells_use_faiss_gpu_when_installed(monkeypatch, rng):
    fake = _FakeFaissGpu()
    monkeypatch.setitem(sys.modules, "faiss", fake)
    x = torch.from_numpy(rng.standard_normal((2000, 6)).astype(np.float32))
    cell_of = cells.build_cells_on_device(x, 16)
    assert fake.trained and fake.trained[0][0] is True  # trained with gpu=True
    assert cell_of.dtype == torch.int64 and cell_of.shape == (2000,)
    assert int(cell_of.min()) >= 0 and int(cell_of.max()) < 16


def test_device_cells_fall_back_to_torch(monkeypatch, rng):
    cpu_only = types.ModuleType("faiss")  # faiss-cpu: no GPU symbols
    monkeypatch.setitem(sys.modules, "faiss", cpu_only)
    assert cells.faiss_gpu() is None
    x = torch.from_numpy(rng.standard_normal((3000, 6)).astype(np.float32))
    cell_of = cells.build_cells_on_device(x, 16)
    assert cell_of.dtype == torch.int64 and len(torch.unique(cell_of)) > 8
    # a partition the pruned engine accepts, and the picks do not depend on it
    m = as_matrix(x, "x")
    assert m.rows == cell_of.numel()


# -------------------------------------------------------------- the stand-in is the core


def _pybind_names(fn) -> list:
    sig = fn.__doc__.splitlines()[0]
    return re.findall(r"(\w+): ", sig[sig.index("(") + 1: sig.rindex(")")])


@pytest.mark.skipif(not svp_fast.build_info()["cuda_compiled"],
                    reason="svp_fast was built without CUDA: no bindings to compare the stand-in with")
@pytest.mark.parametrize("name", ["kcenter_cuda", "kcenter_cuda_workspace", "cuda_set_cublas_library",
                                  "kcenter_groups_cuda", "kcenter_groups_cuda_workspace",
                                  "uncertainty_cuda"])
def test_standin_signatures_match_the_core(name):
    real = _pybind_names(getattr(_core, name))
    standin = [p for p in inspect.signature(getattr(StandInCudaCore, name)).parameters
               if p != "self"]
    assert real == standin


@pytest.mark.skipif(not svp_fast.build_info()["cuda_compiled"],
                    reason="svp_fast was built without CUDA: no bindings to compare the stand-in with")
@pytest.mark.parametrize("name", ["offer", "add_centers"])
def test_standin_shard_batched_signatures_match_the_core(name):
    from cuda_standin import StandInKCenterShardCuda

    real = _pybind_names(getattr(_core.KCenterShardCuda, name))
    standin = [p for p in inspect.signature(getattr(StandInKCenterShardCuda, name)).parameters]
    cpu = _pybind_names(getattr(_core.KCenterShard, name))
    assert real == standin == cpu


@pytest.mark.skipif(not svp_fast.build_info()["cuda_compiled"],
                    reason="svp_fast was built without CUDA: no bindings to compare the stand-in with")
def test_standin_shard_and_uncertainty_arity_match_the_core():
    from cuda_standin import StandInKCenterShardCuda

    def arity(fn):
        return len(re.findall(r"arg\d+: ", fn.__doc__.splitlines()[0]))

    init = _core.KCenterShardCuda.__init__
    assert arity(init) == len(inspect.signature(StandInKCenterShardCuda).parameters)
    for name in ("uncertainty_cuda_workspace",):  # positional: the count must match
        n_standin = len(inspect.signature(getattr(StandInCudaCore, name)).parameters) - 1
        assert arity(getattr(_core, name)) == n_standin, name


@pytest.mark.parametrize("product,code", [("auto", 0), ("fused", 1), ("cublas", 2)])
def test_cuda_batched_product_choice_reaches_the_core(standin, rng, monkeypatch, product, code):
    monkeypatch.setattr(_backend_cuda, "BATCH_PRODUCT", product)
    backend = _backends.BACKENDS["cpu"]
    monkeypatch.setattr(backend, "_cublas_offered", False)
    x = torch.from_numpy(rng.standard_normal((300, 6)).astype(np.float32))
    picks, st = svp_fast.kcenter(x, 100, method="batched", return_stats=True)
    call = _last(standin, "kcenter_cuda")
    assert call["batch_product"] == code and st.extra["product"] == "fused"
    offered = [kw for n, kw in standin.calls if n == "cuda_set_cublas_library"]
    assert bool(offered) == (product != "fused")  # torch's libcublas offered once, if any
    svp_fast.kcenter(x, 50, method="scan")
    assert _last(standin, "kcenter_cuda")["batch_product"] == 0  # only the batched engine has one


def test_cuda_checkpoint_resumes_with_the_same_picks_and_radii(standin, rng, tmp_path):
    # the device keeps its state: a CUDA checkpoint holds the picks and the
    # last radius; the resume applies the picks as initial centers on the
    # device and carries the radius over (prev_radius), so radii match too
    x = torch.from_numpy(rng.standard_normal((20000, 8)).astype(np.float32))
    ref, ref_r = svp_fast.kcenter(x.numpy(), 1500, method="scan", return_radii=True)
    ck = tmp_path / "gpu.ckpt.npz"

    class Stop(Exception):
        pass

    def stop(p, r):
        if len(p) > 300:
            raise Stop()

    with pytest.raises(Stop):
        svp_fast.kcenter(x, 1500, method="scan", checkpoint=ck, checkpoint_every=1e-3,
                         callback=stop)
    with np.load(ck) as z:
        assert "state_m" not in z.files and z["picks"].size > 300
    picks, radii = svp_fast.kcenter(x, 1500, method="scan", checkpoint=ck, return_radii=True)
    call = _last(standin, "kcenter_cuda")
    assert call["prev_radius"] < float("inf") and call["n_selected"] > 300
    np.testing.assert_array_equal(picks.numpy(), ref)
    np.testing.assert_array_equal(radii.numpy(), ref_r)
