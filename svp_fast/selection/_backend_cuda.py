"""The CUDA backend: torch CUDA tensors in, torch tensors on the same device out.

Twin of ``_backend_cpu.py``: the same methods with the same arguments. The
extension is not linked against torch: this module passes device pointers,
shapes, strides, the device index and the caller's current stream. Workspace
comes from torch's caching allocator (so memory is accounted for and returns
to its cache), outputs are allocated on the input's device. Work is enqueued on
the current stream; a call returns after the selection has finished.

Nothing here assumes a GPU is present beyond what ``core`` and ``device_type``
say: with ``CudaBackend(core=stand_in, device_type="cpu")`` the same code runs
on CPU tensors against a stand-in of the core's CUDA entry points, which is
how CI tests this glue on machines without a GPU
(python_tests/cuda_standin.py).
"""

from __future__ import annotations

from typing import Optional

from .. import _core
from .._arrays import F64, Matrix
from .._progress import make_hook
from . import cells
from ._plan import KCenterGroupPlan, KCenterPlan, KCenterStats, read_only

# The batched engine's pass product: "auto" (cuBLAS-screened on the tensor
# cores where cuBLAS loads and the input allows, else the fused kernel),
# "fused", or "cublas" (an error where it cannot run). Benchmarks and tests set
# it to compare the two; both leave the same state and picks.
BATCH_PRODUCT = "auto"
_PRODUCT_CODES = {"auto": 0, "fused": 1, "cublas": 2}

NO_CUDA = ("svp_fast was built without CUDA, so it cannot select on CUDA tensors: rebuild "
           "with nvcc on PATH (SVP_FAST_CUDA=ON pip install .), or pass a CPU array")


def _out_of_memory_error():
    import torch

    return getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class CudaBackend:
    name = "cuda"
    # the GPU runs "lazy" as the scan: its per-step cost is the fused pass
    # itself, and the pruned engine hands over to it
    lazy_engine = "scan"
    # "auto": the batched engine, which certifies many picks per pass over the
    # data on any data; the cells only on request (method="pruned"). A choice
    # from the desk estimates of BENCHMARKS.md, not yet measured on a GPU.
    auto_engine = "batched"
    auto_min_budget = 16  # fewer picks: the plain scan, no passes to amortise
    auto_considers_cells = False
    # no engine trial on the device: its engines are not timed against each other yet
    times_engines = False
    # below this many rows the scan's step is latency, not bandwidth: cells cannot pay
    cells_min_rows = 65536
    # the GPU runs method="kdtree" as the scan: a step over a point cloud is
    # one fused pass, and the tree's walk is serial
    kdtree_engine = "scan"
    # groups (and batches) run in one kernel that scans every group
    groups_engine = "scan"

    def __init__(self, core=None, device_type: str = "cuda"):
        self._core = core
        self.device_type = device_type

    @property
    def core(self):
        return self._core if self._core is not None else _core

    # -- where the work runs ---------------------------------------------------

    def require(self) -> None:
        if not self.core.build_info()["cuda_compiled"]:
            raise RuntimeError(NO_CUDA)
        self.core.cuda_device_count()  # raises "no CUDA device: ..." when there is none

    _cublas_offered = False

    def offer_cublas(self) -> None:
        """Point the core at the libcublas this process already loaded (torch's),
        once; without one the core searches the usual names, then runs fused."""
        if self._cublas_offered:
            return
        self._cublas_offered = True
        path = ""
        try:
            with open("/proc/self/maps") as f:
                for line in f:
                    if "libcublas.so" in line and "libcublasLt" not in line:
                        path = line.split()[-1]
                        break
        except OSError:  # pragma: no cover - not Linux
            pass
        setter = getattr(self.core, "cuda_set_cublas_library", None)
        if setter is not None:
            setter(path=path)

    def device(self, m: Matrix):
        import torch

        if self.device_type == "cuda":
            return torch.device("cuda", m.device_index)
        return torch.device(self.device_type)

    def stream(self, dev) -> int:
        import torch

        return torch.cuda.current_stream(dev).cuda_stream if dev.type == "cuda" else 0

    def synchronize(self, dev) -> None:
        import torch

        if dev.type == "cuda":
            torch.cuda.current_stream(dev).synchronize()

    def workspace(self, nbytes: int, dev, what: str):
        import torch

        try:
            return torch.empty(max(int(nbytes), 1), dtype=torch.uint8, device=dev)
        except _out_of_memory_error() as e:
            raise _out_of_memory_error()(
                f"svp_fast {what}: the GPU workspace needs {nbytes / 2**30:.2f} GiB "
                f"({nbytes} bytes) on {dev}: {e}") from None

    # -- k-center --------------------------------------------------------------

    def validate(self, m: Matrix, metric: str, threads: int, simd: Optional[str]) -> None:
        """Before cells are built (the core validates too, but after k-means)."""
        facts = tensor_facts(m.owner)
        if facts["bad_row"] >= 0:
            raise ValueError(f"embeddings must be finite, got {facts['bad_value']:g} at row "
                             f"{facts['bad_row']}, column {facts['bad_col']}")
        if metric == "cosine" and facts["zero_row"] >= 0:
            raise ValueError(f"embeddings row {facts['zero_row']} is all zeros; the cosine metric "
                             "needs rows of nonzero norm")

    def probe_intrinsic_dimension(self, m: Matrix, metric: str, seed: int) -> float:
        return cells.probe_intrinsic_dimension(m, metric=metric, seed=seed)

    def build_projection(self, m: Matrix, metric: str, seed: int, dims: Optional[int] = None):
        """None: the CUDA pruned kernel has no projection bound (the CPU engine's,
        pruned_engine.h); its members' rows are read at the device's bandwidth."""
        return None

    def build_cells(self, m: Matrix, n_cells: int, metric: str, seed: int, threads: int,
                    projection=None):
        """The k-means partition on the device (faiss-gpu when installed, else torch)."""
        cell_of = cells.build_cells_on_device(m.owner, n_cells, metric=metric, seed=seed)
        self.synchronize(cell_of.device)
        return cell_of

    def kcenter(self, m: Matrix, plan: KCenterPlan):
        """Runs the plan; returns (picks, radii or None, KCenterStats) as tensors on the device."""
        import torch

        self.require()
        if plan.batch_candidates and plan.engine != "batched":
            raise ValueError(f"batch_candidates applies to method='batched' on CUDA tensors (the "
                             f"GPU has no batched {plan.engine!r} engine), got method="
                             f"{plan.requested!r}")
        dev = self.device(m)
        product = _PRODUCT_CODES[BATCH_PRODUCT] if plan.engine == "batched" else 0
        if plan.engine == "batched" and BATCH_PRODUCT != "fused":
            self.offer_cublas()
        picks = torch.empty(plan.budget, dtype=torch.int64, device=dev)
        # checkpoints keep the radii (the last one continues the run)
        radii = (torch.empty(plan.budget, dtype=torch.float64, device=dev)
                 if plan.return_radii or plan.on_checkpoint is not None else None)
        cell_of = plan.cell_of
        n_cells = plan.n_cells if cell_of is not None else 0
        shape = dict(ptr=m.ptr, rows=m.rows, cols=m.cols, row_stride=m.row_stride,
                     dtype=m.dtype_code, device=m.device_index or 0)
        ws_bytes = self.core.kcenter_cuda_workspace(
            **shape, metric=plan.metric_code, budget=plan.budget, n_selected=plan.selected.size,
            method=plan.engine_code, n_cells=n_cells, batch_candidates=plan.batch_candidates,
            batch_product=product)
        ws = self.workspace(ws_bytes, dev, "k-center")

        import time

        last_save = [time.monotonic()]

        def on_poll(done: int) -> None:
            if done <= 0:
                return
            # the picks so far (a copy: they live on the device)
            p = read_only(picks[:done].cpu().numpy().copy())
            r = None if radii is None else read_only(radii[:done].cpu().numpy().copy())
            if plan.on_checkpoint is not None and r is not None and (
                    time.monotonic() - last_save[0] >= plan.checkpoint_every):
                last_save[0] = time.monotonic()
                # the device keeps the state: the checkpoint keeps the picks and the
                # last radius (squared, in the working space) to continue from
                last = float(r[-1])
                prev = 2.0 * last if plan.metric == "cosine" else last * last
                plan.on_checkpoint(p, r, prev, None)
            if plan.callback is not None:
                plan.callback(p, r)

        watch = plan.callback is not None or plan.on_checkpoint is not None
        hook, close = make_hook(plan.budget, plan.progress, "k-center (cuda)", "pick",
                                on_poll if watch else None)
        try:
            raw = self.core.kcenter_cuda(
                **shape, stream=self.stream(dev), metric=plan.metric_code, budget=plan.budget,
                selected_ptr=plan.selected.ctypes.data if plan.selected.size else 0,
                n_selected=plan.selected.size, start=plan.start, method=plan.engine_code,
                cells_ptr=cell_of.data_ptr() if cell_of is not None else 0, n_cells=n_cells,
                workspace_ptr=ws.data_ptr(), workspace_bytes=ws.numel(),
                picks_ptr=picks.data_ptr(), radii_ptr=radii.data_ptr() if radii is not None else 0,
                progress=hook, poll_interval=0.1, arg_name="embeddings",
                fallback_fraction=plan.fallback_fraction, batch_candidates=plan.batch_candidates,
                batch_max_picks=plan.batch_max_picks, batch_product=product,
                prev_radius=(float(plan.resume["prev_radius"]) if plan.resume is not None
                             else float("inf")))
        finally:
            close()
        del ws
        extra = dict(plan.extra)
        if plan.engine == "batched":
            extra["product"] = raw.get("product", "fused")
        stats = KCenterStats.from_core(raw, self.name, cells_seconds=plan.cells_seconds,
                                       picks=plan.budget, n_cells=n_cells, extra=extra)
        return picks, radii, stats

    def kcenter_groups(self, m: Matrix, plan: KCenterGroupPlan):
        """Runs every group of the plan in one kernel launch; returns (positions,
        radii or None, KCenterStats), tensors on the device, group after group."""
        import torch

        self.require()
        dev = self.device(m)
        total = plan.total
        picks = torch.empty(total, dtype=torch.int64, device=dev)
        radii = torch.empty(total, dtype=torch.float64, device=dev) if plan.return_radii else None
        ptr = lambda a: a.ctypes.data if a.size else 0  # noqa: E731  (host int64 arrays)
        shape = dict(ptr=m.ptr, rows=m.rows, cols=m.cols, row_stride=m.row_stride,
                     dtype=m.dtype_code, device=m.device_index or 0)
        groups = dict(metric=plan.metric_code, n_groups=plan.n_groups,
                      members_ptr=ptr(plan.members), offsets_ptr=ptr(plan.offsets),
                      budgets_ptr=ptr(plan.budgets), starts_ptr=ptr(plan.starts),
                      selected_ptr=ptr(plan.selected),
                      selected_offsets_ptr=ptr(plan.selected_offsets), set_rows=plan.set_rows)
        ws_bytes = self.core.kcenter_groups_cuda_workspace(**shape, **groups)
        ws = self.workspace(ws_bytes, dev, "grouped k-center")
        hook, close = make_hook(total, plan.progress, "k-center (cuda, groups)", "pick")
        try:
            raw = self.core.kcenter_groups_cuda(
                **shape, stream=self.stream(dev), **groups, workspace_ptr=ws.data_ptr(),
                workspace_bytes=ws.numel(), picks_ptr=picks.data_ptr() if total else 0,
                radii_ptr=radii.data_ptr() if radii is not None and total else 0, progress=hook,
                poll_interval=0.1, arg_name="embeddings")
        finally:
            close()
        del ws
        stats = KCenterStats.from_groups(raw, self.name, plan.budgets, cells_seconds=plan.cells_seconds,
                                         extra=dict(plan.extra))
        return picks, (radii if plan.return_radii else None), stats

    # -- uncertainty -------------------------------------------------------------

    def _uncertainty(self, m: Matrix, budget: Optional[int], method_code: int, input_code: int,
                     check_finite: bool, tol: float, want_stats: bool = False):
        import torch

        self.require()
        dev = self.device(m)
        sdtype = torch.float64 if m.dtype_code == F64 else torch.float32
        scores = torch.empty(m.rows, dtype=sdtype, device=dev)
        k = budget if budget is not None else -1
        order = torch.empty(max(k, 0), dtype=torch.int64, device=dev)
        top = torch.empty(max(k, 0), dtype=sdtype, device=dev)
        ws_bytes = self.core.uncertainty_cuda_workspace(m.ptr, m.rows, m.cols, m.row_stride,
                                                        m.dtype_code, m.device_index or 0, k)
        ws = self.workspace(ws_bytes, dev, "uncertainty")
        # the certified top-k (csrc/cuda/uncertainty.cu): the float64 reference's, as on the
        # CPU; its statistics cost one more synchronisation, so only on request
        stats = self.core.uncertainty_cuda(
            m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code, m.device_index or 0,
            self.stream(dev), method_code, input_code, check_finite, tol, ws.data_ptr(),
            ws.numel(), scores.data_ptr(), k, order.data_ptr() if k > 0 else 0,
            top.data_ptr() if k > 0 else 0, "x", want_stats)
        del ws
        return scores, order, top, (dict(stats) if stats is not None else None)

    def uncertainty_scores(self, m: Matrix, method_code: int, input_code: int, check_finite: bool,
                           tol: float, threads: int = 0, simd: Optional[str] = None):
        scores, _, _, _ = self._uncertainty(m, None, method_code, input_code, check_finite, tol)
        return scores

    def uncertainty_topk(self, m: Matrix, budget: int, method_code: int, input_code: int,
                         check_finite: bool, tol: float, threads: int = 0,
                         simd: Optional[str] = None, want_stats: bool = False):
        _, order, top, stats = self._uncertainty(m, budget, method_code, input_code, check_finite,
                                                 tol, want_stats)
        return order, top, stats


def tensor_facts(t, chunk_bytes: int = 64 << 20) -> dict:
    """What ``_core.shard_facts`` reports, computed with torch where the tensor
    lives (float64): the first non-finite value, the first all-zero row,
    the largest magnitude and the row norms' range. One pass in chunks."""
    import torch

    facts = dict(bad_row=-1, bad_col=-1, bad_value=0.0, zero_row=-1, max_abs=0.0,
                 min_norm=float("inf"), max_norm=0.0)
    rows, cols = t.shape
    step = max(1, chunk_bytes // max(1, cols * 8))
    for lo in range(0, rows, step):
        c = t[lo: lo + step].to(torch.float64)
        bad = ~torch.isfinite(c)
        if bool(bad.any()):
            r = int(bad.any(1).nonzero()[0, 0])
            col = int(bad[r].nonzero()[0, 0])
            facts.update(bad_row=lo + r, bad_col=col, bad_value=float(c[r, col]))
            return facts
        norms = torch.linalg.vector_norm(c, dim=1)
        zero = (norms == 0).nonzero()
        if facts["zero_row"] < 0 and zero.numel():
            facts["zero_row"] = lo + int(zero[0, 0])
        facts["max_abs"] = max(facts["max_abs"], float(c.abs().max()))
        facts["min_norm"] = min(facts["min_norm"], float(norms.min()))
        facts["max_norm"] = max(facts["max_norm"], float(norms.max()))
    return facts


BACKEND = CudaBackend()

__all__ = ["BACKEND", "CudaBackend", "NO_CUDA", "tensor_facts"]
