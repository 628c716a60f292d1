"""The CPU backend: numpy arrays, memmaps and CPU tensors, read in place.

Twin of ``_backend_cuda.py``: the same methods with the same arguments, so that
the fronts never ask where the data lives beyond choosing the backend.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _core
from .._arrays import Matrix
from .._progress import make_hook
from . import cells
from ._plan import KCenterPlan, KCenterStats, read_only


class CpuBackend:
    name = "cpu"
    # lazy needs no setup and never reads more than the scan: what "auto"
    # runs when the cells do not pay, and what the pruned engine hands over to
    lazy_engine = "lazy"
    auto_engine = "lazy"
    auto_min_budget = 0
    auto_considers_cells = True
    # the cells cost a k-means before the first pick: below this many rows a
    # selection is over before they pay
    cells_min_rows = 4096

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

    def build_cells(self, m: Matrix, n_cells: int, metric: str, seed: int, threads: int):
        """The k-means partition for the pruned engine (FAISS on the CPU)."""
        cell_of, _info = cells.build_cells(m, n_cells, metric=metric, seed=seed, threads=threads)
        return cell_of

    def kcenter(self, m: Matrix, plan: KCenterPlan):
        """Runs the plan; returns (picks, radii or None, KCenterStats) as numpy."""
        picks = np.empty(plan.budget, dtype=np.int64)
        radii = np.empty(plan.budget, dtype=np.float64) if plan.return_radii else None

        def on_poll(done: int) -> None:
            plan.callback(read_only(picks[:done]),
                          None if radii is None else read_only(radii[:done]))

        hook, close = make_hook(plan.budget, plan.progress, "k-center", "pick",
                                on_poll if plan.callback else None)
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
                progress=hook, poll_interval=0.1, simd=plan.simd or "", arg_name="embeddings")
        finally:
            close()
        stats = KCenterStats.from_core(
            raw, self.name, cells_seconds=plan.cells_seconds, picks=plan.budget,
            n_cells=plan.n_cells if cell_of is not None else 0, extra=dict(plan.extra))
        return picks, radii, stats


BACKEND = CpuBackend()
