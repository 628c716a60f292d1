"""The CPU backend: numpy arrays, memmaps and CPU tensors, read in place.

Twin of ``_backend_cuda.py``: the same methods with the same arguments, so that
the fronts never ask where the data lives beyond choosing the backend.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _core
from .._arrays import F64, Matrix
from .._progress import make_hook
from . import cells, projection
from ._plan import KCenterGroupPlan, KCenterPlan, KCenterStats, read_only


class CpuBackend:
    name = "cpu"
    # lazy needs no setup and never reads more than the scan: what "auto"
    # runs when the cells do not pay, and what the pruned engine hands over to
    lazy_engine = "lazy"
    auto_engine = "lazy"
    auto_min_budget = 0
    auto_considers_cells = True
    # auto may time its candidate engines on a sample of the rows (engine_trial)
    times_engines = True
    # the cells cost a k-means before the first pick: below this many rows a
    # selection is over before they pay
    cells_min_rows = 4096
    # what method="kdtree" runs here (low-dimensional points)
    kdtree_engine = "kdtree"
    # groups choose their engines one by one (None), as single sets do
    groups_engine = None

    def __init__(self, core=None):
        self._core = core

    @property
    def core(self):
        return self._core if self._core is not None else _core

    def validate(self, m: Matrix, metric: str, threads: int, simd: Optional[str]) -> None:
        """The core validates its input, but cells are built before it runs:
        one fast pass first, so that k-means never sees NaN or Inf."""
        f = self.core.shard_facts(m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code, threads,
                                  simd or "")
        if f["bad_row"] >= 0:
            raise ValueError(f"embeddings must be finite, got {f['bad_value']:g} at row "
                             f"{f['bad_row']}, column {f['bad_col']}")
        if metric == "cosine" and f["zero_row"] >= 0:
            raise ValueError(f"embeddings row {f['zero_row']} is all zeros; the cosine metric "
                             "needs rows of nonzero norm")

    def probe_intrinsic_dimension(self, m: Matrix, metric: str, seed: int) -> float:
        return cells.probe_intrinsic_dimension(m, metric=metric, seed=seed)

    def probe_spread(self, m: Matrix, metric: str, seed: int) -> float:
        """The share of held-out variance outside the projection's directions
        (projection.spread_residual): the auto rule's test for wide rows."""
        return projection.spread_residual(m, metric=metric, seed=seed)

    def build_projection(self, m: Matrix, metric: str, seed: int, dims: Optional[int] = None):
        """The pruned engine's projection bound (projection.py) with ``dims``
        directions (None: chosen from the data), or None where it would not pay."""
        return projection.build_projection(m, metric=metric, seed=seed, dims=dims)

    def build_cells(self, m: Matrix, n_cells: int, metric: str, seed: int, threads: int,
                    projection=None):
        """The k-means partition for the pruned engine (FAISS on the CPU; on the
        projection's coordinates when they hold nearly all of the variance)."""
        cell_of, _info = cells.build_cells(m, n_cells, metric=metric, seed=seed, threads=threads,
                                           projection=projection)
        return cell_of

    def kcenter(self, m: Matrix, plan: KCenterPlan):
        """Runs the plan; returns (picks, radii or None, KCenterStats) as numpy."""
        picks = np.empty(plan.budget, dtype=np.int64)
        radii = np.empty(plan.budget, dtype=np.float64) if plan.return_radii else None
        resume = snapshot = None
        if plan.resume is not None and "m" in plan.resume:
            r = plan.resume
            resume = dict(m=r["m"].ctypes.data, m2=r["m2"].ctypes.data,
                          assign=r["assign"].ctypes.data, fresh=r["fresh"].ctypes.data,
                          centers=int(r["centers"]), prev_radius=float(r["prev_radius"]))
        if plan.on_checkpoint is not None:
            # the core writes its state here between picks, at most every
            # checkpoint_every seconds; header: generation, picks, centers, radius
            snap = {"m": np.empty(m.rows), "m2": np.empty(m.rows),
                    "assign": np.empty(m.rows, dtype=np.int64),
                    "fresh": np.empty(m.rows, dtype=np.int64), "header": np.zeros(4)}
            snapshot = {k: a.ctypes.data for k, a in snap.items()}
            snapshot["interval"] = float(plan.checkpoint_every)
            seen = [0.0]

        def on_poll(done: int) -> None:
            if plan.on_checkpoint is not None and snap["header"][0] != seen[0]:
                seen[0] = snap["header"][0]
                t = int(snap["header"][1])
                state = {k: snap[k] for k in ("m", "m2", "assign", "fresh")}
                state["centers"] = int(snap["header"][2])
                plan.on_checkpoint(picks[:t], None if radii is None else radii[:t],
                                   float(snap["header"][3]), state)
            if plan.callback is not None:
                plan.callback(read_only(picks[:done]),
                              None if radii is None else read_only(radii[:done]))

        watch = plan.callback is not None or plan.on_checkpoint is not None
        hook, close = make_hook(plan.budget, plan.progress, "k-center", "pick",
                                on_poll if watch else None)
        cell_of = plan.cell_of
        try:
            raw = self.core.kcenter_cpu(
                ptr=m.ptr, rows=m.rows, cols=m.cols, row_stride=m.row_stride,
                dtype=m.dtype_code, metric=plan.metric_code, budget=plan.budget,
                selected_ptr=plan.selected.ctypes.data if plan.selected.size else 0,
                n_selected=plan.selected.size, start=plan.start, method=plan.engine_code,
                cells_ptr=cell_of.ctypes.data if cell_of is not None else 0,
                n_cells=plan.n_cells if cell_of is not None else 0,
                cell_copy_max_bytes=cells.CELL_ORDER_COPY_MAX_BYTES,
                fallback_fraction=plan.fallback_fraction,
                batch_candidates=plan.batch_candidates, batch_max_picks=plan.batch_max_picks,
                num_threads=plan.num_threads,
                picks_ptr=picks.ctypes.data, radii_ptr=radii.ctypes.data if radii is not None else 0,
                progress=hook, poll_interval=0.1, simd=plan.simd or "", arg_name="embeddings",
                resume=resume, snapshot=snapshot,
                projection=plan.projection.core_args() if plan.projection is not None else None)
        finally:
            close()
        stats = KCenterStats.from_core(
            raw, self.name, cells_seconds=plan.cells_seconds, picks=plan.budget,
            num_threads=plan.num_threads,
            n_cells=plan.n_cells if cell_of is not None else 0, extra=dict(plan.extra))
        if raw.get("product_pairs", 0):
            # distances applied as a matrix product (csrc/cpu/product_screen.h),
            # and the fast distances its screen left to compute
            stats.extra.update(product_pairs=int(raw["product_pairs"]),
                               product_recomputes=int(raw["product_recomputes"]))
        if plan.projection is not None:
            stats.extra.update(projection_dims=plan.projection.dims,
                               projection_residual=plan.projection.residual_fraction,
                               projection_seconds=plan.projection.seconds,
                               projection_tests=int(raw["projection_tests"]),
                               projection_skips=int(raw["projection_skips"]))
        return picks, radii, stats

    def kcenter_groups(self, m: Matrix, plan: KCenterGroupPlan):
        """Runs every group of the plan in one core call; returns (positions,
        radii or None, KCenterStats) as numpy, group after group."""
        total = plan.total
        picks = np.empty(total, dtype=np.int64)
        radii = np.empty(total, dtype=np.float64) if plan.return_radii else None
        hook, close = make_hook(total, plan.progress, "k-center (groups)", "pick")
        methods = plan.engine_codes
        cell_of = plan.cells
        n_cells = plan.n_cells if cell_of is not None else None
        ptr = lambda a: a.ctypes.data if a is not None and a.size else 0  # noqa: E731
        try:
            raw = self.core.kcenter_groups_cpu(
                ptr=m.ptr, rows=m.rows, cols=m.cols, row_stride=m.row_stride,
                dtype=m.dtype_code, metric=plan.metric_code, n_groups=plan.n_groups,
                members_ptr=ptr(plan.members), offsets_ptr=ptr(plan.offsets),
                budgets_ptr=ptr(plan.budgets), starts_ptr=ptr(plan.starts),
                selected_ptr=ptr(plan.selected), selected_offsets_ptr=ptr(plan.selected_offsets),
                methods_ptr=ptr(methods), cells_ptr=ptr(cell_of), n_cells_ptr=ptr(n_cells),
                set_rows=plan.set_rows, cell_copy_max_bytes=cells.CELL_ORDER_COPY_MAX_BYTES,
                fallback_fraction=plan.fallback_fraction, num_threads=plan.num_threads,
                picks_ptr=ptr(picks), radii_ptr=ptr(radii), progress=hook, poll_interval=0.1,
                simd=plan.simd or "", arg_name="embeddings")
        finally:
            close()
        stats = KCenterStats.from_groups(raw, self.name, plan.budgets, cells_seconds=plan.cells_seconds,
                                         num_threads=plan.num_threads,
                                         n_cells=int(n_cells.sum()) if n_cells is not None else 0,
                                         extra=dict(plan.extra))
        return picks, radii, stats

    # -- uncertainty -----------------------------------------------------------

    def uncertainty_scores(self, m: Matrix, method_code: int, input_code: int,
                           check_finite: bool, tol: float, threads: int = 0,
                           simd: Optional[str] = None) -> np.ndarray:
        """Every row's score (float32; float64 for float64 input)."""
        out = np.empty(m.rows, dtype=np.float64)
        self.core.uncertainty_scores_cpu(m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code,
                                         method_code, input_code, check_finite, tol, threads,
                                         out.ctypes.data, simd or "", "x")
        return out.astype(np.float64 if m.dtype_code == F64 else np.float32)

    def uncertainty_topk(self, m: Matrix, budget: int, method_code: int, input_code: int,
                         check_finite: bool, tol: float, threads: int = 0,
                         simd: Optional[str] = None, want_stats: bool = False):
        """The certified top ``budget`` rows: (order, their scores, stats)."""
        order = np.empty(budget, dtype=np.int64)
        top = np.empty(budget, dtype=np.float64)
        stats = self.core.uncertainty_topk_cpu(m.ptr, m.rows, m.cols, m.row_stride, m.dtype_code,
                                               method_code, input_code, check_finite, tol, threads,
                                               budget, order.ctypes.data if budget else 0,
                                               top.ctypes.data if budget else 0, simd or "", "x")
        return order, top.astype(np.float64 if m.dtype_code == F64 else np.float32), dict(stats)


BACKEND = CpuBackend()
