"""What the selection fronts hand to a backend, and what a backend hands back.

The fronts (``kcenter.py``, ``uncertainty.py``) validate the caller's arguments,
choose the engine and package the result in the caller's array type; the
backends (``_backend_cpu.py``, ``_backend_cuda.py``: twins with the same
methods) run the core on the data where it lives. This module is imported by
both sides and imports neither, so there is no import circle between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .. import _emulation
from .._arrays import is_torch, to_callers_library

METRICS = ("euclidean", "cosine")
# what a caller may ask for; all but "auto" name what runs
METHODS = ("auto", "scan", "pruned", "lazy", "batched", "kdtree")
ENGINE_CODES = {"scan": 0, "pruned": 1, "lazy": 2, "batched": 3, "kdtree": 4}
# the batched method's candidates per pass (T) unless the caller says
DEFAULT_BATCH_CANDIDATES = 256
# The pruned engine hands over to the backend's default engine when its cells
# keep evaluating more than this fraction of what a scan would: auto at half
# (BENCHMARKS.md: pruning trajectories); above 1 never (an explicit "pruned").
# Tests set "pruned" to 0 to force the hand-off.
FALLBACK_FRACTION = {"auto": 0.5, "pruned": 2.0}


@dataclass
class KCenterStats:
    """What a k-center run did. ``evaluated_fraction`` is the share of the
    point-center distances of a plain scan that were actually computed."""

    method: str
    backend: str
    distance_evals: int
    scan_evals: int
    ambiguous_steps: int
    exact_distance_evals: int
    fallback_step: int
    float64_accumulation: bool
    setup_seconds: float
    select_seconds: float
    cells_seconds: float = 0.0
    n_cells: int = 0
    passes: int = 0  # passes over the data; the batched method certifies many picks per pass
    picks: int = 0
    # CPU threads the run used (0 on a GPU): the caller's num_threads, or the
    # default's choice (svp_fast._threads; why: extra["threads_reason"])
    num_threads: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def evaluated_fraction(self) -> float:
        return self.distance_evals / self.scan_evals if self.scan_evals else 0.0

    @property
    def picks_per_pass(self) -> float:
        return self.picks / self.passes if self.passes else 0.0

    @classmethod
    def from_groups(cls, raw: dict, backend: str, budgets, **fields) -> "KCenterStats":
        """The stats of a grouped core call: totals, and per group in ``extra["groups"]``;
        ``method`` is the engine of every group that picks, or "mixed"."""
        methods = list(raw["group_method"])
        stats = cls.from_core(raw, backend, **fields)
        used = sorted({m for m, b in zip(methods, budgets) if b > 0}) or ["scan"]
        stats.method = used[0] if len(used) == 1 else "mixed"
        stats.extra["groups"] = {k[len("group_"):]: list(v) for k, v in raw.items()
                                 if k.startswith("group_")}
        return stats

    @classmethod
    def from_core(cls, raw: dict, backend: str, **fields) -> "KCenterStats":
        """The stats of a core call (its result dict), plus the Python side's fields."""
        core = ("method", "distance_evals", "scan_evals", "ambiguous_steps",
                "exact_distance_evals", "fallback_step", "float64_accumulation",
                "setup_seconds", "select_seconds", "passes")
        return cls(backend=backend, **{k: raw[k] for k in core if k in raw}, **fields)


@dataclass
class UncertaintyStats:
    """What a top-k uncertainty call did: the rows sorted as candidates, those
    recomputed in float64 (``rows_refined``) and the groups of near-ties they
    formed, the passes over the logits, and the CPU threads used.

    A dataclass like :class:`KCenterStats`. It still reads as the dict it was
    before (``stats["rows_refined"]``, ``stats.get(...)``, ``dict(stats)``),
    on the four counts ``COUNTS``."""

    candidates: int = 0
    rows_refined: int = 0
    tie_groups: int = 0
    passes: int = 0
    backend: str = "cpu"
    # CPU threads used (0 on a GPU): the caller's num_threads, or the
    # default's choice (svp_fast._threads; why: extra["threads_reason"])
    num_threads: int = 0
    extra: dict = field(default_factory=dict)

    COUNTS = ("candidates", "rows_refined", "tie_groups", "passes")

    @classmethod
    def from_core(cls, raw: Optional[dict], backend: str, **fields) -> "UncertaintyStats":
        return cls(**{k: int((raw or {}).get(k, 0)) for k in cls.COUNTS}, backend=backend,
                   **fields)

    def add(self, other: "UncertaintyStats") -> None:
        """Sum the counts of another call (one group of a grouped call)."""
        for k in self.COUNTS:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    # the dict it used to be
    def keys(self):
        return self.COUNTS

    def __getitem__(self, key: str) -> int:
        if key not in self.COUNTS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default=None):
        return self[key] if key in self.COUNTS else default

    def __iter__(self):
        return iter(self.COUNTS)

    def __contains__(self, key) -> bool:
        return key in self.COUNTS


@dataclass
class KCenterPlan:
    """A validated k-center request with its engine chosen.

    ``engine`` is what runs ("scan", "lazy" or "pruned"); ``requested`` is what
    the caller asked for ("auto" lets the pruned engine hand over when cells
    do not prune). ``cell_of`` is the partition for the pruned engine, in the
    backend's memory (numpy for the CPU, a tensor on the device for CUDA)."""

    budget: int
    selected: np.ndarray  # int64, host memory
    start: int
    metric: str
    requested: str
    engine: str
    return_radii: bool
    n_cells: int = 0
    cell_of: Any = None
    # the pruned engine's projection bound (projection.Projection), or None
    projection: Any = None
    cells_seconds: float = 0.0
    seed: int = 0
    num_threads: int = 0
    simd: Optional[str] = None
    progress: Any = False
    callback: Optional[Callable] = None
    batch_candidates: int = 0  # 0: the engine's plain driver (batched: DEFAULT_BATCH_CANDIDATES)
    batch_max_picks: int = 0  # 0: no cap
    # checkpoints (selection/checkpoint.py): a state to continue from (CPU:
    # arrays m, m2, assign, fresh, and centers; any backend: prev_radius), and
    # on_checkpoint(picks, radii, prev_radius, state) to be called about every
    # checkpoint_every seconds with this call's picks so far
    resume: Optional[dict] = None
    on_checkpoint: Optional[Callable] = None
    checkpoint_every: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def metric_code(self) -> int:
        return METRICS.index(self.metric)

    @property
    def engine_code(self) -> int:
        return ENGINE_CODES[self.engine]

    @property
    def fallback_fraction(self) -> float:
        return FALLBACK_FRACTION.get(self.requested, 2.0)


@dataclass
class KCenterGroupPlan:
    """A validated request for k-center inside many groups of rows at once.

    Positions are indices into a group's own rows (see ``svp_fast.selection.groups``).
    Everything is in host memory except ``cells``, which is in the backend's
    memory like ``KCenterPlan.cell_of``."""

    members: np.ndarray           # (N',) int64 rows, group after group, ascending within each
    offsets: np.ndarray           # (G + 1,) int64
    budgets: np.ndarray           # (G,) int64
    starts: np.ndarray            # (G,) int64 first pick (position) of groups with nothing selected
    selected: np.ndarray          # already selected positions, group after group
    selected_offsets: np.ndarray  # (G + 1,) int64
    engines: list                 # (G,) engine names
    metric: str
    requested: str
    return_radii: bool
    set_rows: int = 0             # > 0: a (B, P, D) batch of sets of this many rows
    cells: Any = None             # (N',) int64 cell of each member within its group, or None
    n_cells: Optional[np.ndarray] = None  # (G,) int64
    cells_seconds: float = 0.0
    num_threads: int = 0
    simd: Optional[str] = None
    progress: Any = False
    extra: dict = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return int(self.budgets.size)

    @property
    def total(self) -> int:
        return int(self.budgets.sum())

    @property
    def metric_code(self) -> int:
        return METRICS.index(self.metric)

    @property
    def engine_codes(self) -> np.ndarray:
        return np.array([ENGINE_CODES[e] for e in self.engines], dtype=np.int32)

    @property
    def fallback_fraction(self) -> float:
        return 0.5 if self.requested == "auto" else 2.0


def read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def to_caller(like: Any, out):
    """``out`` (numpy, or a tensor a backend made) in the array type of ``like``:
    a tensor on ``like``'s device for torch inputs; for another library's array
    on CUDA (DLPack: CuPy, JAX, ...), the tensor on its device, which
    ``to_callers_library`` hands back to that library where it can; numpy
    otherwise."""
    if out is None:
        return None
    if is_torch(like):
        import torch

        if isinstance(out, np.ndarray):
            out = torch.from_numpy(out)
        return _emulation.like(like, out.to(like.device))  # (emulated device: marked so)
    if isinstance(out, np.ndarray):
        return out
    if out.is_cuda or _emulation.is_device_tensor(out):
        return out  # a device result stays on the device (the documented fallback: torch)
    return out.cpu().numpy()


def package(like: Any, picks, radii, stats, return_radii: bool, return_stats: bool):
    """The public return value: picks [, radii] [, stats], in ``like``'s array
    type (numpy, torch, or the DLPack library of the caller: CuPy, JAX)."""
    out = [to_caller(like, picks)]
    if return_radii:
        out.append(to_caller(like, radii))
    if return_stats:
        out.append(stats)
    return to_callers_library(like, out[0] if len(out) == 1 else tuple(out))
